"""Copies and comparisons of stored arrays a block at a time (bounded memory)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

_CHUNK_BYTES = 32 * 2**20  # per copied or compared block


def _rows_per_chunk(row_bytes):
    return max(1, _CHUNK_BYTES // max(1, int(row_bytes)))


def _copy_time_crop(src, dst, start, n):
    """``dst[...] = src[..., start:start + n]`` for (n_repeats, n_targets, n_time) arrays,
    a block of targets at a time."""
    step = _rows_per_chunk(n * src.dtype.itemsize)
    for rep in range(src.shape[0]):
        for a in range(0, src.shape[1], step):
            dst[rep, a:a + step] = src[rep, a:a + step, start:start + n]


def _copy_rows(src, dst, start, n):
    """``dst[:] = src[start:start + n]`` (time on the first axis), a block of rows at a time."""
    step = _rows_per_chunk(np.prod(src.shape[1:], dtype=np.int64) * src.dtype.itemsize)
    for a in range(0, n, step):
        b = min(n, a + step)
        dst[a:b] = src[start + a:start + b]


def _copy_gt_crop(src, dst, start, n):
    """``dst[...] = src[..., start:start + n]`` for an array of any rank (time last)."""
    if src.ndim == 1:
        dst[:] = src[start:start + n]
        return
    flat_src = src.reshape(-1, src.shape[-1]) if src.flags.c_contiguous else None
    if flat_src is None:  # pragma: no cover - np.load memmaps are C-contiguous
        dst[...] = src[..., start:start + n]
        return
    flat_dst = dst.reshape(-1, n)
    step = _rows_per_chunk(n * src.dtype.itemsize)
    for a in range(0, flat_src.shape[0], step):
        flat_dst[a:a + step] = flat_src[a:a + step, start:start + n]



def _file_digest(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fid:
        for block in iter(lambda: fid.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _tree_digest(folder) -> dict:
    folder = Path(folder)
    return {str(p.relative_to(folder)): _file_digest(p)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _arrays_equal(a, b) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.ndim == 0:
        return bool(np.array_equal(a, b, equal_nan=np.issubdtype(a.dtype, np.inexact)))
    step = _rows_per_chunk(a[:1].nbytes)
    nan = np.issubdtype(a.dtype, np.inexact)
    return all(np.array_equal(np.asarray(a[i:i + step]), np.asarray(b[i:i + step]),
                              equal_nan=nan) for i in range(0, a.shape[0], step))


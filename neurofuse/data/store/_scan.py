"""Reading a store's ``.npy`` files for its checks: headers, cheap samples, full scans.

Nothing here knows the manifest: :mod:`.validate` says what each file should hold and turns
what these functions find into :class:`~.validate.Problem` entries.
"""

from __future__ import annotations

import math

import numpy as np

_CHUNK_BYTES = 64 * 2**20
_BLOCK = 1024          # elements per sampled block (4 KiB of float32: one page)
_N_BLOCKS = 16         # blocks sampled evenly over the flattened array
_MAX_EDGE_TARGETS = 2048  # (repeat, target) rows whose first and last samples are read


def read_header(path):
    """The header of a ``.npy`` file without reading its data.

    Returns
    -------
    header : dict
        ``shape`` (tuple), ``dtype`` (np.dtype), ``fortran`` (bool), ``offset`` (bytes before
        the data), ``nbytes`` (bytes of data the header promises), ``size`` (file size).

    Raises
    ------
    ValueError
        The file is not a ``.npy`` file or its header is damaged.
    """
    fmt = np.lib.format
    with open(path, "rb") as fid:
        try:
            version = fmt.read_magic(fid)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(fid)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = fmt.read_array_header_2_0(fid)
            else:  # pragma: no cover - numpy refuses other versions in read_magic
                raise ValueError(f"unknown .npy version {version}")
        except (ValueError, OSError, SyntaxError, EOFError) as exc:
            raise ValueError(f"not a readable .npy file ({exc})") from None
        offset = fid.tell()
        fid.seek(0, 2)
        size = fid.tell()
    if dtype.hasobject:
        raise ValueError("an object array (it would need pickle to read)")
    return {"shape": tuple(int(s) for s in shape), "dtype": dtype, "fortran": bool(fortran),
            "offset": offset, "nbytes": math.prod(shape) * dtype.itemsize, "size": size}


def open_array(path):
    """Memory-map a ``.npy`` file (read-only, never unpickling)."""
    return np.load(path, mmap_mode="r", allow_pickle=False)


def _flat(arr):
    return arr.reshape(-1, order="F" if arr.flags.f_contiguous and not arr.flags.c_contiguous
                       else "C")


def sample(arr, *, time_edges=True):
    """A cheap sample of an array: evenly spread blocks, plus edge samples of every row.

    Parameters
    ----------
    arr : array, shape (n_lead, ..., n_times)
        A memory map; only the sampled pages are read.
    time_edges : bool
        Also read the first and last element along the last axis of (up to 2048 evenly
        chosen) rows, so a whole channel of NaN shows.

    Returns
    -------
    values : array, shape (n_sampled,)
    """
    if arr.size == 0:
        return np.empty(0, arr.dtype)
    flat = _flat(arr)
    n = flat.size
    parts = []
    if n <= _BLOCK * _N_BLOCKS:
        parts.append(np.asarray(flat))
    else:
        starts = np.linspace(0, n - _BLOCK, _N_BLOCKS).astype(np.int64)
        parts.append(np.asarray(flat[(starts[:, None] + np.arange(_BLOCK)).ravel()]))
    if time_edges and arr.ndim >= 2 and arr.flags.c_contiguous:
        rows = arr.reshape(-1, arr.shape[-1])
        n_rows = rows.shape[0]
        pick = (np.arange(n_rows) if n_rows <= _MAX_EDGE_TARGETS else
                np.linspace(0, n_rows - 1, _MAX_EDGE_TARGETS).astype(np.int64))
        cols = np.array(sorted({0, arr.shape[-1] - 1}))
        parts.append(np.asarray(rows[pick[:, None], cols[None, :]]).ravel())  # only those
    return np.concatenate(parts)


def any_nonzero(arr) -> bool:
    """Whether any element of an array is non-zero (NaN counts), read chunk by chunk."""
    flat = _flat(arr)
    step = max(1, _CHUNK_BYTES // max(1, arr.dtype.itemsize))
    return any(np.any(np.asarray(flat[i:i + step]) != 0) for i in range(0, flat.size, step))


def _runs(mask):
    """Start and stop (exclusive) of each run of True in a 1-D boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.view(np.int8), [0]))))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def scan(arr, *, time_axis_last=True):
    """Read a whole array once, chunk by chunk: non-finite runs and all-zero targets.

    Parameters
    ----------
    arr : array, shape (n_lead, *spatial, n_times) | (n_times, n_columns)
        With ``time_axis_last`` (data, epochs: ``n_lead`` repeats or epochs), or with time
        first (features: ``time_axis_last=False``).

    Returns
    -------
    found : dict
        ``n_bad`` (number of NaN/Inf values); ``bad`` a list of ``(lead, target, runs)``
        (time-last arrays; ``runs`` the ``(start, stop)`` samples of each non-finite run;
        at most 20 entries) or of ``(None, columns, runs)`` (time-first arrays: the rows
        holding NaN/Inf and the columns they hit); ``n_bad_targets``;
        ``zero_targets`` (indices of targets that are 0 in every lead and sample, time-last
        arrays only) and ``all_zero`` (the whole array is 0).
    """
    out = {"n_bad": 0, "bad": [], "n_bad_targets": 0, "zero_targets": [], "all_zero": False}
    if arr.size == 0:
        return out
    if not time_axis_last:  # (n_times, n_columns): chunks of rows
        step = max(1, _CHUNK_BYTES // max(1, arr[:1].nbytes))
        bad_rows, cols = [], set()
        nonzero = False
        for start in range(0, arr.shape[0], step):
            chunk = np.asarray(arr[start:start + step])
            fin = np.isfinite(chunk)
            nonzero = nonzero or bool(np.any(chunk != 0))
            if not fin.all():
                out["n_bad"] += int((~fin).sum())
                rows = ~fin.reshape(chunk.shape[0], -1).all(axis=1)
                bad_rows.append((start, rows))
                cols.update(np.flatnonzero(~fin.reshape(chunk.shape[0], -1).all(axis=0))
                            .tolist())
        if bad_rows:
            mask = np.zeros(arr.shape[0], bool)
            for start, rows in bad_rows:
                mask[start:start + rows.size] = rows
            out["bad"].append((None, sorted(cols), _runs(mask)))
            out["n_bad_targets"] = len(cols)
        out["all_zero"] = not nonzero
        return out
    n_t = arr.shape[-1]
    n_targets = int(math.prod(arr.shape[1:-1]))
    rows = arr.reshape(-1, n_t)  # (n_lead * n_targets, n_times): row = lead * n_targets + target
    peak = np.zeros(n_targets, np.float64)
    rows_per = max(1, _CHUNK_BYTES // max(1, n_t * arr.dtype.itemsize))
    bad_targets = set()
    for r0 in range(0, rows.shape[0], rows_per):
        chunk = np.asarray(rows[r0:r0 + rows_per])  # (k, n_times)
        fin = np.isfinite(chunk)
        targets = np.arange(r0, r0 + chunk.shape[0]) % n_targets
        if fin.all():
            np.maximum.at(peak, targets, np.abs(chunk).max(axis=1))
            continue
        out["n_bad"] += int((~fin).sum())
        bad = ~fin.all(axis=1)
        got = np.abs(np.where(fin, chunk, 0)).max(axis=1)
        got[bad] = np.inf  # a target holding NaN is not "all zero"
        np.maximum.at(peak, targets, got)
        for k in np.flatnonzero(bad).tolist():
            lead, target = divmod(r0 + k, n_targets)
            bad_targets.add(target)
            if len(out["bad"]) < 20:
                out["bad"].append((lead, target, _runs(~fin[k])))
    out["n_bad_targets"] = len(bad_targets)
    out["zero_targets"] = np.flatnonzero(peak == 0).tolist()
    out["all_zero"] = len(out["zero_targets"]) == n_targets
    return out

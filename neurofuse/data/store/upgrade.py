"""Rewrite a store of an older schema in the current layout: :func:`upgrade_dataset`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from ... import __version__
from ..._io import atomic_dir, save_npy, write_json
from ..._logging import logger, verbose
from .manifest import LEGACY_2D, LEGACY_ECOG_MANIFEST, MANIFEST, read_manifest
from .reader import read_dataset

__all__ = ["upgrade_dataset"]


@verbose
def upgrade_dataset(path, out=None, *, overwrite=False, verbose=None) -> Path:
    """Rewrite a dataset of an older schema (1, or a former ECoG store) as the current one.

    Reading needs no upgrade (:func:`read_dataset` reads older stores as they are); this
    gives a store that older code paths never have to special-case. Unchanged files are
    hard-linked where the file system allows it (copied otherwise); the former ECoG store's
    ``(n_electrodes, n_times)`` arrays gain their repeat axis.

    Parameters
    ----------
    path : path-like
        The store to upgrade.
    out : path-like | None
        Where to write the upgraded store; None replaces ``path`` (only once the new one is
        complete).
    overwrite : bool
        Replace an existing ``out``.
    verbose : bool | str | int | None

    Returns
    -------
    out : Path
        The upgraded store (``path`` itself when it is already current and ``out`` is None).
    """
    path = Path(path).expanduser()
    read_dataset(path)  # complete and readable
    manifest = read_manifest(path)
    origin = manifest.pop("upgraded_from", None)
    if origin is None and out is None:
        logger.info("Dataset '%s' already has the current schema; nothing to do.", path)
        return path
    legacy_2d = set(manifest.pop(LEGACY_2D, ()))
    if origin is not None:
        manifest["schema_upgrade"] = {"from": origin, "neurofuse": __version__}
    dest = path if out is None else Path(out).expanduser()
    with atomic_dir(dest, overwrite=out is None or overwrite, what="dataset") as tmp:
        for src in sorted(path.rglob("*")):
            rel = src.relative_to(path)
            if src.is_dir() or rel.as_posix() in (MANIFEST, LEGACY_ECOG_MANIFEST):
                continue
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            parts = rel.parts
            if len(parts) == 4 and parts[0] == "subjects" and parts[2] in legacy_2d:
                save_npy(target, np.load(src, allow_pickle=False)[np.newaxis])
                continue
            try:
                os.link(src, target)
            except OSError:
                shutil.copy2(src, target)
        write_json(tmp / MANIFEST, manifest, what="dataset manifest")
    logger.info("Upgraded dataset '%s' (%s) -> '%s'.", path, origin or "current", dest)
    return dest

"""From the columns of a subject's ``.hf5`` data (voxels, or surface vertices) to its sources.

A voxel→source mapping is one folder per subject (:func:`write_voxel_to_source` writes it,
:func:`read_voxel_to_source` reads and checks it); data already on the surface need none:
8196 columns are the fsaverage oct6 sources, 20484 the fsaverage5 vertices (lh then rh), each
oct6 source taking the mean of the vertices nearest to it on the sphere (paper §2.5).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...._checks import _check_type
from ...._io import hash_arrays, hash_file, write_json
from ...._logging import logger

#: Number of fsaverage oct6 sources and of fsaverage5 vertices (lh + rh).
N_OCT6, N_FSAVERAGE5 = 8196, 20484
MAPPING_FILE, MAPPING_VERTICES, MAPPING_MORPH = "voxel_to_source.npz", "vertices.json", "morph.npz"


@dataclass
class VoxelToSource:
    """A projection of one subject's data columns onto its sources.

    Attributes
    ----------
    matrix : scipy.sparse.csr_matrix, shape (n_sources, n_columns), float32
        ``sources = matrix @ data_columns``.
    vertices : list of 2 int arrays
        The sources' vertex numbers ``[lh, rh]``.
    morph : scipy.sparse.csr_matrix, shape (n_sources, n_sources_fsaverage)
        fsaverage oct6 → subject sources (the identity for the template's own sources).
    kind : str
        ``"mapping"`` (from files), ``"oct6"`` or ``"fsaverage5"`` (surface data).
    key : str
        Content hash, for the cache.
    """

    matrix: object
    vertices: list
    morph: object
    kind: str
    key: str

    @property
    def n_sources(self) -> int:
        return int(self.matrix.shape[0])


def _template():
    """The fsaverage oct6 source space of the embedded template (cached by neurofuse)."""
    from ....anatomy import get_source_space, make_template_subject

    return get_source_space(make_template_subject(meg=False), "oct6")


def _template_vertices():
    return [np.asarray(s["vertno"], np.int64) for s in _template()]


def write_voxel_to_source(folder, matrix, vertices, *, morph=None, overwrite=False):
    """Write one subject's voxel→source mapping in the format :func:`read_voxel_to_source` reads.

    Parameters
    ----------
    folder : path-like
        The subject's folder, e.g. ``MAPS/UTS01`` (created).
    matrix : scipy.sparse matrix | array, shape (n_sources, n_voxels)
        Row ``i`` gives the weights of the ``.hf5`` columns (voxels, in the file's column
        order) that make source ``i``; rows summing to 1 average them.
    vertices : list of 2 int arrays
        The sources' vertex numbers ``[lh, rh]`` (``n_sources`` in all), as MNE numbers them.
    morph : scipy.sparse matrix | None, shape (n_sources, 8196)
        fsaverage oct6 → subject morph. Omit it when the sources are the fsaverage oct6
        sources themselves (vertices equal to the template's).
    overwrite : bool
        Replace existing files.
    """
    import scipy.sparse

    folder = Path(folder).expanduser()
    files = [folder / MAPPING_FILE, folder / MAPPING_VERTICES] + \
        ([folder / MAPPING_MORPH] if morph is not None else [])
    if not overwrite and any(f.exists() for f in files):
        raise FileExistsError(f"A mapping already exists in '{folder}'; pass overwrite=True.")
    vertices = [np.asarray(v, np.int64).tolist() for v in vertices]
    from ...._io import atomic_path

    for obj, name in ((matrix, MAPPING_FILE), (morph, MAPPING_MORPH)):
        if obj is None:
            continue
        with atomic_path(folder / name, what="voxel-to-source mapping") as tmp, \
                open(tmp, "wb") as fid:
            scipy.sparse.save_npz(fid, scipy.sparse.csr_matrix(obj, dtype=np.float32))
    write_json(folder / MAPPING_VERTICES, vertices, what="mapping vertices")
    return folder


def read_voxel_to_source(folder, *, n_voxels=None, subject=None) -> VoxelToSource:
    """Read and check one subject's voxel→source mapping.

    The format (one folder per subject; :func:`write_voxel_to_source` writes it):

    * ``voxel_to_source.npz``: a ``scipy.sparse.save_npz`` matrix of shape
      (n_sources, n_voxels), columns in the order of the ``.hf5`` columns;
    * ``vertices.json``: ``[[lh vertex numbers], [rh vertex numbers]]``, n_sources in all;
    * ``morph.npz`` (optional): fsaverage oct6 → subject, shape (n_sources, 8196). Without it
      the vertices must be the fsaverage oct6 sources and the morph is the identity.

    Parameters
    ----------
    folder : path-like
    n_voxels : int | None
        Columns of the subject's ``.hf5`` data, checked against the matrix.
    subject : str | None
        For the error messages.
    """
    import scipy.sparse

    folder = Path(folder).expanduser()
    who = f" of subject {subject!r}" if subject else ""
    for name in (MAPPING_FILE, MAPPING_VERTICES):
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"The voxel→source mapping{who} is incomplete: '{folder / name}' is missing. "
                f"A mapping folder holds {MAPPING_FILE} (n_sources, n_voxels), "
                f"{MAPPING_VERTICES} and optionally {MAPPING_MORPH}; see write_voxel_to_source.")
    try:
        matrix = scipy.sparse.load_npz(folder / MAPPING_FILE)
    except (ValueError, OSError) as err:
        raise ValueError(f"Cannot read '{folder / MAPPING_FILE}' with scipy.sparse.load_npz "
                         f"({err}).") from None
    matrix = scipy.sparse.csr_matrix(matrix, dtype=np.float32)
    if not np.all(np.isfinite(matrix.data)):
        raise ValueError(f"The voxel→source mapping '{folder / MAPPING_FILE}' holds NaN/Inf.")
    n_src, n_cols = matrix.shape
    if n_voxels is not None and n_cols != n_voxels:
        raise ValueError(
            f"Bad voxel→source mapping shape{who}: '{folder / MAPPING_FILE}' is ({n_src}, "
            f"{n_cols}) but the subject's .hf5 files have {n_voxels} voxels (columns). The "
            "matrix must be (n_sources, n_voxels) with the columns in the .hf5 column order "
            "(transpose it if it is (n_voxels, n_sources)).")
    try:
        vertices = json.loads((folder / MAPPING_VERTICES).read_text())
        vertices = [np.asarray(v, np.int64) for v in vertices]
        if len(vertices) != 2 or any(v.ndim != 1 for v in vertices):
            raise ValueError
    except (ValueError, TypeError):
        raise ValueError(f"'{folder / MAPPING_VERTICES}' must hold [[lh vertex numbers], "
                         "[rh vertex numbers]].") from None
    if sum(v.size for v in vertices) != n_src:
        raise ValueError(
            f"Bad voxel→source mapping shape{who}: {MAPPING_VERTICES} lists "
            f"{sum(v.size for v in vertices)} vertices but the matrix has {n_src} rows "
            "(sources); they must describe the same sources.")
    files = [folder / MAPPING_FILE, folder / MAPPING_VERTICES]
    if (folder / MAPPING_MORPH).is_file():
        morph = scipy.sparse.csr_matrix(scipy.sparse.load_npz(folder / MAPPING_MORPH),
                                        dtype=np.float32)
        if morph.shape != (n_src, N_OCT6):
            raise ValueError(
                f"Bad morph{who}: '{folder / MAPPING_MORPH}' is {morph.shape} but must be "
                f"(n_sources, n_sources_fsaverage) = ({n_src}, {N_OCT6}) (fsaverage oct6 → "
                "subject; see neurofuse.anatomy.make_morph).")
        files.append(folder / MAPPING_MORPH)
    else:
        template = _template_vertices()
        if not all(np.array_equal(a, b) for a, b in zip(vertices, template)):
            raise ValueError(
                f"The voxel→source mapping{who} in '{folder}' has no {MAPPING_MORPH}, so its "
                f"sources must be the fsaverage oct6 sources ({N_OCT6}, vertices as "
                "neurofuse.anatomy.get_source_space(make_template_subject(), 'oct6')), but "
                f"{MAPPING_VERTICES} lists other vertices. Add the fsaverage → subject morph "
                f"({MAPPING_MORPH}, e.g. from neurofuse.anatomy.make_morph).")
        morph = scipy.sparse.identity(n_src, dtype=np.float32, format="csr")
    empty = int(np.sum(np.diff(matrix.indptr) == 0))
    if empty:
        logger.warning("%d of %d sources%s receive no voxel in the mapping: their fMRI is 0 "
                       "(and so is their repeatability).", empty, n_src, who)
    key = hash_arrays("voxel-to-source", [hash_file(f) for f in files])
    return VoxelToSource(matrix, vertices, morph, "mapping", key)


def _surface_mapping(n_columns, subject):
    import scipy.sparse

    from ....anatomy.coordinates import fsaverage5_to_oct6

    if n_columns == N_OCT6:
        matrix, kind = scipy.sparse.identity(N_OCT6, dtype=np.float32, format="csr"), "oct6"
    elif n_columns == N_FSAVERAGE5:
        matrix, kind = fsaverage5_to_oct6(), "fsaverage5"
    else:
        raise ValueError(
            f"The .hf5 files of subject {subject!r} have {n_columns} columns: voxels, not a "
            f"surface ({N_OCT6} fsaverage oct6 sources or {N_FSAVERAGE5} fsaverage5 vertices). "
            "Pass voxel_to_source= a folder of voxel→source mappings (see "
            "neurofuse.data.datasets.lebel.write_voxel_to_source).")
    morph = scipy.sparse.identity(N_OCT6, dtype=np.float32, format="csr")
    return VoxelToSource(matrix, _template_vertices(), morph, kind, f"surface-{kind}")


def _mappings(voxel_to_source, subjects, n_voxels):
    maps = {}
    if voxel_to_source is None:
        for sub in subjects:
            maps[sub] = _surface_mapping(n_voxels[sub], sub)
        return maps
    if isinstance(voxel_to_source, dict):
        missing = [s for s in subjects if s not in voxel_to_source]
        if missing:
            raise ValueError(f"'voxel_to_source' has no mapping for subjects {missing}.")
        folders = {s: Path(voxel_to_source[s]).expanduser() for s in subjects}
    else:
        _check_type("voxel_to_source", voxel_to_source, (str, os.PathLike),
                    "a folder, a dict {subject: folder} or None")
        base = Path(voxel_to_source).expanduser()
        if not base.is_dir():
            raise FileNotFoundError(f"'voxel_to_source' = '{base}' is not a folder (it must "
                                    "hold one mapping folder per subject).")
        folders = {s: base / s for s in subjects}
    for sub in subjects:
        if not folders[sub].is_dir():
            raise FileNotFoundError(f"No voxel→source mapping folder for subject {sub!r}: "
                                    f"'{folders[sub]}' does not exist.")
        maps[sub] = read_voxel_to_source(folders[sub], n_voxels=n_voxels[sub], subject=sub)
    return maps

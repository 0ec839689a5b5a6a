"""Coordinate transforms between the spaces neurofuse meets, in one place.

* MNI152 -> MNI305 (= fsaverage surface RAS): :func:`mni152_to_mni305`, FreeSurfer's affine
  :data:`MNI152_TO_MNI305` (from ``$FREESURFER_HOME/average/mni152.register.dat``, FreeSurfer
  wiki "CoordinateSystems", case 8b). It was made for FSL's MNI152 (NLin6Asym); the nonlinear
  2009 templates differ from it by about a millimetre. Its inverse: :func:`mni305_to_mni152`.
* A subject's electrodes -> fsaverage: :func:`electrodes_to_fsaverage`, through the
  spherical registration (``?h.sphere.reg``), as MNE's morphs map sources.
* Positions -> fsaverage5 vertex numbers: :func:`fsaverage5_vertices` (e.g. the sources of a
  ground-truth encoder, which lie on fsaverage5 vertices of the white surface).
* fsaverage5 vertices -> fsaverage oct6 sources: :func:`fsaverage5_to_oct6`, the averaging
  matrix of surface data (20484 vertices) into the 8196 sources.

Units: MNI coordinates are in mm (as the atlases give them); surface positions of
:func:`electrodes_to_fsaverage` and :func:`fsaverage5_vertices` are in metres (as MNE-Python
stores them).
"""

from __future__ import annotations

import numpy as np

_HEMIS = ("lh", "rh")

#: FreeSurfer's MNI152 -> MNI305 (fsaverage) affine, mm (wiki "CoordinateSystems", case 8b:
#: ``inv(V152 inv(T152) R T305 inv(V305))`` with R from ``average/mni152.register.dat``).
MNI152_TO_MNI305 = np.array([[1.0022, 0.0071, -0.0177, 0.0528],
                             [-0.0146, 0.9990, 0.0027, -1.5519],
                             [0.0129, 0.0094, 1.0027, -1.2012],
                             [0.0, 0.0, 0.0, 1.0]])


def mni152_to_mni305(pos) -> np.ndarray:
    """Map points from MNI152 to MNI305 (= fsaverage surface RAS) with FreeSurfer's affine.

    Parameters
    ----------
    pos : array, shape (n, 3)
        MNI152 coordinates, **mm**.

    Returns
    -------
    pos : array, shape (n, 3)
        MNI305 coordinates, mm.
    """
    pos = np.atleast_2d(np.asarray(pos, float))
    return pos @ MNI152_TO_MNI305[:3, :3].T + MNI152_TO_MNI305[:3, 3]


def mni305_to_mni152(pos) -> np.ndarray:
    """Map points from MNI305 (= fsaverage surface RAS) to MNI152: the inverse of
    :func:`mni152_to_mni305` (``inv(MNI152_TO_MNI305)``).

    Parameters
    ----------
    pos : array, shape (n, 3)
        MNI305 coordinates, **mm** (fsaverage source positions are in metres: multiply by
        1000 first).

    Returns
    -------
    pos : array, shape (n, 3)
        MNI152 coordinates, mm.
    """
    inv = np.linalg.inv(MNI152_TO_MNI305)
    pos = np.atleast_2d(np.asarray(pos, float))
    return pos @ inv[:3, :3].T + inv[:3, 3]


# ============================================================================ surfaces
def _read_surface(subject, surface, hemi):
    """(rr in metres, tris) of a subject's FreeSurfer surface."""
    import nibabel as nib

    rr, tris = nib.freesurfer.read_geometry(subject.surface_path(surface, hemi))
    return np.asarray(rr, float) * 1e-3, np.asarray(tris, np.int64)


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _check_hemi_array(hemi, n):
    hemi = np.asarray(hemi)
    if hemi.shape != (n,) or not np.isin(hemi, _HEMIS).all():
        raise ValueError(f"'hemi' must hold 'lh' or 'rh' for each of the {n} points, got shape "
                         f"{hemi.shape} and values {np.unique(hemi)[:4].tolist()}.")
    return hemi


def _check_points(name, pos):
    pos = np.asarray(pos, float)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"'{name}' must have shape (n_points, 3), got {pos.shape}.")
    return pos


def electrodes_to_fsaverage(subject, pos, hemi) -> np.ndarray:
    """Map electrode positions of a subject to the fsaverage brain through ``sphere.reg``.

    Each electrode goes to the nearest vertex of the subject's pial surface (same
    hemisphere), that vertex to its registered position on the sphere (``?h.sphere.reg``),
    and that to the nearest vertex of fsaverage's registration sphere, whose fsaverage pial
    position is returned. This is the mapping MNE's morphs use, so a noiseless electrode's
    fsaverage position falls where the ground truth it records comes from.

    Parameters
    ----------
    subject : neurofuse.anatomy.Subject
        A FreeSurfer subject in the same subjects directory as the embedded fsaverage.
    pos : array, shape (n_electrodes, 3)
        Electrode positions in the subject's MRI (surface RAS) coordinates, metres.
    hemi : array of str, shape (n_electrodes,)
        ``'lh'`` / ``'rh'``.

    Returns
    -------
    pos_fsaverage : array, shape (n_electrodes, 3)
        Points of the fsaverage (fsaverage5 mesh) pial surface, metres.
    """
    from scipy.spatial import cKDTree

    from .subjects import make_template_subject

    pos = _check_points("pos", pos)
    hemi = _check_hemi_array(hemi, len(pos))
    template = make_template_subject(meg=False)
    out = np.empty_like(pos)
    for h in _HEMIS:
        sel = np.flatnonzero(hemi == h)
        if not len(sel):
            continue
        pial, _ = _read_surface(subject, "pial", h)
        reg, _ = _read_surface(subject, "sphere.reg", h)
        fs_reg, _ = _read_surface(template, "sphere.reg", h)
        fs_pial, _ = _read_surface(template, "pial", h)
        _, v = cKDTree(pial).query(pos[sel])
        _, w = cKDTree(_unit(fs_reg)).query(_unit(reg[v]))
        out[sel] = fs_pial[w]
    return out


def fsaverage5_vertices(pos, hemi, *, surface="white", tol=1e-5) -> list:
    """fsaverage5 vertex numbers ``[lh, rh]`` of points that are vertices of a surface.

    Parameters
    ----------
    pos : array, shape (n_points, 3)
        Positions on the fsaverage5 ``surface``, metres, all lh points before all rh points
        (MNE's source order).
    hemi : array of str, shape (n_points,)
        ``'lh'`` / ``'rh'``.
    surface : 'white' | 'pial' | 'inflated' | 'sphere'
        The surface the points lie on (a source space lies on ``white``).
    tol : float
        Largest distance (m) from a point to its vertex.

    Returns
    -------
    vertices : [array of int, array of int]
        Vertex numbers per hemisphere, in the order of the points (MNE's ``vertno`` when the
        points are a source space's).
    """
    from scipy.spatial import cKDTree

    from .template import read_template_surface

    pos = _check_points("pos", pos)
    hemi = _check_hemi_array(hemi, len(pos))
    if np.any(np.diff((hemi == "rh").astype(np.int8)) < 0):
        raise ValueError("The points must be ordered lh then rh (MNE's source order).")
    vertices = []
    for h in _HEMIS:
        rr = read_template_surface(surface, h)[0] * 1e-3
        sel = pos[hemi == h]
        dist, idx = cKDTree(rr).query(sel)
        if len(sel) and dist.max() > tol:
            raise ValueError(f"The {h} points are not vertices of the fsaverage5 {surface} "
                             f"surface (up to {dist.max() * 1e3:.2f} mm away).")
        vertices.append(np.asarray(idx, np.int64))
    return vertices


def _oct6_vertices():
    """Vertex numbers ``[lh, rh]`` of the embedded fsaverage oct6 source space."""
    from .forward import get_source_space
    from .subjects import make_template_subject

    return [np.asarray(s["vertno"], np.int64)
            for s in get_source_space(make_template_subject(meg=False), "oct6")]


def fsaverage5_to_oct6():
    """Average fsaverage5 vertices into the fsaverage oct6 sources.

    Each of the 20484 fsaverage5 vertices (lh then rh) is assigned to the oct6 source nearest
    to it on the spherical surface (a source's own vertex is nearest to itself), and every
    source takes the mean of its vertices.

    Returns
    -------
    matrix : scipy.sparse.csr_matrix, shape (8196, 20484), float32
        Rows sum to 1; each column has one non-zero.
    """
    import scipy.sparse
    from scipy.spatial import cKDTree

    from .template import read_template_surface

    blocks = []
    for hemi, vertno in zip(_HEMIS, _oct6_vertices()):
        sphere, _ = read_template_surface("sphere", hemi)
        _, nearest = cKDTree(sphere[vertno]).query(sphere)  # (n_vertices,) source index
        counts = np.bincount(nearest, minlength=len(vertno))
        blocks.append(scipy.sparse.csr_matrix(
            (1.0 / counts[nearest], (nearest, np.arange(len(sphere)))),
            shape=(len(vertno), len(sphere)), dtype=np.float32))
    return scipy.sparse.block_diag(blocks, format="csr", dtype=np.float32)


__all__ = [
    "MNI152_TO_MNI305",
    "electrodes_to_fsaverage",
    "fsaverage5_to_oct6",
    "fsaverage5_vertices",
    "mni152_to_mni305",
    "mni305_to_mni152",
]

"""Closed surfaces for boundary-element models: icosahedral spheres and radial resampling.

MNE-Python's own decimation of BEM surfaces (``method='sphere'``) needs a FreeSurfer
installation. The head surfaces that ship with MNE are star-shaped around the centre of the
brain, so we resample them instead by casting rays from that centre along the vertices of a
subdivided icosahedron: the result has icosahedral topology (``ico=3``: 642 vertices,
``ico=4``: 2562), is closed and, for nested input surfaces, stays nested.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from .._checks import _check_option

#: Number of vertices of each icosahedral subdivision grade.
ICO_N_VERTICES = {grade: 10 * 4**grade + 2 for grade in range(7)}


@functools.lru_cache(maxsize=8)
def _ico_sphere_cached(grade: int):
    import mne

    fname = Path(mne.__file__).parent / "data" / "icos.fif.gz"
    surf = mne.read_bem_surfaces(fname, s_id=9000 + grade, verbose="error")
    rr = surf["rr"] / np.linalg.norm(surf["rr"], axis=1, keepdims=True)
    tris = np.asarray(surf["tris"], int)
    rr.setflags(write=False)
    tris.setflags(write=False)
    return rr, tris


def make_ico_sphere(grade: int):
    """Unit sphere from MNE-Python's subdivided icosahedra (vertex and triangle order included).

    Using MNE's own ordering means BEM surfaces resampled onto it can be decimated further by
    ``mne.make_bem_model(..., ico=grade)`` exactly like FreeSurfer watershed surfaces.

    Parameters
    ----------
    grade : int
        Number of subdivisions (0-6).

    Returns
    -------
    rr : array, shape (10 * 4**grade + 2, 3)
        Unit vectors.
    tris : array, shape (20 * 4**grade, 3)
        Triangles, counter-clockwise seen from outside (normals point outwards).
    """
    _check_option("grade", grade, list(ICO_N_VERTICES))
    rr, tris = _ico_sphere_cached(int(grade))
    return rr.copy(), tris.copy()


def _ray_mesh_distances(center, directions, rr, tris, *, k=48):
    """Distance along each ray from ``center`` to a closed, star-shaped mesh.

    Parameters
    ----------
    center : array, shape (3,)
    directions : array, shape (n_rays, 3)
        Unit vectors.
    rr : array, shape (n_vertices, 3)
    tris : array, shape (n_tris, 3)
    k : int
        Candidate triangles per ray, chosen by direction of the triangle centroid.

    Returns
    -------
    dist : array, shape (n_rays,)
        The farthest intersection along each ray (for star-shaped surfaces the only one).
    """
    v0, v1, v2 = (rr[tris[:, i]] for i in range(3))
    cent = (v0 + v1 + v2) / 3.0 - center
    cent_dir = cent / np.linalg.norm(cent, axis=1, keepdims=True)
    tree = cKDTree(cent_dir)
    dist = np.full(len(directions), np.nan)
    for kk in (min(k, len(tris)), len(tris)):
        todo = np.flatnonzero(np.isnan(dist))
        if len(todo) == 0:
            break
        _, cand = tree.query(directions[todo], k=kk)  # (n_todo, kk)
        cand = np.atleast_2d(cand)
        d = directions[todo][:, None, :]
        e1 = (v1 - v0)[cand]
        e2 = (v2 - v0)[cand]
        p = np.cross(d, e2)
        det = np.einsum("rkj,rkj->rk", e1, p)
        ok = np.abs(det) > 1e-14
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        s = center - v0[cand]
        u = np.einsum("rkj,rkj->rk", s, p) * inv
        q = np.cross(s, e1)
        v = np.einsum("rkj,rkj->rk", np.broadcast_to(d, q.shape), q) * inv
        t = np.einsum("rkj,rkj->rk", e2, q) * inv
        tol = 1e-9
        hit = ok & (u >= -tol) & (v >= -tol) & (u + v <= 1 + tol) & (t > 0)
        t = np.where(hit, t, -np.inf)
        best = t.max(axis=1)
        found = np.isfinite(best)
        dist[todo[found]] = best[found]
    if np.isnan(dist).any():
        raise RuntimeError(
            f"{int(np.isnan(dist).sum())} rays from {center} did not hit the surface: it is "
            "not closed or the centre lies outside it."
        )
    return dist


def resample_surface_radially(rr, tris, *, grade=4, center=None):
    """Resample a closed star-shaped surface onto an icosahedral mesh.

    Parameters
    ----------
    rr : array, shape (n_vertices, 3)
        Vertex positions.
    tris : array, shape (n_tris, 3)
        Triangles.
    grade : int
        Icosahedral subdivision of the output (3: 642 vertices, 4: 2562).
    center : array, shape (3,) | None
        Centre of the rays; defaults to the vertex centroid.

    Returns
    -------
    new_rr : array, shape (10 * 4**grade + 2, 3)
    new_tris : array, shape (20 * 4**grade, 3)
        Outward-oriented triangles.
    """
    rr = np.asarray(rr, float)
    center = rr.mean(0) if center is None else np.asarray(center, float)
    dirs, new_tris = make_ico_sphere(grade)
    dist = _ray_mesh_distances(center, dirs, rr, np.asarray(tris))
    return center + dirs * dist[:, None], new_tris


def radial_distances(rr, tris, directions, center):
    """Distance from ``center`` to the surface along each unit vector in ``directions``."""
    return _ray_mesh_distances(np.asarray(center, float), np.asarray(directions, float),
                               np.asarray(rr, float), np.asarray(tris))


def fit_sphere(rr):
    """Linear least-squares sphere through points.

    Parameters
    ----------
    rr : array, shape (n_points, 3)

    Returns
    -------
    center : array, shape (3,)
    radius : float
    """
    rr = np.asarray(rr, float)
    A = np.c_[2 * rr, np.ones(len(rr))]
    sol = np.linalg.lstsq(A, (rr**2).sum(1), rcond=None)[0]
    center = sol[:3]
    return center, float(np.sqrt(sol[3] + center @ center))

"""Triangle-mesh geometry for placing ECoG arrays: exact closest points, normals, walking.

Private: used by :mod:`neurofuse.anatomy.sensors.ecog`.
"""

from __future__ import annotations

import numpy as np


def _vertex_normals(rr: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals; zeros for vertices in no triangle."""
    face = np.cross(rr[tris[:, 1]] - rr[tris[:, 0]], rr[tris[:, 2]] - rr[tris[:, 0]])  # (F, 3)
    nn = np.zeros_like(rr)
    for k in range(3):
        np.add.at(nn, tris[:, k], face)
    norm = np.linalg.norm(nn, axis=1, keepdims=True)
    return np.divide(nn, norm, out=np.zeros_like(nn), where=norm > 0)


def _closest_on_triangles(p, a, b, c):
    """Closest points to ``p`` on triangles (a, b, c); all arrays shape (m, 3).

    Returns the points, shape (m, 3), and barycentric weights, shape (m, 3).
    """
    ab, ac, ap = b - a, c - a, p - a
    d00 = np.einsum("ij,ij->i", ab, ab)
    d01 = np.einsum("ij,ij->i", ab, ac)
    d11 = np.einsum("ij,ij->i", ac, ac)
    d20 = np.einsum("ij,ij->i", ap, ab)
    d21 = np.einsum("ij,ij->i", ap, ac)
    den = d00 * d11 - d01**2
    with np.errstate(divide="ignore", invalid="ignore"):
        v = (d11 * d20 - d01 * d21) / den
        w = (d00 * d21 - d01 * d20) / den
    u = 1.0 - v - w
    inside = (den > 0) & (u >= 0) & (v >= 0) & (w >= 0)
    bary = np.where(inside[:, None], np.c_[u, v, w], np.nan)
    best = np.where(inside[:, None], a + v[:, None] * ab + w[:, None] * ac, np.nan)
    best_d = np.where(inside, np.linalg.norm(p - best, axis=1), np.inf)
    # Outside the triangle (or degenerate): the closest point is on one of the edges.
    for (s, e), (i, j) in (((a, b), (0, 1)), ((b, c), (1, 2)), ((c, a), (2, 0))):
        se = e - s
        len2 = np.einsum("ij,ij->i", se, se)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.clip(np.einsum("ij,ij->i", p - s, se) / len2, 0.0, 1.0)
        t = np.where(len2 > 0, t, 0.0)
        q = s + t[:, None] * se
        d = np.linalg.norm(p - q, axis=1)
        better = ~inside & (d < best_d)
        best[better], best_d[better] = q[better], d[better]
        wts = np.zeros((len(p), 3))
        wts[:, i], wts[:, j] = 1.0 - t, t
        bary[better] = wts[better]
    return best, bary


class _Mesh:
    """A triangle mesh with exact closest-point queries and unit vertex normals."""

    def __init__(self, rr: np.ndarray, tris: np.ndarray):
        from scipy.spatial import cKDTree

        self.rr, self.tris = rr, tris
        self.nn = _vertex_normals(rr, tris)
        self.used = np.unique(tris)  # vertices that belong to a triangle
        self.tree = cKDTree(rr[self.used])
        corners = rr[tris]  # (F, 3, 3)
        self.centroids = corners.mean(axis=1)
        self.radii = np.linalg.norm(corners - self.centroids[:, None], axis=2).max(axis=1)
        self.centroid_tree = cKDTree(self.centroids)

    def nearest_vertex(self, points):
        dist, idx = self.tree.query(points)
        return dist, self.used[idx]

    def project(self, points):
        """Closest points of the mesh to ``points`` (n, 3), and unit normals there.

        Exact: a triangle can only hold a point closer than the nearest vertex if its
        bounding sphere (centroid, radius) does, so only those triangles are tested.

        Returns
        -------
        closest : array, shape (n, 3)
        normals : array, shape (n, 3)
            Vertex normals interpolated with the barycentric weights of the closest point.
        """
        points = np.atleast_2d(np.asarray(points, float))
        d_vert, _ = self.tree.query(points)
        cand = self.centroid_tree.query_ball_point(points, d_vert + self.radii.max() + 1e-12)
        pt_idx = np.repeat(np.arange(len(points)), [len(c) for c in cand])
        tri_idx = np.concatenate([np.asarray(c, int) for c in cand])
        keep = (
            np.linalg.norm(points[pt_idx] - self.centroids[tri_idx], axis=1) - self.radii[tri_idx]
            <= d_vert[pt_idx] + 1e-12
        )
        pt_idx, tri_idx = pt_idx[keep], tri_idx[keep]
        tri = self.tris[tri_idx]
        corners = [self.rr[tri[:, k]] for k in range(3)]
        q, bary = _closest_on_triangles(points[pt_idx], *corners)
        dist = np.linalg.norm(q - points[pt_idx], axis=1)
        order = np.lexsort((dist, pt_idx))  # by point, then by distance
        first = order[np.searchsorted(pt_idx[order], np.arange(len(points)))]
        closest = q[first]
        normals = np.einsum("ij,ijk->ik", bary[first], self.nn[tri[first]])
        norm = np.linalg.norm(normals, axis=1, keepdims=True)
        return closest, normals / np.where(norm > 0, norm, 1.0)


def _convex_envelope(rr: np.ndarray, used: np.ndarray) -> _Mesh:
    """The convex hull of the surface, triangles oriented outwards: where a grid rests."""
    from scipy.spatial import ConvexHull

    hull = ConvexHull(rr[used])
    tris = used[hull.simplices]
    inner = rr[used[hull.vertices]].mean(axis=0)
    face = np.cross(rr[tris[:, 1]] - rr[tris[:, 0]], rr[tris[:, 2]] - rr[tris[:, 0]])
    flip = np.einsum("ij,ij->i", face, rr[tris[:, 0]] - inner) < 0
    tris[flip] = tris[flip][:, ::-1]
    return _Mesh(rr, tris)


def _walk_on_mesh(mesh: _Mesh, p0, directions, lengths, step):
    """Walk from ``p0`` along each tangent direction for a given length on the mesh surface.

    A discrete exponential map: small steps, each re-projected onto the mesh, with the heading
    kept tangent, so that each end point is ``length`` away from ``p0`` along the surface.

    Parameters
    ----------
    p0 : array, shape (3,)
        Start point on the mesh.
    directions : array, shape (n, 3)
        Unit headings in the tangent plane at ``p0``.
    lengths : array, shape (n,)
        Path lengths, metres.
    step : float
        Step length, metres.

    Returns
    -------
    points : array, shape (n, 3)
    """
    n = len(lengths)
    p = np.tile(p0, (n, 1))
    heading = directions.copy()
    remaining = lengths.astype(float).copy()
    for _ in range(int(np.ceil(lengths.max() / step)) * 4 + 1):
        todo = remaining > 1e-6
        if not todo.any():
            break
        h = np.minimum(step, remaining[todo])
        q, nrm = mesh.project(p[todo] + h[:, None] * heading[todo])
        disp = q - p[todo]
        moved = np.linalg.norm(disp, axis=1)
        # On a convex surface re-projection shortens the step: walk on the shortfall next time.
        remaining[todo] -= np.maximum(moved, 0.25 * h)
        tangent = disp - np.einsum("ij,ij->i", disp, nrm)[:, None] * nrm
        tnorm = np.linalg.norm(tangent, axis=1, keepdims=True)
        unit = tangent / np.where(tnorm > 0, tnorm, 1.0)
        heading[todo] = np.where(tnorm > 1e-12, unit, heading[todo])
        p[todo] = q
    return p

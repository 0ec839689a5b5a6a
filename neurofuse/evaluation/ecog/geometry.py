"""Geometry of the ECoG analysis: the nearest fsaverage sources of each electrode."""

from __future__ import annotations

import numpy as np

from ..._checks import _check_int


def nearest_sources(points, source_pos, *, k=1, points_hemi=None, source_hemi=None):
    """The ``k`` nearest sources of each point (Euclidean, optionally within its hemisphere).

    Parameters
    ----------
    points : array, shape (n_points, 3)
        E.g. electrode positions on fsaverage, metres.
    source_pos : array, shape (n_sources, 3)
        Same frame and units.
    k : int
        Neighbours per point.
    points_hemi, source_hemi : array of str, shape (n_points,) / (n_sources,) | None
        If both are given, each point's neighbours come from its own hemisphere only.

    Returns
    -------
    index : array of int, shape (n_points, k)
        Source indices, nearest first.
    distance : array, shape (n_points, k)
    """
    from scipy.spatial import cKDTree

    points = np.asarray(points, float)
    source_pos = np.asarray(source_pos, float)
    if points.ndim != 2 or points.shape[1] != 3 or source_pos.ndim != 2 or source_pos.shape[1] != 3:
        raise ValueError(f"'points' and 'source_pos' must have shape (n, 3), got {points.shape} "
                         f"and {source_pos.shape}.")
    k = _check_int("k", k, 1)
    if (points_hemi is None) != (source_hemi is None):
        raise ValueError("Give both 'points_hemi' and 'source_hemi', or neither.")
    if points_hemi is None:
        groups = [(np.arange(len(points)), np.arange(len(source_pos)))]
    else:
        points_hemi, source_hemi = np.asarray(points_hemi), np.asarray(source_hemi)
        if points_hemi.shape != (len(points),) or source_hemi.shape != (len(source_pos),):
            raise ValueError("'points_hemi' / 'source_hemi' must have one entry per point / "
                             f"source, got shapes {points_hemi.shape} and {source_hemi.shape}.")
        groups = [(np.flatnonzero(points_hemi == h), np.flatnonzero(source_hemi == h))
                  for h in np.unique(points_hemi)]
    index = np.empty((len(points), k), np.int64)
    dist = np.empty((len(points), k))
    for p_idx, s_idx in groups:
        if not len(p_idx):
            continue
        if len(s_idx) < k:
            raise ValueError(f"Only {len(s_idx)} sources for points of hemisphere "
                             f"{points_hemi[p_idx[0]] if points_hemi is not None else ''!s}; "
                             f"cannot take k={k} neighbours.")
        d, i = cKDTree(source_pos[s_idx]).query(points[p_idx], k=k)
        index[p_idx] = s_idx[np.asarray(i).reshape(len(p_idx), k)]
        dist[p_idx] = np.asarray(d).reshape(len(p_idx), k)
    return index, dist


__all__ = ["nearest_sources"]

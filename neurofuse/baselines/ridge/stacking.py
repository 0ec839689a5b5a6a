"""Convex stacking weights: the exact per-target simplex least squares of Lin et al. (2024)."""

from __future__ import annotations

import itertools

import numpy as np

__all__ = ["solve_simplex_lstsq"]

_MAX_STACK_SPACES = 10  # exact simplex QP enumerates 2**K - 1 supports


def solve_simplex_lstsq(H, g):
    """Per-target convex weights: ``argmin_w w'Hw - 2 g'w`` s.t. ``w >= 0``, ``sum(w) = 1``.

    With ``H = P'P`` and ``g = P'y`` this is ``min ||y - P w||^2`` over the simplex, the
    stacking problem of Lin et al. (2024). Solved exactly by enumerating the ``2^K - 1``
    possible supports (KKT system of each, vectorised over targets) and keeping the best
    feasible point; ``K <= 10``.

    Parameters
    ----------
    H : array, shape (n_targets, K, K)
        Symmetric positive semi-definite.
    g : array, shape (n_targets, K)

    Returns
    -------
    weights : array, shape (n_targets, K)
        Non-negative, each row sums to 1.
    """
    H = np.asarray(H, dtype=float)
    g = np.asarray(g, dtype=float)
    if H.ndim != 3 or H.shape[1] != H.shape[2] or g.shape != H.shape[:2]:
        raise ValueError(f"'H' must have shape (n_targets, K, K) and 'g' (n_targets, K), got "
                         f"{H.shape} and {g.shape}.")
    t, K = g.shape
    if K > _MAX_STACK_SPACES:
        raise ValueError(f"Stacking solves the simplex problem exactly for at most "
                         f"{_MAX_STACK_SPACES} feature spaces, got {K}; use BandedRidge or "
                         "merge feature spaces.")
    scale = np.trace(H, axis1=1, axis2=2) / K
    scale = np.where(scale > 0, scale, 1.0)
    H = H / scale[:, None, None] + 1e-10 * np.eye(K)  # same argmin; strictly convex
    g = g / scale[:, None]
    best_w = np.zeros((t, K))
    best_f = np.full(t, np.inf)
    for m in range(1, K + 1):
        for S in itertools.combinations(range(K), m):
            S = list(S)
            M = np.zeros((t, m + 1, m + 1))
            M[:, :m, :m] = H[:, S][:, :, S]
            M[:, :m, m] = 1.0
            M[:, m, :m] = 1.0
            rhs = np.concatenate([g[:, S], np.ones((t, 1))], axis=1)
            sol = np.linalg.solve(M, rhs[..., None])[..., 0]
            feasible = np.all(sol[:, :m] >= -1e-9, axis=1)
            w = np.zeros((t, K))
            w[:, S] = np.clip(sol[:, :m], 0, None)
            w /= w.sum(1, keepdims=True)
            f = np.einsum("tk,tkl,tl->t", w, H, w) - 2 * np.einsum("tk,tk->t", g, w)
            better = feasible & (f < best_f)
            best_w[better], best_f[better] = w[better], f[better]
    return best_w

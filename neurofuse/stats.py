"""Elementary statistics shared by every layer: Pearson r, z-scores, PCA (numpy only).

A bottom-level module: it imports numpy and :mod:`neurofuse._checks`, nothing else of the
package, so the anatomy, physics, data, baselines and evaluation layers can all use it.

* :func:`pearson_r`: Pearson correlation along an axis for every other index (per target
  over time, or per time point over targets); NaN where an input is constant.
* :func:`zscore`: centred and scaled to unit (population) s.d. along an axis; constant
  rows give zeros (a z-scored constant carries no signal, and zeros keep dot products
  finite).
* :func:`pca`: principal axes of the rows of a matrix, from one array or streamed from
  blocks (sums of ``x`` and ``x.T @ x``), for data too large to hold at once.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._checks import _check_int

__all__ = ["PCA", "pca", "pearson_r", "zscore"]


def pearson_r(pred, true, axis=-1, chunk=4096):
    """Pearson correlation along ``axis`` for every other index.

    Parameters
    ----------
    pred, true : array, shape (n_targets, n_times) by default
        Same shape. Memory-mapped inputs are read ``chunk`` targets at a time.
    axis : int
        The axis correlations are computed over (time for per-target r).
    chunk : int
        Targets processed at once (peak memory about ``4 * chunk * n_times * 8`` bytes).

    Returns
    -------
    r : array
        ``pred`` without ``axis`` (a 0-d array for 1-d inputs), float64; NaN where either
        input is constant.
    """
    if np.shape(pred) != np.shape(true):
        raise ValueError(f"'pred' and 'true' must have the same shape, got {np.shape(pred)} and "
                         f"{np.shape(true)}.")
    pred = np.moveaxis(np.asarray(pred), axis, -1)
    true = np.moveaxis(np.asarray(true), axis, -1)
    lead = pred.shape[:-1]
    p2 = pred.reshape(-1, pred.shape[-1])
    t2 = true.reshape(-1, true.shape[-1])
    out = np.empty(len(p2))
    for a in range(0, len(p2), chunk):
        p = np.asarray(p2[a:a + chunk], np.float64)
        t = np.asarray(t2[a:a + chunk], np.float64)
        p = p - p.mean(-1, keepdims=True)
        t = t - t.mean(-1, keepdims=True)
        den = np.sqrt((p * p).sum(-1) * (t * t).sum(-1))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[a:a + chunk] = np.where(den > 0, (p * t).sum(-1) / np.where(den > 0, den, 1), np.nan)
    return out.reshape(lead)


def zscore(x, axis=-1):
    """Z-scores along ``axis``: ``(x - mean) / sd`` (population s.d., ddof=0), in float64.

    The s.d. is that of the centred data. Where it is 0 (a constant row) the output is 0,
    so ``(zscore(a) * zscore(b)).mean(axis)`` is Pearson r, and 0 for a constant row.

    Parameters
    ----------
    x : array, shape (..., n_times, ...)
    axis : int | None
        The axis the mean and s.d. are taken over; ``None``: the whole array.

    Returns
    -------
    z : array, same shape as ``x``, float64
    """
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=axis, keepdims=True)
    sd = x.std(axis=axis, keepdims=True)
    return np.divide(x, sd, out=np.zeros_like(x), where=sd > 0)


class PCA(NamedTuple):
    """The result of :func:`pca`.

    Attributes
    ----------
    mean : array, shape (n_features,)
        The mean row; project with ``(x - mean) @ components``.
    components : array, shape (n_features, n_components)
        The principal axes (orthonormal columns), by decreasing variance. The sign of each
        axis is whatever :func:`numpy.linalg.eigh` returns.
    explained_variance : array, shape (n_components,)
        The variance along each axis (eigenvalues of the covariance).
    total_variance : float
        The sum of the covariance's (non-negative parts of its) eigenvalues, so the fraction
        explained is ``explained_variance.sum() / total_variance``.
    """

    mean: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray
    total_variance: float


def pca(x, n_components):
    """Principal component analysis of the rows of ``x`` (eigenvectors of the covariance).

    Parameters
    ----------
    x : ndarray, shape (n_samples, n_features) | iterable of array-likes of that shape
        One ndarray (memory-mapped included): the covariance is that of the centred rows,
        ``np.cov(x - mean, rowvar=False)`` (ddof=1). An iterable of blocks (e.g. one per story, never held
        together): the blocks are read once and the population covariance (ddof=0) is
        formed from their sums, ``sum(x.T @ x) / n - outer(mean, mean)`` (float64). The
        two differ in the eigenvalues by ``n / (n - 1)``, not in the axes.
    n_components : int
        Number of axes kept (at most ``n_features``).

    Returns
    -------
    pca : PCA
        ``(mean, components, explained_variance, total_variance)``.

    Notes
    -----
    Unlike :class:`sklearn.decomposition.PCA` no sign convention is imposed on the axes;
    they agree with scikit-learn's up to the sign of each column.
    """
    n_components = _check_int("n_components", n_components, 1)
    if isinstance(x, np.ndarray):
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"'x' must have shape (n_samples >= 2, n_features), got shape "
                             f"{x.shape}.")
        mean = x.mean(0)
        cov = np.atleast_2d(np.cov(x - mean, rowvar=False))
    else:
        n, s, ss = 0, None, None
        for block in x:
            f = np.asarray(block, np.float64)
            if f.ndim != 2 or (s is not None and f.shape[1] != len(s)):
                raise ValueError(f"Every block of 'x' must have shape (n_samples, n_features) "
                                 f"with the same n_features, got shape {f.shape}.")
            if s is None:
                s, ss = np.zeros(f.shape[1]), np.zeros((f.shape[1], f.shape[1]))
            n, s, ss = n + f.shape[0], s + f.sum(0), ss + f.T @ f
        if not n:
            raise ValueError("'x' holds no samples: give at least one non-empty block.")
        mean = s / n
        cov = ss / n - np.outer(mean, mean)
    if n_components > len(mean):
        raise ValueError(f"'n_components' must be at most n_features = {len(mean)}, got "
                         f"{n_components}.")
    lam, vec = np.linalg.eigh(cov)
    order = np.argsort(lam)[::-1][:n_components]
    return PCA(mean, vec[:, order], lam[order], float(lam.clip(0).sum()))

"""Repeatability of each sensor or source from repeated presentations of a story.

The paper weights each MEG sensor's and each fMRI source's loss by its repeatability (§2.6).
Two estimators of the same quantity, the reliability of a *single* presentation
``rho = var(signal) / (var(signal) + var(noise))``:

* ``"repeat"`` (repeat-to-repeat): the mean, over all pairs of repeats, of the Pearson
  correlation between them. For signal plus independent noise at a signal-to-noise variance
  ratio ``s²`` its expectation is ``s² / (1 + s²)`` = ``rho``.
* ``"split-half"``: the repeats are split into two halves (of ``k1`` and ``k2`` repeats), the
  two half-averages are correlated (``r_half``), and ``r_half`` is converted back to a single
  presentation with the Spearman-Brown relation generalised to unequal halves:
  ``r_half = 1 / sqrt((1 + q / k1) (1 + q / k2))`` with ``q = (1 - rho) / rho``. Every
  balanced split is used (at most ``max_splits``, drawn with a fixed seed) and their
  ``r_half`` averaged. With two repeats both estimators coincide.

Both are clipped at 0 (a target whose repeats do not correlate gets no weight).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .._checks import _check_int, _check_option
from ..stats import zscore

METHODS = ("repeat", "split-half")


def _check_repeats(data):
    data = np.asarray(data, np.float64)
    if data.ndim != 3:
        raise ValueError("Repeated data must have shape (n_repeats, n_targets, n_times), got "
                         f"shape {data.shape}.")
    if data.shape[0] < 2:
        raise ValueError(f"Repeatability needs >= 2 repeats, got {data.shape[0]}.")
    if data.shape[2] < 3:
        raise ValueError(f"Repeatability needs >= 3 time points per repeat, got {data.shape[2]}.")
    return data


def repeatability(data):
    """Reliability per channel/source from repeated presentations (repeat-to-repeat).

    The mean over pairs of repeats of the Pearson correlation between them, clipped at 0.

    Parameters
    ----------
    data : array, shape (n_repeats, n_targets, n_times)

    Returns
    -------
    r : array, shape (n_targets,)
    """
    z = zscore(_check_repeats(data), axis=-1)  # r = mean(z_i z_j); 0 for a constant target
    rs = [np.mean(z[i] * z[j], -1) for i in range(len(z)) for j in range(i + 1, len(z))]
    return np.clip(np.mean(rs, 0), 0.0, None)


def _half_splits(n, max_splits, seed):
    """Distinct splits of ``range(n)`` into halves of sizes floor(n/2) and ceil(n/2)."""
    k = n // 2
    # Keep repeat 0 in the first half when halves are equal, so each split appears once.
    if 2 * k == n:
        combos = ([0, *c] for c in itertools.combinations(range(1, n), k - 1))
        n_total = math.comb(n - 1, k - 1)
    else:
        combos = (list(c) for c in itertools.combinations(range(n), k))
        n_total = math.comb(n, k)
    if n_total <= max_splits:
        firsts = list(combos)
    else:
        rng = np.random.default_rng(seed)
        seen = set()
        while len(seen) < max_splits:
            first = tuple(sorted(rng.choice(n, k, replace=False).tolist()))
            if 2 * k == n and 0 not in first:
                first = tuple(sorted(set(range(n)) - set(first)))
            seen.add(first)
        firsts = [list(f) for f in sorted(seen)]
    return [(f, [i for i in range(n) if i not in f]) for f in firsts]


def _single_from_half(r_half, k1, k2):
    """Single-presentation reliability from the correlation of two half-averages."""
    r = np.clip(np.asarray(r_half, np.float64), 0.0, 1.0)
    a, b = 1.0 / k1 + 1.0 / k2, 1.0 / (k1 * k2)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = 1.0 - 1.0 / r**2  # <= 0
        q = (-a + np.sqrt(a * a - 4.0 * b * c)) / (2.0 * b)  # noise/signal variance ratio
        rho = 1.0 / (1.0 + q)
    return np.where(r > 0, np.nan_to_num(rho, nan=0.0), 0.0)


def split_half_repeatability(data, *, max_splits=50, seed=0):
    """Single-presentation reliability per target from split-half correlations.

    Parameters
    ----------
    data : array, shape (n_repeats, n_targets, n_times)
    max_splits : int
        At most this many balanced splits are averaged (all of them when there are fewer).
    seed : int
        Seed for drawing the splits when there are more than ``max_splits``.

    Returns
    -------
    rho : array, shape (n_targets,)
        In [0, 1]; Spearman-Brown corrected to one presentation (see the module docstring).
    """
    data = _check_repeats(data)
    max_splits = _check_int("max_splits", max_splits)
    n = data.shape[0]
    r_half = []
    for first, second in _half_splits(n, max_splits, seed):
        a = zscore(data[first].mean(0), axis=-1)
        b = zscore(data[second].mean(0), axis=-1)
        r_half.append(np.mean(a * b, -1))
    k1, k2 = n // 2, n - n // 2
    return _single_from_half(np.mean(r_half, 0), k1, k2)


def compute_repeatability(data, *, method="repeat", max_splits=50, seed=0):
    """Repeatability per target with the chosen estimator.

    Parameters
    ----------
    data : array, shape (n_repeats, n_targets, n_times)
    method : 'repeat' | 'split-half'
        Repeat-to-repeat mean pairwise correlation, or Spearman-Brown corrected split-half
        correlation; both estimate the single-presentation reliability.
    max_splits, seed :
        For ``'split-half'`` (see :func:`split_half_repeatability`).

    Returns
    -------
    r : array, shape (n_targets,)
        In [0, 1].
    """
    _check_option("method", method, METHODS)
    if method == "repeat":
        return repeatability(data)
    return split_half_repeatability(data, max_splits=max_splits, seed=seed)


def spearman_brown(rho, n):
    """Reliability of the average of ``n`` presentations from a single-presentation ``rho``."""
    rho = np.asarray(rho, np.float64)
    return n * rho / (1.0 + (n - 1) * rho)

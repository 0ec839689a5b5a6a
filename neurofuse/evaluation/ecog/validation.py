"""ECoG validation (paper §5, Fig. 4): predicting new people's ECoG from the source estimates.

The source estimates of a trained joint model (or any fsaverage source model, e.g. the
ground-truth encoder of a simulation) are computed for the ECoG story and compared with the
ECoG of every subject of an ECoG dataset (:mod:`neurofuse.data.ecog`, ``docs/ecog.md``):

**Zero-shot prediction.** Each electrode is mapped to the nearest fsaverage source (its
fsaverage position vs the pial-surface positions of the model's source vertices, same
hemisphere; :func:`nearest_sources`), and that source's time course is its prediction
(optionally its Hilbert envelope, for high-gamma-envelope ECoG). Scores, over the whole story:

* Pearson r per electrode with a **circular-shift permutation test**
  (:func:`circular_shift_test`): the null distribution is r with the ECoG circularly shifted
  by ``n_permutations`` random non-zero shifts, which keeps each signal's autocorrelation (all
  shifts are allowed: excluding those near 0 makes the test anti-conservative); all shifts
  come from one FFT cross-correlation per electrode.
  One-sided by default (a prediction counts when it correlates *positively*: an electrode
  anti-correlated with its nearest source is not predicted; ``alternative="two-sided"``
  counts both signs); ``p = (1 + #{r_null >= r}) / (1 + n_permutations)``.
  Significance is **Benjamini-Hochberg FDR** at ``alpha`` across all electrodes of all
  subjects together (:func:`fdr_significant`).
* **Segment identification** (:func:`segment_identification`): per electrode, ``n_trials``
  (1000) times, a random one-minute segment of the prediction is correlated (absolute r) with
  the true ECoG segment and with a distractor segment of the same electrode that does not
  overlap it; the trial is correct when the true one wins (ties count as errors). The paper
  tests the accuracy with a binomial test over the trials, but the trials overlap heavily (a
  30-min story holds 30 one-minute segments), so that test is far too liberal (26-39 % false
  positives at alpha = 0.05 on independent noise, measured). By default significance comes
  instead from :func:`identification_shift_test` (accuracy over all segment pairs against
  circularly shifted truths, 5-6 % false positives); ``identification_test="binomial"`` gives
  the paper's test. FDR across electrodes as above.

**Trained prediction** (:func:`trained_prediction`). ``n_folds`` (3) contiguous test blocks
(by default ``n_times / n_folds`` each: 10 min of the 30-min Podcast story, as in the paper).
For each fold the training candidates are all samples at least ``gap_seconds`` (2 s) away
from the test block, on both sides; the gap must be at least the longest stimulus delay, so no
delayed feature window of a training sample touches a test sample and the ECoG's
autocorrelation does not carry test minutes into training. A training fraction ``f`` uses
the first ``round(f * n_candidates)`` candidates in time order. Two methods, same samples:

* ``"neurofuse"``: per electrode, ridge regression from the source estimates of its
  ``n_neighbors`` (10) nearest fsaverage sources (same time sample, no delays; features
  standardised, one alpha per electrode chosen by cross-validation over ``inner_folds``
  contiguous blocks of the training samples). At ``f = 0`` the prediction is the zero-shot one
  (the nearest source, no fitting).
* ``"ridge"``: a stacked-ridge encoding model (:class:`~neurofuse.baselines.ridge.
  StackedRidge`, Lin et al. 2024) trained on the stimulus features delayed by the MEG
  ceiling's delays (0, 20, ..., 600 ms), one feature space per stream; streams wider than
  ``n_components`` (64) are projected on their principal components fitted on the training
  samples' stimulus (as :func:`~neurofuse.baselines.ridge.fit_meg_ceiling` does). At ``f = 0``
  it is an untrained model: random weights (standard normal, fixed seed) on the standardised
  delayed features, so its r is chance, like the paper's randomly initialised model.

r is computed per electrode on each fold's test block and averaged over folds; the reported
score of a condition is the mean r of the top 25 % of electrodes (all subjects pooled, chosen
per condition, as in Fig. 4).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..._checks import _check_int, _check_option, _check_positive, _check_random_state
from ..._io import atomic_dir, write_json
from ..._logging import logger, progress_enabled, verbose
from ...anatomy.cortex import fsaverage_source_positions
from ..metrics import pearson_r, top_quartile

__all__ = [
    "PAPER_FRACTIONS",
    "circular_shift_test",
    "fdr_significant",
    "fsaverage_source_positions",
    "identification_shift_test",
    "make_cv_folds",
    "nearest_sources",
    "predict_fold",
    "ridge_cv_batched",
    "run_ecog_validation",
    "segment_identification",
    "trained_prediction",
    "training_subset",
]

#: Training fractions of Fig. 4 (0 = zero-shot).
PAPER_FRACTIONS = (0.0, 0.1, 0.25, 0.5, 1.0)
METHODS = ("neurofuse", "ridge")
_HEMIS = ("lh", "rh")


# ============================================================================ geometry
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


# ============================================================================ statistics
def _check_pair(pred, true):
    """``pred`` and ``true`` as 2-D arrays of the same shape (n_rows, n_times)."""
    pred = np.atleast_2d(np.asarray(pred))
    true = np.atleast_2d(np.asarray(true))
    if pred.shape != true.shape or pred.ndim != 2:
        raise ValueError(f"'pred' and 'true' must have the same shape (n_rows, n_times), got "
                         f"{pred.shape} and {true.shape}.")
    return pred, true


def _zscore_rows(x):
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=-1, keepdims=True)
    sd = x.std(axis=-1, keepdims=True)
    return np.divide(x, sd, out=np.zeros_like(x), where=sd > 0)


def circular_shift_test(pred, true, *, n_permutations=1000, min_shift=1,
                        alternative="two-sided", seed=None):
    """Pearson r per row with a circular-shift permutation test.

    A circular shift keeps a signal's mean, variance and autocorrelation, so r between the
    prediction and the shifted truth is a null sample that respects the autocorrelation of
    both. The r of every shift is one circular cross-correlation (FFT) per row.

    Parameters
    ----------
    pred, true : array, shape (n_rows, n_times)
    n_permutations : int
        Random shifts drawn (the same for every row).
    min_shift : int
        Smallest shift, samples: shifts are uniform in ``[min_shift, n_times - min_shift]``.
        The default (1: every non-zero shift) makes the test exact for circularly stationary
        signals. Excluding the shifts near 0 (a larger ``min_shift``) removes from the null
        exactly the shifts whose r resembles the observed one, which makes the test
        anti-conservative for strongly autocorrelated signals (measured on smooth noise with
        a 20-sample Gaussian kernel, 1000 samples: 7-10 % false positives at alpha = 0.05
        for min_shift = 100-300, 5-6 % for min_shift = 1).
    alternative : 'two-sided' | 'greater'
        ``'two-sided'`` compares |r|; ``'greater'`` tests r > 0.
    seed : None | int | numpy.random.Generator

    Returns
    -------
    r : array, shape (n_rows,)
        Pearson r (0 where a row is constant).
    p : array, shape (n_rows,)
        ``(1 + #{null >= r}) / (1 + n_permutations)`` (with absolute values if two-sided).
    """
    pred, true = _check_pair(pred, true)
    n_times = pred.shape[1]
    n_permutations = _check_int("n_permutations", n_permutations, 1)
    _check_option("alternative", alternative, ("two-sided", "greater"))
    min_shift = _check_int("min_shift", min_shift, 1)
    if n_times - 2 * min_shift < 0:
        raise ValueError(f"'min_shift' ({min_shift} samples) leaves no admissible shift in "
                         f"{n_times} samples; use a smaller min_shift.")
    rng = _check_random_state(seed)
    shifts = rng.integers(min_shift, n_times - min_shift + 1, size=n_permutations)
    r = np.empty(len(pred))
    p = np.empty(len(pred))
    for a in range(0, len(pred), 64):  # rows in chunks: memory ~ 64 n_times complex values
        zp = _zscore_rows(pred[a:a + 64])
        zt = _zscore_rows(true[a:a + 64])
        xcorr = np.fft.irfft(np.conj(np.fft.rfft(zp, axis=1)) * np.fft.rfft(zt, axis=1),
                             n=n_times, axis=1) / n_times  # (rows, n_times): r at each shift
        obs = (zp * zt).mean(axis=1)
        null = xcorr[:, shifts]
        if alternative == "two-sided":
            exceed = (np.abs(null) >= np.abs(obs)[:, None] - 1e-12).sum(axis=1)
        else:
            exceed = (null >= obs[:, None] - 1e-12).sum(axis=1)
        r[a:a + 64] = obs
        p[a:a + 64] = (1 + exceed) / (1 + n_permutations)
    return r, p


def fdr_significant(p, alpha=0.05):
    """Benjamini-Hochberg: which p-values are significant at false-discovery rate ``alpha``.

    Parameters
    ----------
    p : array, shape (n,)
    alpha : float

    Returns
    -------
    significant : array of bool, shape (n,)
    """
    from scipy.stats import false_discovery_control

    p = np.asarray(p, float)
    alpha = _check_positive("alpha", alpha)
    if p.size == 0:
        return np.zeros(0, bool)
    return false_discovery_control(p, method="bh") <= alpha


def segment_identification(pred, true, *, segment, n_trials=1000, seed=None):
    """Binary classification of segments (the paper's procedure and binomial test).

    For each row and trial, a random segment ``[a, a + segment)`` of ``pred`` is correlated
    with the same segment of ``true`` and with a distractor ``[b, b + segment)`` of the same
    row that does not overlap it (``|b - a| >= segment``); the trial is correct when
    ``|r_true| > |r_distractor|``. Trials are independent per row. Sums over windows come
    from cumulative sums; only the distractor cross-products are computed explicitly.

    Parameters
    ----------
    pred, true : array, shape (n_rows, n_times)
    segment : int
        Segment length in samples (one minute: ``60 * sfreq``); ``n_times >= 2 * segment``.
    n_trials : int
        Trials per row.
    seed : None | int | numpy.random.Generator

    Returns
    -------
    accuracy : array, shape (n_rows,)
        Fraction of correct trials.
    p : array, shape (n_rows,)
        One-sided binomial test against 0.5: ``P(X >= n_correct)``, ``X ~ B(n_trials, 0.5)``.
        The trials are not independent (they overlap), so this p-value is far too small under
        the null: see :func:`identification_shift_test` for a valid test.
    """
    from numpy.lib.stride_tricks import sliding_window_view
    from scipy.stats import binom

    pred, true = _check_pair(pred, true)
    n_rows, n_times = pred.shape
    L = _check_int("segment", segment, 2)
    n_trials = _check_int("n_trials", n_trials, 1)
    if n_times < 2 * L:
        raise ValueError(f"Segment identification needs at least two non-overlapping segments: "
                         f"n_times = {n_times} < 2 * segment = {2 * L}. Use a shorter segment.")
    rng = _check_random_state(seed)
    starts = np.arange(n_times - L + 1)
    # Segments that leave room for a non-overlapping distractor somewhere in the story.
    starts = starts[(starts <= n_times - 2 * L) | (starts >= L)]
    a = starts[rng.integers(0, len(starts), size=(n_rows, n_trials))]
    # Distractor start, uniform over the starts that do not overlap [a, a + L).
    n_left = np.maximum(a - L + 1, 0)
    n_right = np.maximum(n_times - 2 * L - a + 1, 0)
    u = (rng.random((n_rows, n_trials)) * (n_left + n_right)).astype(np.int64)
    b = np.where(u < n_left, u, a + L + (u - n_left))
    correct = np.zeros(n_rows, np.int64)
    for i in range(n_rows):
        x = _zscore_rows(pred[i])
        y = _zscore_rows(true[i])
        cx, cy = np.concatenate([[0.0], np.cumsum(x)]), np.concatenate([[0.0], np.cumsum(y)])
        cxx = np.concatenate([[0.0], np.cumsum(x * x)])
        cyy = np.concatenate([[0.0], np.cumsum(y * y)])
        cxy = np.concatenate([[0.0], np.cumsum(x * y)])

        def window(c, s):
            return c[s + L] - c[s]

        sx, sxx = window(cx, a[i]), window(cxx, a[i])
        vx = sxx - sx**2 / L
        # true segment: cross products by cumulative sum
        sy, syy, sxy = window(cy, a[i]), window(cyy, a[i]), window(cxy, a[i])
        r_true = (sxy - sx * sy / L) / np.sqrt(np.maximum(vx * (syy - sy**2 / L), 1e-300))
        # distractor: explicit dot products of the windows
        wx = sliding_window_view(x, L)[a[i]]  # (n_trials, L)
        wy = sliding_window_view(y, L)[b[i]]
        dy, dyy = window(cy, b[i]), window(cyy, b[i])
        dxy = np.einsum("tl,tl->t", wx, wy)
        r_dist = (dxy - sx * dy / L) / np.sqrt(np.maximum(vx * (dyy - dy**2 / L), 1e-300))
        correct[i] = int((np.abs(r_true) > np.abs(r_dist)).sum())
    return correct / n_trials, binom.sf(correct - 1, n_trials, 0.5)


def _default_step(segment):
    """Largest divisor of ``segment`` that is at most ``segment / 20`` (3 s for one minute)."""
    cap = max(1, segment // 20)
    return max(d for d in range(1, cap + 1) if segment % d == 0)


def identification_shift_test(pred, true, *, segment, step=None, n_null=200, seed=None):
    """Segment identification scored over every pair of segments, with a circular-shift null.

    The paper's binomial test (:func:`segment_identification`) treats its 1000 trials as
    independent, but they are drawn from a few dozen non-overlapping minutes, so under the null
    it rejects far more often than ``alpha`` (measured on independent smooth noise, 30 segment
    lengths of data: 26 % at alpha = 0.05). This test keeps the paper's accuracy and tests it
    against shifted truths instead:

    * segments start on a grid of ``step`` samples and are taken circularly; the accuracy is
      the fraction, over all segments ``i`` and all distractors ``j`` that do not overlap
      ``i``, of ``|r(pred_i, true_i)| > |r(pred_i, true_j)|`` (the limit of infinitely many
      random trials; every window correlation comes from one block cross-product matrix);
    * the null accuracies replace ``true_i`` by ``true_{i+c}`` for ``n_null`` random lags
      ``c`` with non-overlapping windows (``segment <= c * step <= n_times - segment``);
      ``p = (1 + #{null >= accuracy}) / (1 + n_null)``. Shifts that overlap the true segment
      are left out, or a good predictor could never be significant (they share its signal);
      for independent smooth noise this keeps the false-positive rate at 5-6 % (alpha = 0.05).

    Parameters
    ----------
    pred, true : array, shape (n_rows, n_times)
    segment : int
        Segment length, samples (a multiple of ``step``).
    step : int | None
        Grid of segment starts, samples; None: the largest divisor of ``segment`` that is at
        most ``segment / 20`` (3 s for one-minute segments at 50 Hz). Time grows as
        ``(n_times / step) * n_null * segment / step`` per row (about 0.15 s per electrode for
        a 30-min story and the defaults), memory as ``(n_times / step)^2``.
    n_null : int
        Null lags.
    seed : None | int | numpy.random.Generator

    Returns
    -------
    accuracy : array, shape (n_rows,)
    p : array, shape (n_rows,)
    """
    pred, true = _check_pair(pred, true)
    n_rows, n_times = pred.shape
    segment = _check_int("segment", segment, 2)
    step = _default_step(segment) if step is None else _check_int("step", step, 1)
    if segment % step:
        raise ValueError(f"'segment' ({segment}) must be a multiple of 'step' ({step}).")
    n_null = _check_int("n_null", n_null, 1)
    m, n_g = segment // step, n_times // step  # segment and story length in grid steps
    if n_g < 2 * m + 1:
        raise ValueError(f"Segment identification needs room for non-overlapping segments: "
                         f"{n_times} samples < 2 * segment + step = {2 * segment + step}.")
    rng = _check_random_state(seed)
    lags = np.concatenate([[0], rng.integers(m, n_g - m + 1, size=n_null)])
    grid = np.arange(n_g)
    lag_index = (grid[:, None] + grid[None, :]) % n_g  # [i, d] -> block i + d
    band = np.arange(-(m - 1), m)  # distractor lags overlapping the "true" window
    n_valid = n_g - (2 * m - 1)

    def window_sum(b):  # circular sums of m consecutive blocks, starting at each block
        c = np.concatenate([[0.0], np.cumsum(np.concatenate([b, b[:m - 1]]))])
        return c[m:m + n_g] - c[:n_g]

    acc = np.empty((n_rows, len(lags)))
    for r in range(n_rows):
        x = _zscore_rows(pred[r, :n_g * step]).reshape(n_g, step)
        y = _zscore_rows(true[r, :n_g * step]).reshape(n_g, step)
        E = (x @ y.T)[grid[:, None], lag_index]  # E[i, d] = x-block i . y-block (i + d)
        C = np.cumsum(np.concatenate([np.zeros((1, n_g)), E, E[:m - 1]]), axis=0)
        W = C[m:m + n_g] - C[:n_g]  # (n_g, n_g): window cross-products, (start i, lag d)
        sx, sxx = window_sum(x.sum(1)), window_sum((x * x).sum(1))
        sy, syy = window_sum(y.sum(1)), window_sum((y * y).sum(1))
        vx, vy = sxx - sx**2 / segment, syy - sy**2 / segment
        A = np.abs((W - sx[:, None] * sy[lag_index] / segment)
                   / np.sqrt(np.maximum(vx[:, None] * vy[lag_index], 1e-300)))  # |r|
        flat = (np.sort(A, axis=1) + 2.0 * grid[:, None]).ravel()  # rows kept apart (|r| <= 1)
        for k0 in range(0, len(lags), 32):  # lags in chunks: memory n_g * 32 * (2m - 1)
            lag = lags[k0:k0 + 32]
            v = A[:, lag]  # (n_g, n_lag): |r| of each segment with its "true" segment
            below = np.searchsorted(flat, (v + 2.0 * grid[:, None]).ravel()).reshape(v.shape)
            below -= (grid * n_g)[:, None]  # entries < v in each row
            near = A[:, (lag[:, None] + band[None, :]) % n_g]  # (n_g, n_lag, 2m - 1)
            below -= (near < v[:, :, None]).sum(axis=2)  # minus the overlapping distractors
            acc[r, k0:k0 + 32] = below.mean(axis=0) / n_valid
    obs, null = acc[:, 0], acc[:, 1:]
    return obs, (1 + (null >= obs[:, None] - 1e-12).sum(axis=1)) / (1 + n_null)


# ============================================================================ cross-validation
def make_cv_folds(n_times, *, n_folds=3, test_samples=None, gap_samples=0):
    """Contiguous test blocks and the training candidates of each (with a gap around the block).

    Parameters
    ----------
    n_times : int
        Samples in the story.
    n_folds : int
        Number of test blocks.
    test_samples : int | None
        Length of each test block; None: ``n_times // n_folds`` (10 min of a 30-min story).
        Blocks start at ``round(linspace(0, n_times - test_samples, n_folds))``, so they tile
        the story when ``n_folds * test_samples == n_times`` and never overlap.
    gap_samples : int
        Samples excluded from training on each side of the test block.

    Returns
    -------
    folds : list of (test, train) tuples
        ``test``: (start, stop) of the block; ``train``: sorted int array of candidate
        training samples, each more than ``gap_samples`` samples from every test sample
        (``t < start - gap`` or ``t >= stop + gap``).
    """
    n_times = _check_int("n_times", n_times, 2)
    n_folds = _check_int("n_folds", n_folds, 2)
    gap = _check_int("gap_samples", gap_samples, 0)
    test_samples = n_times // n_folds if test_samples is None else _check_int(
        "test_samples", test_samples, 1)
    if n_folds * test_samples > n_times:
        raise ValueError(f"{n_folds} test blocks of {test_samples} samples do not fit in "
                         f"{n_times} samples without overlapping; use fewer or shorter blocks "
                         "(test_seconds=None gives n_times / n_folds).")
    starts = np.round(np.linspace(0, n_times - test_samples, n_folds)).astype(np.int64)
    t = np.arange(n_times)
    folds = []
    for s in starts:
        e = s + test_samples
        train = t[(t < s - gap) | (t >= e + gap)]
        if not len(train):
            raise ValueError(f"No training samples remain for the test block [{s}, {e}) with a "
                             f"gap of {gap} samples; shorten the gap or the test blocks.")
        folds.append(((int(s), int(e)), train))
    return folds


def training_subset(train, fraction):
    """The first ``round(fraction * len(train))`` training candidates, in time order.

    Parameters
    ----------
    train : array of int, shape (n,)
        Sorted candidate samples (from :func:`make_cv_folds`).
    fraction : float
        In [0, 1].

    Returns
    -------
    subset : array of int
    """
    fraction = float(fraction)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"Training fractions must be in [0, 1], got {fraction}.")
    return np.asarray(train)[: round(fraction * len(train))]


def _contiguous_groups(n, n_groups):
    """Labels 0..n_groups-1 of ``n`` samples in ``n_groups`` contiguous blocks."""
    return (np.arange(n) * n_groups) // max(n, 1)


def ridge_cv_batched(X, y, groups, alphas, *, batch=16):
    """Many small independent ridge regressions (one per target), alpha chosen by CV.

    Target ``e`` has its own design ``X[e]`` (n_samples, k): columns standardised and ``y``
    centred with the (training-fold) statistics, intercept fitted, ``alpha`` per target
    chosen by leave-one-group-out over ``groups`` (sum of squared errors), then refitted on
    all samples. Equal to scikit-learn's ``make_pipeline(StandardScaler(), Ridge(alpha))``
    per target at the chosen alpha.

    Parameters
    ----------
    X : array, shape (n_targets, n_samples, k)
    y : array, shape (n_targets, n_samples)
    groups : array of int, shape (n_samples,)
        At least two distinct values.
    alphas : array, shape (n_alphas,)
    batch : int
        Targets solved at once (memory ~ ``batch * n_samples * n_alphas`` floats).

    Returns
    -------
    coef : array, shape (n_targets, k)
        In the units of X: predictions are ``X[e] @ coef[e] + intercept[e]``.
    intercept : array, shape (n_targets,)
    best_alpha : array, shape (n_targets,)
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 3 or y.shape != X.shape[:2]:
        raise ValueError(f"'X' must have shape (n_targets, n_samples, k) and 'y' (n_targets, "
                         f"n_samples), got {X.shape} and {y.shape}.")
    groups = np.asarray(groups)
    labels = np.unique(groups)
    if groups.shape != (X.shape[1],) or len(labels) < 2:
        raise ValueError(f"'groups' must have shape (n_samples,) = ({X.shape[1]},) with at least "
                         f"two groups, got shape {groups.shape} and {len(labels)} group(s).")
    alphas = np.asarray(alphas, float)
    E, _, k = X.shape
    coef = np.empty((E, k))
    intercept = np.empty(E)
    best = np.empty(E)
    for a in range(0, E, batch):
        Xb = np.asarray(X[a:a + batch], np.float64)
        yb = np.asarray(y[a:a + batch], np.float64)
        sse = np.zeros((len(Xb), len(alphas)))
        for g in labels:
            tr, va = groups != g, groups == g
            fit = _ridge_eigen(Xb[:, tr], yb[:, tr])
            Q = fit["transform"](Xb[:, va])  # (b, n_val, r) = standardised X_val @ V
            u = fit["z"][:, :, None] / (fit["lam"][:, :, None] + alphas[None, None, :])
            pred = np.einsum("bnr,bra->bna", Q, u) + fit["ybar"][:, None, None]
            sse += ((yb[:, va, None] - pred) ** 2).sum(axis=1)
        best_b = alphas[np.argmin(sse, axis=1)]
        fit = _ridge_eigen(Xb, yb)
        w = np.einsum("bkr,br->bk", fit["V"], fit["z"] / (fit["lam"] + best_b[:, None]))
        w /= fit["sd"]
        coef[a:a + batch] = w
        intercept[a:a + batch] = fit["ybar"] - np.einsum("bk,bk->b", fit["mu"], w)
        best[a:a + batch] = best_b
    return coef, intercept, best


def _ridge_eigen(X, y):
    """Standardisation and eigendecomposition of a batch of ridge problems X (b, n, k)."""
    mu = X.mean(axis=1)  # (b, k)
    sd = X.std(axis=1)
    sd = np.where(sd > 0, sd, 1.0)
    Xs = (X - mu[:, None]) / sd[:, None]
    ybar = y.mean(axis=1)
    G = np.einsum("bnk,bnl->bkl", Xs, Xs)
    lam, V = np.linalg.eigh(G)  # (b, k), (b, k, k)
    lam = np.clip(lam, 0.0, None)
    z = np.einsum("bkr,bk->br", V, np.einsum("bnk,bn->bk", Xs, y - ybar[:, None]))

    def transform(Xv):
        return np.einsum("bnk,bkr->bnr", (Xv - mu[:, None]) / sd[:, None], V)

    return {"mu": mu, "sd": sd, "ybar": ybar, "lam": lam, "V": V, "z": z, "transform": transform}


# ============================================================================ stimulus ridge
class _DelayedRows:
    """A data source for StackedRidge: delayed stimulus designs and ECoG at chosen samples."""

    def __init__(self, mats, Y, rows, groups, delays, chunk=4096):
        self.mats, self.Y, self.delays, self.chunk = mats, Y, delays, chunk
        labels, first = np.unique(groups, return_index=True)
        self.keys = [labels[i] for i in np.argsort(first)]
        self._rows = {key: np.asarray(rows)[groups == key] for key in self.keys}

    def n_rows(self, key):
        return len(self._rows[key])

    def chunks(self, key, with_y=True):
        from ...stimulus.delays import _delayed_rows

        rows = self._rows[key]
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for run in np.split(rows, breaks):
            for s in range(int(run[0]), int(run[-1]) + 1, self.chunk):
                e = min(s + self.chunk, int(run[-1]) + 1)
                yield ([_delayed_rows(m, self.delays, s, e) for m in self.mats],
                       self.Y[s:e] if with_y else None)


def _project_streams(features, streams, rows, n_components):
    """Per stream (one feature space each): the stream, PCA-projected if wider than
    ``n_components`` (PCA fitted on the feature rows ``rows`` only), as float32 (n_times, F)."""
    mats = []
    for a, b in streams:
        f = np.asarray(features[:, a:b], np.float32)
        if n_components is not None and b - a > n_components:
            fit = np.asarray(f[rows], np.float64)
            mean = fit.mean(0)
            cov = np.cov(fit - mean, rowvar=False)
            lam, vec = np.linalg.eigh(cov)
            comps = vec[:, np.argsort(lam)[::-1][:n_components]]
            f = ((f - mean) @ comps).astype(np.float32)
        mats.append(f)
    return mats


def _stimulus_ridge_predict(features, streams, Y, train, test, *, delays, alphas, inner_folds,
                            n_components, seed):
    """Predictions (n_targets, n_test) of the stimulus stacked ridge for one fold/fraction."""
    from ...baselines.ridge import StackedRidge
    from ...stimulus.delays import _delayed_rows

    s, e = test
    if len(train) == 0:  # untrained: random weights on standardised delayed features
        mats = _project_streams(features, streams, np.arange(len(features)), n_components)
        rng = np.random.default_rng(seed)
        pred = np.zeros((Y.shape[1], e - s))
        for m in mats:
            sd = m.std(0)
            m = (m - m.mean(0)) / np.where(sd > 0, sd, 1.0)  # standardised (the stimulus only)
            X = _delayed_rows(m, delays, s, e).astype(np.float64)  # (n_test, F * n_delays)
            W = rng.standard_normal((X.shape[1], Y.shape[1])) / math.sqrt(X.shape[1])
            pred += (X @ W).T
        return pred
    mats = _project_streams(features, streams, train, n_components)
    groups = _contiguous_groups(len(train), inner_folds)
    source = _DelayedRows(mats, Y, train, groups, delays)
    model = StackedRidge(alphas, cv=inner_folds)
    model.fit_source(source, len(mats), verbose=logger.level if logger.level < 20 else False)
    out = np.empty((Y.shape[1], e - s))
    for c in range(s, e, 4096):
        d = min(c + 4096, e)
        out[:, c - s:d - s] = model.predict([_delayed_rows(m, delays, c, d) for m in mats]).T
    return out


def _source_ridge_predict(S, neighbors, Y, train, test, *, alphas, inner_folds):
    """Predictions (n_targets, n_test) of the per-electrode ridge from nearby source estimates.

    ``S`` (n_rows, n_times): predicted sources; ``neighbors`` (n_targets, k) rows of S.
    """
    s, e = test
    if len(train) == 0:  # zero-shot: the nearest source
        return np.asarray(S[neighbors[:, 0], s:e], np.float64)
    groups = _contiguous_groups(len(train), inner_folds)
    out = np.empty((len(neighbors), e - s))
    for a in range(0, len(neighbors), 16):
        nb = neighbors[a:a + 16]
        X = np.transpose(S[nb][:, :, train], (0, 2, 1))  # (b, n_train, k)
        coef, icpt, _ = ridge_cv_batched(X, Y[train, a:a + 16].T, groups, alphas)
        Xt = np.asarray(S[nb][:, :, s:e], np.float64)  # (b, k, n_test)
        out[a:a + 16] = np.einsum("bkn,bk->bn", Xt, coef) + icpt[:, None]
    return out


def predict_fold(sources, neighbors, ecog, features, streams, *, test, train, delays, alphas,
                 inner_folds=3, n_components=64, seed=0, methods=METHODS):
    """Predictions of the test block of one fold by each method, trained on ``train`` only.

    Only ``ecog[:, train]`` is read to fit (the stimulus and the source estimates, which do not
    depend on the ECoG, are read everywhere), so changing the ECoG anywhere outside ``train``
    cannot change the predictions.

    Parameters
    ----------
    sources : array, shape (n_rows, n_times)
        Predicted source time courses (only the rows the electrodes use).
    neighbors : array of int, shape (n_electrodes, k)
        Rows of ``sources`` near each electrode, nearest first.
    ecog : array, shape (n_electrodes, n_times)
    features : array, shape (n_times, n_features)
        Stimulus features of the story.
    streams : list of (int, int)
        Column range of each feature stream (one stacked-ridge feature space each).
    test : (int, int)
        Start and stop of the test block.
    train : array of int
        Training samples (empty: the zero-shot / untrained predictions).
    delays : array of int
        Stimulus delays in samples.
    alphas : array
    inner_folds : int
        Contiguous blocks of the training samples used to choose alphas.
    n_components : int | None
        PCA width of wide streams for the stimulus ridge.
    seed : int
        Seed of the untrained stimulus model.
    methods : sequence of str

    Returns
    -------
    predictions : dict of str -> array, shape (n_electrodes, n_test)
    """
    train = np.asarray(train, np.int64)
    if 0 < len(train) < 2 * inner_folds:
        raise ValueError(f"{len(train)} training samples are too few for {inner_folds}-fold "
                         "alpha selection.")
    s, e = test
    if len(train) and ((train >= s) & (train < e)).any():
        raise ValueError("Training samples overlap the test block.")
    Y = np.ascontiguousarray(np.asarray(ecog, np.float32).T)  # (n_times, n_electrodes)
    out = {}
    for m in methods:
        if m == "neurofuse":
            out[m] = _source_ridge_predict(sources, neighbors, Y, train, test, alphas=alphas,
                                           inner_folds=inner_folds)
        else:
            out[m] = _stimulus_ridge_predict(features, streams, Y, train, test, delays=delays,
                                             alphas=alphas, inner_folds=inner_folds,
                                             n_components=n_components, seed=seed)
    return out


def trained_prediction(sources, neighbors, ecog, features, streams, *, fractions=PAPER_FRACTIONS,
                       folds, delays, alphas, inner_folds=3, n_components=64, seed=0,
                       methods=METHODS):
    """Cross-validated r per electrode for each method and training fraction.

    Parameters
    ----------
    sources, neighbors, ecog, features, streams, delays, alphas, inner_folds, n_components
        As in :func:`predict_fold`.
    fractions : sequence of float
        Training fractions (:func:`training_subset` of each fold's candidates).
    folds : list
        From :func:`make_cv_folds` (its gap must be at least ``max(delays)``).
    seed : int
        Seed of the untrained (fraction 0) stimulus model (``seed + fold``).
    methods : sequence of str

    Returns
    -------
    r : dict of (method, fraction) -> array, shape (n_electrodes,)
        Mean over folds of the per-fold test r.
    per_fold : dict of (method, fraction) -> array, shape (n_folds, n_electrodes)
    """
    from tqdm.auto import tqdm

    per_fold = {(m, float(f)): [] for m in methods for f in fractions}
    bar = {"disable": not progress_enabled(), "leave": False}
    for k, (test, train_all) in enumerate(tqdm(folds, desc="CV folds", **bar)):
        s, e = test
        y_test = np.asarray(ecog[:, s:e], np.float64)
        for f in fractions:
            train = training_subset(train_all, f)
            preds = predict_fold(sources, neighbors, ecog, features, streams, test=test,
                                 train=train, delays=delays, alphas=alphas,
                                 inner_folds=inner_folds, n_components=n_components,
                                 seed=seed + k, methods=methods)
            for m, pred in preds.items():
                per_fold[(m, float(f))].append(np.nan_to_num(pearson_r(pred, y_test)))
            logger.debug("Fold %d, fraction %g: %d training samples.", k, f, len(train))
    per_fold = {key: np.stack(v) for key, v in per_fold.items()}
    return {key: v.mean(axis=0) for key, v in per_fold.items()}, per_fold


# ============================================================================ source models
class _Predictor:
    """Predicted fsaverage source time courses of a model, for chosen source rows."""

    def __init__(self, model):
        from ...models.joint import JointModel
        from ...simulation.encoding import SourceEncodingModel

        if isinstance(model, (str, Path)):
            model = _load_model(Path(model).expanduser())
        if isinstance(model, JointModel):
            self.kind = "joint"
            self.sfreq = float(model.sfreq)
            self.n_features = int(model.encoder.config.d_stim)
            self.n_sources = int(model.encoder.config.d_src)
            self.vertices = model.vertices
        elif isinstance(model, SourceEncodingModel):
            self.kind = "encoder"
            self.sfreq = float(model.sfreq)
            self.n_features = int(model.n_features)
            self.n_sources = int(model.n_sources)
            self.vertices = _encoder_vertices(model)
        else:
            raise TypeError(f"'model' must be a JointModel, a SourceEncodingModel or the folder of "
                            f"one, got {type(model).__name__}.")
        self.model = model

    def predict(self, features, rows, chunk_seconds=60.0):
        """Array (len(rows), n_times) float32 of the sources ``rows``."""
        features = np.array(features, np.float32)  # a writable copy (torch needs one)
        rows = np.asarray(rows, np.int64)
        n_times = len(features)
        out = np.empty((len(rows), n_times), np.float32)
        if self.kind == "encoder":
            for a, b, block in self.model.iter_transform(features, chunk_size=2048):
                out[:, a:b] = block[rows]
            return out
        from ...models.predict import predict_sources

        cfg = self.model.encoder.config
        context = cfg.n_layers * (cfg.window - 1)  # receptive field, as predict_sources uses
        chunk = max(1, round(chunk_seconds * self.sfreq))
        for a in range(0, n_times, chunk):
            b = min(a + chunk, n_times)
            a0 = max(0, a - context)
            s = predict_sources(self.model, features[a0:b], chunk_seconds=(b - a0) / self.sfreq + 1)
            out[:, a:b] = s[rows, a - a0:]
        return out


def _encoder_vertices(encoder):
    """fsaverage5 vertex numbers [lh, rh] of a ground-truth encoder's sources (any spacing),
    found from its source positions on the white surface."""
    from scipy.spatial import cKDTree

    from ...anatomy.template import read_template_surface

    vertices = []
    for h, code in zip(_HEMIS, (0, 1)):
        rr = read_template_surface("white", h)[0] * 1e-3
        pos = encoder.src_pos[encoder.hemi == code]
        dist, idx = cKDTree(rr).query(pos)
        if len(pos) and dist.max() > 1e-5:
            raise ValueError(f"The encoder's {h} sources are not vertices of the fsaverage5 "
                             f"white surface (up to {dist.max() * 1e3:.2f} mm away).")
        vertices.append(idx)
    if not np.array_equal(np.concatenate([encoder.src_pos[encoder.hemi == c] for c in (0, 1)]),
                          encoder.src_pos):
        raise ValueError("The encoder's sources are not ordered lh then rh.")
    return vertices


def _load_model(path: Path):
    from ...models.joint import JointModel
    from ...simulation.encoding import SourceEncodingModel

    if not (path / "model.json").is_file() and (path / "model" / "model.json").is_file():
        path = path / "model"  # the output folder of `neurofuse fit`
    cfg_file = path / "model.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"'{path}' holds no model (no model.json): pass a trained joint "
                                "model folder (the 'model/' of `neurofuse fit`) or a ground-truth "
                                "encoder folder (a simulated study's ground_truth/encoding).")
    fmt = json.loads(cfg_file.read_text()).get("format")
    if fmt == "neurofuse-source-encoding-model":
        return SourceEncodingModel.load(path)
    return JointModel.load(path)


# ============================================================================ the validation
def _num(x):
    """A float for JSON, None when not finite."""
    x = float(x)
    return x if math.isfinite(x) else None


def _top25(values):
    values = np.asarray(values, float)
    mask = top_quartile(values)
    return float(values[mask].mean()) if mask.any() else float("nan")


def _subject_batches(n_rows, n_times, max_bytes):
    """Split subjects (with n_rows source rows each) into batches under a memory budget."""
    batches, cur, size = [], [], 0
    for i, n in enumerate(n_rows):
        b = 4 * n * n_times
        if cur and size + b > max_bytes:
            batches.append(cur)
            cur, size = [], 0
        cur.append(i)
        size += b
    if cur:
        batches.append(cur)
    return batches


@verbose
def run_ecog_validation(model, data, out, *, fractions=PAPER_FRACTIONS, n_folds=3,
                        test_seconds=None, gap_seconds=2.0, n_neighbors=10, delays_s=None,
                        n_components=64, alphas=None, inner_folds=3, n_permutations=1000,
                        min_shift_seconds=0.0, alternative="greater", n_trials=1000,
                        identification_test="shift", n_null=200,
                        segment_seconds=60.0, alpha=0.05, envelope=None, story=None,
                        subjects=None, methods=METHODS, figures=True, seed=0, overwrite=False,
                        max_memory_gb=1.0, verbose=None) -> dict:
    """Zero-shot and trained prediction of ECoG from a model's source estimates (paper §5).

    See the module docstring for the analyses and their statistics.

    Parameters
    ----------
    model : JointModel | SourceEncodingModel | path-like
        A trained joint model (or its folder, or the ``out`` folder of ``neurofuse fit``), or a
        ground-truth encoder (a simulated study's ``ground_truth/encoding``: the ceiling).
    data : EcogDataset | path-like
        An ECoG dataset (:func:`neurofuse.data.ecog.read_ecog_dataset`).
    out : path-like
        Output folder (created atomically): ``results.json``, ``electrodes.json`` (per
        electrode: position, nearest source, r, p, identification, trained r) and
        ``figures/*.png``.
    fractions : sequence of float
        Training fractions (0 = zero-shot).
    n_folds : int
        Cross-validation folds (contiguous test blocks).
    test_seconds : float | None
        Test block length; None: story duration / n_folds (10 min of a 30-min story).
    gap_seconds : float
        Samples this close to a test block are never used for training (>= max delay).
    n_neighbors : int
        Nearby sources per electrode for the trained source-based ridge.
    delays_s : sequence of float | None
        Stimulus delays of the stacked ridge; None: the MEG ceiling's 0-600 ms in 20-ms steps.
    n_components : int | None
        PCA width of wide feature streams for the stacked ridge (None: no PCA).
    alphas : array | None
        Ridge regularisations; None: ``neurofuse.baselines.ridge.DEFAULT_ALPHAS``.
    inner_folds : int
        Contiguous blocks of the training samples for choosing alphas.
    n_permutations : int
        Circular shifts of the permutation test.
    min_shift_seconds : float
        Smallest circular shift (0: every non-zero shift, the exact test; see
        :func:`circular_shift_test`).
    alternative : 'greater' | 'two-sided'
        Of the permutation test: ``'greater'`` (default) counts positive correlations only.
    n_trials : int
        Trials per electrode of the segment identification (the reported accuracy).
    identification_test : 'shift' | 'binomial'
        Significance of the identification: ``'shift'`` (default) from
        :func:`identification_shift_test`, ``'binomial'`` the paper's binomial test over the
        trials (invalid: its trials are not independent).
    n_null : int
        Null lags of the shift test.
    segment_seconds : float
        Segment length of the identification (one minute).
    alpha : float
        FDR level of both tests (Benjamini-Hochberg across all electrodes).
    envelope : bool | None
        Use the Hilbert envelope of the predicted sources (for high-gamma-envelope ECoG);
        None: when the dataset's ``signal`` field mentions an envelope.
    story : str | None
        The ECoG story; None: the dataset's only story.
    subjects : list of str | None
        Subjects to evaluate (default: all).
    methods : sequence of str
        Among ``'neurofuse'`` and ``'ridge'``.
    figures : bool
        Draw and save the figures (Fig. 4).
    seed : int
        Seed of the permutations, segment draws and the untrained ridge.
    overwrite : bool
        Replace an existing ``out``.
    max_memory_gb : float
        Budget for predicted source time courses held at once (subjects are batched).
    verbose : bool | str | int | None

    Returns
    -------
    validation : dict
        ``"results"``: the content of ``results.json`` (``{"zero_shot": {"n_electrodes",
        "n_significant", "n_identification_significant"}, "trained": [{"method",
        "train_fraction", "top25_r"}, ...]}``); ``"electrodes"``: per-electrode records (as in
        ``electrodes.json``); ``"figures"``: dict name -> matplotlib Figure (empty if
        ``figures=False``); ``"out"``: the output Path.
    """
    import time

    from tqdm.auto import tqdm

    from ...baselines.ridge import DEFAULT_ALPHAS, MEG_DELAYS_S
    from ...data.ecog import EcogDataset, read_ecog_dataset
    from ...stimulus.delays import delays_from_seconds

    t0 = time.perf_counter()
    ds = data if isinstance(data, EcogDataset) else read_ecog_dataset(data)
    predictor = _Predictor(model)
    if abs(ds.sfreq - predictor.sfreq) > 1e-6 * predictor.sfreq:
        raise ValueError(f"The ECoG dataset is sampled at {ds.sfreq:g} Hz but the model at "
                         f"{predictor.sfreq:g} Hz: resample the ECoG and features to "
                         f"{predictor.sfreq:g} Hz when loading them.")
    if ds.n_features != predictor.n_features:
        raise ValueError(f"The ECoG dataset's stimulus has {ds.n_features} features per sample but "
                         f"the model expects {predictor.n_features}: extract the feature streams "
                         "the model was trained on.")
    if story is None:
        if len(ds.stories) != 1:
            raise ValueError(f"The ECoG dataset has {len(ds.stories)} stories {ds.stories}: pass "
                             "story=... to choose one.")
        story = ds.stories[0]
    _check_option("story", story, ds.stories)
    subjects = [s for s in ds.subjects if story in ds.subject_stories(s)] if subjects is None \
        else [_check_option("subjects", s, ds.subjects) for s in subjects]
    if not subjects:
        raise ValueError(f"No subject has ECoG for story {story!r}.")
    methods = [_check_option("methods", m, METHODS) for m in methods]
    _check_option("identification_test", identification_test, ("shift", "binomial"))
    fractions = [float(f) for f in fractions]
    for f in fractions:
        if not 0.0 <= f <= 1.0:
            raise ValueError(f"'fractions' must be in [0, 1], got {f}.")
    sfreq = ds.sfreq
    n_times = ds.n_times(story)
    delays = delays_from_seconds(MEG_DELAYS_S if delays_s is None else delays_s, sfreq)
    gap = math.ceil(_check_positive("gap_seconds", gap_seconds, allow_zero=True) * sfreq)
    if gap < delays.max():
        raise ValueError(f"'gap_seconds' ({gap_seconds} s) must be at least the longest stimulus "
                         f"delay ({delays.max() / sfreq:g} s), or delayed training features would "
                         "reach into the test minutes.")
    test_samples = None if test_seconds is None else round(
        _check_positive("test_seconds", test_seconds) * sfreq)
    folds = make_cv_folds(n_times, n_folds=n_folds, test_samples=test_samples, gap_samples=gap)
    segment = round(_check_positive("segment_seconds", segment_seconds) * sfreq)
    min_shift = max(1, round(_check_positive("min_shift_seconds", min_shift_seconds,
                                             allow_zero=True) * sfreq))
    alphas = DEFAULT_ALPHAS if alphas is None else np.asarray(alphas, float)
    n_neighbors = _check_int("n_neighbors", n_neighbors, 1)
    out = Path(out).expanduser()
    if out.exists() and not overwrite:
        raise FileExistsError(f"The output location '{out}' already exists. Choose a new folder or "
                              "pass overwrite=True (--overwrite) to replace it.")

    src_pos, src_hemi = fsaverage_source_positions(predictor.vertices)
    if len(src_pos) != predictor.n_sources:
        raise ValueError(f"The model has {predictor.n_sources} sources but its fsaverage source "
                         f"space has {len(src_pos)} vertices.")
    features = np.asarray(ds.features(story), np.float32)
    streams = [tuple(v) for v in ds.feature_streams.values()]
    geo = {}
    for sub in subjects:
        el = ds.electrodes(sub)
        idx, dist = nearest_sources(el.pos_fsaverage, src_pos, k=n_neighbors,
                                    points_hemi=np.asarray(el.hemi), source_hemi=src_hemi)
        geo[sub] = (el, idx, dist)
    if envelope is None:
        envelope = any("envelope" in ds.signal(s).lower() for s in subjects)
    logger.info("ECoG validation: %d subjects, %d electrodes, story %r (%.1f min), %d folds, "
                "fractions %s%s.", len(subjects), sum(len(g[0]) for g in geo.values()), story,
                n_times / sfreq / 60, n_folds, fractions, ", envelope" if envelope else "")

    records, r_cv = [], {(m, f): [] for m in methods for f in fractions}
    zs_r, zs_p, id_acc, id_p = [], [], [], []
    batches = _subject_batches([len(np.unique(geo[s][1])) for s in subjects], n_times,
                               _check_positive("max_memory_gb", max_memory_gb) * 2**30)
    bar = {"disable": not progress_enabled(), "leave": False}
    for batch in tqdm(batches, desc="ECoG subjects", **bar):
        subs = [subjects[i] for i in batch]
        rows = np.unique(np.concatenate([geo[s][1].ravel() for s in subs]))
        S = predictor.predict(features, rows)  # (n_rows, n_times)
        if envelope:
            from scipy.signal import hilbert

            S = np.abs(hilbert(S, axis=1)).astype(np.float32)
        for sub in subs:
            el, idx, dist = geo[sub]
            nb = np.searchsorted(rows, idx)  # rows of S
            ecog = np.asarray(ds.ecog(sub, story), np.float32)
            zero = S[nb[:, 0]]
            r, p = circular_shift_test(zero, ecog, n_permutations=n_permutations,
                                       min_shift=min_shift, alternative=alternative,
                                       seed=np.random.default_rng([seed, 1, len(records)]))
            acc, pb = segment_identification(zero, ecog, segment=segment, n_trials=n_trials,
                                             seed=np.random.default_rng([seed, 2, len(records)]))
            if identification_test == "shift":
                acc_all, ps = identification_shift_test(
                    zero, ecog, segment=segment, n_null=n_null,
                    seed=np.random.default_rng([seed, 3, len(records)]))
            else:
                acc_all, ps = np.full(len(el), np.nan), np.full(len(el), np.nan)
            p_id = ps if identification_test == "shift" else pb
            r_sub, _ = trained_prediction(S, nb, ecog, features, streams, fractions=fractions,
                                          folds=folds, delays=delays, alphas=alphas,
                                          inner_folds=inner_folds, n_components=n_components,
                                          seed=seed, methods=methods)
            for key, v in r_sub.items():
                r_cv[key].append(v)
            zs_r.append(r)
            zs_p.append(p)
            id_acc.append(acc)
            id_p.append(p_id)
            for e in range(len(el)):
                records.append({
                    "subject": sub, "name": el.names[e], "hemi": el.hemi[e],
                    "group": el.group[e] if el.group else None,
                    "pos_fsaverage": np.round(el.pos_fsaverage[e], 6).tolist(),
                    "source": int(idx[e, 0]), "source_distance_mm": float(dist[e, 0] * 1e3),
                    "r": float(r[e]), "p": float(p[e]),
                    "identification_accuracy": float(acc[e]),
                    "identification_p": _num(p_id[e]),
                    "identification_p_binomial": float(pb[e]),
                    "identification_accuracy_all_pairs": _num(acc_all[e]),
                    "identification_p_shift": _num(ps[e]),
                    "trained_r": {m: {f"{f:g}": float(r_sub[(m, f)][e]) for f in fractions}
                                  for m in methods},
                })
            logger.info("%s: zero-shot r median %.3f (max %.3f); identification accuracy median "
                        "%.2f.", sub, np.median(r), np.max(r), np.median(acc))
        del S
    sig = fdr_significant(np.concatenate(zs_p), alpha)
    id_sig = fdr_significant(np.concatenate(id_p), alpha)
    for rec, s1, s2 in zip(records, sig, id_sig):
        rec["significant"] = bool(s1)
        rec["identification_significant"] = bool(s2)
    results = {
        "zero_shot": {"n_electrodes": len(records), "n_significant": int(sig.sum()),
                      "n_identification_significant": int(id_sig.sum())},
        "trained": [{"method": m, "train_fraction": f,
                     "top25_r": _top25(np.concatenate(r_cv[(m, f)]))}
                    for m in methods for f in fractions],
    }
    settings = {"story": story, "subjects": subjects, "n_folds": n_folds,
                "test_seconds": (folds[0][0][1] - folds[0][0][0]) / sfreq,
                "gap_seconds": gap / sfreq, "n_neighbors": n_neighbors,
                "delays_s": (delays / sfreq).tolist(), "n_components": n_components,
                "inner_folds": inner_folds, "n_permutations": n_permutations,
                "min_shift_seconds": min_shift / sfreq, "alternative": alternative,
                "n_trials": n_trials, "identification_test": identification_test,
                "n_null": n_null, "segment_seconds": segment / sfreq, "alpha": alpha,
                "envelope": bool(envelope), "seed": seed, "model": predictor.kind}
    figs = {}
    if figures:
        from ...viz.ecog import ecog_figures

        figs = ecog_figures(results, records)
    with atomic_dir(out, overwrite=overwrite, what="ECoG validation") as tmp:
        write_json(tmp / "results.json", results)
        write_json(tmp / "electrodes.json", {"settings": settings, "electrodes": records})
        if figs:
            (tmp / "figures").mkdir()
            for name, fig in figs.items():
                fig.savefig(tmp / "figures" / f"{name}.png", dpi=110)
    logger.info("ECoG validation done in %.1f s: %d/%d electrodes significant zero-shot, %d by "
                "identification -> %s", time.perf_counter() - t0, results["zero_shot"]
                ["n_significant"], len(records), results["zero_shot"]
                ["n_identification_significant"], out)
    return {"results": results, "electrodes": records, "figures": figs, "settings": settings,
            "out": out}

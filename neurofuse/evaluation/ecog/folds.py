"""Cross-validation of the trained ECoG prediction: contiguous test blocks with a gap, and the
training subsets of each training fraction."""

from __future__ import annotations

import numpy as np

from ..._checks import _check_int


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



__all__ = ["make_cv_folds", "training_subset"]

"""Finite-impulse-response (FIR) delays and TR resampling of stimulus features.

Linear encoding models (paper §3) regress brain signals on copies of the stimulus features
shifted in time: ``make_delayed`` builds that design matrix for one story, and
``make_delayed_stories`` does it story by story so that a delay never carries the end of one
story into the start of the next. ``resample_to_tr`` brings 50-Hz features to the fMRI
sampling grid with the same convention as the dataset store: volume ``k`` covers the window
``[k * tr, (k + 1) * tr)`` and a story has ``floor(n_times / (sfreq * tr))`` volumes.

Column order of a delayed design: delay-major, i.e. column ``d * n_features + f`` holds
feature ``f`` delayed by ``delays[d]`` samples (the convention of himalaya's and the Huth
lab's ``make_delayed``).
"""

from __future__ import annotations

import math

import numpy as np

from .._checks import _check_finite, _check_ndim, _check_positive


def _check_delays(delays) -> np.ndarray:
    """Validate integer sample delays (>= 0, unique); return them as an int64 array."""
    arr = np.atleast_1d(np.asarray(delays))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"'delays' must be a non-empty 1-D sequence of integer sample delays, "
                         f"got shape {arr.shape}.")
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) \
                and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"'delays' must be integers (in samples), got {arr.dtype} values "
                            f"{arr[:5].tolist()}. Convert seconds with "
                            "delays_from_seconds(seconds, sfreq).")
    arr = arr.astype(np.int64)
    if arr.min() < 0:
        raise ValueError(f"'delays' must be >= 0 samples (the response follows the stimulus), "
                         f"got {arr.min()}. Negative delays would use future stimulus.")
    if np.unique(arr).size != arr.size:
        raise ValueError(f"'delays' must not repeat, got {arr.tolist()}.")
    return arr


def _check_features(name, features) -> np.ndarray:
    arr = _check_ndim(name, features, 2, "(n_times, n_features)")
    if not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"'{name}' must be numeric, got dtype {arr.dtype}.")
    return arr


def delays_from_seconds(seconds, sfreq, *, rtol=1e-6) -> np.ndarray:
    """Convert delays in seconds to whole numbers of samples.

    Parameters
    ----------
    seconds : float | array-like of float, shape (n_delays,)
        Delays in s, >= 0 (e.g. ``np.arange(0, 0.601, 0.02)`` for the MEG ceiling, or
        ``(2, 4, 6, 8)`` for the fMRI ceiling).
    sfreq : float
        Sampling rate of the features the delays apply to, in Hz (use ``1 / tr`` for features
        already on the fMRI grid).
    rtol : float
        Tolerance, in samples, for a delay to count as a whole number of samples.

    Returns
    -------
    delays : array of int64, shape (n_delays,)
        Delays in samples.

    Raises
    ------
    ValueError
        A delay is negative or not a whole number of samples at ``sfreq``.
    """
    sfreq = _check_positive("sfreq", sfreq)
    sec = np.atleast_1d(np.asarray(seconds, dtype=float))
    if sec.ndim != 1 or sec.size == 0:
        raise ValueError(f"'seconds' must be a number or a non-empty 1-D sequence, got shape "
                         f"{sec.shape}.")
    _check_finite("seconds", sec)
    if sec.min() < 0:
        raise ValueError(f"'seconds' must be >= 0 (the response follows the stimulus), got "
                         f"{sec.min():g} s.")
    samples = sec * sfreq
    rounded = np.round(samples)
    bad = np.abs(samples - rounded) > rtol * np.maximum(1.0, np.abs(samples))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"Delays must be whole numbers of samples at sfreq={sfreq:g} Hz (one sample = "
            f"{1e3 / sfreq:g} ms), got {sec[first]:g} s = {samples[first]:g} samples. Use "
            f"multiples of {1 / sfreq:g} s or resample the features.")
    return _check_delays(rounded.astype(np.int64))


def _delayed_rows(features, delays, start, stop, *, dtype=None) -> np.ndarray:
    """Rows ``[start, stop)`` of ``make_delayed(features, delays)`` without building the rest.

    ``features`` may be a memmap: only rows ``[start - max(delays), stop)`` are read.
    """
    n_features = features.shape[1]
    dtype = np.result_type(features.dtype, np.float32) if dtype is None else np.dtype(dtype)
    out = np.zeros((stop - start, n_features * len(delays)), dtype=dtype)
    for d, delay in enumerate(delays):
        src_start = max(start - delay, 0)  # first source row used
        src_stop = max(stop - delay, 0)
        if src_stop <= src_start:
            continue  # the whole chunk precedes this delay: zeros (no wrap-around)
        dst_start = src_start + delay - start
        out[dst_start:dst_start + src_stop - src_start, d * n_features:(d + 1) * n_features] = \
            features[src_start:src_stop]
    return out


def make_delayed(features, delays, *, dtype=None) -> np.ndarray:
    """Stack time-shifted copies of the features of ONE story (zero-filled, no wrap-around).

    Parameters
    ----------
    features : array, shape (n_times, n_features)
        Stimulus features of one story.
    delays : array-like of int, shape (n_delays,)
        Delays in samples, >= 0 (see :func:`delays_from_seconds`).
    dtype : dtype | None
        Output dtype; default: that of ``features`` (at least float32).

    Returns
    -------
    delayed : array, shape (n_times, n_features * n_delays)
        ``delayed[t, d * n_features + f] = features[t - delays[d], f]`` for
        ``t >= delays[d]`` and 0 before: a delay never reads past the start of the story.

    See Also
    --------
    make_delayed_stories : the same for several stories, concatenated.
    """
    features = _check_features("features", features)
    delays = _check_delays(delays)
    return _delayed_rows(features, delays, 0, features.shape[0], dtype=dtype)


def make_delayed_stories(features, delays, *, dtype=None) -> np.ndarray:
    """Delay each story's features separately, then concatenate the stories in time.

    Parameters
    ----------
    features : list of array, shape (n_times_i, n_features)
        One feature matrix per story (same ``n_features``).
    delays : array-like of int, shape (n_delays,)
        Delays in samples, >= 0.
    dtype : dtype | None
        Output dtype (see :func:`make_delayed`).

    Returns
    -------
    delayed : array, shape (sum_i n_times_i, n_features * n_delays)
        The first ``delays[d]`` samples of every story are zero in the columns of delay ``d``,
        even when the previous story had data there: delays never cross story boundaries.
    """
    if isinstance(features, np.ndarray) or not hasattr(features, "__len__"):
        raise TypeError("'features' must be a list of per-story arrays (n_times_i, n_features), "
                        f"got {type(features).__name__}. Wrap a single story as [features] "
                        "or use make_delayed.")
    if len(features) == 0:
        raise ValueError("'features' must hold at least one story.")
    arrays = [_check_features(f"features[{i}]", f) for i, f in enumerate(features)]
    widths = {a.shape[1] for a in arrays}
    if len(widths) != 1:
        raise ValueError(f"All stories must have the same n_features, got "
                         f"{[a.shape[1] for a in arrays]}.")
    delays = _check_delays(delays)
    return np.concatenate([_delayed_rows(a, delays, 0, a.shape[0], dtype=dtype)
                           for a in arrays], axis=0)


def _n_trs(n_times, sfreq, tr) -> int:
    """Number of TR windows in ``n_times`` samples: ``floor(n_times / (sfreq * tr))``."""
    return math.floor(n_times / (sfreq * tr) + 1e-9)


def resample_to_tr(features, sfreq, tr) -> np.ndarray:
    """Average features over each fMRI repetition window.

    Parameters
    ----------
    features : array, shape (n_times, n_features)
        Features of one story at ``sfreq``.
    sfreq : float
        Feature sampling rate, in Hz.
    tr : float
        fMRI repetition time, in s.

    Returns
    -------
    binned : array of float64, shape (n_trs, n_features)
        Row ``k`` is the mean of the samples whose times ``i / sfreq`` fall in
        ``[k * tr, (k + 1) * tr)``; ``n_trs = floor(n_times / (sfreq * tr))`` as in the
        dataset store (an incomplete last window is dropped).
    """
    features = _check_features("features", features)
    sfreq = _check_positive("sfreq", sfreq)
    tr = _check_positive("tr", tr)
    n_out = _n_trs(features.shape[0], sfreq, tr)
    if n_out < 1:
        raise ValueError(f"'features' has {features.shape[0]} samples, fewer than one TR "
                         f"({sfreq * tr:g} samples at {sfreq:g} Hz, tr={tr:g} s).")
    # boundaries[k] = first sample with time >= k * tr
    bounds = np.ceil(np.arange(n_out + 1) * tr * sfreq - 1e-9).astype(np.int64)
    data = np.asarray(features[:bounds[-1]], dtype=np.float64)
    sums = np.add.reduceat(data, bounds[:-1], axis=0)
    return sums / np.diff(bounds)[:, None]

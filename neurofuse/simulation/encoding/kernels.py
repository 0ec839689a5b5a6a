"""Temporal response kernels: a causal biphasic kernel per stream, peaking at its lag."""

from __future__ import annotations

import math

import numpy as np

from ..._checks import _check_positive

#: Default peak latency of each stream's temporal response kernel, in s.
DEFAULT_LAGS = {"spectrogram": 0.05, "phoneme": 0.10, "word": 0.35}

_KERNEL_SHAPE, _KERNEL_NEG, _KERNEL_NEG_STRETCH, _KERNEL_TAIL = 6.0, 0.35, 2.0, 1e-3


def _phi(u):
    """Unit-lag biphasic shape: gamma-like bump minus a wider, weaker one."""
    u = np.asarray(u, dtype=float)
    a = _KERNEL_SHAPE

    def bump(v):
        out = np.zeros_like(v)
        pos = v > 0
        out[pos] = np.exp(a * (np.log(v[pos]) + 1.0 - v[pos]))  # (v e^{1-v})^a, max 1 at v=1
        return out

    return bump(u) - _KERNEL_NEG * bump(u / _KERNEL_NEG_STRETCH)


def _phi_peak():
    grid = np.linspace(0.3, 1.5, 120001)
    return float(grid[np.argmax(_phi(grid))])


def response_kernel(lag, sfreq):
    """Causal biphasic temporal response kernel peaking at ``lag`` seconds.

    ``h(t) = b(t / c) - 0.35 b(t / (2 c))`` with ``b(v) = (v e^{1-v})^6`` (a gamma-like bump
    of unit height at ``v = 1``), ``c`` chosen so that ``h`` peaks exactly at ``lag``; the
    width grows with the lag (later responses are broader). Sampled at ``k / sfreq``,
    truncated once ``|h|`` stays below 1e-3 of its peak, scaled to unit peak.

    Parameters
    ----------
    lag : float
        Peak latency in s (>= one sample period).
    sfreq : float
        Sampling rate in Hz.

    Returns
    -------
    kernel : array, shape (n_lags,)
        ``kernel[k]`` weighs the feature ``k`` samples in the past (``kernel[0] == 0``).
    """
    lag = _check_positive("lag", lag)
    sfreq = _check_positive("sfreq", sfreq)
    scale = lag / _phi_peak()
    n_max = int(math.ceil(12 * _KERNEL_NEG_STRETCH * scale * sfreq)) + 2
    h = _phi(np.arange(n_max) / (sfreq * scale))
    peak = np.abs(h).max()
    big = np.flatnonzero(np.abs(h) >= _KERNEL_TAIL * peak)
    return h[: big[-1] + 1] / h.max()

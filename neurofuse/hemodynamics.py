"""The haemodynamic side of the forward model: envelope, canonical HRF and TR sampling.

This is a bottom-level module (numpy/scipy only). It turns cortical source activity
``s(t)`` sampled at ``sfreq`` Hz into source-level BOLD sampled once per TR, following the
fMRI head of the MEG-fMRI encoding model (paper §2.2)::

    p(t) = |s(t) + j H(s)(t)|            (envelope, H = Hilbert transform)
    b(t) = (hrf * p)(t)                  (causal convolution at sfreq, SPM canonical HRF)
    y[k] = mean of b over [k TR, (k+1) TR)   (one value per volume)
"""

from __future__ import annotations

import math

import numpy as np
from scipy import fft as sp_fft
from scipy import signal
from scipy.special import gammaln

from ._checks import (
    _check_finite,
    _check_int,
    _check_ndim,
    _check_positive,
    _check_type,
)
from ._logging import logger

__all__ = ["envelope", "make_bold", "spm_hrf"]

_HRF_KEYS = ("peak", "undershoot", "ratio", "length", "dispersion", "undershoot_dispersion")


def _gamma_pdf(t, shape, scale):
    """Gamma probability density at times ``t`` >= 0 (0 where t <= 0)."""
    t = np.asarray(t, dtype=float)
    out = np.zeros_like(t)
    pos = t > 0
    tp = t[pos]
    out[pos] = np.exp(
        (shape - 1.0) * np.log(tp) - tp / scale - gammaln(shape) - shape * np.log(scale)
    )
    return out


def spm_hrf(
    sfreq,
    *,
    peak=6.0,
    undershoot=16.0,
    ratio=1 / 6,
    length=32.0,
    dispersion=1.0,
    undershoot_dispersion=1.0,
):
    """The SPM canonical (double-gamma) haemodynamic response function.

    ``h(t) = g(t; peak/dispersion, dispersion) - ratio * g(t; undershoot/u_disp, u_disp)``
    where ``g(t; a, s)`` is the gamma density with shape ``a`` and scale ``s`` (seconds),
    sampled at ``t = k / sfreq`` for ``k = 0 .. floor(length * sfreq)`` and normalised to
    unit sum (so convolving with it is a weighted average: the output keeps the input's
    units). With the defaults the response peaks near 5 s (the mode of a gamma with shape
    6 and scale 1 is 5 s) and undershoots around 15 s.

    Parameters
    ----------
    sfreq : float
        Sampling rate of the kernel in Hz.
    peak : float
        Delay parameter of the response (SPM ``p(1)``), in s.
    undershoot : float
        Delay parameter of the undershoot (SPM ``p(2)``), in s.
    ratio : float
        Ratio of the undershoot to the response (SPM ``1 / p(5)``), >= 0.
    length : float
        Length of the kernel in s (SPM ``p(7)``).
    dispersion : float
        Dispersion (gamma scale) of the response, in s (SPM ``p(3)``).
    undershoot_dispersion : float
        Dispersion (gamma scale) of the undershoot, in s (SPM ``p(4)``).

    Returns
    -------
    hrf : array, shape (floor(length * sfreq) + 1,)
        The kernel; ``hrf[k]`` is the response ``k / sfreq`` seconds after an impulse.
    """
    sfreq = _check_positive("sfreq", sfreq)
    peak = _check_positive("peak", peak)
    undershoot = _check_positive("undershoot", undershoot)
    ratio = _check_positive("ratio", ratio, allow_zero=True)
    length = _check_positive("length", length)
    dispersion = _check_positive("dispersion", dispersion)
    undershoot_dispersion = _check_positive("undershoot_dispersion", undershoot_dispersion)
    n = int(math.floor(length * sfreq + 1e-9)) + 1
    if n < 2:
        raise ValueError(
            f"'length' ({length} s) must cover at least one sample period at sfreq={sfreq:g} Hz "
            f"(>= {1 / sfreq:g} s); increase 'length' or 'sfreq'."
        )
    t = np.arange(n) / sfreq
    hrf = _gamma_pdf(t, peak / dispersion, dispersion) - ratio * _gamma_pdf(
        t, undershoot / undershoot_dispersion, undershoot_dispersion
    )
    total = hrf.sum()
    if not np.isfinite(total) or abs(total) < 1e-12 * np.abs(hrf).sum():
        raise ValueError(
            f"The HRF with peak={peak}, undershoot={undershoot}, ratio={ratio} sums to ~0 over "
            f"{length} s and cannot be normalised to unit sum; lower 'ratio' or lengthen 'length'."
        )
    return hrf / total


def envelope(x, axis=-1):
    """Amplitude envelope ``|x + j H(x)|`` (modulus of the analytic signal), via the FFT.

    Same definition as ``np.abs(scipy.signal.hilbert(x, axis=axis))``: the spectrum's
    negative frequencies are zeroed, positive ones doubled, DC (and Nyquist for even
    lengths) kept; the signal is treated as periodic over its length.

    Parameters
    ----------
    x : array, shape (..., n_times, ...)
        Real signal(s). float32 input gives float32 output, anything else float64.
    axis : int
        The time axis.

    Returns
    -------
    env : array, same shape as ``x``
        The envelope (>= 0).
    """
    x = np.asarray(x)
    if np.iscomplexobj(x):
        raise TypeError("'x' must be real-valued for envelope(), got a complex array.")
    _check_finite("x", x)
    if x.dtype != np.float32:
        x = x.astype(np.float64, copy=False)
    n = x.shape[axis]
    if n == 0:
        raise ValueError(f"'x' has no samples along axis {axis} (shape {x.shape}).")
    # Analytic signal x + j H(x): H(x) has spectrum -j X at positive frequencies (0 at DC
    # and, for even n, at Nyquist), so it is real and needs only a half-size inverse FFT.
    spec = sp_fft.rfft(x, axis=axis)  # (..., n // 2 + 1, ...)
    weights = np.full(spec.shape[axis], -1j, dtype=spec.dtype)
    weights[0] = 0.0
    if n % 2 == 0:
        weights[-1] = 0.0
    shape = [1] * x.ndim
    shape[axis] = -1
    spec *= weights.reshape(shape)
    hx = sp_fft.irfft(spec, n=n, axis=axis)
    return np.hypot(x, hx)


def _validate_hrf_kwargs(hrf_kwargs):
    if hrf_kwargs is None:
        return {}
    _check_type("hrf_kwargs", hrf_kwargs, dict, "a dict or None")
    for key in hrf_kwargs:
        if key not in _HRF_KEYS:
            raise ValueError(
                f"Invalid key {key!r} in 'hrf_kwargs': expected keys among {list(_HRF_KEYS)} "
                "(the keyword arguments of spm_hrf other than sfreq)."
            )
    return dict(hrf_kwargs)


def _samples_per_tr(sfreq, tr):
    n = sfreq * tr
    n_int = int(round(n))
    if n_int < 1 or abs(n - n_int) > 1e-6 * max(n, 1.0):
        raise ValueError(
            f"'tr' * 'sfreq' must be a whole number of samples, got tr={tr:g} s * "
            f"sfreq={sfreq:g} Hz = {n:g} samples. Choose a TR that is a multiple of "
            f"1/sfreq = {1 / sfreq:g} s, or resample the sources."
        )
    return n_int


def make_bold(sources, sfreq, tr, *, hrf_kwargs=None, chunk_size=512):
    """Source-level BOLD from source activity: envelope -> HRF -> one value per TR.

    For each source: the envelope (:func:`envelope`) of its time course is convolved
    causally with :func:`spm_hrf` at ``sfreq`` (``b(t) = sum_k hrf[k] p(t - k)``, the
    signal before ``t = 0`` taken as zero) and then block-averaged over each TR window:
    ``bold[:, k] = mean(b[:, k*n:(k+1)*n])`` with ``n = tr * sfreq`` samples. Value ``k``
    is thus the volume acquired during ``[k TR, (k+1) TR)``, time-stamped ``k * TR``
    (its acquisition start, as nilearn's ``frame_times`` and BIDS ``onset`` do). A block
    average rather than point sampling, because a volume integrates the signal over the
    TR and it removes aliasing of the (slow, but not band-limited) envelope. Samples
    after the last complete TR are dropped.

    Parameters
    ----------
    sources : array, shape (n_sources, n_times)
        Source activity (e.g. in A·m) sampled at ``sfreq``.
    sfreq : float
        Sampling rate of ``sources`` in Hz.
    tr : float
        Repetition time in s; ``tr * sfreq`` must be an integer.
    hrf_kwargs : dict | None
        Keyword arguments for :func:`spm_hrf` (``peak``, ``undershoot``, ``ratio``,
        ``length``, ``dispersion``, ``undershoot_dispersion``).
    chunk_size : int
        Number of sources processed at once; peak memory is about
        ``chunk_size * n_times * 24`` bytes (float64 input).

    Returns
    -------
    bold : array, shape (n_sources, n_trs)
        ``n_trs = floor(n_times / (tr * sfreq))``. Same units as ``sources`` (the HRF has
        unit sum); float32 if ``sources`` is float32, otherwise float64.
    """
    sources = _check_ndim("sources", sources, 2, "(n_sources, n_times)")
    if np.iscomplexobj(sources):
        raise TypeError("'sources' must be real-valued, got a complex array.")
    sfreq = _check_positive("sfreq", sfreq)
    tr = _check_positive("tr", tr)
    _check_int("chunk_size", chunk_size, 1)
    kw = _validate_hrf_kwargs(hrf_kwargs)
    n_per_tr = _samples_per_tr(sfreq, tr)
    n_sources, n_times = sources.shape
    n_trs = n_times // n_per_tr
    if n_trs < 1:
        raise ValueError(
            f"'sources' holds {n_times} samples ({n_times / sfreq:g} s), less than one TR "
            f"({tr:g} s = {n_per_tr} samples); pass a longer recording or a shorter 'tr'."
        )
    hrf = spm_hrf(sfreq, **kw)
    out_dtype = np.float32 if sources.dtype == np.float32 else np.float64
    bold = np.empty((n_sources, n_trs), dtype=out_dtype)
    logger.debug(
        f"BOLD for {n_sources} sources, {n_times} samples at {sfreq:g} Hz -> {n_trs} TRs "
        f"of {tr:g} s"
    )
    n_keep = n_trs * n_per_tr
    for start in range(0, n_sources, chunk_size):
        stop = min(start + chunk_size, n_sources)
        block = sources[start:stop]
        if not np.isfinite(block).all():
            _check_finite("sources", sources)  # reports the index in the whole array
        env = envelope(block, axis=-1)  # (chunk, n_times)
        conv = signal.fftconvolve(env, hrf[np.newaxis].astype(env.dtype), mode="full", axes=-1)
        conv = conv[:, :n_keep]  # causal part: output t uses env[t - k], k >= 0
        bold[start:stop] = conv.reshape(stop - start, n_trs, n_per_tr).mean(axis=-1)
    return bold

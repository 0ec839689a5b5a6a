"""The haemodynamic side of the forward model: canonical HRF and TR sampling (numpy).

A bottom-level module (numpy/scipy only). It turns cortical source activity ``s(t)`` sampled
at ``sfreq`` Hz into source-level BOLD sampled once per TR, following the fMRI head of the
MEG-fMRI encoding model (paper §2.2)::

    p(t) = |s(t) + j H(s)(t)|                (envelope, :mod:`neurofuse.physics.envelope`)
    b(t) = (hrf * p)(t)                      (causal convolution at sfreq, SPM canonical HRF)
    y[k] = mean of b over [k TR, (k+1) TR)   (one value per volume)

The order of HRF convolution and TR averaging
---------------------------------------------
:func:`make_bold` (the simulators' ground truth) convolves at ``sfreq`` and then averages
each TR: a volume integrates the continuous BOLD signal over its TR. The joint model's fMRI
head (:class:`~neurofuse.systems.joint.heads.FMRIHead`, torch) averages the envelope over each TR
first and convolves at the TR with a kernel sampled every TR (:func:`spm_hrf` at
``1 / tr``), which is ``tr * sfreq`` times cheaper and what its learnable HRF
(:class:`~neurofuse.physics.torch_ops.DoubleGammaHRF`) parameterises. Both steps are linear,
and they commute exactly when the kernel only has taps at whole TRs
(:func:`convolve_hrf` of :func:`tr_mean` = :func:`tr_mean` of :func:`convolve_hrf` with the
kernel zero-stuffed to ``sfreq``). For an envelope that is constant within each TR the
convolve-first order equals the average-first order with the kernel :func:`tr_kernel`
(the ``sfreq`` kernel smoothed by the two TR boxes), so the two orders differ by at most
``||tr_kernel(h, n) - spm_hrf(1 / tr)||_1 * max|p|`` there (``tests/physics/test_hrf.py``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal
from scipy.special import gammaln

from .._checks import (
    _check_finite,
    _check_int,
    _check_ndim,
    _check_positive,
    _check_type,
)
from .._logging import logger
from .envelope import envelope

__all__ = ["convolve_hrf", "make_bold", "spm_hrf", "tr_kernel", "tr_mean"]

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


def convolve_hrf(x, hrf):
    """Causal convolution along the last axis: ``out[..., t] = sum_k hrf[k] x[..., t - k]``.

    The signal before the first sample is taken as zero; the output has the input's length.

    Parameters
    ----------
    x : array, shape (..., n_times)
    hrf : array, shape (n_taps,)
        The kernel at the sampling rate of ``x`` (e.g. :func:`spm_hrf`).

    Returns
    -------
    out : array, shape (..., n_times)
        In the dtype of ``x`` (float32 or float64).
    """
    x = np.asarray(x)
    hrf = np.asarray(hrf, x.dtype).reshape((1,) * (x.ndim - 1) + (-1,))
    conv = signal.fftconvolve(x, hrf, mode="full", axes=-1)
    return conv[..., :x.shape[-1]]  # causal part: output t uses x[t - k], k >= 0


def tr_mean(x, n_per_tr):
    """Block average over each TR along the last axis (samples after the last full TR dropped).

    Parameters
    ----------
    x : array, shape (..., n_times)
    n_per_tr : int
        Samples per TR.

    Returns
    -------
    y : array, shape (..., n_times // n_per_tr)
        ``y[..., k] = mean(x[..., k * n_per_tr:(k + 1) * n_per_tr])``.
    """
    n_per_tr = _check_int("n_per_tr", n_per_tr, 1)
    x = np.asarray(x)
    n_trs = x.shape[-1] // n_per_tr
    return x[..., :n_trs * n_per_tr].reshape(*x.shape[:-1], n_trs, n_per_tr).mean(axis=-1)


def tr_kernel(hrf, n_per_tr):
    """The TR-rate kernel equal to "convolve at sfreq, then TR-average" for TR-constant input.

    If ``p`` is constant within each TR (``p = repeat(P, n_per_tr)``), then
    ``tr_mean(convolve_hrf(p, hrf), n) == convolve_hrf(P, tr_kernel(hrf, n))`` (to
    rounding), with ``H[d] = (1 / n) sum_{u, v = 0}^{n - 1} hrf[d n + u - v]``: the kernel
    smoothed by the triangle of two TR boxes and sampled every TR.

    Parameters
    ----------
    hrf : array, shape (n_taps,)
        The kernel at the sampling rate (``hrf[k]``: ``k`` samples after the impulse).
    n_per_tr : int
        Samples per TR.

    Returns
    -------
    kernel : array, shape (ceil((n_taps + n_per_tr - 1) / n_per_tr),)
        Same sum as ``hrf``.
    """
    n = _check_int("n_per_tr", n_per_tr, 1)
    hrf = np.asarray(hrf, np.float64)
    tri = np.convolve(np.ones(n), np.ones(n))  # (2n - 1,): #(u, v) with u - v = j - (n - 1)
    smooth = np.convolve(hrf, tri) / n  # index m <-> lag m - (n - 1)
    n_out = -(-(len(hrf) + n - 1) // n)
    smooth = np.concatenate([smooth, np.zeros(n_out * n + n - 1 - len(smooth))])
    return smooth[n - 1::n][:n_out]


def make_bold(sources, sfreq, tr, *, hrf_kwargs=None, hrf_labels=None, chunk_size=512):
    """Source-level BOLD from source activity: envelope -> HRF -> one value per TR.

    For each source: the envelope (:func:`~neurofuse.physics.envelope.envelope`) of its
    time course is convolved causally with :func:`spm_hrf` at ``sfreq``
    (:func:`convolve_hrf`: ``b(t) = sum_k hrf[k] p(t - k)``, the signal before ``t = 0``
    taken as zero) and then block-averaged over each TR window (:func:`tr_mean`):
    ``bold[:, k] = mean(b[:, k*n:(k+1)*n])`` with ``n = tr * sfreq`` samples. Value ``k``
    is thus the volume acquired during ``[k TR, (k+1) TR)``, time-stamped ``k * TR``
    (its acquisition start, as nilearn's ``frame_times`` and BIDS ``onset`` do). A block
    average rather than point sampling, because a volume integrates the signal over the
    TR and it removes aliasing of the (slow, but not band-limited) envelope. Samples
    after the last complete TR are dropped. (Convolving before averaging is a choice: see
    the module docstring for the other order and how far apart the two are.)

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
        ``length``, ``dispersion``, ``undershoot_dispersion``); with ``hrf_labels``, a list
        of such dicts (or None), one HRF per label.
    hrf_labels : array of int, shape (n_sources,) | None
        HRF of each source, an index into the list ``hrf_kwargs`` (e.g. one HRF per region);
        None: one HRF for all sources.
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
    if hrf_labels is not None:
        return _make_bold_labelled(sources, sfreq, tr, hrf_kwargs, hrf_labels, chunk_size)
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
    for start in range(0, n_sources, chunk_size):
        stop = min(start + chunk_size, n_sources)
        block = sources[start:stop]
        if not np.isfinite(block).all():
            _check_finite("sources", sources)  # reports the index in the whole array
        env = envelope(block, axis=-1)  # (chunk, n_times)
        bold[start:stop] = tr_mean(convolve_hrf(env, hrf), n_per_tr)  # (chunk, n_trs)
    return bold


def _make_bold_labelled(sources, sfreq, tr, hrf_kwargs, hrf_labels, chunk_size):
    """:func:`make_bold` with the HRF ``hrf_kwargs[hrf_labels[i]]`` for source ``i``."""
    if not isinstance(hrf_kwargs, (list, tuple)) or not hrf_kwargs:
        raise TypeError("With 'hrf_labels', 'hrf_kwargs' must be a non-empty list of dicts "
                        f"(one HRF per label), got {type(hrf_kwargs).__name__}.")
    labels = np.asarray(hrf_labels)
    if labels.shape != (sources.shape[0],) or not np.issubdtype(labels.dtype, np.integer) or (
            labels.size and (labels.min() < 0 or labels.max() >= len(hrf_kwargs))):
        raise ValueError(
            f"'hrf_labels' must be ints in [0, {len(hrf_kwargs)}) (indices into 'hrf_kwargs'), "
            f"shape ({sources.shape[0]},), got shape {labels.shape}, dtype {labels.dtype}."
        )
    out_dtype = np.float32 if sources.dtype == np.float32 else np.float64
    n_trs = sources.shape[1] // _samples_per_tr(sfreq, tr)
    bold = np.empty((sources.shape[0], n_trs), dtype=out_dtype)
    for lab in np.unique(labels):
        rows = np.flatnonzero(labels == lab)
        bold[rows] = make_bold(np.asarray(sources[rows]), sfreq, tr, hrf_kwargs=hrf_kwargs[lab],
                               chunk_size=chunk_size)
    return bold

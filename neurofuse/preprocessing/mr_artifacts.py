"""EEG recorded inside an MR scanner: is the gradient artefact still there?

Switching the MR gradients induces, in every EEG lead, a voltage that repeats with each
slice and each volume, 10-1000 times larger than the EEG. When the EEG and scanner clocks
are synchronised (as simultaneous EEG–fMRI systems do), the artefact is periodic with the
repetition time TR, so its spectrum is a comb of lines at the harmonics ``k / TR`` (the
slice frequency ``n_slices / TR`` is one of them). Removed well (average artefact
subtraction, AAS, and its variants), the comb is gone.

:func:`gradient_artifact_score` measures that comb: the *TR-harmonic contrast*, for each
channel the median, over the harmonics ``k / TR`` in ``[fmin, fmax]`` (those within 1 Hz of
a power-line harmonic left out), of the power at the harmonic's frequency bin over the mean
power of the bins between harmonics (at least 2 bins away from either), from a Welch
spectrum whose resolution ``1 / (n_trs_per_segment * TR)`` puts ``n_trs_per_segment``
bins between harmonics; the score of a recording is the median over its channels.

Without a TR-periodic component the two powers estimate the same smooth spectrum, so the
contrast is about 1 (white or 1/f noise, alpha rhythms, event-related potentials that are not
TR-locked, power-line noise); an uncorrected gradient artefact gives contrasts of 10^2-10^6.
:data:`GRADIENT_THRESHOLD` (3) flags EEG whose harmonic bins hold at least three times the
power of their neighbours in half the harmonics and half the channels. The score does not
depend on the scale of the data.

Functions of arrays and rates only; the EEG–fMRI loader
(:mod:`neurofuse.data.datasets.ds000116`) calls :func:`check_gradient_artifact` on every
recording before anything is written.
"""

from __future__ import annotations

import math

import numpy as np

from .._checks import _check_int, _check_ndim, _check_positive

__all__ = ["GRADIENT_THRESHOLD", "check_gradient_artifact", "gradient_artifact_score"]

#: Default refusal threshold on the TR-harmonic contrast (clean EEG: about 1).
GRADIENT_THRESHOLD = 3.0
#: Harmonics within this distance (Hz) of a power-line harmonic are left out.
LINE_EXCLUSION_HZ = 1.0


def _harmonic_bins(tr, sfreq, nperseg, n_freqs, fmin, fmax, line_freqs):
    """Bin of each usable harmonic ``k / tr`` and its reference bins (between harmonics)."""
    df = sfreq / nperseg
    spacing = (1.0 / tr) / df                              # bins between harmonics
    lines = [n * lf for lf in line_freqs for n in range(1, int(fmax / lf) + 2)]
    out = []
    k = max(1, math.ceil(fmin * tr - 1e-9))
    while k / tr <= fmax + 1e-9:
        f = k / tr
        if all(abs(f - line) > LINE_EXCLUSION_HZ for line in lines):
            centre = int(round(f / df))
            ref = [int(round(centre + j)) for j in np.arange(2, spacing - 1.5)]
            ref = [b for b in ref if b < n_freqs]
            if centre < n_freqs and ref:
                out.append((f, centre, ref))
        k += 1
    return out


def gradient_artifact_score(data, sfreq, tr, *, fmin=8.0, fmax=None, line_freqs=(50.0, 60.0),
                            n_trs_per_segment=8, channel_block=16):
    """The TR-harmonic contrast of EEG: how much of a comb at ``k / TR`` it carries.

    Parameters
    ----------
    data : array, shape (n_channels, n_times)
        EEG at its recorded rate, during the scan (from the first volume on), before any
        resampling (a low-pass filter keeps the contrast; decimation folds the comb).
    sfreq : float
        Sampling rate of ``data``, Hz.
    tr : float
        Repetition time of the fMRI, s.
    fmin, fmax : float | None
        Harmonics tested, Hz; ``fmax`` default ``0.45 * sfreq``. The gradient artefact is
        strongest above the slice frequency; below ``fmin`` ERPs and drifts dominate.
    line_freqs : tuple of float
        Power-line frequencies whose harmonics (± 1 Hz) are left out.
    n_trs_per_segment : int
        Welch segment length in TRs (the number of frequency bins between harmonics; >= 4).
        Shorter recordings use as many whole TRs as they hold (at least 4).
    channel_block : int
        Channels per Welch call (bounds memory for long, fast recordings).

    Returns
    -------
    result : dict
        ``score`` (float, the median over channels), ``per_channel`` (array, shape
        (n_channels,), each channel's median contrast over harmonics), ``frequencies``
        (array, shape (n_harmonics,), Hz), ``per_harmonic`` (array, shape (n_harmonics,), the
        median contrast over channels at each harmonic), ``n_segments`` (int), ``resolution``
        (float, Hz).

    Raises
    ------
    ValueError
        Fewer than 4 TRs of data, or no harmonic in ``[fmin, fmax]``.
    """
    from scipy.signal import welch

    data = _check_ndim("data", np.asarray(data), 2, "(n_channels, n_times)")
    sfreq = _check_positive("sfreq", sfreq)
    tr = _check_positive("tr", tr)
    n_trs_per_segment = _check_int("n_trs_per_segment", n_trs_per_segment, minimum=4)
    channel_block = _check_int("channel_block", channel_block)
    fmax = 0.45 * sfreq if fmax is None else _check_positive("fmax", fmax)
    fmin = _check_positive("fmin", fmin, allow_zero=True)
    n_times = data.shape[1]
    whole_trs = int(n_times / (tr * sfreq) + 1e-9)
    n_seg_trs = min(n_trs_per_segment, whole_trs)
    if n_seg_trs < 4:
        raise ValueError(f"The gradient-artefact check needs at least 4 TRs of EEG "
                         f"({4 * tr:g} s at TR {tr:g} s), got {n_times / sfreq:.3f} s.")
    nperseg = int(round(n_seg_trs * tr * sfreq))
    n_freqs = nperseg // 2 + 1
    bins = _harmonic_bins(tr, sfreq, nperseg, n_freqs, fmin, min(fmax, sfreq / 2), line_freqs)
    if not bins:
        raise ValueError(f"No harmonic of 1/TR = {1 / tr:g} Hz lies in [fmin, fmax] = "
                         f"[{fmin:g}, {fmax:g}] Hz away from the line frequencies "
                         f"{list(line_freqs)}; widen the band.")
    centres = np.array([c for _, c, _ in bins])
    contrast = np.empty((data.shape[0], len(bins)))
    for start in range(0, data.shape[0], channel_block):
        block = np.asarray(data[start:start + channel_block], dtype=np.float64)
        _, psd = welch(block, fs=sfreq, window="hann", nperseg=nperseg,
                       noverlap=nperseg // 2, detrend="constant", axis=-1)  # (C, F)
        ref = np.stack([psd[:, r].mean(-1) for _, _, r in bins], axis=-1)  # (C, H)
        tiny = np.finfo(np.float64).tiny
        contrast[start:start + channel_block] = psd[:, centres] / np.maximum(ref, tiny)
    per_channel = np.median(contrast, axis=1)
    n_segments = 1 + (n_times - nperseg) // (nperseg - nperseg // 2)
    return {"score": float(np.median(per_channel)), "per_channel": per_channel,
            "frequencies": np.array([f for f, _, _ in bins]),
            "per_harmonic": np.median(contrast, axis=0), "n_segments": int(n_segments),
            "resolution": sfreq / nperseg}


def check_gradient_artifact(data, sfreq, tr, *, threshold=GRADIENT_THRESHOLD, what="the EEG",
                            ch_names=None, **kwargs):
    """Refuse EEG that still carries the MR gradient artefact (see the module notes).

    Parameters
    ----------
    data : array, shape (n_channels, n_times)
        EEG during the scan, at its recorded rate.
    sfreq, tr : float
        Sampling rate (Hz) and repetition time (s).
    threshold : float
        Largest accepted score (:data:`GRADIENT_THRESHOLD`); ``inf`` accepts everything.
    what : str
        The recording, for the message (e.g. its file name).
    ch_names : list of str | None
        Channel names, to name the worst channels in the message.
    **kwargs
        Passed to :func:`gradient_artifact_score`.

    Returns
    -------
    result : dict
        As :func:`gradient_artifact_score`.

    Raises
    ------
    ValueError
        ``score > threshold``: the message gives the score, the threshold, the strongest
        harmonics and channels, and the fix.
    """
    threshold = _check_positive("threshold", threshold, allow_inf=True)
    result = gradient_artifact_score(data, sfreq, tr, **kwargs)
    if result["score"] > threshold:
        order = np.argsort(result["per_harmonic"])[::-1][:3]
        peaks = ", ".join(f"{result['frequencies'][i]:g} Hz: {result['per_harmonic'][i]:.3g}"
                          for i in order)
        worst = np.argsort(result["per_channel"])[::-1][:3]
        names = [ch_names[i] if ch_names is not None else str(i) for i in worst]
        chans = ", ".join(f"{n}: {result['per_channel'][i]:.3g}" for n, i in zip(names, worst))
        raise ValueError(
            f"{what} still carries the MR gradient artefact: its spectrum has a comb at the "
            f"harmonics of 1/TR = {1 / tr:g} Hz (TR-harmonic contrast, the median over "
            f"channels of each channel's median power ratio between harmonic bins and the bins "
            f"between them, = {result['score']:.3g} > threshold {threshold:g}; clean EEG gives "
            f"about 1). Strongest harmonics {peaks}; channels {chans}. Remove the gradient "
            "artefact (average artefact subtraction, e.g. EEGLAB's FMRIB plug-in or "
            "BrainVision Analyzer's MR correction) and the ballistocardiogram first, save the "
            "cleaned EEG in BIDS (e.g. under derivatives/) and load that; if the comb is not a "
            "gradient artefact (e.g. stimulation locked to the TR), raise "
            "'gradient_threshold'.")
    return result

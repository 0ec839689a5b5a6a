"""iEEG signal processing on arrays: common average reference, line notch, high-gamma envelope.

Functions of arrays and sampling rates only (no dataset layout): the dataset loaders
(:mod:`neurofuse.data.datasets.podcast`) read the recordings and call these.

* :func:`resample_from_onset` — polyphase resampling so that output sample ``k`` lies at
  ``onset + k / sfreq_out`` (MNE's ``Raw.resample`` convention);
* :func:`filter_block` — notch at the line frequency and its 2nd and 3rd harmonics, then, for
  ``"highgamma"``, a 4th-order Butterworth band-pass and the Hilbert envelope (the recipe of
  the ds005574 tutorial ``02-preprocessing``);
* :func:`extract_signal` — the common average reference over the given channels, then
  :func:`filter_block` and :func:`resample_from_onset` block by block (bounded memory).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from .._logging import progress_enabled
from ..physics.envelope import envelope

__all__ = ["BLOCK", "extract_signal", "filter_block", "resample_from_onset", "resample_ratio"]

#: Channels processed at once (memory: BLOCK x n_samples x 8 bytes x ~3).
BLOCK = 16


def resample_ratio(sfreq_in, sfreq_out, duration):
    """(up, down) with up / down = sfreq_out / sfreq_in, exact enough over ``duration``.

    Parameters
    ----------
    sfreq_in, sfreq_out : float
        Rates in Hz.
    duration : float
        Seconds of signal; the rational ratio may drift at most 0.1 output sample over it.

    Returns
    -------
    up, down : int
    """
    frac = Fraction(sfreq_out / sfreq_in).limit_denominator(100000)
    drift = abs(frac.numerator / frac.denominator - sfreq_out / sfreq_in) * sfreq_in * duration
    if drift > 0.1:
        raise ValueError(f"Wrong sampling rate: cannot resample {sfreq_in:g} Hz to "
                         f"{sfreq_out:g} Hz by a rational factor without drifting {drift:.2f} "
                         "output samples over the recording. Resample the recording first.")
    return frac.numerator, frac.denominator


def resample_from_onset(data, sfreq_in, sfreq_out, onset_sample, n_out=None, *,
                        margin=1.0) -> np.ndarray:
    """Resample a signal so that output sample ``k`` lies at ``onset + k / sfreq_out``.

    Polyphase resampling (:func:`scipy.signal.resample_poly`, which low-passes at the lower
    Nyquist frequency) of a span that starts a whole number of resampling periods (``down``
    input samples) before the onset, at most ``margin`` seconds, so that the onset falls on an
    output sample and the filter's start-up lies before it.

    Parameters
    ----------
    data : array, shape (n_channels, n_samples)
    sfreq_in, sfreq_out : float
        Rates in Hz.
    onset_sample : int
        Input sample of the onset (output sample 0).
    n_out : int | None
        Output samples wanted; at most as many as the recording holds after the onset.
    margin : float
        Seconds of signal before the onset (and after the end) given to the filter.

    Returns
    -------
    out : array, shape (n_channels, n_available), float64
        ``n_available = min(n_out, floor((n_samples - onset_sample) * sfreq_out / sfreq_in))``.
    """
    from scipy.signal import resample_poly

    data = np.asarray(data)
    n_in = data.shape[-1]
    onset_sample = int(onset_sample)
    if not 0 <= onset_sample < n_in:
        raise ValueError(f"The onset sample {onset_sample} lies outside the {n_in} samples.")
    up, down = resample_ratio(float(sfreq_in), float(sfreq_out), n_in / float(sfreq_in))
    n_avail = (n_in - onset_sample) * up // down
    n_out = n_avail if n_out is None else min(int(n_out), n_avail)
    pad = math.ceil(margin * sfreq_in / down)
    q = min(onset_sample // down, pad)
    start = onset_sample - q * down
    stop = min(n_in, onset_sample + math.ceil(n_out * down / up) + pad * down)
    out = resample_poly(data[..., start:stop].astype(np.float64), up, down, axis=-1)
    return out[..., q * up:q * up + n_out]


def filter_block(x, sfreq, *, signal, band, line_freq):
    """Notch (+ band-pass + envelope) one block of re-referenced channels.

    Parameters
    ----------
    x : array, shape (n_channels, n_samples), float64
    sfreq : float
        Rate of ``x`` in Hz.
    signal : "highgamma" | "broadband"
        ``"highgamma"`` adds the band-pass and the Hilbert envelope after the notch.
    band : (float, float)
        Band-pass edges in Hz (``"highgamma"`` only).
    line_freq : float
        Line frequency in Hz; it and its 2nd and 3rd harmonics below ``sfreq / 2 - 1`` are
        notched (MNE's FIR notch, ``notch_widths=2``).

    Returns
    -------
    x : array, shape (n_channels, n_samples), float64
    """
    import mne

    freqs = [line_freq * m for m in range(1, 4) if line_freq * m < sfreq / 2 - 1.0]
    if freqs:
        x = mne.filter.notch_filter(x, sfreq, freqs, notch_widths=2, verbose="error")
    if signal == "highgamma":
        x = mne.filter.filter_data(x, sfreq, band[0], band[1], method="iir",
                                   iir_params={"order": 4, "ftype": "butter"}, verbose="error")
        x = envelope(x, axis=-1, n_fft="fast")  # FFT length as MNE's apply_hilbert
    return x


def extract_signal(read, picks, n_times, *, sfreq_in, line_freq, signal, band, sfreq,
                   onset_sample, n_out, desc=None, block=BLOCK):
    """Common average reference over ``picks``, then per block the signal, then resampling.

    Parameters
    ----------
    read : callable
        ``read(channels)`` returns the recording of those channels, array of shape
        (len(channels), n_times); called twice per block (mean, then signal).
    picks : list of str
        Channels to process; the common average is taken over all of them.
    n_times : int
        Samples of the recording.
    sfreq_in : float
        Rate of the recording in Hz.
    line_freq : float
        Line frequency in Hz (see :func:`filter_block`).
    signal, band
        See :func:`filter_block`.
    sfreq : float
        Output rate in Hz.
    onset_sample, n_out
        See :func:`resample_from_onset`.
    desc : str | None
        Label of the progress bar.
    block : int
        Channels processed at once.

    Returns
    -------
    out : array, shape (len(picks), n_available), float32
    """
    from tqdm.auto import tqdm

    blocks = [picks[i:i + block] for i in range(0, len(picks), block)]
    mean = np.zeros(n_times)
    for chans in blocks:
        mean += read(chans).sum(axis=0)
    mean /= len(picks)
    out = []
    for chans in tqdm(blocks, desc=desc, leave=False, disable=not progress_enabled()):
        x = read(chans) - mean
        x = filter_block(x, sfreq_in, signal=signal, band=band, line_freq=line_freq)
        out.append(resample_from_onset(x, sfreq_in, sfreq, onset_sample, n_out))
    return np.concatenate(out).astype(np.float32)

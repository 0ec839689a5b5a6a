"""Step 2 of the MEG preprocessing: band-pass and power-line notch filters."""

from __future__ import annotations

import numpy as np

from ..._checks import _check_positive
from ..._logging import logger, verbose
from .settings import MEGPreprocessing, _check_raw

__all__ = ["apply_filters", "line_noise_freqs"]


def line_noise_freqs(line_freq: float, h_freq: float, sfreq: float | None = None) -> list:
    """Power-line frequency and harmonics up to ``h_freq`` and below ``sfreq / 2``.

    Parameters
    ----------
    line_freq : float
        Mains frequency in Hz.
    h_freq : float
        Upper edge of the band-pass in Hz: line noise above it is removed by the low-pass.
    sfreq : float | None
        Sampling rate in Hz of the data to filter; harmonics at or above its Nyquist frequency
        are left out (a notch there cannot be designed).

    Returns
    -------
    freqs : list of float
        E.g. 60 Hz, 150 Hz -> ``[60, 120]``; 60 Hz, 40 Hz -> ``[]``.
    """
    line_freq = _check_positive("line_freq", line_freq)
    n = int(np.floor(h_freq / line_freq + 1e-9))
    freqs = [line_freq * k for k in range(1, n + 1)]
    if sfreq is not None:
        freqs = [f for f in freqs if f < sfreq / 2]
    return freqs


def _filter_picks(raw):
    import mne

    return mne.pick_types(raw.info, meg=True, ref_meg=True, eeg=True, eog=True, ecg=True,
                          misc=True, stim=False, exclude=())


@verbose
def apply_filters(raw, config=None, *, verbose=None):
    """Band-pass and notch-filter MEG and auxiliary channels in place (step 2).

    The MEG, EOG, ECG and misc (audio) channels get the same zero-phase FIR filters, so an
    audio channel stays comparable with the MEG; the trigger channel is left untouched.

    Parameters
    ----------
    raw : mne.io.Raw
        Preloaded recording, modified in place.
    config : MEGPreprocessing | dict | None

    Returns
    -------
    raw : mne.io.Raw
        The same object.
    report : dict
        ``band_pass`` [l_freq, h_freq] and ``notch`` (list of Hz).
    """
    config = MEGPreprocessing.resolve(config)
    _check_raw(raw)
    if not raw.preload:
        raw.load_data(verbose="error")
    sfreq = config.check_sfreq(raw.info["sfreq"])
    line = config.line_freq
    if line == "auto":
        line = raw.info.get("line_freq")
        if line is None:
            raise ValueError(
                "The power-line frequency is unknown: raw.info['line_freq'] is not set (BIDS "
                "sidecars give it as PowerLineFrequency). Set line_freq = 60 (or 50) in the "
                "preprocessing settings, or line_freq = 0 (None) for no notch.")
        line = line or None  # PowerLineFrequency 0: no mains
    notch = [] if line is None else line_noise_freqs(line, config.h_freq, sfreq)
    picks = _filter_picks(raw)
    if notch:  # MNE's notch_filter fails on an empty list
        raw.notch_filter(notch, picks=picks, n_jobs=config.n_jobs, verbose="error")
    raw.filter(config.l_freq, config.h_freq, picks=picks, n_jobs=config.n_jobs, verbose="error")
    if line is None:
        why = "line_freq is off"
    elif not notch:
        why = (f"{line:g}-Hz mains lie above the low-pass h_freq={config.h_freq:g} Hz or the "
               f"Nyquist frequency ({sfreq / 2:g} Hz)")
    logger.info("Band-pass %g-%g Hz, notch at %s", config.l_freq, config.h_freq,
                ", ".join(f"{f:g}" for f in notch) + " Hz" if notch else f"none ({why})")
    return raw, {"band_pass": [config.l_freq, config.h_freq], "notch": notch,
                 "line_freq": None if line is None else float(line)}

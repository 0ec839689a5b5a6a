"""Step 2 of the MEG preprocessing: band-pass and power-line notch filters."""

from __future__ import annotations

import numpy as np

from ..._checks import _check_positive
from ..._logging import logger, verbose
from .settings import MEGPreprocessing, _check_raw

__all__ = ["apply_filters", "line_noise_freqs"]


def line_noise_freqs(line_freq: float, h_freq: float) -> list:
    """Power-line frequency and harmonics up to ``h_freq`` (60 Hz, 150 Hz -> [60, 120])."""
    line_freq = _check_positive("line_freq", line_freq)
    n = int(np.floor(h_freq / line_freq + 1e-9))
    return [line_freq * k for k in range(1, n + 1)]


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
                "sidecars give it as PowerLineFrequency). Pass line_freq=60 (or 50) in the "
                "preprocessing settings.")
    notch = [f for f in line_noise_freqs(line, config.h_freq) if f < sfreq / 2]
    picks = _filter_picks(raw)
    raw.notch_filter(notch, picks=picks, n_jobs=config.n_jobs, verbose="error")
    raw.filter(config.l_freq, config.h_freq, picks=picks, n_jobs=config.n_jobs, verbose="error")
    logger.info("Band-pass %g-%g Hz, notch at %s Hz", config.l_freq, config.h_freq,
                ", ".join(f"{f:g}" for f in notch))
    return raw, {"band_pass": [config.l_freq, config.h_freq], "notch": notch,
                 "line_freq": float(line)}

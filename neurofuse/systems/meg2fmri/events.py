"""Where each event starts in the MEG and fMRI runs, and its MEG vector and time profile.

Steps 1-3 of the pairing (:mod:`neurofuse.systems.meg2fmri.pairing` explains them).
"""

from __future__ import annotations

import numpy as np

from ..._checks import _check_finite, _check_positive
from ..._logging import logger, verbose
from ...stats import zscore
from .config import PairingConfig

__all__ = ["event_indices", "meg_event_features", "pick_inputs"]


@verbose
def event_indices(onsets, *, sfreq, tr, n_times, n_trs, config=None, verbose=None):
    """MEG sample and fMRI volume where each event starts, and which events fit in the run.

    Parameters
    ----------
    onsets : array, shape (n_events,)
        Event onsets (s from the start of the run).
    sfreq : float
        MEG sampling rate (Hz).
    tr : float
        fMRI repetition time (s).
    n_times, n_trs : int
        Lengths of the MEG run (samples) and of the fMRI run (volumes).
    config : PairingConfig | None
    verbose : bool | str | int | None

    Returns
    -------
    sample : array of int, shape (n_events,)
        ``round(onset * sfreq)``, or ``int(onset)`` with ``onset_as_index``.
    volume : array of int, shape (n_events,)
        ``floor(onset / tr)``, or ``int(onset)`` with ``onset_as_index``.
    keep : array of bool, shape (n_events,)
        The epoch ``[sample, sample + n_samples)`` lies in ``[0, n_times)`` and the window
        ``[volume, volume + n_volumes)`` in ``[0, n_trs)``. ``events_per_run`` is not applied.
    """
    config = PairingConfig() if config is None else config
    onsets = _check_finite("onsets", np.asarray(onsets, np.float64).reshape(-1))
    sfreq, tr = _check_positive("sfreq", sfreq), _check_positive("tr", tr)
    if config.onset_as_index:
        sample = volume = np.trunc(onsets).astype(np.int64)
    else:
        sample = np.round(onsets * sfreq).astype(np.int64)
        volume = np.floor(onsets / tr + 1e-9).astype(np.int64)
    in_meg = (sample >= 0) & (sample + config.n_samples <= n_times)
    in_fmri = (volume >= 0) & (volume + config.n_volumes <= n_trs)
    keep = in_meg & in_fmri
    if not keep.all():
        logger.info("Dropped %d of %d events: %d with the %d-sample MEG epoch outside the "
                    "%d-sample run, %d with the %d-volume fMRI window outside the %d-volume "
                    "run (events are never wrapped or padded).", (~keep).sum(), len(keep),
                    (~in_meg).sum(), config.n_samples, n_times, (~in_fmri).sum(),
                    config.n_volumes, n_trs)
    return sample, volume, keep


def meg_event_features(meg, sample, config=None):
    """The MEG vector and time profile of each event (steps 2 and 3 of the module notes).

    Parameters
    ----------
    meg : array, shape (n_channels, n_times)
        The run's MEG (the input channels only).
    sample : array of int, shape (n_events,)
        First sample of each epoch (every epoch inside the run).
    config : PairingConfig | None

    Returns
    -------
    features : array, shape (n_events, n_channels)
        The reduced epoch, z-scored across channels (float64).
    profiles : array, shape (n_events, n_samples)
        The channel mean of each z-scored epoch.
    """
    config = PairingConfig() if config is None else config
    meg = _check_finite("meg", np.asarray(meg))
    if meg.ndim != 2:
        raise ValueError(f"'meg' must have shape (n_channels, n_times), got {meg.shape}.")
    sample = np.asarray(sample, np.int64).reshape(-1)
    if len(sample) and (sample.min() < 0 or sample.max() + config.n_samples > meg.shape[1]):
        raise ValueError(f"Every epoch of {config.n_samples} samples must lie inside the run "
                         f"of {meg.shape[1]} samples; got first samples {sample.min()} to "
                         f"{sample.max()}.")
    meg_z = zscore(meg, axis=1)  # per channel over the run
    epochs = meg_z[:, sample[:, None] + np.arange(config.n_samples)]  # (C, E, T)
    epochs = np.moveaxis(epochs, 1, 0)  # (E, C, T)
    reduced = epochs.mean(axis=2) if config.reduce == "mean" else epochs[:, :, 0]
    return zscore(reduced, axis=1), epochs.mean(axis=1)


def pick_inputs(info, picks, n_channels):
    """Row indices of the input channels of a MEG array.

    Parameters
    ----------
    info : mne.Info | None
        Channel info of the array (``None``: unknown, the rows are taken as given).
    picks : ``"meg"`` | ``"all"`` | tuple of str
        As :attr:`PairingConfig.picks`: ``"meg"`` picks magnetometers and gradiometers
        (``mne.pick_types(meg=True, ref_meg=False)``, bad channels included); names and
        types pick those channels, in the recording's order.
    n_channels : int
        Rows of the array.

    Returns
    -------
    idx : array of int | None
        Row indices, or ``None`` when ``info`` is None and ``picks`` is not ``"all"``.
    """
    if picks == "all":
        return np.arange(n_channels)
    if info is None:
        return None
    if len(info["ch_names"]) != n_channels:
        raise ValueError(f"'info' has {len(info['ch_names'])} channels but 'meg' has "
                         f"{n_channels} rows; give the info of this recording.")
    import mne

    if picks == "meg":
        idx = mne.pick_types(info, meg=True, ref_meg=False, exclude=[])
    else:
        names, types = info["ch_names"], info.get_channel_types()
        idx = []
        for p in picks:
            hits = [names.index(p)] if p in names else [i for i, t in enumerate(types) if t == p]
            if not hits:
                raise ValueError(f"'picks' entry {p!r} is neither a channel name nor a channel "
                                 f"type of the recording (types: {sorted(set(types))}).")
            idx += hits
        idx = np.array(sorted(set(idx)))
    if not len(idx):
        raise ValueError(f"'picks'={picks!r} selects no channel of the recording.")
    return np.asarray(idx)

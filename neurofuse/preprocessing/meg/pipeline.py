"""The whole MEG preprocessing of the paper (§2.4): :func:`preprocess_meg`."""

from __future__ import annotations

import numpy as np

from ..._logging import logger, verbose
from .filters import apply_filters
from .ica import apply_ica
from .maxwell import apply_maxwell, maxwell_history
from .settings import MEGPreprocessing, _check_raw

__all__ = ["preprocess_meg"]


@verbose
def preprocess_meg(raw, *, config=None, audio=None, destination=None, verbose=None):
    """Run the paper's MEG preprocessing: tSSS, filters, ICA, downsampling (§2.4).

    Parameters
    ----------
    raw : mne.io.Raw
        A recording with MEG channels (and ideally EOG, ECG, an audio channel and a trigger
        channel), at its acquisition rate. It is not modified.
    config : MEGPreprocessing | dict | path-like | None
        Settings; ``None`` uses the paper's.
    audio : array, shape (n_times,) | str | None
        Stimulus audio for the audio-locked ICA criterion: an array aligned with ``raw`` at
        its rate (NaN where no stimulus played) or a channel name; see
        :func:`~neurofuse.preprocessing.meg.apply_ica`.
    destination : array, shape (4, 4) | path-like | None
        Common head position for SSS (see :func:`~neurofuse.preprocessing.meg.apply_maxwell`).
    verbose : bool | str | int | None

    Returns
    -------
    raw : mne.io.Raw
        The cleaned recording at ``config.sfreq`` (50 Hz), all channels kept; annotations
        are carried over (their onsets are in seconds, unaffected by resampling).
    report : dict
        What each step did and removed: ``sfreq_in``, ``sfreq_out``, ``maxwell``
        (bad channels, origin; ``None`` when off or skipped, with ``maxwell_skipped`` saying
        what was found in ``proc_history``), ``filters`` (band-pass, notch), ``ica`` (components removed
        per artifact and their scores). JSON-serialisable.

    Notes
    -----
    A recording that was already Maxwell-filtered (MaxFilter, or MNE:
    :func:`~neurofuse.preprocessing.meg.maxwell_history`) skips tSSS with a warning even when
    ``config.maxwell`` is true; the report says so in ``maxwell_skipped``.
    The recording is preloaded into memory (about 2.5 GB for 12 minutes at 1 kHz).
    """
    import mne

    config = MEGPreprocessing.resolve(config)
    _check_raw(raw)
    sfreq_in = config.check_sfreq(raw.info["sfreq"])
    report = {"config": config.to_dict(), "sfreq_in": sfreq_in, "n_times_in": int(raw.n_times)}
    history = maxwell_history(raw.info)
    if config.maxwell and history is not None:
        logger.warning(
            "%s was already Maxwell-filtered (raw.info['proc_history'] records %s): tSSS is "
            "skipped (bad channels are interpolated instead, and the head is not moved to a "
            "common position). Set maxwell = false in the preprocessing settings to choose "
            "this explicitly.", _name(raw), history["description"])
        report["maxwell_skipped"] = history
    if config.maxwell and history is None:
        raw, report["maxwell"] = apply_maxwell(raw, config, destination=destination)
    else:
        raw = raw.copy().load_data(verbose="error")
        bads = [c for c in raw.info["bads"] if c in raw.ch_names]
        if bads:
            meg_bads = [c for c in bads if c in set(np.array(raw.ch_names)[
                mne.pick_types(raw.info, meg=True, ref_meg=False, exclude=())])]
            if meg_bads:
                raw.interpolate_bads(reset_bads=True, verbose="error")
        report["maxwell"] = None
        report["interpolated"] = bads
    raw, report["filters"] = apply_filters(raw, config)
    if config.ica:
        raw, report["ica"] = apply_ica(raw, config, audio=audio)
    else:
        report["ica"] = None
    stim = mne.pick_types(raw.info, meg=False, stim=True, exclude=())
    if len(stim):  # triggers cannot be resampled faithfully; onsets are found beforehand
        raw.drop_channels([raw.ch_names[p] for p in stim])
    raw.resample(config.sfreq, n_jobs=config.n_jobs, verbose="error")
    report["sfreq_out"] = float(raw.info["sfreq"])
    report["n_times_out"] = int(raw.n_times)
    return raw, report


def _name(raw):
    fnames = getattr(raw, "filenames", None) or [None]
    return f"'{fnames[0].name}'" if fnames[0] is not None else "The recording"

"""One MEG recording: preprocessed (with the story audio as the reference of audio-locked
artefacts), cut into its story presentations, and kept in the work folder."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np

from ...._io import atomic_dir, save_npy, write_json
from ...._logging import logger
from ....preprocessing.meg import epoch_stories, maxwell_history, preprocess_meg
from ..._prepare import read_json
from .._bids import read_raw_bids
from .layout import PURPOSE


def _resample_audio(waveform, audio_sfreq, sfreq):
    from scipy.signal import resample_poly

    ratio = Fraction(float(sfreq) / float(audio_sfreq)).limit_denominator(10000)
    return resample_poly(waveform, ratio.numerator, ratio.denominator)


def _audio_reference(raw, onsets, wavs):
    """The story audio placed at the onsets, at the raw rate; NaN where no story played."""
    from ....stimulus.audio import read_audio

    sfreq = raw.info["sfreq"]
    ref = np.full(raw.n_times, np.nan)
    cache = {}
    for story, onset in onsets:
        if story not in cache:
            cache[story] = _resample_audio(*read_audio(wavs[story][0]), sfreq)
        wave = cache[story]
        start = round(onset * sfreq)
        stop = min(start + wave.size, raw.n_times)
        ref[start:stop] = wave[: stop - start]
    return ref


def _process_recording(bp, plan, config, n_times, wavs, destination, dest_dir):
    """Preprocess one recording and save its epochs, info and report into ``dest_dir``."""
    import mne

    raw, _ = read_raw_bids(bp, purpose=PURPOSE, return_event_dict=True)
    onsets = plan["onsets"]
    cfg = config
    extra = {}
    history = maxwell_history(raw.info) if config.maxwell else None
    if history is not None:  # noted when planning; MaxFiltered data cannot take SSS again
        cfg = config = dataclasses.replace(config, maxwell=False)
    if config.maxwell:
        if config.calibration is None and bp.meg_calibration_fpath is not None:
            extra["calibration"] = str(bp.meg_calibration_fpath)
        if config.cross_talk is None and bp.meg_crosstalk_fpath is not None:
            extra["cross_talk"] = str(bp.meg_crosstalk_fpath)
        cfg = dataclasses.replace(config, **extra)
    audio = None
    if config.ica and config.audio_channel is None:
        audio = _audio_reference(raw, onsets, wavs)
    clean, report = preprocess_meg(raw, config=cfg, audio=audio, destination=destination)
    del raw
    epochs = epoch_stories(clean, onsets, n_times)
    picks = mne.pick_types(clean.info, meg=True, ref_meg=False, exclude=())
    info = mne.pick_info(clean.info, picks)
    with info._unlock():
        info["bads"] = []
    report["site_files"] = extra
    if history is not None:
        report["maxwell_skipped"] = history
    report["onsets"] = [[s, t] for s, t in onsets]
    ica = report.get("ica") or {}
    logger.info("%s: %d presentations; bad channels %s; ICA removed ocular %s, cardiac %s, "
                "audio %s", bp.fpath.name, len(onsets),
                sorted(set().union(*(report.get("maxwell") or {}).get("bad_channels", {})
                                   .values())) or "none",
                ica.get("ocular", "-"), ica.get("cardiac", "-"), ica.get("audio", "-"))
    with atomic_dir(dest_dir, overwrite=True, what="preprocessed recording") as tmp:
        for story, arr in epochs.items():
            save_npy(tmp / f"{story}.npy", arr, what="epochs")
        mne.io.write_info(tmp / "meg-info.fif", info)
        write_json(tmp / "result.json", {"key": plan["key"], "report": report,
                                         "stories": {s: int(a.shape[0]) for s, a in
                                                     epochs.items()}},
                   what="recording report")


def _cached_recording(dest_dir, key):
    result = read_json(dest_dir / "result.json")
    if result is None or result.get("key") != key:
        return None
    if not all((dest_dir / f"{s}.npy").is_file() for s in result["stories"]) \
            or not (dest_dir / "meg-info.fif").is_file():
        return None
    return result

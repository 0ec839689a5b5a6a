"""The "Podcast" ECoG dataset (Zada et al. 2025, OpenNeuro ds005574) into the ECoG dataset format.

:func:`prepare_podcast` reads the BIDS iEEG recordings of a local copy of ds005574, keeps the
good electrodes of the chosen types, extracts the high-gamma envelope (or the broadband
signal) at 50 Hz from the podcast onset, z-scores it, places the electrodes on the fsaverage
(MNI305) brain, computes the stimulus features of ``stimuli/podcast.wav`` and its word-level
transcript (:func:`neurofuse.stimulus.features_from_alignment`), and writes an ECoG dataset
(:func:`neurofuse.data.ecog.write_ecog_dataset`, ``docs/ecog.md``) that
``neurofuse joint ecog`` reads unchanged. ``docs/real-data-podcast.md`` says which files go where.

What neurofuse writes
---------------------
One story, ``"podcast"``, at ``sfreq`` (50 Hz). For every subject, every electrode that is

1. of a type in ``electrode_types`` in ``channels.tsv`` (default ``ECOG``), and ``good``;
2. in the ``electrodes.tsv`` of ``space`` with finite coordinates;
3. not flat over the story;

gets the signal: ``"highgamma"`` as the authors make it
(:mod:`~neurofuse.data.datasets.podcast.subject`) on the whole recording, processed in blocks of
channels (the common average is computed over all kept electrodes first), then cut at the
podcast onset and resampled to ``sfreq`` (polyphase, :func:`scipy.signal.resample_poly`, on
a span that starts a whole number of resampling periods before the onset, so output sample
``k`` lies exactly at ``onset + k / sfreq`` as in MNE's ``Raw.resample``, the MEG convention);
``"broadband"`` is the same without band-pass and envelope (common average reference, notch,
anti-alias low-pass of the resampler at ``sfreq / 2``); ``"ecogprep"`` resamples the
authors' derivative. Each electrode is then z-scored over the story (mean 0, s.d. 1; units
``"z"``). The story lasts the audio (``floor(duration * sfreq)`` frames), cut to the shortest
recording when a recording ends within ``tolerance`` seconds before the audio does.

Positions: :mod:`~neurofuse.data.datasets.podcast.electrodes`. What is read:
:mod:`~neurofuse.data.datasets.podcast.layout`.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import numpy as np

from ...._checks import _check_option, _check_positive, _check_type
from ...._docs import fill_doc
from ...._io import hash_arrays, hash_file
from ...._logging import logger, progress_enabled, verbose
from ....preprocessing.ieeg import BLOCK
from ....stats import zscore
from ..._prepare import (
    audio_duration,
    cached,
    check_feature_options,
    check_out,
    lm_id,
    lm_name,
    open_work_dir,
    signature,
    store_cached,
)
from ...ecog import EcogElectrodes, write_ecog_dataset
from .electrodes import _pial_distance_mm, _space_to_fsaverage_mm
from .layout import DEFAULT_SPACE, PODCAST_STORY, PODCAST_TASK, read_podcast_layout
from .subject import _MNE_TYPES, _plan_subject, _subject_signal
from .transcript import _check_coverage, _read_phones, read_transcript

#: Signals :func:`prepare_podcast` can extract.
SIGNALS = ("highgamma", "broadband", "ecogprep")
_WORK_MARKER = "neurofuse-podcast-work.json"
_CACHE_VERSION = 1


def _subject_key(sub, plan, *, signal, band, sfreq, n_out):
    path = plan["source"].filenames[0]
    return hash_arrays("podcast-ecog", _CACHE_VERSION, sub, signature(path), plan["picks"],
                       signal, list(band), sfreq, plan["onset_sample"], n_out,
                       plan["raw"].info.get("line_freq"), BLOCK)


def _check_band(band):
    _check_type("band", band, (list, tuple))
    if len(band) != 2:
        raise ValueError(f"'band' must be (low, high) in Hz, got {band!r}.")
    low, high = (_check_positive("band[0]", band[0]), _check_positive("band[1]", band[1]))
    if low >= high:
        raise ValueError(f"'band' must be (low, high) with low < high, got {band!r}.")
    return (low, high)


def _signal_label(signal, band):
    if signal == "highgamma":
        return (f"high-gamma envelope ({band[0]:g}-{band[1]:g} Hz Butterworth band-pass, "
                "Hilbert amplitude) after common average reference and line-noise notch; "
                "z-scored")
    if signal == "broadband":
        return "broadband (common average reference, line-noise notch, anti-alias low-pass); " \
               "z-scored"
    return "high-gamma envelope (ds005574 derivatives/ecogprep, 70-200 Hz); z-scored"


@verbose
@fill_doc
def prepare_podcast(root, out, *, subjects=None, signal="highgamma", band=(70, 200), sfreq=50.0,
                    language_model="gpt2", layer=7, context_tokens=20,
                    electrode_types=("ECOG",), space=DEFAULT_SPACE, onset="auto",
                    onset_event=None, task=PODCAST_TASK, audio=None, transcript=None,
                    phones=None, tolerance=2.0, max_gap=30.0, overwrite=False, work_dir=None,
                    keep_work=False, device=None, verbose=None) -> Path:
    """Turn the Podcast ECoG dataset (ds005574) into an ECoG dataset for ``neurofuse joint ecog``.

    See :mod:`~neurofuse.data.datasets.podcast.layout` for what is read, the docstring of
    :mod:`~neurofuse.data.datasets.podcast.prepare` for what is written, and why.

    Parameters
    ----------
    root : path-like
        The ds005574 folder (``sub-XX/ieeg/``, ``stimuli/``, optionally ``derivatives/``).
    %(out)s
    subjects : list of str | None
        ``"sub-01"`` or ``"01"``...; default every subject with a ``task`` recording.
    signal : "highgamma" | "broadband" | "ecogprep"
        What to extract: the high-gamma envelope of the raw recording (the authors' recipe),
        the broadband signal, or the authors' high-gamma derivative
        (``derivatives/ecogprep``).
    band : (float, float)
        Band-pass of ``"highgamma"`` in Hz (70-200, as the authors).
    sfreq : float
        Rate of the ECoG and of the features (50 Hz for neurofuse models).
    %(language_model)s
    %(layer_context_tokens)s
    electrode_types : sequence of str
        BIDS channel types to keep (``"ECOG"``, ``"SEEG"``, ``"DBS"``); default ECoG only.
    space : str
        BIDS space of the electrode positions (``"MNI152NLin2009aSym"``).
    onset : "auto" | float | dict of str to float
        Podcast onset in seconds from the first sample of each recording: ``"auto"`` takes
        it from the recording's ``events.tsv`` (see ``onset_event``), or 0 without one
        (ds005574's recordings start at the podcast onset).
    onset_event : str | None
        ``trial_type`` (or ``value``) of the onset event; needed when ``events.tsv`` has
        several events.
    task : str
        BIDS task label (``"podcast"``).
    audio, transcript : path-like | None
        Override ``stimuli/podcast.wav`` / ``stimuli/podcast_transcript.csv``.
    phones : path-like | None
        A phone alignment (TextGrid, or CSV/TSV with start, end, phone) for the phoneme
        stream; ``None`` leaves it at zero (with a warning).
    tolerance : float
        Seconds by which a recording may end before the audio; the story is then cut to the
        shortest recording. More is an error.
    max_gap : float
        Longest stretch in seconds without words allowed at the start, between words and at
        the end of the audio; more means the transcript does not cover the audio.
    %(overwrite)s
    %(work_dir)s
        Here: the signals of each subject and the features.
    %(keep_work)s
    %(device)s
    %(verbose_loader)s

    Returns
    -------
    out : Path
        The ECoG dataset; open it with :func:`neurofuse.data.ecog.read_ecog_dataset`.
    """
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    out = check_out(out, overwrite)  # before any work
    _check_option("signal", signal, SIGNALS)
    band = _check_band(band)
    sfreq = _check_positive("sfreq", sfreq)
    layer, context_tokens = check_feature_options(layer, context_tokens)
    tolerance = _check_positive("tolerance", tolerance, allow_zero=True)
    max_gap = _check_positive("max_gap", max_gap)
    electrode_types = [str(t).upper() for t in ([electrode_types] if isinstance(
        electrode_types, str) else _check_type("electrode_types", electrode_types,
                                               (list, tuple)))]
    for t in electrode_types:
        _check_option("electrode_types", t, list(_MNE_TYPES))
    if not electrode_types:
        raise ValueError("'electrode_types' is empty; give e.g. ('ECOG',).")
    _space_to_fsaverage_mm(np.zeros((1, 3)), _check_type("space", space, str))

    # ---------------------------------------------------------------- check everything first
    layout = read_podcast_layout(root, subjects=subjects, task=task, audio=audio,
                                 transcript=transcript)
    duration = audio_duration(layout.audio)
    n_audio = math.floor(duration * sfreq + 1e-9)
    words = read_transcript(layout.transcript)
    _check_coverage(words, duration, max_gap=max_gap, tol=1.0 / sfreq,
                    what=f"'{layout.audio.name}'")
    phone_list = None if phones is None else _read_phones(phones)
    plans = {}
    for sub in tqdm(layout.subjects, desc="checking recordings", leave=False,
                    disable=not progress_enabled()):
        plans[sub] = _plan_subject(layout, sub, signal=signal, band=band, sfreq=sfreq,
                                   electrode_types=electrode_types, space=space, onset=onset,
                                   onset_event=onset_event, n_audio=n_audio,
                                   tolerance=tolerance)
    n_times = min([n_audio] + [p["n_avail"] for p in plans.values()])
    if n_times < n_audio:
        logger.warning("The shortest recording ends %.3f s before the audio: the story is cut "
                       "to %d frames (%.3f s).", (n_audio - n_times) / sfreq, n_times,
                       n_times / sfreq)

    # ---------------------------------------------------------------- features (cached)
    work = open_work_dir(work_dir, out, marker=_WORK_MARKER,
                         generator="neurofuse.data.datasets.podcast.prepare_podcast",
                         cache_version=_CACHE_VERSION)
    counts = {"features": "cached", "computed": [], "cached": []}
    feat_key = hash_arrays("podcast-features", _CACHE_VERSION, signature(layout.audio),
                           hash_file(layout.transcript), lm_id(language_model), layer,
                           context_tokens, sfreq, phone_list)
    feat_npy = work / "features" / f"{PODCAST_STORY}.npy"
    info = cached(feat_npy, feat_key)
    if info is None:
        from ....stimulus.features import features_from_alignment
        from ....stimulus.language_model import as_language_model

        lm = as_language_model(language_model, device=device)
        feats = features_from_alignment(layout.audio, words, phone_list, language_model=lm,
                                        layer=layer, context_tokens=context_tokens,
                                        sfreq=sfreq)
        data = np.asarray(feats.data, np.float32)
        if data.shape[0] != n_audio:
            raise ValueError(f"The features have {data.shape[0]} frames but the audio "
                             f"({duration:.3f} s at {sfreq:g} Hz) needs {n_audio}.")
        info = {"streams": {k: [int(v[0]), int(v[1])] for k, v in feats.streams.items()},
                "metadata": feats.metadata}
        store_cached(feat_npy, feat_key, data, info)
        counts["features"] = "computed"
        del lm

    # ---------------------------------------------------------------- ECoG (cached)
    subjects_out, summary = {}, {}
    for sub in tqdm(layout.subjects, desc="ECoG subjects", disable=not progress_enabled()):
        plan = plans[sub]
        n_out = plan["n_avail"]
        key = _subject_key(sub, plan, signal=signal, band=band, sfreq=sfreq, n_out=n_out)
        npy = work / "ecog" / f"{sub}.npy"
        cinfo = cached(npy, key)
        if cinfo is None:
            data, line_freq = _subject_signal(sub, plan, signal=signal, band=band, sfreq=sfreq,
                                              n_out=n_out)
            cinfo = {"names": plan["picks"], "line_freq": line_freq}
            store_cached(npy, key, data, cinfo)
            counts["computed"].append(sub)
        else:
            counts["cached"].append(sub)
        data = np.load(npy, allow_pickle=False)[:, :n_times].astype(np.float64)
        sd = data.std(axis=1)
        flat = sd <= 1e-12 * max(float(sd.max()), 1e-30)
        if flat.any():
            logger.warning("%s: %d flat electrode(s) left out: %s", sub, int(flat.sum()),
                           [plan["picks"][i] for i in np.flatnonzero(flat)][:10])
        keep = np.flatnonzero(~flat)
        if not len(keep):
            raise ValueError(f"All electrodes of {sub} are flat over the podcast.")
        z = zscore(data[keep], axis=1).astype(np.float32)
        pos_mm = plan["pos_mm"][keep]
        fs_mm, transform = _space_to_fsaverage_mm(pos_mm, space)
        hemi = np.where(fs_mm[:, 0] < 0, "lh", "rh")
        names = [plan["picks"][i] for i in keep]
        electrodes = EcogElectrodes(
            names=names, hemi=[str(h) for h in hemi], pos_fsaverage=fs_mm * 1e-3, pos_mri=None,
            group=[plan["group"][i] for i in keep])
        dist = _pial_distance_mm(fs_mm * 1e-3, hemi)
        anatomy = {"dataset": "ds005574", "subject": sub, "space": space,
                   "electrodes_file": plan["electrodes_file"], "units_in_file": plan["units"],
                   "to_fsaverage": transform, "subject_mri": None,
                   "pos_space_mm": np.round(pos_mm, 4).tolist(),
                   "dist_to_fsaverage_pial_mm": np.round(dist, 2).tolist()}
        subjects_out[sub] = {"electrodes": electrodes, "ecog": {PODCAST_STORY: z},
                             "units": "z", "signal": _signal_label(signal, band),
                             "anatomy": anatomy}
        summary[sub] = {**plan["counts"], "flat": int(flat.sum()), "kept": len(names),
                        "onset_s": plan["onset"], "onset_from": plan["onset_how"],
                        "sfreq_in": plan["sfreq_in"], "line_freq": cinfo.get("line_freq"),
                        "pial_dist_mm_median": float(np.median(dist)),
                        "far_from_cortex": int((dist > 10.0).sum())}
        if summary[sub]["far_from_cortex"]:
            logger.info("%s: %d electrode(s) lie > 10 mm from the fsaverage pial surface (depth "
                        "electrodes or misregistration); the zero-shot mapping still takes "
                        "their nearest source.", sub, summary[sub]["far_from_cortex"])
        del data, z

    # ---------------------------------------------------------------- write the dataset
    from .... import __version__

    feats = np.load(feat_npy, mmap_mode="r")
    metadata = {
        "generator": "neurofuse.data.datasets.podcast.prepare_podcast",
        "versions": {"neurofuse": __version__, "numpy": np.__version__},
        "story_offsets": {PODCAST_STORY: 0.0},  # the story starts with the audio
        "podcast": {
            "dataset": "Zada et al. (2025), OpenNeuro ds005574", "root": str(layout.root),
            "task": task, "audio": str(layout.audio), "transcript": str(layout.transcript),
            "phones": None if phones is None else str(phones), "signal": signal,
            "band": list(band), "sfreq": sfreq, "electrode_types": electrode_types,
            "space": space, "tolerance": tolerance, "max_gap": max_gap,
            "audio_duration": duration, "n_times": n_times, "frames_cut": n_audio - n_times,
            "n_words": len(words), "language_model": lm_name(language_model), "layer": layer,
            "context_tokens": context_tokens, "features": info.get("metadata", {}),
            "subjects": summary,
        },
    }
    out = write_ecog_dataset(
        out, sfreq=sfreq, feature_streams=info["streams"],
        stories={PODCAST_STORY: np.asarray(feats[:n_times])}, subjects=subjects_out,
        metadata=metadata, overwrite=overwrite)
    del feats
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    logger.info(
        "Prepared Podcast ds005574 -> %s in %.1f s: %d subjects, %d electrodes (%s), story "
        "%.1f s at %g Hz, signal %s; features %s; ECoG computed for %s, reused for %s.",
        out, time.perf_counter() - t_start, len(summary),
        sum(s["kept"] for s in summary.values()),
        ", ".join(f"{s}: {v['kept']} kept / {v['bad']} bad / {v['no_position']} without "
                  f"position, onset {v['onset_s']:.3f} s" for s, v in summary.items()),
        n_times / sfreq, sfreq, signal, counts["features"], counts["computed"] or "none",
        counts["cached"] or "none")
    return out

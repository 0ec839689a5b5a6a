"""A BIDS MEG study of story listening into a neurofuse dataset store.

:func:`prepare_meg_bids` reads every MEG recording of a BIDS dataset with mne-bids, finds
when each story started, preprocesses the recording as in the paper (§2.4,
:func:`neurofuse.preprocessing.meg.preprocess_meg`: tSSS, 1–150 Hz, line notch, ICA of
ocular, cardiac and audio-locked components, 50 Hz), cuts each presentation of each story to
the story's exact length, computes the stimulus features of every story
(:func:`neurofuse.stimulus.features.extract_features`) and each subject's forward model
(:mod:`neurofuse.anatomy`), and writes a MEG dataset
(:class:`neurofuse.data.store.DatasetWriter`). ``docs/real-data-meg.md`` says which files go
where.

What it expects
---------------
* ``<bids_root>/sub-<label>/[ses-<label>/]meg/sub-<label>_..._task-<task>_..._meg.<ext>``:
  the recordings (any MEG format MNE-Python reads; tSSS needs MEGIN/Elekta ``.fif``), with
  the usual sidecars (``_meg.json`` with ``PowerLineFrequency``, ``_channels.tsv`` with bad
  channels, ``_events.tsv``). The site's ``acq-calibration`` ``.dat`` and ``acq-crosstalk``
  ``.fif`` files are used for SSS when present. Empty-room recordings are ignored.
* Story onsets: events whose ``trial_type`` is the story name (or ends with ``/<story>``,
  e.g. ``story/wheretheressmoke``), from ``events.tsv`` or, if no event names a story, from
  the trigger channel with the ``value`` codes of ``events.tsv`` (or ``event_id``). A story
  presented several times (in one run or across runs and sessions) gives several repeats.
* ``<stimuli_dir>/<story>.wav`` and ``<stimuli_dir>/<story>.TextGrid`` (default
  ``<bids_root>/stimuli/``, BIDS's folder for stimuli): the story's audio, starting at the
  story's onset event, and its word/phone alignment. A story lasts
  ``n_times = floor(audio duration * 50)`` samples.
* Anatomy: ``<subjects_dir>/sub-<label>`` (or ``<label>``), a FreeSurfer reconstruction, with
  a head↔MRI transform (``trans``, ``<subjects_dir>/<fs subject>/bem/<fs subject>-trans.fif``
  or the T1w landmarks of the BIDS dataset). A subject without a FreeSurfer folder gets the
  fsaverage template placed with the recording's head position (``dev_head_t``).

Resuming
--------
Each story's features and each recording's preprocessed, epoched data are cached in a work
folder (default ``<out>.work``), written atomically and keyed by their inputs (file size and
modification time, settings), so an interrupted run resumes where it stopped. Forward models
are cached by :mod:`neurofuse.anatomy.forward`. The dataset appears at ``out`` only once
complete.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from .._checks import _check_option, _check_type
from .._docs import fill_doc
from .._io import atomic_dir, hash_arrays, save_npy, write_json
from .._logging import logger, progress_enabled, verbose
from ._prepare import (
    as_list,
    audio_duration,
    check_feature_options,
    check_out,
    import_real,
    lm_name,
    open_work_dir,
    read_json,
    resolve_splits,
    signature,
    split_counts,
    story_features,
)
from ..preprocessing.meg import (
    MEGPreprocessing,
    epoch_stories,
    find_story_onsets,
    preprocess_meg,
)

__all__ = ["find_meg_recordings", "prepare_meg_bids"]

#: File extensions of MEG recordings in BIDS (MEGIN/Elekta, CTF, KIT/Yokogawa, BTi/4D, ...).
MEG_EXTENSIONS = (".fif", ".ds", ".sqd", ".con", ".pdf", ".bin")
_WORK_MARKER = "neurofuse-meg-bids-work.json"
_check_splits = resolve_splits  # {story: split} from a dict or a JSON file (shared)
_CACHE_VERSION = 1


def _mne_bids():
    return import_real("mne_bids", "Reading BIDS MEG")


# --------------------------------------------------------------------------------------
# Finding things
# --------------------------------------------------------------------------------------

def _find_stories(stimuli_dir, stories):
    """Story names and their (wav, TextGrid) paths; every file must exist."""
    from .store import _check_name

    if not stimuli_dir.is_dir():
        raise FileNotFoundError(
            f"The stimuli folder '{stimuli_dir}' does not exist: put <story>.wav and "
            "<story>.TextGrid there (default <bids_root>/stimuli/) or pass 'stimuli_dir'.")
    if stories is None:
        stories = sorted(p.stem for p in stimuli_dir.glob("*.wav"))
        if not stories:
            raise FileNotFoundError(f"No <story>.wav file in the stimuli folder '{stimuli_dir}'.")
    else:
        stories = as_list("stories", stories)
        if len(set(stories)) != len(stories) or not stories:
            raise ValueError(f"'stories' must list distinct story names, got {stories}.")
    missing = []
    for story in stories:
        _check_name("story name", story)
        for ext in (".wav", ".TextGrid"):
            if not (stimuli_dir / f"{story}{ext}").is_file():
                missing.append(str(stimuli_dir / f"{story}{ext}"))
    if missing:
        raise FileNotFoundError(
            f"Missing stimulus files: {missing[:6]}{' ...' if len(missing) > 6 else ''}. Each "
            "story needs its audio (<story>.wav) and its word/phone alignment "
            "(<story>.TextGrid) in the stimuli folder; add them or leave the story out "
            "('stories').")
    return stories, {s: (stimuli_dir / f"{s}.wav", stimuli_dir / f"{s}.TextGrid")
                     for s in stories}


def find_meg_recordings(bids_root, *, subjects=None, task=None) -> dict:
    """The MEG recordings of a BIDS dataset, per subject.

    Parameters
    ----------
    bids_root : path-like
        The BIDS dataset folder.
    subjects : list of str | None
        Subject labels (``"01"`` or ``"sub-01"``); default all but ``emptyroom``.
    task : str | list of str | None
        Only these tasks.

    Returns
    -------
    recordings : dict of str to list of mne_bids.BIDSPath
        ``{"sub-01": [BIDSPath, ...]}``, sorted by session, task, run; one path per
        recording (the first part of split files).
    """
    mne_bids = _mne_bids()
    root = Path(bids_root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"'bids_root' = '{root}' is not a folder: point it to the BIDS "
                                "dataset (the folder with dataset_description.json).")
    labels = None
    if subjects is not None:
        subjects = [subjects] if isinstance(subjects, str) else list(subjects)
        labels = [_check_type("subjects", s, str).removeprefix("sub-") for s in subjects]
    tasks = None if task is None else ([task] if isinstance(task, str) else list(task))
    paths = mne_bids.find_matching_paths(root, subjects=labels, tasks=tasks, datatypes="meg",
                                         suffixes="meg", extensions=list(MEG_EXTENSIONS))
    out = {}
    for bp in paths:
        if bp.subject == "emptyroom" or bp.acquisition in ("calibration", "crosstalk") \
                or (bp.split is not None and bp.split not in ("01", "1")) \
                or (bp.task or "").lower() == "noise":
            continue
        out.setdefault(f"sub-{bp.subject}", []).append(bp)
    for bps in out.values():
        bps.sort(key=lambda p: (p.session or "", p.task or "", p.acquisition or "",
                                p.run or "", str(p.fpath)))
    if labels is not None:
        missing = [f"sub-{s}" for s in labels if f"sub-{s}" not in out]
        if missing:
            raise FileNotFoundError(
                f"No MEG recording{' of task ' + repr(task) if task else ''} for subjects "
                f"{missing} in '{root}' (found {sorted(out) or 'none'}). Check the subject "
                "labels and 'task'.")
    if not out:
        raise FileNotFoundError(
            f"No MEG recording{' of task ' + repr(task) if task else ''} in '{root}': expected "
            "sub-<label>/[ses-<label>/]meg/sub-<label>_..._meg.fif (or another MEG format).")
    return dict(sorted(out.items()))


def _read_raw(bp):
    import warnings

    mne_bids = _mne_bids()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sidecar notes (units, dig) that do not matter here
        raw, event_id = mne_bids.read_raw_bids(bp, return_event_dict=True, verbose="error")
    return raw, event_id


def _resample_audio(waveform, audio_sfreq, sfreq):
    from scipy.signal import resample_poly

    ratio = Fraction(float(sfreq) / float(audio_sfreq)).limit_denominator(10000)
    return resample_poly(waveform, ratio.numerator, ratio.denominator)


def _audio_reference(raw, onsets, wavs):
    """The story audio placed at the onsets, at the raw rate; NaN where no story played."""
    from ..stimulus.audio import read_audio

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


# --------------------------------------------------------------------------------------
# Anatomy
# --------------------------------------------------------------------------------------

def _fs_subject(sub, subjects_dir):
    """The FreeSurfer folder name of a BIDS subject in ``subjects_dir``, or None."""
    if subjects_dir is None:
        return None
    for name in (sub, sub.removeprefix("sub-")):
        if (subjects_dir / name / "surf").is_dir():
            return name
    return None


def _find_trans(sub, fs_name, subjects_dir, trans, bp):
    mne_bids = _mne_bids()
    if trans is not None and sub in trans:
        path = Path(trans[sub]).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"trans[{sub!r}] = '{path}' does not exist.")
        return path
    path = subjects_dir / fs_name / "bem" / f"{fs_name}-trans.fif"
    if path.is_file():
        return path
    try:
        return mne_bids.get_head_mri_trans(bp, fs_subject=fs_name, fs_subjects_dir=subjects_dir,
                                           verbose="error")
    except (RuntimeError, ValueError, OSError, KeyError) as err:  # no T1w landmarks
        raise FileNotFoundError(
            f"Subject {sub!r} has a FreeSurfer folder '{subjects_dir / fs_name}' but no head<->MRI "
            f"transform: none at '{path}', none given in 'trans', and none from the BIDS T1w "
            f"landmarks ({err}). Make one with 'mne coreg' and save it as '{path}' (or pass "
            f"trans={{{sub!r}: path}}), or move the FreeSurfer folder away to use the "
            "fsaverage template.") from None


def _make_subject(sub, info, subjects_dir, trans, bp):
    from ..anatomy import make_template_subject, read_subject

    fs_name = _fs_subject(sub, subjects_dir)
    if fs_name is None:
        if subjects_dir is not None:
            logger.warning("%s has no FreeSurfer folder in '%s' (looked for '%s' and '%s'): "
                           "using the fsaverage template at the recording's head position.",
                           sub, subjects_dir, sub, sub.removeprefix("sub-"))
        template = make_template_subject(meg=False, sfreq=info["sfreq"])
        return dataclasses.replace(template, meg_info=info)
    return read_subject(fs_name, subjects_dir, trans=_find_trans(sub, fs_name, subjects_dir,
                                                                 trans, bp), info=info)


# --------------------------------------------------------------------------------------
# One recording
# --------------------------------------------------------------------------------------

def _process_recording(bp, plan, config, n_times, wavs, destination, dest_dir):
    """Preprocess one recording and save its epochs, info and report into ``dest_dir``."""
    import mne

    raw, _ = _read_raw(bp)
    onsets = plan["onsets"]
    cfg = config
    extra = {}
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


# --------------------------------------------------------------------------------------
# prepare
# --------------------------------------------------------------------------------------

@verbose
@fill_doc
def prepare_meg_bids(bids_root, out, *, subjects=None, task=None, stories=None, splits=None,
                     preprocessing=None, onsets="auto", event_id=None, stim_channel=None,
                     language_model="gpt2", layer=7, context_tokens=20, stimuli_dir=None,
                     subjects_dir=None, trans=None, spacing="oct6", repeatability="repeat",
                     device=None, n_jobs=None, overwrite=False, work_dir=None, keep_work=False,
                     features_fn=None, verbose=None) -> Path:
    """Turn a BIDS MEG study of story listening into a dataset store (paper §2.4).

    Parameters
    ----------
    bids_root : path-like
        The BIDS dataset (read with mne-bids).
    %(out)s
    subjects : list of str | None
        Subject labels (``"01"`` or ``"sub-01"``); default every subject with MEG.
    task : str | list of str | None
        Only recordings of this task (default: all tasks).
    stories : list of str | None
        Stories to prepare; default every ``<story>.wav`` in the stimuli folder that some
        recording presents. Each needs ``<story>.wav`` and ``<story>.TextGrid``.
    %(splits)s
        The paper's validation and test stories were presented twice, the anchor story
        five times.
    preprocessing : MEGPreprocessing | dict | path-like | None
        Preprocessing settings (a JSON/TOML file works); ``None``: the paper's. Its
        ``sfreq`` (50 Hz) is the dataset's.
    onsets : 'auto' | 'annotations' | 'stim'
        Where story onsets come from (:func:`~neurofuse.preprocessing.meg.find_story_onsets`):
        ``events.tsv`` (``'annotations'``), the trigger channel (``'stim'``), or the former
        when an event names a story and the latter otherwise (``'auto'``).
    event_id : dict of str to int | None
        Trigger code of each story for ``'stim'``; default the ``value`` of each
        ``trial_type`` in ``events.tsv``.
    stim_channel : str | None
        The trigger channel (default: MNE's choice, e.g. ``STI101``).
    %(language_model)s
    %(layer_context_tokens)s
    stimuli_dir : path-like | None
        Where ``<story>.wav`` and ``<story>.TextGrid`` are; default ``<bids_root>/stimuli``.
    subjects_dir : path-like | None
        FreeSurfer subjects folder. Subjects found there (as ``sub-<label>`` or ``<label>``)
        get their own anatomy; the others (and all when ``None``) the fsaverage template.
    trans : dict of str to path-like | None
        Head↔MRI transform per subject (``{"sub-01": "sub-01-trans.fif"}``) for FreeSurfer
        subjects; default ``<subjects_dir>/<fs subject>/bem/<fs subject>-trans.fif``, else
        from the BIDS T1w landmarks.
    spacing : str
        Source space of the forward models and morphs (``'oct6'``: 8196 sources).
    %(repeatability)s
    %(device)s
    %(n_jobs)s
        Used by the filters, the resampling and the forward models.
    %(overwrite)s
    %(work_dir)s
        Here: the features of each story and the preprocessed data of each recording.
    %(keep_work)s
    %(features_fn)s
    %(verbose_loader)s

    Returns
    -------
    out : Path
        The dataset folder; open it with :func:`neurofuse.data.store.read_dataset`.

    Raises
    ------
    FileNotFoundError
        Missing recordings, stimuli, anatomy or transform files.
    ValueError
        A recording whose sampling rate cannot go through the preprocessing ("Wrong sampling
        rate"), features at another rate, a story that runs past the end of its recording
        ("stories of inconsistent length"), recordings of one subject with different
        channels, unknown splits. Nothing is written at ``out``.
    """
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    out = check_out(out, overwrite)  # before any work
    config = MEGPreprocessing.resolve(preprocessing)
    if n_jobs is not None and config.n_jobs is None:
        config = dataclasses.replace(config, n_jobs=n_jobs)
    sfreq = config.sfreq
    _check_option("onsets", onsets, ["auto", "annotations", "stim"])
    layer, context_tokens = check_feature_options(layer, context_tokens, features_fn=features_fn,
                                                  repeatability=repeatability)
    from ..anatomy.subjects import check_spacing

    check_spacing(spacing)
    if event_id is not None:
        _check_type("event_id", event_id, dict)
    if trans is not None:
        _check_type("trans", trans, dict, "a dict {subject: trans file}")
    from .store import _check_name

    # ---------------------------------------------------------------- check everything first
    bids_root = Path(bids_root).expanduser()
    recordings = find_meg_recordings(bids_root, subjects=subjects, task=task)
    for sub in recordings:
        _check_name("subject name", sub)
    stimuli_dir = bids_root / "stimuli" if stimuli_dir is None else Path(stimuli_dir).expanduser()
    story_list, wavs = _find_stories(stimuli_dir, stories)
    explicit = stories is not None
    n_times = {s: math.floor(audio_duration(wavs[s][0]) * sfreq + 1e-9)
               for s in story_list}
    subjects_dir = None if subjects_dir is None else Path(subjects_dir).expanduser()
    if subjects_dir is not None and not subjects_dir.is_dir():
        raise FileNotFoundError(f"'subjects_dir' = '{subjects_dir}' is not a folder.")

    bar = {"disable": not progress_enabled(), "leave": False}
    plans = {}  # sub -> list of dicts (bp, onsets, key...)
    destinations = {}
    for sub, bps in tqdm(recordings.items(), desc="reading recordings", **bar):
        plans[sub] = []
        for bp in bps:
            raw, bids_event_id = _read_raw(bp)
            config.check_sfreq(raw.info["sfreq"], what=f"the recording '{bp.fpath.name}'")
            codes = event_id if event_id is not None else (bids_event_id or None)
            if onsets == "stim" and not codes:
                raise ValueError(f"onsets='stim' needs the trigger code of each story: pass "
                                 f"'event_id' (no events.tsv values for '{bp.fpath.name}').")
            try:
                found = find_story_onsets(raw, story_list, source=onsets, event_id=codes,
                                          stim_channel=stim_channel)
            except ValueError as err:
                if onsets != "auto":
                    raise ValueError(f"'{bp.fpath.name}': {err}") from None
                logger.warning("'%s' presents none of the stories, left out: %s",
                               bp.fpath.name, err)
                found = []
            duration = raw.n_times / raw.info["sfreq"]
            for story, onset in found:
                if onset < 0 or onset + n_times[story] / sfreq > duration + 1e-9:
                    raise ValueError(
                        f"stories of inconsistent length: in '{bp.fpath.name}' story {story!r} "
                        f"starts at {onset:.3f} s and its audio lasts "
                        f"{n_times[story] / sfreq:.3f} s, but the recording ends at "
                        f"{duration:.3f} s. Check that '{wavs[story][0].name}' is the audio "
                        "that was played, or leave the story out ('stories').")
            head = None if raw.info["dev_head_t"] is None \
                else np.asarray(raw.info["dev_head_t"]["trans"])
            if found and sub not in destinations:
                destinations[sub] = head
            elif found and not config.maxwell and head is not None and not np.allclose(
                    destinations[sub], head, atol=1e-3):
                logger.warning("%s: the head position differs between recordings and tSSS is "
                               "off (maxwell=False), so they cannot be aligned; the forward "
                               "model uses the first recording's.", sub)
            sidecars = [p for p in (bp.copy().update(suffix=s, extension=".tsv").fpath
                                    for s in ("events", "channels")) if p.is_file()]
            plans[sub].append({"bp": bp, "onsets": found, "sidecars": sidecars,
                               "name": bp.fpath.name.rsplit(".", 1)[0]})
            del raw
    presented = {s for p in plans.values() for r in p for s, _ in r["onsets"]}
    absent = [s for s in story_list if s not in presented]
    if absent and explicit:
        raise ValueError(f"Stories {absent} are presented in no recording (no event names them). "
                         "Check the events' trial_type / the trigger codes, or leave them out.")
    if absent:
        logger.warning("Stimuli without any presentation in the recordings are left out: %s",
                       absent)
    story_list = [s for s in story_list if s in presented]
    story_splits = resolve_splits(splits, story_list)
    for sub, recs in plans.items():
        recs[:] = [r for r in recs if r["onsets"]]
        if not recs:
            raise ValueError(f"No recording of {sub} presents any of the stories {story_list}.")
        fs_name = _fs_subject(sub, subjects_dir)
        if fs_name is not None:  # fail now, not after hours of preprocessing
            _find_trans(sub, fs_name, subjects_dir, trans, recs[0]["bp"])

    # ---------------------------------------------------------------- features (cached)
    work = open_work_dir(work_dir, out, marker=_WORK_MARKER,
                         generator="neurofuse.data.bids_meg.prepare_meg_bids",
                         cache_version=_CACHE_VERSION)
    streams, _, feat_counts = story_features(
        work, {s: wavs[s] for s in story_list}, cache_name="meg-bids-features",
        cache_version=_CACHE_VERSION, language_model=language_model, layer=layer,
        context_tokens=context_tokens, sfreq=sfreq, device=device, features_fn=features_fn,
        n_times=n_times, rate_what=f"but the MEG is brought to {sfreq:g} Hz")
    counts = {"features_computed": feat_counts["computed"],
              "features_cached": feat_counts["cached"], "meg_computed": 0, "meg_cached": 0}

    # ---------------------------------------------------------------- MEG (cached)
    jobs = [(sub, rec) for sub in plans for rec in plans[sub]]
    results = {}
    for sub, rec in tqdm(jobs, desc="preprocessing MEG", **bar):
        dest = destinations[sub] if config.maxwell else None
        audio_id = [signature(wavs[s][0]) for s in sorted({s for s, _ in rec["onsets"]})] \
            if config.ica and config.audio_channel is None else None
        site = [signature(p) for p in (rec["bp"].meg_calibration_fpath,
                                        rec["bp"].meg_crosstalk_fpath) if p is not None] \
            if config.maxwell else None
        settings = {k: v for k, v in config.to_dict().items() if k != "n_jobs"}
        rec["key"] = hash_arrays(
            "meg-bids-recording", _CACHE_VERSION, signature(rec["bp"].fpath),
            [signature(p) for p in rec["sidecars"]], site, settings, dest,
            rec["onsets"], {s: n_times[s] for s, _ in rec["onsets"]}, audio_id)
        dest_dir = work / "meg" / sub / rec["name"]
        result = _cached_recording(dest_dir, rec["key"])
        if result is None:
            _process_recording(rec["bp"], rec, config, n_times, wavs, dest, dest_dir)
            result = _cached_recording(dest_dir, rec["key"])
            counts["meg_computed"] += 1
        else:
            counts["meg_cached"] += 1
        results[sub, rec["name"]] = (dest_dir, result)

    # ---------------------------------------------------------------- anatomy
    import mne

    from ..anatomy import get_leadfield, make_forward, make_morph

    anatomy = {}
    for sub in tqdm(plans, desc="forward models", **bar):
        infos = [mne.io.read_info(results[sub, r["name"]][0] / "meg-info.fif", verbose="error")
                 for r in plans[sub]]
        names = infos[0]["ch_names"]
        for rec, inf in zip(plans[sub][1:], infos[1:]):
            if inf["ch_names"] != names:
                raise ValueError(
                    f"The recordings of {sub} have different MEG channels ('{rec['name']}' vs "
                    f"'{plans[sub][0]['name']}'): they cannot be stacked as repeats. Use tSSS "
                    "(which reconstructs bad channels) or the same channel set.")
        info = infos[0]
        subject = _make_subject(sub, info, subjects_dir, trans, plans[sub][0]["bp"])
        fwd = make_forward(subject, spacing=spacing, n_jobs=n_jobs)
        if fwd["sol"]["row_names"] != names:
            fwd = mne.pick_channels_forward(fwd, names, ordered=True, verbose="error")
        morph = make_morph(subject, spacing=spacing, src_to=fwd["src"])
        anatomy[sub] = {"subject": subject, "forward": fwd, "info": info, "morph": morph,
                        "leadfield": get_leadfield(fwd),
                        "vertices": [s["vertno"] for s in fwd["src"]]}

    # ---------------------------------------------------------------- write the store
    from .. import __version__
    from .repeatability import compute_repeatability
    from .store import DatasetWriter

    reports = {f"{sub}/{r['name']}": results[sub, r["name"]][1]["report"]
               for sub in plans for r in plans[sub]}
    metadata = {
        "generator": "neurofuse.data.bids_meg.prepare_meg_bids",
        "versions": {"neurofuse": __version__, "mne": mne.__version__,
                     "mne_bids": _mne_bids().__version__, "numpy": np.__version__},
        "units": {"meg": "T (magnetometers), T/m (gradiometers)"},
        "story_offsets": {s: 0.0 for s in story_list},  # whole stories, from the audio's start
        "meg_bids": {
            "bids_root": str(bids_root), "task": task, "stimuli_dir": str(stimuli_dir),
            "preprocessing": config.to_dict(), "onsets": onsets,
            "language_model": lm_name(language_model), "layer": layer, "context_tokens": context_tokens,
            "spacing": spacing,
            "anatomy": {s: a["subject"].kind for s, a in anatomy.items()},
            "recordings": reports,
        },
    }
    repeated = {sub: {} for sub in plans}
    n_rep = {sub: {} for sub in plans}
    with DatasetWriter(out, sfreq=sfreq, tr=2.0, feature_streams=streams, overwrite=overwrite,
                       metadata=metadata) as writer:
        for story in story_list:
            writer.add_story(story, split=story_splits[story], n_times=n_times[story])
            writer.write_features(story, np.load(work / "features" / f"{story}.npy"))
        for sub, ana in anatomy.items():
            writer.add_subject(
                sub, modalities=["meg"], info=ana["info"], leadfield=ana["leadfield"],
                morph=ana["morph"], vertices=ana["vertices"], forward=ana["forward"],
                anatomy={**ana["subject"].to_json(), "bids_subject": sub})
        for sub in tqdm(plans, desc="writing", **bar):
            for story in story_list:
                parts = [np.load(results[sub, r["name"]][0] / f"{story}.npy")
                         for r in plans[sub] if story in results[sub, r["name"]][1]["stories"]]
                if not parts:
                    continue
                data = np.concatenate(parts)  # (n_repeats, n_channels, n_times)
                writer.write_meg(sub, story, data)
                n_rep[sub][story] = int(data.shape[0])
                if repeatability and data.shape[0] >= 2 and story_splits[story] != "test":
                    repeated[sub][story] = compute_repeatability(data, method=repeatability)
            if repeated[sub]:
                writer.write_repeatability(sub, "meg", np.mean(list(repeated[sub].values()), 0),
                                           method=repeatability, stories=list(repeated[sub]))
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)

    removed = {k: sum(len((rep.get("ica") or {}).get(k, [])) for rep in reports.values())
               for k in ("ocular", "cardiac", "audio")}
    bads = sum(len(v) for rep in reports.values()
               for v in ((rep.get("maxwell") or {}).get("bad_channels") or {}).values())
    hours = sum(n_times[s] for s in story_list) / sfreq / 3600
    logger.info(
        "Prepared BIDS MEG %s -> %s in %.1f s: %d stories (%.2f h; splits %s), %d subjects "
        "(%s); %d recordings preprocessed / %d reused, features %d computed / %d reused; "
        "bad channels %d; ICA removed %s components; anatomy %s; repeatability stored for %s.",
        bids_root, out, time.perf_counter() - t_start, len(story_list), hours,
        split_counts(story_splits),
        len(plans), "; ".join(f"{s}: " + ", ".join(f"{st}x{n}" for st, n in n_rep[s].items())
                              for s in plans),
        counts["meg_computed"], counts["meg_cached"], counts["features_computed"],
        counts["features_cached"], bads, removed,
        {s: a["subject"].kind for s, a in anatomy.items()},
        [s for s in plans if repeated[s]] or "nobody")
    return out

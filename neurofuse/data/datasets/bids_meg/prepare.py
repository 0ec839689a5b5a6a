"""A BIDS MEG study of story listening into a neurofuse dataset store.

:func:`prepare_meg_bids` reads every MEG recording of a BIDS dataset with mne-bids, finds
when each story started, preprocesses the recording as in the paper (§2.4,
:func:`neurofuse.preprocessing.meg.preprocess_meg`: tSSS, 1–150 Hz, line notch, ICA of
ocular, cardiac and audio-locked components, 50 Hz), cuts each presentation of each story to
the story's exact length, computes the stimulus features of every story
(:func:`neurofuse.stimulus.features.extract_features`) and each subject's forward model
(:mod:`neurofuse.anatomy`), and writes a MEG dataset
(:class:`neurofuse.data.store.DatasetWriter`). ``docs/real-data-meg.md`` says which files go
where; :mod:`~neurofuse.data.datasets.bids_meg.layout` what is expected.

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
from pathlib import Path

import numpy as np

from ...._checks import _check_option, _check_type
from ...._docs import fill_doc
from ...._io import hash_arrays
from ...._logging import logger, progress_enabled, verbose
from ....preprocessing.meg import MEGPreprocessing, find_story_onsets, maxwell_history
from ..._prepare import (
    audio_duration,
    check_feature_options,
    check_out,
    lm_name,
    open_work_dir,
    resolve_splits,
    signature,
    split_counts,
    story_features,
)
from .._bids import import_mne_bids, read_raw_bids, sidecar
from .anatomy import (
    _find_trans,
    _fs_subject,
    _make_subject,
    _morph_target,
    _read_user_forward,
)
from .layout import PURPOSE, _find_stories, find_empty_rooms, find_meg_recordings
from .recording import _cached_recording, _process_recording

_WORK_MARKER = "neurofuse-meg-bids-work.json"
_CACHE_VERSION = 1


@verbose
@fill_doc
def prepare_meg_bids(bids_root, out, *, subjects=None, task=None, stories=None, splits=None,
                     preprocessing=None, onsets="auto", event_id=None, stim_channel=None,
                     language_model="gpt2", layer=7, context_tokens=20, stimuli_dir=None,
                     subjects_dir=None, trans=None, forward=None, spacing="oct6",
                     repeatability="repeat",
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
    forward : dict of str to path-like | None
        A forward solution of one's own per subject (``{"sub-01": "sub-01-fwd.fif"}``,
        written by :func:`mne.write_forward_solution`), used instead of computing one. Its
        MEG channels must include the recording's, and its sources must be the template
        source space (fsaverage, ``spacing``, every source kept) unless the subject's
        FreeSurfer folder is in ``subjects_dir`` (then fsaverage is morphed onto the forward's
        own sources). Checked before any preprocessing; a source-count mismatch (e.g. 8195
        vs 8196) is an error naming the file.
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
    %(returns_store)s

    Raises
    ------
    FileNotFoundError
        Missing recordings, stimuli, anatomy or transform files.
    ValueError
        A recording whose sampling rate cannot go through the preprocessing ("Wrong sampling
        rate"), features at another rate, a story that runs past the end of its recording
        ("stories of inconsistent length"), recordings of one subject with different
        channels, unknown splits, a ``forward`` whose channels or sources do not fit.
        Nothing is written at ``out``.

    Notes
    -----
    Empty-room recordings (subject ``emptyroom``, task ``noise``, or a recording's
    ``AssociatedEmptyRoom``) are not stories: they are left out with a log line and listed in
    ``metadata["meg_bids"]["empty_room"]`` (e.g. for the noise covariance of MNE inverses).
    Recordings already Maxwell-filtered (MaxFilter; ``info["proc_history"]``) skip tSSS
    with a warning; the recording's report says so in ``maxwell_skipped``.
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
    from ....anatomy.subjects import check_spacing

    check_spacing(spacing)
    if event_id is not None:
        _check_type("event_id", event_id, dict)
    if trans is not None:
        _check_type("trans", trans, dict, "a dict {subject: trans file}")
    if forward is not None:
        _check_type("forward", forward, dict, "a dict {subject: -fwd.fif file}")
        forward = {k if k.startswith("sub-") else f"sub-{k}": v for k, v in forward.items()}
    from ...store import _check_name

    # ---------------------------------------------------------------- check everything first
    bids_root = Path(bids_root).expanduser()
    recordings = find_meg_recordings(bids_root, subjects=subjects, task=task)
    empty_rooms = find_empty_rooms(bids_root, subjects=None, task=None)
    if empty_rooms:
        logger.info("Empty-room recordings, not prepared as stories (listed in the metadata, "
                    "e.g. for the noise covariance of MNE inverses): %s", sorted(empty_rooms))
    for sub in recordings:
        _check_name("subject name", sub)
    unknown = sorted(set(forward or ()) - set(recordings))
    if unknown:
        raise ValueError(f"'forward' names subjects without recordings: {unknown} (subjects: "
                         f"{sorted(recordings)}). Use the BIDS subject labels ('sub-01').")
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
    first_info = {}
    for sub, bps in tqdm(recordings.items(), desc="reading recordings", **bar):
        plans[sub] = []
        for bp in bps:
            raw, bids_event_id = read_raw_bids(bp, purpose=PURPOSE, return_event_dict=True)
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
            history = maxwell_history(raw.info)
            if history is not None and config.maxwell and found:
                logger.warning(
                    "'%s' was already Maxwell-filtered (raw.info['proc_history'] records %s): "
                    "tSSS will be skipped for it (bad channels interpolated instead). Set "
                    "maxwell = false in the preprocessing settings (--preprocessing FILE) to "
                    "choose this explicitly.", bp.fpath.name, history["description"])
            no_sss = not config.maxwell or history is not None
            if found and sub not in destinations:
                destinations[sub] = head
                first_info[sub] = raw.info
            elif found and no_sss and head is not None and destinations[sub] is not None \
                    and not np.allclose(destinations[sub], head, atol=1e-3):
                logger.warning("%s: the head position differs between recordings and tSSS is "
                               "off (maxwell=False or already Maxwell-filtered data), so they "
                               "cannot be aligned; the forward model uses the first "
                               "recording's.", sub)
            sidecars = [p for p in (sidecar(bp, s) for s in ("events", "channels"))
                        if p.is_file()]
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
    user_fwd = {}  # sub -> (file, fwd, subject)
    for sub, recs in plans.items():
        recs[:] = [r for r in recs if r["onsets"]]
        if not recs:
            raise ValueError(f"No recording of {sub} presents any of the stories {story_list}.")
        fs_name = _fs_subject(sub, subjects_dir)
        if forward is not None and sub in forward:  # fail now, not after hours of work
            user_fwd[sub] = (Path(forward[sub]).expanduser(), *_read_user_forward(
                sub, forward[sub], first_info[sub], subjects_dir, spacing))
        elif fs_name is not None:  # fail now, not after hours of preprocessing
            _find_trans(sub, fs_name, subjects_dir, trans, recs[0]["bp"])

    # ---------------------------------------------------------------- features (cached)
    work = open_work_dir(work_dir, out, marker=_WORK_MARKER,
                         generator="neurofuse.data.datasets.bids_meg.prepare_meg_bids",
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

    from ....anatomy import get_leadfield, make_forward, make_morph

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
        if sub in user_fwd:
            fwd_file, fwd, subject = user_fwd[sub]
            subject = dataclasses.replace(subject, meg_info=info)
            logger.info("%s: forward solution from '%s' (%d sources)", sub, fwd_file,
                        fwd["nsource"])
        else:
            fwd_file = None
            subject = _make_subject(sub, info, subjects_dir, trans, plans[sub][0]["bp"])
            fwd = make_forward(subject, spacing=spacing, n_jobs=n_jobs)
        if fwd["sol"]["row_names"] != names:
            fwd = mne.pick_channels_forward(fwd, names, ordered=True, verbose="error")
        morph = make_morph(subject, spacing=spacing, src_to=_morph_target(fwd, subject)
                           if sub in user_fwd else fwd["src"])
        anatomy[sub] = {"subject": subject, "forward": fwd, "info": info, "morph": morph,
                        "forward_file": None if fwd_file is None else str(fwd_file),
                        "leadfield": get_leadfield(fwd),
                        "vertices": [s["vertno"] for s in fwd["src"]]}

    # ---------------------------------------------------------------- write the store
    from .... import __version__
    from ...repeatability import compute_repeatability
    from ...store import DatasetWriter

    from .._template import template_metadata

    reports = {f"{sub}/{r['name']}": results[sub, r["name"]][1]["report"]
               for sub in plans for r in plans[sub]}
    metadata = {
        "generator": "neurofuse.data.datasets.bids_meg.prepare_meg_bids",
        "versions": {"neurofuse": __version__, "mne": mne.__version__,
                     "mne_bids": import_mne_bids(PURPOSE).__version__, "numpy": np.__version__},
        "units": {"meg": "T (magnetometers), T/m (gradiometers)"},
        "story_offsets": {s: 0.0 for s in story_list},  # whole stories, from the audio's start
        "template": template_metadata(spacing),  # the morphs' columns (the source layer's)
        "meg_bids": {
            "bids_root": str(bids_root), "task": task, "stimuli_dir": str(stimuli_dir),
            "preprocessing": config.to_dict(), "onsets": onsets,
            "language_model": lm_name(language_model), "layer": layer, "context_tokens": context_tokens,
            "spacing": spacing,
            "anatomy": {s: a["subject"].kind for s, a in anatomy.items()},
            "recordings": reports,
            "empty_room": empty_rooms,
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
                anatomy={**ana["subject"].to_json(), "bids_subject": sub,
                         **({"forward_file": ana["forward_file"]} if ana["forward_file"]
                            else {})})
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

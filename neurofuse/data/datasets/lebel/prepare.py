"""The LeBel et al. (2023) fMRI dataset (OpenNeuro ds003020) into a neurofuse dataset store.

:func:`prepare_lebel` reads the per-story preprocessed fMRI of the dataset's derivative, the
stories' audio and TextGrid alignments, computes the stimulus features of every story
(:func:`neurofuse.stimulus.features.extract_features`), projects the voxel data to the source
space and writes an fMRI-only dataset (:class:`neurofuse.data.store.DatasetWriter`).
``docs/real-data-lebel.md`` says which files go where and the command to run. What is read:
:mod:`~neurofuse.data.datasets.lebel.layout`; voxels to sources:
:mod:`~neurofuse.data.datasets.lebel.mapping`.

What neurofuse writes
---------------------
* One story per LeBel story, restricted to the audio that the fMRI covers: the store's
  story ``s`` starts at audio time ``t0 = trim_start * tr - sound_start`` (10.045 s by default,
  rounded up to the next feature frame) and lasts the fMRI's whole number of TRs. Features
  are computed on the whole audio (the language model sees the story from its start) and
  then cut to that window; the window is recorded in ``metadata["lebel"]["windows"]``.
* fMRI at a TR whose length is a whole number of feature frames: by default the volumes are
  resampled from the ``tr = 2.0045`` s grid onto a 2.0 s grid (100 frames at 50 Hz, as the
  model's fMRI head needs) by cubic-spline interpolation through the volume centres
  (:func:`~neurofuse.preprocessing.fmri.resample_volumes`); the store's ``tr`` is 2.0, the TR of the data it holds. ``resample_tr=None`` keeps
  the native grid (store ``tr = 2.0045``; the window start is then rounded to the nearest
  frame, at most 10 ms off). Passing ``tr=2.0`` reproduces the reference code's alignment.
* Sources: each subject's ``.hf5`` voxels are projected with a voxel→source matrix
  (:func:`read_voxel_to_source`), or the data are already on the cortical surface: 8196
  columns = the fsaverage oct6 sources (used as they are), 20484 columns = fsaverage5 vertices
  (lh then rh; each oct6 source takes the mean of the vertices nearest to it on the sphere,
  as the paper's §2.5 averages "the nearest vertices of each source").
* The subject's morph is the identity when its sources are the fsaverage oct6 sources,
  otherwise the ``morph.npz`` of the mapping folder.
* Repeatability (:func:`neurofuse.data.repeatability.compute_repeatability`) of each source
  from the subject's repeated stories that are not test stories, stored with
  :meth:`~neurofuse.data.store.DatasetWriter.write_repeatability` for the loss weights.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from ...._checks import _check_int, _check_option, _check_positive
from ...._docs import fill_doc
from ...._io import hash_arrays
from ...._logging import logger, progress_enabled, verbose
from ....preprocessing.fmri import resample_volumes, story_window
from ..._prepare import (
    as_list,
    audio_duration,
    cached,
    check_feature_options,
    check_out,
    lm_name,
    open_work_dir,
    resolve_splits,
    signature,
    split_counts,
    store_cached,
    story_features,
)
from .layout import (
    LEBEL_TR,
    SOUND_START,
    TEST_STORY,
    TRIM_END,
    TRIM_START,
    hf5_shape,
    read_hf5,
    read_lebel_layout,
)
from .mapping import _mappings

_WORK_MARKER = "neurofuse-lebel-work.json"
_CACHE_VERSION = 1


def _select(layout, subjects, stories, splits):
    available = layout.subjects()
    if not available:
        raise FileNotFoundError(f"'{layout.preprocessed}' holds no subject folder (UTS01...).")
    if subjects is None:
        subjects = available
    else:
        subjects = as_list("subjects", subjects)
        for s in subjects:
            _check_option("subjects", s, available,
                          extra=f"Subjects are the folders of '{layout.preprocessed}'.")
    have = {sub: {p.stem for p in (layout.preprocessed / sub).glob("*.hf5")} for sub in subjects}
    if stories is None:
        stories = sorted(set().union(*have.values()))
        if not stories:
            raise FileNotFoundError(f"No .hf5 file for subjects {subjects} in "
                                    f"'{layout.preprocessed}'.")
    else:
        stories = as_list("stories", stories)
        if len(set(stories)) != len(stories):
            raise ValueError(f"'stories' lists a story twice: {stories}.")
    from ...store import _check_name

    for story in stories:
        _check_name("story name", story)
    for sub in subjects:
        _check_name("subject name", sub)
    problems = []
    for story in stories:
        if not any(story in have[s] for s in subjects):
            problems.append(f"no derivative/preprocessed_data/<subject>/{story}.hf5 for any of "
                            f"{subjects}")
        if story not in layout.respdict:
            problems.append(f"'{story}' missing from respdict.json")
        for path in (layout.textgrid(story), layout.wav(story)):
            if not path.is_file():
                problems.append(f"missing file '{path}'")
    if problems:
        raise FileNotFoundError(f"Cannot prepare {len(stories)} LeBel stories: "
                                + "; ".join(problems[:8])
                                + (f" (and {len(problems) - 8} more)" if len(problems) > 8 else "")
                                + ". Download the missing files or leave the stories out "
                                "('stories').")
    story_splits = resolve_splits(splits, stories, default={TEST_STORY: "test"})
    pairs = {sub: [st for st in stories if st in have[sub]] for sub in subjects}
    empty = [sub for sub, sts in pairs.items() if not sts]
    if empty:
        raise FileNotFoundError(f"Subjects {empty} have no .hf5 file for any selected story; "
                                "leave them out ('subjects').")
    return subjects, stories, story_splits, pairs


@verbose
@fill_doc
def prepare_lebel(root, out, *, subjects=None, stories=None, voxel_to_source=None,
                  language_model="gpt2", layer=7, context_tokens=20, splits=None,
                  tr=LEBEL_TR, resample_tr=2.0, sound_start=SOUND_START, trim_start=TRIM_START,
                  trim_end=TRIM_END, tolerance=None, sfreq=50.0, repeatability="repeat",
                  device=None, overwrite=False, work_dir=None, keep_work=False,
                  features_fn=None, verbose=None) -> Path:
    """Turn the LeBel et al. (2023) fMRI dataset (ds003020) into a dataset store.

    Parameters
    ----------
    root : path-like
        The ds003020 folder (with ``derivative/`` and ``stimuli/``).
    %(out)s
    subjects : list of str | None
        Subjects (folders of ``derivative/preprocessed_data``, e.g. ``"UTS01"``); default all.
    stories : list of str | None
        Stories; default every story with an ``.hf5`` file for a selected subject. Each needs
        ``derivative/TextGrids/<story>.TextGrid``, ``stimuli/<story>.wav`` and a
        ``respdict.json`` entry. A subject without a story's ``.hf5`` just lacks that story.
    voxel_to_source : path-like | dict | None
        A folder with one mapping folder per subject (``<folder>/<subject>/``, see
        :func:`read_voxel_to_source`), or ``{subject: folder}``. ``None``: the ``.hf5`` data
        are already on the surface (8196 fsaverage oct6 sources or 20484 fsaverage5 vertices).
    %(language_model)s
    %(layer_context_tokens)s
    %(splits)s
        Default ``{"wheretheressmoke": "test"}``.
    tr : float
        TR of the ``.hf5`` data in s (default 2.0045, the dataset's trigger interval; 2.0
        reproduces the reference code's alignment).
    resample_tr : float | None
        Resample the volumes onto this TR (default 2.0 s = 100 frames at 50 Hz, which the
        model's fMRI head needs); ``None`` keeps ``tr``. The store's ``tr`` is the TR of the
        data written.
    sound_start : float
        Audio time 0 is this many s after the first volume of a scan (10.0).
    trim_start, trim_end : int
        Volumes of each scan missing from the ``.hf5`` at its start and end (10 and 10): the
        ``.hf5`` must hold ``respdict[story] - trim_start - trim_end`` volumes.
    tolerance : float | None
        How far (s) the fMRI may run past the end of the audio (those volumes are dropped,
        with a warning) and how much audio beyond the trimmed end volumes may be left
        uncovered. Default one TR. Beyond it: "stories of inconsistent length".
    sfreq : float
        Feature frame rate (50 Hz).
    %(repeatability)s
    %(device)s
    %(overwrite)s
    %(work_dir)s
        Here: the features and the projected fMRI of each story.
    %(keep_work)s
    %(features_fn)s
    %(verbose_loader)s

    Returns
    -------
    %(returns_store)s
    """
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    out = check_out(out, overwrite)  # before any work
    tr, sfreq = _check_positive("tr", tr), _check_positive("sfreq", sfreq)
    store_tr = tr if resample_tr is None else _check_positive("resample_tr", resample_tr)
    resample = abs(store_tr - tr) > 1e-9 * tr
    sound_start = _check_positive("sound_start", sound_start, allow_zero=True)
    trim_start = _check_int("trim_start", trim_start, minimum=0)
    trim_end = _check_int("trim_end", trim_end, minimum=0)
    tolerance = tr if tolerance is None else _check_positive("tolerance", tolerance,
                                                             allow_zero=True)
    layer, context_tokens = check_feature_options(layer, context_tokens, features_fn=features_fn,
                                                  repeatability=repeatability)
    if abs(store_tr * sfreq - round(store_tr * sfreq)) > 1e-6:
        logger.warning("The store's TR (%g s) is %g feature frames at %g Hz, not a whole number: "
                       "the joint model's fMRI head will refuse it; pass resample_tr=2.0.",
                       store_tr, store_tr * sfreq, sfreq)

    # ---------------------------------------------------------------- check everything first
    layout = read_lebel_layout(root)
    subjects, stories, story_splits, pairs = _select(layout, subjects, stories, splits)
    shapes, n_voxels, n_rows = {}, {}, {}
    for sub in subjects:
        for story in pairs[sub]:
            shapes[sub, story] = hf5_shape(layout.hf5(sub, story))
            n_rep, rows, n_vox = shapes[sub, story]
            if n_voxels.setdefault(sub, n_vox) != n_vox:
                raise ValueError(f"The .hf5 files of subject {sub!r} have different numbers of "
                                 f"voxels ({n_voxels[sub]} and {n_vox} in '{story}').")
            expected = layout.respdict[story] - trim_start - trim_end
            if rows != expected:
                raise ValueError(
                    f"Stories of inconsistent length: '{layout.hf5(sub, story)}' has {rows} "
                    f"volumes but respdict.json gives {layout.respdict[story]} for the scan, "
                    f"i.e. {expected} after trimming {trim_start} + {trim_end} volumes. Check "
                    "'trim_start'/'trim_end', or whether this file comes from another "
                    "preprocessing.")
            n_rows[story] = rows
    maps = _mappings(voxel_to_source, subjects, n_voxels)
    windows = {}
    for story in stories:
        windows[story] = story_window(
            n_rows[story], audio_duration(layout.wav(story)), tr=tr, sfreq=sfreq,
            store_tr=store_tr, resample=resample, sound_start=sound_start,
            trim_start=trim_start, trim_end=trim_end, tolerance=tolerance, story=story)
        if windows[story]["dropped"]:
            logger.warning("Story %s: the audio ends within %g s before the end of the fMRI; "
                           "the last %d volume(s) are dropped.", story, tolerance,
                           windows[story]["dropped"])

    # ---------------------------------------------------------------- features (cached)
    work = open_work_dir(work_dir, out, marker=_WORK_MARKER,
                         generator="neurofuse.data.datasets.lebel.prepare_lebel",
                         cache_version=_CACHE_VERSION)
    bar = {"disable": not progress_enabled(), "leave": False}
    streams, infos, feat_counts = story_features(
        work, {s: (layout.wav(s), layout.textgrid(s)) for s in stories},
        cache_name="lebel-features", cache_version=_CACHE_VERSION,
        language_model=language_model, layer=layer, context_tokens=context_tokens, sfreq=sfreq,
        device=device, features_fn=features_fn)
    counts = {"features_computed": feat_counts["computed"],
              "features_cached": feat_counts["cached"], "fmri_computed": 0, "fmri_cached": 0,
              "nonfinite_replaced": {}}
    for story in stories:
        win, n_feat = windows[story], infos[story]["n_times"]
        if win["start"] + win["n_times"] > n_feat:
            raise ValueError(
                f"Stories of inconsistent length: the features of story {story!r} have "
                f"{n_feat} frames but its fMRI window needs frames {win['start']} to "
                f"{win['start'] + win['n_times']} (audio duration "
                f"{win['audio_duration']:.3f} s).")

    # ---------------------------------------------------------------- fMRI (cached)
    jobs = [(sub, story) for sub in subjects for story in pairs[sub]]
    for sub, story in tqdm(jobs, desc="fMRI to sources", **bar):
        path = layout.hf5(sub, story)
        key = hash_arrays("lebel-fmri", _CACHE_VERSION, signature(path), maps[sub].key)
        npy = work / "fmri" / sub / f"{story}.npy"
        info = cached(npy, key)
        if info is None:
            data, n_bad = read_hf5(path)  # (n_rep, n_rows, n_vox)
            proj = np.stack([np.asarray(maps[sub].matrix @ rep.T, np.float32) for rep in data])
            info = {"shape": list(proj.shape), "nonfinite": n_bad}
            store_cached(npy, key, proj, info)
            counts["fmri_computed"] += 1
        else:
            counts["fmri_cached"] += 1
        if info["nonfinite"]:
            counts["nonfinite_replaced"][f"{sub}/{story}"] = info["nonfinite"]
    n_bad = sum(counts["nonfinite_replaced"].values())
    if n_bad:
        logger.warning("Replaced %d non-finite .hf5 values by 0 (as the reference code's "
                       "np.nan_to_num) in %d files.", n_bad, len(counts["nonfinite_replaced"]))

    # ---------------------------------------------------------------- write the store
    from .... import __version__
    from ...repeatability import compute_repeatability
    from ...store import DatasetWriter
    from .._template import template_metadata

    metadata = {
        "generator": "neurofuse.data.datasets.lebel.prepare_lebel",
        "versions": {"neurofuse": __version__, "numpy": np.__version__},
        "units": {"fmri": "as in the derivative .hf5 files, projected to sources"},
        # audio time (s) of each story's first sample: the part of the audio the fMRI covers
        "story_offsets": {s: windows[s]["start_s"] for s in stories},
        # the morphs map from fsaverage oct6 (the smoothed source layer needs its vertices)
        "template": template_metadata("oct6"),
        "lebel": {
            "dataset": "LeBel et al. (2023), OpenNeuro ds003020", "root": str(layout.root),
            "tr_data": tr, "tr": store_tr, "resampled": resample, "sound_start": sound_start,
            "trim_start": trim_start, "trim_end": trim_end, "tolerance": tolerance,
            "language_model": lm_name(language_model), "layer": layer,
            "context_tokens": context_tokens,
            "voxel_to_source": {s: maps[s].kind for s in subjects},
            "nonfinite_replaced": counts["nonfinite_replaced"],
            "windows": {s: {k: windows[s][k] for k in ("start_s", "stop_s", "audio_duration",
                                                       "n_trs", "shift", "offset_error",
                                                       "dropped")}
                        for s in stories},
        },
    }
    repeated = {sub: {} for sub in subjects}  # sub -> {story: r}
    with DatasetWriter(out, sfreq=sfreq, tr=store_tr, feature_streams=streams,
                       overwrite=overwrite, metadata=metadata) as writer:
        for story in stories:
            win = windows[story]
            writer.add_story(story, split=story_splits[story], n_times=win["n_times"])
        for sub in subjects:
            writer.add_subject(sub, modalities=["fmri"], morph=maps[sub].morph,
                               vertices=maps[sub].vertices, n_sources=maps[sub].n_sources,
                               anatomy={"dataset": "ds003020", "subject": sub,
                                        "voxel_to_source": maps[sub].kind})
        for story in tqdm(stories, desc="writing", **bar):
            win = windows[story]
            feats = np.load(work / "features" / f"{story}.npy", mmap_mode="r")
            writer.write_features(story, feats[win["start"]:win["start"] + win["n_times"]])
            del feats
            for sub in subjects:
                if story not in pairs[sub]:
                    continue
                proj = np.load(work / "fmri" / sub / f"{story}.npy")  # (n_rep, n_src, n_rows)
                if resample:
                    proj = resample_volumes(proj, tr=tr, new_tr=store_tr, shift=win["shift"],
                                            n_out=win["n_trs"])
                else:
                    proj = proj[..., :win["n_trs"]]
                writer.write_fmri(sub, story, proj)
                if repeatability and proj.shape[0] >= 2 and story_splits[story] != "test":
                    repeated[sub][story] = compute_repeatability(proj, method=repeatability)
                del proj
        for sub in subjects:
            if repeated[sub]:
                writer.write_repeatability(sub, "fmri", np.mean(list(repeated[sub].values()), 0),
                                           method=repeatability, stories=list(repeated[sub]))
            elif repeatability:
                only_test = [st for st in pairs[sub] if shapes[sub, st][0] >= 2]
                if only_test:
                    logger.info("%s: the repeated stories %s are test stories, so no "
                                "repeatability is stored (the loss weights must not see test "
                                "data); give them another split (e.g. 'anchor') to use them.",
                                sub, only_test)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)

    n_rep = {st: max(shapes[s, st][0] for s in subjects if st in pairs[s]) for st in stories}
    hours = sum(windows[s]["n_times"] for s in stories) / sfreq / 3600
    logger.info(
        "Prepared LeBel ds003020 -> %s in %.1f s: %d stories (%.2f h; splits %s), %d subjects "
        "(%s), TR %g s%s; features %d computed / %d reused, fMRI %d computed / %d reused; "
        "repeated stories %s; repeatability stored for %s; %d non-finite values replaced.",
        out, time.perf_counter() - t_start, len(stories), hours,
        split_counts(story_splits),
        len(subjects), ", ".join(f"{s}: {len(pairs[s])} stories" for s in subjects), store_tr,
        f" (resampled from {tr:g} s)" if resample else "", counts["features_computed"],
        counts["features_cached"], counts["fmri_computed"], counts["fmri_cached"],
        {s: r for s, r in n_rep.items() if r > 1} or "none",
        [s for s in subjects if repeated[s]] or "nobody", n_bad)
    return out

"""Write the merged store: :func:`merge_datasets` (see :mod:`neurofuse.data.merge`)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np

from ..._checks import _check_positive
from ..._docs import fill_doc
from ..._logging import logger, progress_enabled, verbose
from ..store import DatasetWriter
from .blocks import _copy_gt_crop, _copy_rows, _copy_time_crop
from .checks import (
    _check_compatible,
    _check_features_agree,
    _fsaverage_sizes,
    _open_stores,
    _story_list,
    _story_splits,
    _subject_names,
)
from .ground_truth import _plan_ground_truth
from .windows import _story_windows

__all__ = ["merge_datasets"]


@verbose
@fill_doc
def merge_datasets(stores, out, *, stories=None, splits=None, subject_prefixes=None,
                   check_features=True, atol=1e-3, rtol=1e-3, ground_truth=True,
                   overwrite=False, verbose=None) -> Path:
    """Merge dataset stores (e.g. real MEG and LeBel fMRI) into one store.

    See :mod:`neurofuse.data.merge` for how stories are aligned and what is checked.

    Parameters
    ----------
    stores : list of path-like | Dataset
        Two or more dataset stores (``docs/dataset-format.md``).
    %(out)s
    stories : list of str | None
        Stories to keep (default: every story of every store, in store order).
    splits : dict of str to str | path-like | None
        ``{story: 'train' | 'val' | 'test' | 'anchor'}`` for the merged store (or a JSON file
        holding it). Unlisted stories keep their split, which must then be the same in every
        store that has them.
    subject_prefixes : list of str | None
        One prefix per store, prepended to its subject names (e.g. ``['meg-', 'fmri-']``);
        needed only when two stores have a subject of the same name.
    check_features : bool
        Check that a story's features agree between the stores that have it, after cropping
        to the common window (they must: same audio, alignment and language model).
    atol, rtol : float
        Tolerance of that check: ``|a - b| <= atol + rtol * |a|`` everywhere (``a``: the
        first store's features). The default 1e-3 absorbs float32 differences between
        devices; a different language model, layer, audio or a misaligned story gives
        differences of order 1.
    ground_truth : bool
        Carry the stores' ground truth (simulations) over: per-story arrays
        (``ground_truth/.../<story>.npy`` whose last axis is the story's time) are cropped
        like the data, others copied. The same name in two stores must hold the same
        content, otherwise pass ``False``.
    %(overwrite)s
    %(verbose_loader)s

    Returns
    -------
    out : Path
        The merged store; open it with :func:`neurofuse.data.store.read_dataset`.

    Notes
    -----
    The merged story ``s`` starts at the latest of the stores' starts (moved on to the next
    fMRI volume boundary if a store holds fMRI of it) and ends at the earliest end: MEG and
    features are cropped sample-exactly, fMRI by whole volumes, so sample ``k`` of the merged
    story is sample ``k + crop`` of each source store, and volume ``j`` is volume
    ``j + crop / (tr * sfreq)``. ``metadata["story_offsets"]`` of the merged store gives the
    new audio offsets, ``metadata["merge"]`` the crops per store and each store's metadata.
    A story's features are taken from the first store that has it. Each subject's anatomy
    (info, lead field, morph, vertices, forward), repeats, cnr and stored repeatability are
    carried over; a stored repeatability computed from a story that is a test story of the
    merged store is dropped (the loss weights must not see test data).

    Raises
    ------
    FileExistsError
        ``out`` exists and ``overwrite`` is False.
    ValueError
        Different sampling rates, feature streams, fMRI TRs or fsaverage source spaces;
        clashing subject names; different splits; features that disagree; windows that do
        not overlap or fMRI grids that cannot be aligned. Nothing is written.
    """
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    out = Path(out).expanduser()
    if out.exists() and not overwrite:
        raise FileExistsError(f"The output location '{out}' already exists. Choose a new folder "
                              "or pass overwrite=True (--overwrite) to replace it.")
    atol = _check_positive("atol", atol, allow_zero=True)
    rtol = _check_positive("rtol", rtol, allow_zero=True)
    datasets = _open_stores(stores)
    if any(ds.path.resolve() == out.resolve() for ds in datasets):
        raise ValueError(f"'out' = '{out}' is one of the stores being merged; write the merged "
                         "store to a new folder.")
    names = [f"store {i} ('{ds.path}')" for i, ds in enumerate(datasets)]
    sfreq = datasets[0].sfreq
    tr = _check_compatible(datasets, names)
    renames = _subject_names(datasets, names, subject_prefixes)
    story_list = _story_list(datasets, stories)
    story_splits = _story_splits(datasets, names, story_list, splits)
    _fsaverage_sizes(datasets, names)
    streams = datasets[0].feature_streams

    windows, holders = _story_windows(datasets, names, story_list, sfreq=sfreq, tr=tr)
    if check_features:
        _check_features_agree(datasets, names, story_list, windows, holders,
                              streams=streams, atol=atol, rtol=rtol, sfreq=sfreq, tr=tr)
    gt_arrays, gt_dirs = {}, {}  # name -> (store index, story or None); name -> store index
    if ground_truth:
        gt_arrays, gt_dirs = _plan_ground_truth(datasets, names, story_list, windows,
                                                holders)

    # ---------------------------------------------------------------- subjects
    plans = []  # (store index, old name, new name, modalities, {modality: [stories]})
    for i, ds in enumerate(datasets):
        for sub in ds.subjects:
            kept = {m: [s for s in story_list if ds.has(sub, m, s)] for m in ds.modalities(sub)}
            kept = {m: v for m, v in kept.items() if v}
            if not kept:
                logger.info("%s of %s has no data in the merged stories: left out.", sub,
                            names[i])
                continue
            plans.append((i, sub, renames[i][sub], list(kept), kept))

    # ---------------------------------------------------------------- write
    import mne

    from ... import __version__

    template = [ds.metadata.get("template") for ds in datasets if ds.metadata.get("template")]
    units = {}
    for ds in datasets:
        units.update(ds.metadata.get("units") or {})
    metadata = {
        "generator": "neurofuse.data.merge.merge_datasets",
        "versions": {"neurofuse": __version__, "numpy": np.__version__},
        "story_offsets": {s: windows[s]["start"] / sfreq for s in story_list},
        "units": units,
        "merge": {
            "options": {"check_features": bool(check_features), "atol": atol, "rtol": rtol,
                        "ground_truth": bool(ground_truth),
                        "splits": None if splits is None else str(splits)
                        if isinstance(splits, (str, os.PathLike)) else dict(splits),
                        "subject_prefixes": subject_prefixes},
            "stores": [{"path": str(ds.path), "subjects": renames[i],
                        "stories": [s for s in story_list if s in ds.stories],
                        "metadata": ds.metadata} for i, ds in enumerate(datasets)],
            "windows": {s: {"start_s": windows[s]["start"] / sfreq,
                            "stop_s": (windows[s]["start"] + windows[s]["n_times"]) / sfreq,
                            "n_times": windows[s]["n_times"], "n_trs": windows[s]["n_trs"],
                            "crops": [{"store": i, "start": c["crop"], "volume": c["volume"]}
                                      for i, c in zip(holders[s], windows[s]["crops"])]}
                        for s in story_list},
        },
    }
    if template and all(t == template[0] for t in template):
        metadata["template"] = template[0]
    elif template:
        logger.warning("The stores describe different templates (metadata['template']); the "
                       "merged store keeps none.")
    crop_of = {(s, i): c for s in story_list for i, c in zip(holders[s], windows[s]["crops"])}
    bar = {"leave": False, "disable": not progress_enabled()}
    n_dropped_rep = 0
    with DatasetWriter(out, sfreq=sfreq, tr=tr, feature_streams=dict(streams),
                       overwrite=overwrite, metadata=metadata) as writer:
        for story in tqdm(story_list, desc="features", **bar):
            win, first = windows[story], holders[story][0]
            writer.add_story(story, split=story_splits[story], n_times=win["n_times"])
            src = datasets[first].features(story)
            dst = writer.create_array(f"features/{story}.npy", (win["n_times"], src.shape[1]))
            _copy_rows(src, dst, crop_of[story, first]["crop"], win["n_times"])
            del src
        for i, sub, new, mods, kept in tqdm(plans, desc="subjects", **bar):
            ds = datasets[i]
            entry = ds._m["subjects"][sub]
            files = {**ds.files(sub), **(ds.files(sub, "meg") if "meg" in entry["modalities"]
                                         else {})}
            fwd = None
            if "forward" in files:
                fwd = mne.read_forward_solution(ds.path / "subjects" / sub / files["forward"],
                                                verbose="error")
            cnr = {m: v for m, v in ds.cnr(sub).items() if m in mods}
            writer.add_subject(
                new, modalities=mods, info=ds.info(sub) if "info" in files else None,
                leadfield=np.asarray(ds.leadfield(sub)) if "leadfield" in files else None,
                morph=ds.morph(sub) if "morph" in files else None,
                vertices=ds.vertices(sub) if "vertices" in files else None,
                anatomy=ds.anatomy(sub), cnr=cnr or None, n_sources=entry.get("n_sources"),
                forward=fwd)
            del fwd
            for mod in mods:
                for story in kept[mod]:
                    c = crop_of[story, i]
                    src = ds.meg(sub, story) if mod == "meg" else ds.fmri(sub, story)
                    if mod == "meg":
                        start, n = c["crop"], windows[story]["n_times"]
                    else:
                        start, n = c["volume"], windows[story]["n_trs"]
                    dst = writer.create_array(f"subjects/{new}/{mod}/{story}.npy",
                                              (src.shape[0], src.shape[1], n))
                    _copy_time_crop(src, dst, start, n)
                    del src
                info = ds.repeatability_info(sub, mod)
                if info is None:
                    continue
                used = info.get("stories") or []
                leak = [s for s in used if story_splits.get(s) == "test"]
                if leak:
                    logger.warning("%s (%s): its stored %s repeatability was computed from %s, "
                                   "a test story of the merged store; it is dropped (the loss "
                                   "weights would see test data).", new, names[i], mod, leak)
                    n_dropped_rep += 1
                    continue
                writer.write_repeatability(new, mod, ds.repeatability(sub, mod),
                                           method=info.get("method"),
                                           stories=[s for s in used if s in story_splits] or None)
        for name, (i, story) in tqdm(list(gt_arrays.items()), desc="ground truth", **bar):
            src = datasets[i].ground_truth(name)
            if story is None:
                dst = writer.create_array(f"ground_truth/{name}", src.shape, src.dtype)
                if src.ndim:
                    _copy_rows(src, dst, 0, src.shape[0])
                else:
                    dst[()] = src
            else:
                c, n = crop_of[story, i]["crop"], windows[story]["n_times"]
                dst = writer.create_array(f"ground_truth/{name}", (*src.shape[:-1], n),
                                          src.dtype)
                _copy_gt_crop(src, dst, c, n)
            del src
        for name, i in gt_dirs.items():
            shutil.copytree(datasets[i].ground_truth_dir(name), writer.ground_truth_dir(name),
                            dirs_exist_ok=True)

    n_sub = {m: sum(m in p[3] for p in plans) for m in ("meg", "fmri")}
    cropped = {s: f"{windows[s]['start'] / sfreq:g}-"
                  f"{(windows[s]['start'] + windows[s]['n_times']) / sfreq:g} s"
               for s in story_list if len(holders[s]) > 1}
    logger.info(
        "Merged %d stores -> %s in %.1f s: %d stories (%.2f h; %d shared: %s), subjects "
        "%d MEG / %d fMRI, features %s, ground truth %d arrays + %d folders%s.",
        len(datasets), out, time.perf_counter() - t_start, len(story_list),
        sum(windows[s]["n_times"] for s in story_list) / sfreq / 3600, len(cropped),
        cropped or "none", n_sub["meg"], n_sub["fmri"],
        "checked" if check_features else "not checked", len(gt_arrays), len(gt_dirs),
        f"; {n_dropped_rep} stored repeatabilities dropped" if n_dropped_rep else "")
    return out

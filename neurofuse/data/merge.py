"""Merge dataset stores, e.g. a MEG store and the LeBel fMRI store, into one for joint training.

The paper trains one model on MEG subjects and on the fMRI subjects of LeBel et al. (2023)
who heard the same stories. :func:`neurofuse.data.bids_meg.prepare_meg_bids` and
:func:`neurofuse.data.lebel.prepare_lebel` write one store each; :func:`merge_datasets`
combines them (or any stores of the format, ``docs/dataset-format.md``) into a new store
that ``neurofuse joint fit`` reads.

Story offsets and the common window
-----------------------------------
A story present in several stores may have been cut differently. Every store records, per
story, the audio time of its first sample: ``metadata["story_offsets"][story]`` (seconds).
LeBel stores keep only the part of the audio that the fMRI covers (offset ~10.06 s), MEG
stores keep whole stories (offset 0). A store without the key (older stores) is read with
offset ``metadata["lebel"]["windows"][story]["start_s"]`` when it has that, else 0.

Sample ``k`` of a story in a store with offset ``o`` (in samples) is audio sample ``o + k``,
so the merged story keeps the **intersection** of the stores' windows: it starts at
``start = max(o_i)`` and ends at ``min(o_i + n_times_i)``. When a store holds fMRI for the
story, its volume ``j`` covers audio samples ``[o + j R, o + (j + 1) R)`` (``R = tr * sfreq``),
and volumes cannot be split: the start is then moved *later*, to the first fMRI volume
boundary at or after ``max(o_i)``, and the other stores' data (MEG, features) are cropped to
that grid. Stores with fMRI for the same story must share the grid (offsets differing by
whole TRs). The merged store records its own offsets (``story_offsets``), so merged stores
can be merged again.

What is checked (before anything is written)
--------------------------------------------
* the same ``sfreq``, the same ``feature_streams``, and the same ``tr`` among the stores that
  hold fMRI (stores without fMRI take the merged ``tr``);
* subject names unique across stores (or made unique with ``subject_prefixes``);
* a story's split the same in every store that has it (or set with ``splits``);
* the features of a shared story the same in every store after cropping, within
  ``|a - b| <= atol + rtol * |b|`` (same audio, alignment, language model and layer), with
  the difference per stream, and the shift that would make them agree, in the error;
* every subject's fsaverage source space (``n_sources_fsaverage``) the same;
* offsets on the sample grid, a non-empty common window (at least one TR with fMRI).
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np

from .._checks import _check_option, _check_positive, _check_type
from .._docs import fill_doc
from .._logging import logger, progress_enabled, verbose
from .store import (
    SPLITS,
    Dataset,
    DatasetWriter,
    _check_name,
    expected_n_trs,
)
from .store import read_dataset as _read_dataset

__all__ = ["merge_datasets", "story_offset"]

_CHUNK_BYTES = 32 * 2**20  # per copied or compared block


# --------------------------------------------------------------------------------------
# Offsets and windows
# --------------------------------------------------------------------------------------

def story_offset(dataset, story) -> float:
    """Audio time (s) of the first sample of ``story`` in ``dataset``.

    ``metadata["story_offsets"][story]`` when the store has it; otherwise, for LeBel stores
    written before that key existed, ``metadata["lebel"]["windows"][story]["start_s"]``;
    otherwise 0 (the story starts with its audio).
    """
    meta = dataset.metadata or {}
    offsets = meta.get("story_offsets") or {}
    if story in offsets:
        return float(offsets[story])
    window = ((meta.get("lebel") or {}).get("windows") or {}).get(story)
    if isinstance(window, dict) and "start_s" in window:
        return float(window["start_s"])
    return 0.0


def _on_grid(value, what, how):
    out = round(value)
    if abs(value - out) > 1e-6:
        raise ValueError(f"{what} is {value:.6g} samples, not a whole number: {how}")
    return int(out)


def _common_window(story, parts, *, sfreq, tr):
    """Where the merged ``story`` starts and how long it is.

    Parameters
    ----------
    parts : list of dict
        One per store holding the story: ``offset`` (samples), ``n_times``, ``fmri`` (bool),
        ``name`` (for messages).

    Returns
    -------
    window : dict
        ``start`` (audio sample of the merged story's first sample), ``n_times``, ``n_trs``,
        and per part ``crop`` (first sample kept) and ``volume`` (first fMRI volume kept).
    """
    start = max(p["offset"] for p in parts)
    stop = min(p["offset"] + p["n_times"] for p in parts)
    fmri = [p for p in parts if p["fmri"]]
    if fmri:
        spt = tr * sfreq  # samples per volume
        ref = fmri[0]
        for other in fmri[1:]:
            lag = (other["offset"] - ref["offset"]) / spt
            if abs(lag - round(lag)) > 1e-6:
                raise ValueError(
                    f"Story {story!r}: the fMRI volumes of {ref['name']} and {other['name']} lie "
                    f"on different grids (their story offsets differ by "
                    f"{(other['offset'] - ref['offset']) / sfreq:g} s, not a whole number of "
                    f"TRs of {tr:g} s), so their volumes cannot be aligned. Prepare them with "
                    "the same window start, or merge them separately.")
        k = math.ceil((start - ref["offset"]) / spt - 1e-9)
        start = _on_grid(ref["offset"] + k * spt, f"Story {story!r}: the first fMRI volume "
                         "boundary in the common window",
                         f"the TR ({tr:g} s) is not a whole number of samples at {sfreq:g} Hz, "
                         "so the fMRI cannot be cropped. Resample the fMRI to such a TR "
                         "(prepare_lebel(resample_tr=2.0)).")
    n_times = stop - start
    if n_times < 1:
        raise ValueError(
            f"Story {story!r}: the stores hold no common part of its audio "
            + ", ".join(f"({p['name']}: {p['offset'] / sfreq:g} to "
                        f"{(p['offset'] + p['n_times']) / sfreq:g} s)" for p in parts)
            + (" once the start is moved to an fMRI volume boundary" if fmri else "")
            + ". Check metadata['story_offsets'] of the stores, or leave the story out "
            "('stories').")
    n_trs = expected_n_trs(n_times, sfreq, tr)
    if fmri and n_trs < 1:
        raise ValueError(f"Story {story!r}: the common window ({n_times / sfreq:g} s) is "
                         f"shorter than one TR ({tr:g} s); leave the story out ('stories').")
    crops = []
    for p in parts:
        crop = start - p["offset"]
        volume = round(crop / (tr * sfreq)) if p["fmri"] else None
        if p["fmri"]:
            assert volume + n_trs <= expected_n_trs(p["n_times"], sfreq, tr)
        crops.append({"crop": int(crop), "volume": volume})
    return {"start": int(start), "n_times": int(n_times), "n_trs": int(n_trs), "crops": crops}


# --------------------------------------------------------------------------------------
# Chunked copies and comparisons
# --------------------------------------------------------------------------------------

def _rows_per_chunk(row_bytes):
    return max(1, _CHUNK_BYTES // max(1, int(row_bytes)))


def _copy_time_crop(src, dst, start, n):
    """``dst[...] = src[..., start:start + n]`` for (n_repeats, n_targets, n_time) arrays,
    a block of targets at a time."""
    step = _rows_per_chunk(n * src.dtype.itemsize)
    for rep in range(src.shape[0]):
        for a in range(0, src.shape[1], step):
            dst[rep, a:a + step] = src[rep, a:a + step, start:start + n]


def _copy_rows(src, dst, start, n):
    """``dst[:] = src[start:start + n]`` (time on the first axis), a block of rows at a time."""
    step = _rows_per_chunk(np.prod(src.shape[1:], dtype=np.int64) * src.dtype.itemsize)
    for a in range(0, n, step):
        b = min(n, a + step)
        dst[a:b] = src[start + a:start + b]


def _feature_mismatch(ref, other, c_ref, c_other, n, *, streams, atol, rtol):
    """None if the cropped features agree, else a dict per stream with the largest difference
    and the fraction of frames that differ."""
    step = _rows_per_chunk(ref.shape[1] * 8 * 6)  # ~6 float64 temporaries per block
    worst = {name: [0.0, 0] for name in streams}  # max |diff|, frames beyond tolerance
    bad = False
    for a in range(0, n, step):
        b = min(n, a + step)
        x = np.asarray(ref[c_ref + a:c_ref + b], np.float64)
        y = np.asarray(other[c_other + a:c_other + b], np.float64)
        diff = np.abs(x - y)
        over = diff > atol + rtol * np.abs(x)
        if over.any():
            bad = True
        for name, (lo, hi) in streams.items():
            worst[name][0] = max(worst[name][0], float(diff[:, lo:hi].max(initial=0.0)))
            worst[name][1] += int(over[:, lo:hi].any(axis=1).sum())
    if not bad:
        return None
    return {name: (d, k / n) for name, (d, k) in worst.items()}


def _best_shift(ref, other, c_ref, c_other, n, max_shift):
    """The lag (samples) for which ``other[c_other + t + lag]`` best matches
    ``ref[c_ref + t]``, and its mean absolute difference relative to lag 0 (for the error
    message); ``(None, None)`` if nothing can be compared."""
    span = min(n, 3000)
    x = np.asarray(ref[c_ref:c_ref + span], np.float64)
    scores = {}
    for lag in range(-max_shift, max_shift + 1):
        lo = max(0, -(c_other + lag))  # first t with a sample of ``other``
        hi = min(span, other.shape[0] - c_other - lag)
        if hi - lo < span // 2:
            continue
        y = np.asarray(other[c_other + lag + lo:c_other + lag + hi], np.float64)
        scores[lag] = float(np.mean(np.abs(x[lo:hi] - y)))
    if 0 not in scores or len(scores) < 2:
        return None, None
    lag = min(scores, key=scores.get)
    return lag, scores[lag] / max(scores[0], 1e-30)


def _file_digest(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fid:
        for block in iter(lambda: fid.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _tree_digest(folder) -> dict:
    folder = Path(folder)
    return {str(p.relative_to(folder)): _file_digest(p)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _arrays_equal(a, b) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.ndim == 0:
        return bool(np.array_equal(a, b, equal_nan=np.issubdtype(a.dtype, np.inexact)))
    step = _rows_per_chunk(a[:1].nbytes)
    nan = np.issubdtype(a.dtype, np.inexact)
    return all(np.array_equal(np.asarray(a[i:i + step]), np.asarray(b[i:i + step]),
                              equal_nan=nan) for i in range(0, a.shape[0], step))


# --------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------

def _open_stores(stores):
    if isinstance(stores, (str, os.PathLike, Dataset)) or not isinstance(stores, (list, tuple)):
        raise TypeError("'stores' must be a list of dataset folders (or opened Datasets), e.g. "
                        f"['meg-store', 'lebel-store'], got {type(stores).__name__}.")
    if len(stores) < 2:
        raise ValueError(f"'stores' must name at least two datasets to merge, got {len(stores)}.")
    out = [s if isinstance(s, Dataset) else _read_dataset(s) for s in stores]
    paths = [ds.path.resolve() for ds in out]
    dup = sorted({str(p) for p in paths if paths.count(p) > 1})
    if dup:
        raise ValueError(f"'stores' names the same dataset twice: {dup}.")
    return out


def _check_compatible(datasets, names):
    for ds, name in zip(datasets, names):
        for sub in ds.subjects:
            other = [m for m in ds.modalities(sub)
                     if m not in ("meg", "fmri") or ds.epoch_names(sub, m)]
            if other:
                raise ValueError(
                    f"{name} subject {sub!r} has {other} data: merge_datasets merges continuous "
                    "MEG and source-space fMRI stories only (no other modality, no epochs).")
    ref, ref_name = datasets[0], names[0]
    for ds, name in zip(datasets[1:], names[1:]):
        if abs(ds.sfreq - ref.sfreq) > 1e-9 * ref.sfreq:
            raise ValueError(
                f"Wrong sampling rate: {name} is at {ds.sfreq:g} Hz but {ref_name} at "
                f"{ref.sfreq:g} Hz; stores can only be merged at the same rate. Prepare them "
                "with the same sfreq (50 Hz for the paper's model).")
        if {k: tuple(v) for k, v in ds.feature_streams.items()} != \
                {k: tuple(v) for k, v in ref.feature_streams.items()} \
                or ds.n_features != ref.n_features:
            raise ValueError(
                f"The feature streams differ: {name} has {dict(ds.feature_streams)} "
                f"({ds.n_features} columns) but {ref_name} has {dict(ref.feature_streams)} "
                f"({ref.n_features}). Prepare the stores with the same language model and "
                "feature settings.")
    with_fmri = [(ds, n) for ds, n in zip(datasets, names)
                 if any("fmri" in ds.modalities(s) for s in ds.subjects)]
    if not with_fmri:
        return datasets[0].tr
    tr, tr_name = with_fmri[0][0].tr, with_fmri[0][1]
    for ds, name in with_fmri[1:]:
        if abs(ds.tr - tr) > 1e-9 * tr:
            raise ValueError(f"The fMRI TRs differ: {name} has tr = {ds.tr:g} s, {tr_name} "
                             f"{tr:g} s. Resample one of them (prepare_lebel(resample_tr=...)).")
    return tr


def _subject_names(datasets, names, prefixes):
    if prefixes is None:
        prefixes = [""] * len(datasets)
    else:
        prefixes = list(_check_type("subject_prefixes", prefixes, (list, tuple)))
        if len(prefixes) != len(datasets):
            raise ValueError(f"'subject_prefixes' must give one prefix per store "
                             f"({len(datasets)}), got {len(prefixes)}: {prefixes}.")
        for p in prefixes:
            _check_type("subject_prefixes", p, str)
    renames, owner = [], {}
    for i, (ds, prefix) in enumerate(zip(datasets, prefixes)):
        renames.append({})
        for sub in ds.subjects:
            new = _check_name("subject name", prefix + sub)
            if new in owner:
                raise ValueError(
                    f"Subject {new!r} is in both {names[owner[new]]} and {names[i]}: subject "
                    "names must be unique in the merged store. Give each store a prefix, e.g. "
                    "subject_prefixes=['meg-', 'fmri-'] (--prefix meg- fmri-), if they are "
                    "different people.")
            owner[new] = i
            renames[i][sub] = new
    return renames


def _story_list(datasets, stories):
    available = []
    for ds in datasets:
        available += [s for s in ds.stories if s not in available]
    if stories is None:
        return available
    stories = [stories] if isinstance(stories, str) else list(
        _check_type("stories", stories, (list, tuple)))
    if not stories or len(set(stories)) != len(stories):
        raise ValueError(f"'stories' must list distinct story names, got {stories}.")
    unknown = [s for s in stories if s not in available]
    if unknown:
        raise ValueError(f"'stories' names stories that no store has: {unknown}. The stores "
                         f"have {available}.")
    return stories


def _story_splits(datasets, names, stories, splits):
    if isinstance(splits, (str, os.PathLike)):
        from ._prepare import read_splits_file

        splits = read_splits_file(splits)
    splits = {} if splits is None else dict(_check_type("splits", splits, dict))
    for story, split in splits.items():
        _check_option("split", split, SPLITS, extra=f"(splits[{story!r}])")
    unknown = sorted(set(splits) - set(stories))
    if unknown:
        raise ValueError(f"'splits' names stories that are not merged: {unknown}.")
    out, conflicts = {}, []
    for story in stories:
        have = {n: ds._m["stories"][story]["split"]
                for ds, n in zip(datasets, names) if story in ds.stories}
        if story in splits:
            out[story] = splits[story]
        elif len(set(have.values())) > 1:
            conflicts.append(f"{story!r}: " + ", ".join(f"{v} in {n}" for n, v in have.items()))
        else:
            out[story] = next(iter(have.values()))
    if conflicts:
        raise ValueError(
            "Stories have different splits in the stores: " + "; ".join(conflicts)
            + ". Say which split each gets in the merged store with splits={story: split} "
            "(--splits STORY=SPLIT ...).")
    return out


def _fsaverage_sizes(datasets, names):
    sizes = {}
    for ds, name in zip(datasets, names):
        for sub in ds.subjects:
            n = ds._m["subjects"][sub].get("n_sources_fsaverage")
            if n is not None:
                sizes.setdefault(int(n), []).append(f"{sub} ({name})")
    if len(sizes) > 1:
        raise ValueError(
            "The subjects' morphs start from different fsaverage source spaces: "
            + "; ".join(f"{n} sources: {subs[:4]}" for n, subs in sizes.items())
            + ". The joint model needs one template source space: prepare every store with "
            "the same spacing ('oct6').")


# --------------------------------------------------------------------------------------
# merge
# --------------------------------------------------------------------------------------

@verbose
@fill_doc
def merge_datasets(stores, out, *, stories=None, splits=None, subject_prefixes=None,
                   check_features=True, atol=1e-3, rtol=1e-3, ground_truth=True,
                   overwrite=False, verbose=None) -> Path:
    """Merge dataset stores (e.g. real MEG and LeBel fMRI) into one store.

    See the module docstring for how stories are aligned and what is checked.

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

    # ---------------------------------------------------------------- windows
    windows, holders = {}, {}
    for story in story_list:
        holders[story] = [i for i, ds in enumerate(datasets) if story in ds.stories]
        parts = []
        for i in holders[story]:
            ds = datasets[i]
            offset = _on_grid(story_offset(ds, story) * sfreq,
                              f"The offset of story {story!r} in {names[i]}",
                              "metadata['story_offsets'] must be on the store's sample grid.")
            parts.append({"offset": offset, "n_times": ds.n_times(story), "name": names[i],
                          "fmri": any(ds.has(s, "fmri", story) for s in ds.subjects)})
        windows[story] = _common_window(story, parts, sfreq=sfreq, tr=tr)

    # ---------------------------------------------------------------- features agree?
    if check_features:
        shared = [s for s in story_list if len(holders[s]) > 1]
        for story in tqdm(shared, desc="checking features", leave=False,
                          disable=not progress_enabled()):
            win, first = windows[story], holders[story][0]
            ref = datasets[first].features(story)
            for i, crop in zip(holders[story][1:], win["crops"][1:]):
                other = datasets[i].features(story)
                bad = _feature_mismatch(ref, other, win["crops"][0]["crop"], crop["crop"],
                                        win["n_times"], streams=streams, atol=atol, rtol=rtol)
                if bad is None:
                    continue
                lag, ratio = _best_shift(ref, other, win["crops"][0]["crop"], crop["crop"],
                                         win["n_times"], max_shift=round(2 * tr * sfreq))
                hint = ""
                if lag and ratio < 0.1:
                    hint = (f" They agree much better when sample k of store "
                            f"{first} is compared with sample k {lag:+d} of store {i}: the "
                            f"stores' offsets of the story (metadata['story_offsets']) are "
                            f"probably inconsistent by {lag} samples ({lag / sfreq:+g} s).")
                raise ValueError(
                    f"The features of story {story!r} differ between {names[first]} and "
                    f"{names[i]} after cropping to the common window (tolerance atol={atol:g}, "
                    f"rtol={rtol:g}): "
                    + "; ".join(f"{k}: max |difference| {d:.3g}, {100 * f:.1f}% of frames"
                                for k, (d, f) in bad.items())
                    + ". A different language model or layer changes 'word', a different "
                    "audio 'spectrogram', a different alignment 'phoneme'." + hint
                    + " Prepare the stores from the same stimuli and settings, or pass "
                    "check_features=False (--no-check-features) if the difference is "
                    "intended.")
                del other
            del ref

    # ---------------------------------------------------------------- ground truth plan
    gt_arrays, gt_dirs = {}, {}  # name -> (store index, story or None); name -> store index
    if ground_truth:
        for i, ds in enumerate(datasets):
            for name in ds.ground_truth_names:
                arr = ds.ground_truth(name)
                stem = name.rsplit("/", 1)[-1].removesuffix(".npy")
                story = stem if (stem in ds.stories and arr.ndim >= 1
                                 and arr.shape[-1] == ds.n_times(stem)) else None
                if story is not None and story not in story_list:
                    continue
                if name in gt_arrays:
                    j, story_j = gt_arrays[name]
                    if not _same_ground_truth(datasets, windows, holders, name, (j, story_j),
                                              (i, story)):
                        raise ValueError(
                            f"Ground truth {name!r} is in {names[j]} and {names[i]} with "
                            "different content; the merged store can keep only one. Pass "
                            "ground_truth=False (--no-ground-truth) to leave ground truth out.")
                    continue
                gt_arrays[name] = (i, story)
            for name in ds._m.get("ground_truth_dirs", []):
                if name in gt_dirs:
                    j = gt_dirs[name]
                    if _tree_digest(datasets[j].ground_truth_dir(name)) != \
                            _tree_digest(ds.ground_truth_dir(name)):
                        raise ValueError(
                            f"Ground-truth folder {name!r} is in {names[j]} and {names[i]} "
                            "with different content; pass ground_truth=False "
                            "(--no-ground-truth) to leave ground truth out.")
                    continue
                gt_dirs[name] = i

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

    from .. import __version__

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


def _copy_gt_crop(src, dst, start, n):
    """``dst[...] = src[..., start:start + n]`` for an array of any rank (time last)."""
    if src.ndim == 1:
        dst[:] = src[start:start + n]
        return
    flat_src = src.reshape(-1, src.shape[-1]) if src.flags.c_contiguous else None
    if flat_src is None:  # pragma: no cover - np.load memmaps are C-contiguous
        dst[...] = src[..., start:start + n]
        return
    flat_dst = dst.reshape(-1, n)
    step = _rows_per_chunk(n * src.dtype.itemsize)
    for a in range(0, flat_src.shape[0], step):
        flat_dst[a:a + step] = flat_src[a:a + step, start:start + n]


def _same_ground_truth(datasets, windows, holders, name, first, second) -> bool:
    """Whether two stores' ground truth ``name`` holds the same content (after cropping)."""
    (i, story_i), (j, story_j) = first, second
    a, b = datasets[i].ground_truth(name), datasets[j].ground_truth(name)
    if (story_i is None) != (story_j is None):
        return False
    if story_i is None:
        return _arrays_equal(a, b)
    crops = dict(zip(holders[story_i], windows[story_i]["crops"]))
    n = windows[story_i]["n_times"]
    ca, cb = crops[i]["crop"], crops[j]["crop"]
    if a.shape[:-1] != b.shape[:-1] or a.dtype != b.dtype:
        return False
    a2, b2 = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    step = _rows_per_chunk(n * a.dtype.itemsize)
    return all(np.array_equal(np.asarray(a2[k:k + step, ca:ca + n]),
                              np.asarray(b2[k:k + step, cb:cb + n]))
               for k in range(0, a2.shape[0], step))

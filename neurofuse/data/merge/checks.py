"""What :func:`~neurofuse.data.merge.merge_datasets` checks before anything is written.

The stores: sampling rates, feature streams, fMRI TRs, subject names, splits and fsaverage
source spaces compatible; the features of a shared story the same in every store after
cropping to the common window (with the per-stream difference and the shift that would
make them agree in the error).
"""

from __future__ import annotations

import os

import numpy as np

from ..._checks import _check_option, _check_type
from ..._logging import progress_enabled
from ..store import SPLITS, Dataset, _check_name
from ..store import read_dataset as _read_dataset
from .blocks import _rows_per_chunk


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
        from .._prepare import read_splits_file

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


def _check_features_agree(datasets, names, story_list, windows, holders, *, streams, atol,
                          rtol, sfreq, tr):
    """Raise if a story's features differ between the stores that hold it (after cropping)."""
    from tqdm.auto import tqdm

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

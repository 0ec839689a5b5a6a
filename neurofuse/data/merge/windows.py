"""Story offsets in a store and the common window of a story held by several stores."""

from __future__ import annotations

import math

from ..store import expected_n_trs

__all__ = ["story_offset"]


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


def _story_windows(datasets, names, story_list, *, sfreq, tr):
    """The common window of each story and the stores that hold it.

    Returns
    -------
    windows : dict of str to dict
        Per story, what :func:`_common_window` returns (crops in the order of ``holders``).
    holders : dict of str to list of int
        Per story, the indices of the stores that hold it, in store order.
    """
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
    return windows, holders

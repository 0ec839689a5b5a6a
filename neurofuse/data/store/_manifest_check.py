"""The manifest of a store checked against itself (the first step of :mod:`.validate`)."""

from __future__ import annotations

import numpy as np

from ._problems import _Found, _num, _pos_int
from .manifest import _NAME, MANIFEST, SPLITS
from .modalities import MODALITY_REGISTRY


def _check_streams(m, out):
    streams, n_feat = m.get("feature_streams"), m.get("n_features")
    if not isinstance(streams, dict):
        out.add(MANIFEST, "feature_streams", "a {name: [start, stop)} object", repr(streams))
        return
    spans = []
    for name, span in streams.items():
        if not (isinstance(span, list) and len(span) == 2 and all(_pos_int(v, 0) for v in span)
                and span[0] < span[1]):
            out.add(MANIFEST, f"feature_streams.{name}", "[start, stop) with integers "
                    "0 <= start < stop", repr(span))
        else:
            spans.append((span[0], span[1], name))
    spans.sort()
    for (_, stop_a, a), (start_b, _, b) in zip(spans, spans[1:]):
        if start_b < stop_a:
            out.add(MANIFEST, f"feature_streams.{b}", f"columns from {stop_a} on (after stream "
                    f"{a!r}: streams must not overlap)", f"a stream starting at {start_b}")
    want = max((s[1] for s in spans), default=0)
    if not _pos_int(n_feat, 0) or (spans and len(spans) == len(streams) and n_feat != want):
        out.add(MANIFEST, "n_features", f"{want} (the largest stream stop)", repr(n_feat))


def _check_stories(m, out, sfreq):
    stories = m.get("stories")
    if not isinstance(stories, dict):
        out.add(MANIFEST, "stories", "an object {story: {split, n_times, duration}}",
                repr(stories))
        return {}
    good = {}
    for name, st in stories.items():
        where = f"stories.{name}"
        if not _NAME.match(str(name)) or not isinstance(st, dict):
            out.add(MANIFEST, where, "a valid story name and an object", repr(st)[:80])
            continue
        if st.get("split") not in SPLITS:
            out.add(MANIFEST, f"{where}.split", f"one of {list(SPLITS)}", repr(st.get("split")))
        n_times, duration = st.get("n_times"), st.get("duration")
        if not _pos_int(n_times):
            out.add(MANIFEST, f"{where}.n_times", "a positive integer (samples)", repr(n_times))
            continue
        good[name] = n_times
        if sfreq is not None and (not _num(duration)
                                  or abs(duration * sfreq - n_times) > 1e-6 * n_times + 1e-6):
            out.add(MANIFEST, f"{where}.duration", f"n_times / sfreq = {n_times} / {sfreq:g} = "
                    f"{n_times / sfreq:g} s", f"{duration!r} (the manifest's sfreq, n_times "
                    "and duration contradict each other)")
        events = st.get("events", {})
        if not isinstance(events, dict) or not all(_pos_int(v, 0) for v in events.values()):
            out.add(MANIFEST, f"{where}.events", "{name: n_events} with integer counts",
                    repr(events)[:80])
    return good


def _check_modality_info(name, sub, mod, out):
    where = f"subjects.{name}.modality_info.{mod}"
    entry = (sub.get("modality_info") or {}).get(mod)
    kind = MODALITY_REGISTRY[mod].kind
    if not isinstance(entry, dict):
        out.add(MANIFEST, where, f"a description of the {mod} data", repr(entry))
        return None
    if entry.get("kind") != kind.name:
        out.add(MANIFEST, f"{where}.kind", repr(kind.name), repr(entry.get("kind")))
    shape = entry.get("shape")
    if shape is not None and not (isinstance(shape, list) and len(shape) == kind.n_spatial
                                  and all(_pos_int(s) for s in shape)):
        out.add(MANIFEST, f"{where}.shape", f"null or {kind.n_spatial} positive integer(s) "
                f"{kind.spatial_axes}", repr(shape))
        shape = None
    n_src = sub.get("n_sources")
    if kind.name == "source" and shape is not None and _pos_int(n_src) and shape != [n_src]:
        out.add(MANIFEST, f"{where}.shape", f"[{n_src}] (the subject's n_sources)", shape)
    files = entry.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(f, str) for f in files.values()):
        out.add(MANIFEST, f"{where}.files", "{key: file name}", repr(files))
    if "affine" in entry:
        aff = np.asarray(entry["affine"], dtype=object)
        if aff.shape != (4, 4) or not all(_num(v) for v in aff.ravel()):
            out.add(MANIFEST, f"{where}.affine", "a 4 x 4 matrix of numbers", repr(entry["affine"]))
    return shape


def _check_subject(name, sub, stories, out):
    """Check one subject's manifest entry; return ``{modality: spatial shape or None}``."""
    where = f"subjects.{name}"
    if not isinstance(sub, dict):
        out.add(MANIFEST, where, "an object", repr(sub)[:80])
        return {}
    mods = sub.get("modalities")
    if not (isinstance(mods, list) and mods and len(set(mods)) == len(mods)
            and all(m in MODALITY_REGISTRY for m in mods)):
        out.add(MANIFEST, f"{where}.modalities", f"a list of distinct modalities among "
                f"{list(MODALITY_REGISTRY)}", repr(mods))
        return {}
    for key in ("n_sources", "n_sources_fsaverage"):
        if sub.get(key) is not None and not _pos_int(sub.get(key)):
            out.add(MANIFEST, f"{where}.{key}", "null or a positive integer", repr(sub.get(key)))
    for key in ("stories", "n_repeats", "modality_info", "files", "epochs", "cnr",
                "repeatability"):
        if key in sub and not isinstance(sub[key], dict):
            out.add(MANIFEST, f"{where}.{key}", "an object {modality: ...}", repr(sub[key])[:80])
            return {}
    if not all(isinstance(f, str) for f in (sub.get("files") or {}).values()):
        out.add(MANIFEST, f"{where}.files", "{key: file name}", repr(sub["files"])[:80])
    for mod, rep in (sub.get("repeatability") or {}).items():
        if mod not in mods or not isinstance(rep, dict) or not isinstance(rep.get("file"), str):
            out.add(MANIFEST, f"{where}.repeatability.{mod}", "{file, method, stories} for a "
                    "modality of the subject", repr(rep)[:80])
    shapes = {m: _check_modality_info(name, sub, m, out) for m in mods}
    sub_st, reps = sub.get("stories") or {}, sub.get("n_repeats") or {}
    for mod, lst in sub_st.items():
        if mod not in mods or not isinstance(lst, list):
            out.add(MANIFEST, f"{where}.stories.{mod}", f"a list of stories of one of its "
                    f"modalities {mods}", repr(lst)[:80])
            continue
        unknown = [s for s in lst if s not in stories]
        if unknown:
            out.add(MANIFEST, f"{where}.stories.{mod}", f"stories of the dataset "
                    f"{list(stories)}", f"unknown {unknown}")
        got = reps.get(mod) if isinstance(reps, dict) else None
        if not isinstance(got, dict) or sorted(got) != sorted(lst):
            out.add(MANIFEST, f"{where}.n_repeats.{mod}", f"one count per story of "
                    f"stories.{mod} {lst}", repr(got)[:80])
            continue
        for story, r in got.items():
            if not _pos_int(r):
                out.add(MANIFEST, f"{where}.n_repeats.{mod}.{story}", "a positive integer",
                        repr(r))
    cnr = sub.get("cnr", {})
    if not isinstance(cnr, dict):
        out.add(MANIFEST, f"{where}.cnr", "{modality: number or \"inf\"}", repr(cnr))
    else:
        for mod, v in cnr.items():
            if mod not in mods or not ((_num(v) and v > 0) or v == "inf"):
                out.add(MANIFEST, f"{where}.cnr.{mod}", "a positive number or \"inf\" for a "
                        "modality of the subject", repr(v))
    for mod, sets in (sub.get("epochs") or {}).items():
        for ep, e in (sets or {}).items() if isinstance(sets, dict) else ():
            ok = (isinstance(e, dict) and mod in mods and _pos_int(e.get("n_epochs"))
                  and _pos_int(e.get("n_times")) and _num(e.get("sfreq")) and e["sfreq"] > 0
                  and _num(e.get("tmin")) and isinstance(e.get("labels"), bool))
            if not ok:
                out.add(MANIFEST, f"{where}.epochs.{mod}.{ep}", "n_epochs, n_times (positive "
                        "integers), sfreq (> 0), tmin (a number), labels (true/false)",
                        repr(e)[:100])
    return shapes


def check_manifest(m) -> list:
    """Check a manifest (already upgraded to the current schema) against itself.

    Returns
    -------
    problems : list of Problem
        Empty when the manifest is consistent; then the arrays can be checked against it.
    """
    out = _Found()
    sfreq, tr = m.get("sfreq"), m.get("tr")
    if not (_num(sfreq) and sfreq > 0):
        out.add(MANIFEST, "sfreq", "a positive number (Hz)", repr(sfreq))
        sfreq = None
    if tr is not None and not (_num(tr) and tr > 0):
        out.add(MANIFEST, "tr", "null or a positive number (s)", repr(tr))
    _check_streams(m, out)
    stories = _check_stories(m, out, sfreq)
    subjects = m.get("subjects")
    if not isinstance(subjects, dict):
        out.add(MANIFEST, "subjects", "an object {subject: {...}}", repr(subjects)[:80])
        return out
    templates = {}
    for name, sub in subjects.items():
        shapes = _check_subject(name, sub, stories, out)
        if any(MODALITY_REGISTRY[m].kind.sampling == "tr" for m in shapes) and \
                not (_num(tr) and tr > 0):
            out.add(MANIFEST, "tr", f"a positive number (s): subject {name!r} has fMRI",
                    repr(tr))
        if isinstance(sub, dict) and _pos_int(sub.get("n_sources_fsaverage")):
            templates.setdefault(sub["n_sources_fsaverage"], []).append(name)
    if len(templates) > 1:
        first, *rest = sorted(templates.items(), key=lambda kv: -len(kv[1]))
        for n_fs, names in rest:
            out.add(MANIFEST, f"subjects.{names[0]}.n_sources_fsaverage",
                    f"{first[0]} (the template of {first[1][:3]}: every morph maps the same "
                    "fsaverage source space)", n_fs)
    gt = m.get("ground_truth", {})
    if not isinstance(gt, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("shape"), list)
            and all(_pos_int(k, 0) for k in v["shape"]) for v in gt.values()):
        out.add(MANIFEST, "ground_truth", "{name: {shape, dtype}}", repr(gt)[:80])
    return out

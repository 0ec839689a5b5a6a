"""Checks of a dataset store against itself: its manifest, its arrays, damaged files.

Two depths (``docs/dataset-format.md``, "Checks"):

* **On open** (:func:`~.reader.read_dataset`, cheap): the manifest's own structure and
  consistency (numbers are numbers, splits known, streams disjoint and covering
  ``n_features``, ``duration = n_times / sfreq``, repeats and stories agree); the header of
  every ``.npy`` it names (shape against ``n_times``, the channel / source / voxel counts,
  ``n_repeats``, ``n_features``, epochs; float dtype; size, so a truncated file shows); each
  lead field read whole (finite, ``n_channels × n_sources``); the morph's shape and the
  vertex count; arrays up to 2 MiB read whole (16 MiB in all), larger ones sampled
  (evenly spread blocks and the first and last sample of each channel), for NaN/Inf; data
  whose sample is all zero are read whole and an all-zero recording is an error.
* **Full** (:meth:`~.reader.Dataset.check` with ``full=True``, ``neurofuse data info --check``):
  also every array read whole, NaN/Inf named by channel and sample range, all-zero channels
  (sensor modalities) and all-zero stories, the channel infos (sampling rate, channel count)
  and the morph's values.

Every finding is a :class:`Problem` naming the file, the field, what was expected, what was
found and how to fix it; :class:`StoreError` (a ``ValueError``) carries them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._manifest_check import check_manifest
from ._problems import _FIX_ARRAY, _FIX_DAMAGED, _FIX_VALUES, Problem, StoreError, _Found
from ._scan import any_nonzero, open_array, read_header, sample, scan
from .manifest import LEGACY_2D, expected_n_trs
from .modalities import MODALITY_REGISTRY

__all__ = ["Problem", "StoreError", "check_store"]

# --------------------------------------------------------------------------- arrays
_WHOLE_BYTES = 2 * 2**20    # on open, arrays up to this size are read whole...
_WHOLE_BUDGET = 16 * 2**20  # ...up to this much in all; larger ones are sampled


@dataclass
class _Spec:
    """What one ``.npy`` file of the store must hold."""

    rel: str
    axes: list          # [(expected size or None, manifest field)] per axis
    what: str           # "data", "epochs", "features", "leadfield", "events", ...
    kind: str = "f"     # dtype kind required: "f" float, "i" integer, "" as manifest dtype
    dtype: str = ""     # exact dtype (ground truth)
    rate: float = 0.0   # samples per second along the last axis (time-last arrays)
    unit: str = ""      # what a target is called ("channel", "source", "voxel")
    lead: str = ""      # what the first axis counts ("repeat", "epoch")
    modality: str = ""
    subject: str = ""


def _specs(m):
    """The ``.npy`` files the manifest names, with what each must hold."""
    sfreq, tr, n_feat = m["sfreq"], m.get("tr"), m["n_features"]
    legacy = set(m.get(LEGACY_2D, ()))
    for story, st in m["stories"].items():
        if n_feat:
            yield _Spec(f"features/{story}.npy", [(st["n_times"], f"stories.{story}.n_times"),
                                                  (n_feat, "n_features")], "features")
        for ev in st.get("events", {}):
            yield _Spec(f"events/{story}/{ev}.npy", [(st["events"][ev],
                                                      f"stories.{story}.events.{ev}")], "events")
    for name, sub in m["subjects"].items():
        base, info = f"subjects.{name}", sub["modality_info"]
        for mod in sub["modalities"]:
            kind = MODALITY_REGISTRY[mod].kind
            shape = info[mod].get("shape")
            spatial = ([(None, "")] * kind.n_spatial if shape is None else
                       [(s, f"{base}.modality_info.{mod}.shape") for s in shape])
            unit = kind.unit_name[:-1]
            rate = sfreq if kind.sampling == "sfreq" else (1.0 / tr if tr else 0.0)
            for story in sub["stories"].get(mod, []):
                n_t = m["stories"][story]["n_times"]
                if kind.sampling == "tr":
                    n_t, field = expected_n_trs(n_t, sfreq, tr), (
                        f"floor(stories.{story}.n_times / (sfreq * tr))")
                else:
                    field = f"stories.{story}.n_times"
                lead = [] if mod in legacy else [(sub["n_repeats"][mod][story],
                                                  f"{base}.n_repeats.{mod}.{story}")]
                yield _Spec(f"subjects/{name}/{mod}/{story}.npy", lead + spatial + [(n_t, field)],
                            "data", rate=rate, unit=unit, lead="repeat" if lead else "",
                            modality=mod, subject=name)
            for ep, e in sub.get("epochs", {}).get(mod, {}).items():
                rel, field = f"subjects/{name}/{mod}/epochs/{ep}", f"{base}.epochs.{mod}.{ep}"
                n_ep = (e["n_epochs"], f"{field}.n_epochs")
                yield _Spec(f"{rel}.npy", [n_ep] + spatial + [(e["n_times"], f"{field}.n_times")],
                            "epochs", rate=e["sfreq"], unit=unit, lead="epoch", modality=mod,
                            subject=name)
                yield _Spec(f"{rel}-events.npy", [n_ep], "events")
                if e["labels"]:
                    yield _Spec(f"{rel}-labels.npy", [n_ep], "labels", kind="i")
            lf = info[mod].get("files", {}).get("leadfield")
            if lf:
                n_ch = None if shape is None else shape[0]
                yield _Spec(f"subjects/{name}/{lf}", [
                    (n_ch, f"{base}.modality_info.{mod}.shape (channels)"),
                    (sub.get("n_sources"), f"{base}.n_sources")], "leadfield", modality=mod,
                    subject=name)
            rep = sub.get("repeatability", {}).get(mod)
            if rep and shape is not None:
                yield _Spec(f"subjects/{name}/{rep['file']}",
                            [(math.prod(shape), f"{base}.modality_info.{mod}.shape (targets)")],
                            "repeatability")
    for gname, g in m.get("ground_truth", {}).items():
        yield _Spec(f"ground_truth/{gname}", [(s, f"ground_truth.{gname}.shape")
                                              for s in g["shape"]], "ground truth", kind="",
                    dtype=g.get("dtype", ""))


def _check_header(path, spec, out):
    """Header against the spec; return the header, or None when the data cannot be read."""
    try:
        h = read_header(path)
    except ValueError as exc:
        out.add(spec.rel, "file", "a .npy array", str(exc), _FIX_DAMAGED)
        return None
    if h["size"] < h["offset"] + h["nbytes"]:
        out.add(spec.rel, "file size", f"{h['offset'] + h['nbytes']} bytes (the header's "
                f"shape {h['shape']} of {h['dtype']})", f"{h['size']} bytes: the file is "
                "truncated", _FIX_DAMAGED)
        return None
    shape = h["shape"]
    if len(shape) != len(spec.axes):
        doc = ", ".join(f"{e}" if e is not None else "?" for e, _ in spec.axes)
        out.add(spec.rel, "shape", f"{len(spec.axes)} axes ({doc}) for its {spec.what}",
                f"shape {shape}", _FIX_ARRAY)
        return None
    bad = False
    for axis, ((want, field), got) in enumerate(zip(spec.axes, shape)):
        if want is not None and want != got:
            out.add(spec.rel, f"axis {axis} of shape {shape}", f"{want} ({field})", got,
                    _FIX_ARRAY)
            bad = True
    dt = h["dtype"]
    if spec.dtype and np.dtype(spec.dtype) != dt:
        out.add(spec.rel, "dtype", f"{spec.dtype} (the manifest)", dt.str, _FIX_ARRAY)
        bad = True
    elif spec.kind == "f" and dt.kind != "f":
        out.add(spec.rel, "dtype", "a float array", dt.str, _FIX_ARRAY)
        bad = True
    elif spec.kind == "i" and dt.kind not in "iu":
        out.add(spec.rel, "dtype", "an integer array", dt.str, _FIX_ARRAY)
        bad = True
    return None if bad else h


def _where_bad(arr, values):
    n_bad = int((~np.isfinite(values)).sum())
    return (f"{n_bad} NaN/Inf among {values.size} values sampled on open (the whole file "
            f"holds {arr.size})")


def _names(ds, spec):
    if spec.unit != "channel" or ds is None:
        return None
    try:
        return list(ds.info(spec.subject, spec.modality)["ch_names"])
    except (ValueError, OSError):
        return None


def _target(spec, t, arr, names):
    if spec.unit == "voxel":
        return f"voxel {tuple(int(i) for i in np.unravel_index(t, arr.shape[1:-1]))}"
    if not spec.unit:  # ground truth and other arrays: a row of the last axis
        return f"row {tuple(int(i) for i in np.unravel_index(t, arr.shape[:-1]))}"
    name = f" ({names[t]})" if names and t < len(names) else ""
    return f"{spec.unit} {t}{name}"


def _span(runs, rate, what="samples"):
    def one(a, b):
        txt = f"{a}" if b == a + 1 else f"{a}-{b - 1}"
        return txt + (f" ({a / rate:.3f}-{b / rate:.3f} s)" if rate else "")
    shown = ", ".join(one(a, b) for a, b in runs[:4])
    return f"{what} {shown}" + (f" and {len(runs) - 4} more runs" if len(runs) > 4 else "")


def _full_values(arr, spec, out, ds, *, flat_channels=True):
    """Whole-array scan: NaN/Inf runs, all-zero channels and stories."""
    if arr.size == 0:  # e.g. ground truth with an empty axis: no value to check
        return
    view = arr
    if spec.what == "data" and not spec.lead:  # a former ECoG store: no repeat axis on disk
        view = arr[np.newaxis]
    elif spec.what not in ("data", "epochs", "features"):  # e.g. ground truth: rows × last axis
        view = arr.reshape(1, -1, arr.shape[-1]) if arr.ndim >= 2 else arr.reshape(1, 1, -1)
    found = scan(view, time_axis_last=spec.what != "features")
    if found["n_bad"]:
        names = _names(ds, spec)
        for lead, target, runs in found["bad"][:5]:
            if lead is None:  # features: rows (samples) and columns
                where = f"columns {target[:8]}{'...' if len(target) > 8 else ''}"
                out.add(spec.rel, "values", "finite values", f"NaN/Inf in {where}, "
                        f"{_span(runs, 0.0)}", _FIX_VALUES)
            else:
                where = (f"{spec.lead} {lead}, " if spec.lead else "") + _target(spec, target,
                                                                                arr, names)
                axis = "volumes" if spec.unit in ("source", "voxel") else "samples"
                out.add(spec.rel, "values", "finite values",
                        f"NaN/Inf in {where}: {_span(runs, spec.rate, axis)}", _FIX_VALUES)
        extra = found["n_bad_targets"] - min(5, len(found["bad"]))
        if extra > 0 and found["bad"][0][0] is not None:
            out.add(spec.rel, "values", "finite values", f"NaN/Inf in {extra} more "
                    f"{spec.unit or 'row'}s ({found['n_bad']} values in all)", _FIX_VALUES)
    if spec.what in ("data", "epochs"):
        if found["all_zero"]:
            out.add(spec.rel, "values", "a recording (not all zero)", "every value is 0",
                    _FIX_VALUES)
        elif flat_channels and spec.unit == "channel" and found["zero_targets"]:
            names = _names(ds, spec)
            z = found["zero_targets"]
            shown = ", ".join(_target(spec, t, arr, names) for t in z[:6])
            out.add(spec.rel, "values", "no flat channels", f"{len(z)} channel(s) all zero in "
                    f"every {spec.lead or 'sample'}: {shown}{'...' if len(z) > 6 else ''}",
                    "Drop or interpolate the dead channels before writing the store.")


def _cheap_values(arr, spec, out, budget):
    """On open: lead fields and small arrays read whole (``budget``: bytes left), others
    sampled."""
    if spec.what == "leadfield":
        fin = np.isfinite(np.asarray(arr))
        if not fin.all():
            rows = np.flatnonzero(~fin.all(axis=1)).tolist()
            out.add(spec.rel, "values", "a finite lead field", f"NaN/Inf in {len(rows)} row(s) "
                    f"(channels {rows[:8]}{'...' if len(rows) > 8 else ''})",
                    "Recompute the lead field (mne.make_forward_solution) and write the store "
                    "again, or drop the bad channels from the info, lead field and data.")
        return
    if arr.nbytes <= _WHOLE_BYTES and arr.nbytes <= budget[0]:
        budget[0] -= arr.nbytes
        _full_values(arr, spec, out, None, flat_channels=False)
        return
    values = sample(arr, time_edges=spec.what in ("data", "epochs"))
    if not np.isfinite(values).all():
        out.add(spec.rel, "values", "finite values", _where_bad(arr, values), _FIX_VALUES)
    elif spec.what in ("data", "epochs") and values.size and not values.any() \
            and not any_nonzero(arr):
        out.add(spec.rel, "values", "a recording (not all zero)", "every value is 0",
                _FIX_VALUES)


def _check_anatomy(root, m, out, full):
    for name, sub in m["subjects"].items():
        files, n_src = sub.get("files", {}), sub.get("n_sources")
        if "vertices" in files and (root / f"subjects/{name}/{files['vertices']}").is_file():
            rel = f"subjects/{name}/{files['vertices']}"
            try:
                verts = json.loads((root / rel).read_text())
                n_v = sum(len(v) for v in verts)
            except (ValueError, TypeError, OSError) as exc:
                out.add(rel, "file", "[[lh vertices], [rh vertices]] (JSON)", str(exc)[:80],
                        _FIX_DAMAGED)
            else:
                if n_src is not None and n_v != n_src:
                    out.add(rel, "vertex count (lh + rh)", f"{n_src} (subjects.{name}.n_sources)",
                            n_v, _FIX_ARRAY)
        if "morph" in files and (root / f"subjects/{name}/{files['morph']}").is_file():
            _check_morph(root, f"subjects/{name}/{files['morph']}", sub, name, out, full)


def _check_morph(root, rel, sub, name, out, full):
    want = (sub.get("n_sources"), sub.get("n_sources_fsaverage"))
    try:
        with np.load(root / rel, allow_pickle=False) as z:
            shape = tuple(int(s) for s in z["shape"])
            data = np.asarray(z["data"]) if full else None
    except (ValueError, KeyError, OSError, EOFError) as exc:
        out.add(rel, "file", "a scipy.sparse .npz matrix", str(exc)[:80], _FIX_DAMAGED)
        return
    for axis, (w, field) in enumerate(zip(want, ("n_sources", "n_sources_fsaverage"))):
        if w is not None and shape[axis] != w:
            out.add(rel, f"axis {axis} of shape {shape}", f"{w} (subjects.{name}.{field})",
                    shape[axis], _FIX_ARRAY)
    if data is not None and not np.isfinite(data).all():
        out.add(rel, "values", "a finite morph", f"{int((~np.isfinite(data)).sum())} NaN/Inf "
                "entries", _FIX_DAMAGED)


def _check_infos(ds, m, out):
    """Full check: each sensor modality's channel info against the manifest."""
    for name, sub in m["subjects"].items():
        for mod in sub["modalities"]:
            entry = sub["modality_info"][mod]
            fname = entry.get("files", {}).get("info")
            if not fname:
                continue
            rel = f"subjects/{name}/{fname}"
            if not (ds.path / rel).is_file():
                continue  # listed as missing
            try:
                info = ds.info(name, mod)
            except (ValueError, OSError) as exc:
                out.add(rel, "file", "an mne.Info (FIF)", str(exc)[:100], _FIX_DAMAGED)
                continue
            if abs(info["sfreq"] - m["sfreq"]) > 1e-6 * m["sfreq"]:
                out.add(rel, "sfreq", f"{m['sfreq']:g} Hz (the manifest's sfreq)",
                        f"{info['sfreq']:g} Hz", _FIX_ARRAY)
            shape = entry.get("shape")
            if shape is not None and len(info["ch_names"]) != shape[0]:
                out.add(rel, "channel count", f"{shape[0]} (subjects.{name}.modality_info."
                        f"{mod}.shape)", len(info["ch_names"]), _FIX_ARRAY)


def check_store(path, *, full=False, manifest=None, dataset=None) -> list:
    """Check a dataset store against itself; return every problem found.

    Parameters
    ----------
    path : path-like
        The store.
    full : bool
        Read every array whole (NaN/Inf named by channel and sample range, all-zero channels
        and stories) and the channel infos; otherwise the cheap check done on open.
    manifest : dict | None
        The manifest, already read and upgraded (read from ``path`` if None).
    dataset : Dataset | None
        The store opened on ``manifest`` (made here if None): its channel infos are read
        in a full check.

    Returns
    -------
    problems : list of Problem
        Empty for a sound store.
    """
    from .manifest import read_manifest

    root = Path(path).expanduser()
    m = read_manifest(root) if manifest is None else manifest
    out, budget = _Found(check_manifest(m)), [_WHOLE_BUDGET]
    if out:
        return out  # the arrays cannot be checked against a broken manifest
    if dataset is None:
        from .reader import Dataset

        dataset = Dataset(root, m)
    for rel in dataset._expected_files():  # the .npy files are checked below
        if not rel.endswith(".npy") and not (root / rel).is_file():
            out.add(rel, "file", "a file (the manifest names it)", "no such file",
                    "Restore the file or regenerate the dataset.")
    for spec in _specs(m):
        path = root / spec.rel
        if not path.is_file():
            out.add(spec.rel, "file", "a file (the manifest names it)", "no such file",
                    "Restore the file or regenerate the dataset.")
            continue
        header = _check_header(path, spec, out)
        if header is None or header["dtype"].kind != "f":
            continue
        arr = open_array(path)
        if spec.what in ("events", "repeatability"):
            vals = np.asarray(arr)
            if not np.isfinite(vals).all():
                out.add(spec.rel, "values", "finite values",
                        f"{int((~np.isfinite(vals)).sum())} NaN/Inf", _FIX_VALUES)
        elif full and spec.what != "leadfield":
            _full_values(arr, spec, out, dataset)
        else:
            _cheap_values(arr, spec, out, budget)
    _check_anatomy(root, m, out, full)
    if full:
        _check_infos(dataset, m, out)
    return out

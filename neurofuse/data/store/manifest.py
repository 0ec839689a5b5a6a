"""The manifest of a dataset store: names, schema versions and the upgrade of older ones.

Schema history (``docs/dataset-format.md``, "Versioning"):

* **1** — MEG (``meg``) and source-space fMRI (``fmri``), continuous per story; ECoG lived in
  a separate store (``neurofuse-ecog.json``, its own schema 1).
* **2** — any registered modality (:mod:`.modalities`: sensor / source / volume), continuous
  runs and labelled epochs, per-modality description (``modality_info``); ECoG is the
  ``ecog`` sensor modality of the same store.

Both older manifests hold a subset of version 2, so :func:`read_manifest` upgrades them in
memory (the files on disk are read as they are); :func:`upgrade_dataset` rewrites a store
in the version 2 layout.
"""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

from ..._checks import _check_type
from .modalities import MODALITY_REGISTRY

SCHEMA_VERSION = 2
MANIFEST = "neurofuse-dataset.json"
LEGACY_ECOG_MANIFEST = "neurofuse-ecog.json"
LEGACY_ECOG_FORMAT = "neurofuse-ecog"
SPLITS = ("train", "val", "test", "anchor")
MORPH_FILE, VERTICES_FILE = "morph.npz", "vertices.json"
INFO_FILE, LEADFIELD_FILE, FORWARD_FILE = "{}-info.fif", "{}-leadfield.npy", "{}-fwd.fif"
REPEATABILITY_FILE = "repeatability-{modality}.npy"
LEGACY_2D = "_legacy_2d"  # in-memory key: modalities whose arrays lack the repeat axis
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def expected_n_trs(n_times: int, sfreq: float, tr: float) -> int:
    """Number of fMRI volumes in a story of ``n_times`` samples: floor(n_times / (sfreq * tr))."""
    return int(math.floor(n_times / (sfreq * tr) + 1e-9))


def _check_name(kind: str, name) -> str:
    _check_type(kind, name, str)
    if not _NAME.match(name):
        raise ValueError(
            f"Invalid {kind} {name!r}: names become file names, so use only letters, digits, "
            "'.', '_' and '-', starting with a letter or digit (e.g. 'sub-01', 'story_03').")
    return name


def _gt_name(relpath) -> str:
    """Normalise a ground-truth name: 'ground_truth/sources/s1' → 'sources/s1.npy'."""
    rel = str(relpath).replace("\\", "/").strip("/")
    rel = rel.removeprefix("ground_truth/")
    rel = rel if rel.endswith(".npy") else rel + ".npy"
    for part in rel[:-4].split("/"):
        _check_name("ground-truth path component", part)
    return rel


def _modality_entry(name, shape=None, files=None) -> dict:
    kind = MODALITY_REGISTRY[name].kind.name if name in MODALITY_REGISTRY else None
    return {"kind": kind, "shape": shape, "files": dict(files or {})}


# --------------------------------------------------------------------------- upgrades
def _upgrade_v1(manifest: dict) -> dict:
    """A schema-1 dataset manifest as schema 2 (same files; nothing is read but the JSON)."""
    m = copy.deepcopy(manifest)
    for sub in m["subjects"].values():
        files = sub.setdefault("files", {})
        info = {}
        for mod in sub["modalities"]:
            entry = _modality_entry(mod)
            if mod == "meg":
                if sub.get("n_channels") is not None:
                    entry["shape"] = [int(sub["n_channels"])]
                entry["files"] = {k: files.pop(k) for k in ("info", "leadfield", "forward")
                                  if k in files}
            elif mod == "fmri" and sub.get("n_sources") is not None:
                entry["shape"] = [int(sub["n_sources"])]
            info[mod] = entry
        sub.pop("n_channels", None)
        sub["modality_info"] = info
        sub.setdefault("epochs", {})
    m["schema_version"] = SCHEMA_VERSION
    m["upgraded_from"] = "neurofuse-dataset schema 1"
    return m


def _upgrade_legacy_ecog(manifest: dict) -> dict:
    """An ECoG store of the former ``neurofuse-ecog`` format (schema 1) as schema 2.

    Its stories become ``test`` stories (it had no splits), its subjects have the ``ecog``
    modality, and its ECoG arrays, ``(n_electrodes, n_times)`` on disk, are read with a repeat
    axis of 1 (:data:`LEGACY_2D`).
    """
    m = {"schema_version": SCHEMA_VERSION, "sfreq": manifest["sfreq"], "tr": None,
         "feature_streams": manifest["feature_streams"], "n_features": manifest["n_features"],
         "stories": {s: {"split": "test", **v} for s, v in manifest["stories"].items()},
         "subjects": {}, "ground_truth": manifest.get("ground_truth", {}),
         "ground_truth_dirs": [], "metadata": manifest.get("metadata", {}),
         "upgraded_from": f"{LEGACY_ECOG_FORMAT} schema 1", LEGACY_2D: ["ecog"]}
    for name, sub in manifest["subjects"].items():
        entry = _modality_entry("ecog", shape=[int(sub["n_electrodes"])])
        entry.update(units=sub.get("units", "V"), signal=sub.get("signal", "broadband"),
                     electrodes=sub["electrodes"])
        m["subjects"][name] = {
            "modalities": ["ecog"], "stories": {"ecog": list(sub["stories"])},
            "n_repeats": {"ecog": {s: 1 for s in sub["stories"]}}, "epochs": {}, "cnr": {},
            "n_sources": None, "n_sources_fsaverage": None, "anatomy": sub.get("anatomy", {}),
            "files": {}, "modality_info": {"ecog": entry}}
    return m


def read_manifest(path: Path) -> dict:
    """Read and check the manifest of the store at ``path``, upgraded to the current schema.

    Raises
    ------
    FileNotFoundError
        ``path`` holds neither manifest.
    ValueError
        Invalid JSON, no valid schema version, or a schema newer than this neurofuse's.
    """
    fname = path / MANIFEST
    legacy_ecog = not fname.is_file() and (path / LEGACY_ECOG_MANIFEST).is_file()
    if legacy_ecog:
        fname = path / LEGACY_ECOG_MANIFEST
    elif not fname.is_file():
        raise FileNotFoundError(
            f"'{path}' is not a neurofuse dataset: it has no {MANIFEST}. Point to the folder "
            "given to DatasetWriter (or `neurofuse simulate study --out`), or create one with it.")
    try:
        manifest = json.loads(fname.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"The manifest '{fname}' is not valid JSON ({exc}); the "
                         "dataset is corrupted: regenerate it.") from None
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"The manifest '{fname}' has no valid integer "
                         f"'schema_version' (got {version!r}); regenerate the dataset.")
    if legacy_ecog:
        if manifest.get("format") != LEGACY_ECOG_FORMAT or version != 1:
            raise ValueError(f"'{fname}' is not a {LEGACY_ECOG_FORMAT} schema-1 manifest "
                             f"(format {manifest.get('format')!r}, schema {version}).")
        return _upgrade_legacy_ecog(manifest)
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"Dataset '{path}' has schema_version {version}, newer than the {SCHEMA_VERSION} "
            "this neurofuse supports: upgrade neurofuse (pip install -U neurofuse).")
    return _upgrade_v1(manifest) if version == 1 else manifest

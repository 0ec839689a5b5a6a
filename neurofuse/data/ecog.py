"""The on-disk ECoG dataset format: electrodes, :func:`write_ecog_dataset`, :func:`read_ecog_dataset`.

An ECoG dataset (documented in ``docs/ecog.md``) is one folder::

    DIR/
      neurofuse-ecog.json                 manifest (written last)
      features/<story>.npy                (n_times, n_features)       float32
      subjects/<sub>/ecog/<story>.npy     (n_electrodes, n_times)     float32
      ground_truth/<path>.npy             simulations only, e.g. <sub>/<story>-clean.npy

written atomically by :func:`write_ecog_dataset` and read lazily by
:func:`read_ecog_dataset`. Electrode names, hemispheres and positions (subject MRI and
fsaverage/MNI coordinates, metres) live in the manifest (:class:`EcogElectrodes`).

Both simulated ECoG (:func:`neurofuse.simulation.ecog.simulate_ecog`) and real-data loaders
(e.g. the Podcast dataset, ds005574: :func:`neurofuse.data.prepare_podcast`) only have to call
:func:`write_ecog_dataset`; ``neurofuse joint ecog`` (:mod:`neurofuse.evaluation.ecog`) reads
either through :func:`read_ecog_dataset`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._checks import _check_finite, _check_positive, _check_type
from .._io import _json_default, atomic_dir, save_npy, write_json
from .._logging import logger, verbose
from .store import DatasetWriter, _check_name, _gt_name, _ManifestStore

__all__ = [
    "ECOG_FORMAT",
    "ECOG_MANIFEST",
    "ECOG_SCHEMA_VERSION",
    "EcogDataset",
    "EcogElectrodes",
    "read_ecog_dataset",
    "write_ecog_dataset",
]

ECOG_MANIFEST = "neurofuse-ecog.json"
ECOG_FORMAT = "neurofuse-ecog"
ECOG_SCHEMA_VERSION = 1
_HEMIS = ("lh", "rh")
_MAX_COORD = 0.5  # m: positions beyond this are surely in millimetres


# ============================================================================ electrodes
@dataclass(frozen=True, eq=False)
class EcogElectrodes:
    """Names, hemispheres and positions of a subject's ECoG electrodes.

    Attributes
    ----------
    names : tuple of str, length n_electrodes
        Unique electrode (channel) names, in the row order of the ECoG arrays.
    hemi : tuple of str, length n_electrodes
        ``'lh'`` or ``'rh'``: the hemisphere each electrode lies on.
    pos_fsaverage : array, shape (n_electrodes, 3)
        Positions on the fsaverage brain (fsaverage surface RAS ≈ MNI305), metres. Zero-shot
        prediction maps electrodes to sources through these.
    pos_mri : array, shape (n_electrodes, 3) | None
        Positions in the subject's own MRI (surface RAS) coordinates, metres, when known.
    group : tuple of str, length n_electrodes | None
        Array (grid / strip / shaft) each electrode belongs to, when known.
    """

    names: tuple
    hemi: tuple
    pos_fsaverage: np.ndarray
    pos_mri: np.ndarray | None = None
    group: tuple | None = None

    def __post_init__(self):
        names = tuple(str(n) for n in _check_type("names", self.names, (list, tuple)))
        n = len(names)
        if n == 0:
            raise ValueError("'names' is empty: an ECoG subject needs at least one electrode.")
        if len(set(names)) != n:
            dup = sorted({x for x in names if names.count(x) > 1})
            raise ValueError(f"Electrode names must be unique, got duplicates {dup[:5]}.")
        hemi = tuple(_check_type("hemi", self.hemi, (list, tuple)))
        if len(hemi) != n or any(h not in _HEMIS for h in hemi):
            raise ValueError(f"'hemi' must hold 'lh' or 'rh' for each of the {n} electrodes, got "
                             f"{len(hemi)} values {sorted(set(map(str, hemi)))}.")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "hemi", hemi)
        for attr in ("pos_fsaverage", "pos_mri"):
            val = getattr(self, attr)
            if val is None and attr == "pos_mri":
                continue
            arr = np.array(val, dtype=float)
            if arr.shape != (n, 3):
                raise ValueError(f"'{attr}' must have shape (n_electrodes, 3) = ({n}, 3), got "
                                 f"{arr.shape}.")
            _check_finite(attr, arr)
            if np.abs(arr).max() > _MAX_COORD:
                raise ValueError(f"'{attr}' must be in metres, but its largest coordinate is "
                                 f"{np.abs(arr).max():g}: it looks like millimetres, divide by "
                                 "1000.")
            arr.setflags(write=False)
            object.__setattr__(self, attr, arr)
        if self.group is not None:
            group = tuple(str(g) for g in self.group)
            if len(group) != n:
                raise ValueError(f"'group' must have one entry per electrode ({n}), got "
                                 f"{len(group)}.")
            object.__setattr__(self, "group", group)

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self):
        n_l = self.hemi.count("lh")
        return f"<EcogElectrodes | {len(self)} electrodes ({n_l} lh, {len(self) - n_l} rh)>"

    def to_json(self) -> dict:
        out = {"names": list(self.names), "hemi": list(self.hemi),
               "pos_fsaverage": np.round(self.pos_fsaverage, 7).tolist()}
        if self.pos_mri is not None:
            out["pos_mri"] = np.round(self.pos_mri, 7).tolist()
        if self.group is not None:
            out["group"] = list(self.group)
        return out

    @classmethod
    def from_json(cls, d: dict) -> EcogElectrodes:
        return cls(names=d["names"], hemi=d["hemi"], pos_fsaverage=d["pos_fsaverage"],
                   pos_mri=d.get("pos_mri"), group=d.get("group"))


# ============================================================================ the format
@verbose
def write_ecog_dataset(out, *, sfreq, feature_streams, stories, subjects, ground_truth=None,
                       metadata=None, overwrite=False, verbose=None) -> Path:
    """Write an ECoG dataset folder atomically (the format of ``docs/ecog.md``).

    Parameters
    ----------
    out : path-like
        Folder to create. It appears only once everything is written.
    sfreq : float
        Sampling rate of the features and of the ECoG, Hz (50 for neurofuse models).
    feature_streams : dict of str -> (int, int)
        Column range ``[start, stop)`` of each stimulus feature stream, e.g.
        ``{"word": (0, 768), "phoneme": (768, 812), "spectrogram": (812, 852)}``.
    stories : dict of str -> array, shape (n_times, n_features)
        Stimulus features of each story at ``sfreq``.
    subjects : dict of str -> dict
        Per subject: ``"electrodes"`` (:class:`EcogElectrodes`), ``"ecog"`` (dict story ->
        array of shape (n_electrodes, n_times), rows in the order of the electrode names;
        a subject may lack stories), and optionally ``"units"`` (str, default ``"V"``),
        ``"signal"`` (str describing the preprocessing, e.g. ``"high-gamma envelope"``;
        default ``"broadband"``) and ``"anatomy"`` (JSON dict, e.g. a FreeSurfer reference).
    ground_truth : dict of str -> array | None
        Simulations only: named arrays saved as ``ground_truth/<name>.npy``.
    metadata : dict | None
        Free JSON (generator, seeds, versions).
    overwrite : bool
        Replace an existing folder at ``out`` (only once the new one is complete).
    verbose : bool | str | int | None

    Returns
    -------
    out : Path
    """
    sfreq = _check_positive("sfreq", sfreq)
    streams = DatasetWriter._check_streams(feature_streams)
    n_features = max(b for _, b in streams.values())
    _check_type("stories", stories, dict)
    _check_type("subjects", subjects, dict)
    if not stories:
        raise ValueError("'stories' is empty: an ECoG dataset needs at least one story.")
    if not subjects:
        raise ValueError("'subjects' is empty: an ECoG dataset needs at least one subject.")
    metadata = {} if metadata is None else _check_type("metadata", metadata, dict)
    manifest = {"format": ECOG_FORMAT, "schema_version": ECOG_SCHEMA_VERSION, "sfreq": sfreq,
                "feature_streams": streams, "n_features": n_features, "stories": {},
                "subjects": {}, "ground_truth": {}, "metadata": metadata}
    out = Path(out).expanduser()
    with atomic_dir(out, overwrite=overwrite, what="ECoG dataset") as tmp:
        for name, feats in stories.items():
            _check_name("story name", name)
            feats = np.asarray(feats)
            if feats.ndim != 2 or feats.shape[1] != n_features or feats.shape[0] < 1:
                raise ValueError(f"Features of story {name!r} must have shape (n_times, "
                                 f"{n_features}) (n_features from feature_streams), got "
                                 f"{feats.shape}.")
            _check_finite(f"features of story {name!r}", feats)
            save_npy(tmp / "features" / f"{name}.npy", feats.astype(np.float32))
            manifest["stories"][name] = {"n_times": int(feats.shape[0]),
                                         "duration": feats.shape[0] / sfreq}
        for sub, spec in subjects.items():
            _check_name("subject name", sub)
            _check_type(f"subjects[{sub!r}]", spec, dict)
            el = spec.get("electrodes")
            if not isinstance(el, EcogElectrodes):
                raise TypeError(f"subjects[{sub!r}]['electrodes'] must be an EcogElectrodes, got "
                                f"{type(el).__name__}.")
            data = _check_type(f"subjects[{sub!r}]['ecog']", spec.get("ecog"), dict)
            if not data:
                raise ValueError(f"Subject {sub!r} has no ECoG ('ecog' is empty).")
            for story, arr in data.items():
                if story not in manifest["stories"]:
                    raise ValueError(f"Subject {sub!r} has ECoG for story {story!r}, which is not "
                                     f"in 'stories' ({list(manifest['stories'])}).")
                arr = np.asarray(arr)
                expected = (len(el), manifest["stories"][story]["n_times"])
                if arr.shape != expected:
                    raise ValueError(f"ECoG of {sub!r} for story {story!r} must have shape "
                                     f"(n_electrodes, n_times) = {expected}, got {arr.shape}.")
                _check_finite(f"ECoG of {sub!r}, story {story!r}", arr)
                save_npy(tmp / "subjects" / sub / "ecog" / f"{story}.npy", arr.astype(np.float32))
            entry = {"stories": list(data), "n_electrodes": len(el),
                     "units": str(spec.get("units", "V")),
                     "signal": str(spec.get("signal", "broadband")),
                     "electrodes": el.to_json()}
            if spec.get("anatomy") is not None:
                entry["anatomy"] = spec["anatomy"]
            unknown = sorted(set(spec) - {"electrodes", "ecog", "units", "signal", "anatomy"})
            if unknown:
                raise ValueError(f"Unknown key(s) {unknown} in subjects[{sub!r}]; valid keys: "
                                 "'electrodes', 'ecog', 'units', 'signal', 'anatomy'.")
            manifest["subjects"][sub] = entry
        for rel, arr in (ground_truth or {}).items():
            rel = _gt_name(rel)
            arr = np.asarray(arr)
            _check_finite(f"ground truth {rel!r}", arr)
            save_npy(tmp / "ground_truth" / rel, arr)
            manifest["ground_truth"][rel] = {"shape": list(arr.shape), "dtype": arr.dtype.str}
        json.dumps(manifest, default=_json_default)  # fails before the rename if not JSON-able
        write_json(tmp / ECOG_MANIFEST, manifest, what="ECoG manifest")
    logger.info("Wrote ECoG dataset '%s' (%d stories, %d subjects, %d electrodes).", out,
                len(stories), len(subjects),
                sum(e["n_electrodes"] for e in manifest["subjects"].values()))
    return out


class EcogDataset(_ManifestStore):
    """An ECoG dataset opened by :func:`read_ecog_dataset`; arrays are memory-mapped on request.

    Attributes
    ----------
    path : Path
    sfreq : float
        Sampling rate of features and ECoG (Hz).
    feature_streams : dict of str -> (int, int)
    n_features : int
    metadata : dict
    """

    _kind = "ECoG dataset"

    def __repr__(self):
        n_el = sum(s["n_electrodes"] for s in self._m["subjects"].values())
        return (f"<EcogDataset '{self.path}' | {len(self.stories)} stories, "
                f"{len(self.subjects)} subjects, {n_el} electrodes, sfreq={self.sfreq:g} Hz>")

    def subject_stories(self, subject) -> list:
        return list(self._sub(subject)["stories"])

    def units(self, subject) -> str:
        return self._sub(subject)["units"]

    def signal(self, subject) -> str:
        return self._sub(subject).get("signal", "broadband")

    def anatomy(self, subject) -> dict:
        return dict(self._sub(subject).get("anatomy", {}))

    def electrodes(self, subject) -> EcogElectrodes:
        return EcogElectrodes.from_json(self._sub(subject)["electrodes"])

    def ecog(self, subject, story) -> np.ndarray:
        """ECoG of one subject and story, memmap of shape (n_electrodes, n_times)."""
        if story not in self.subject_stories(subject):
            raise ValueError(f"Subject {subject!r} has no ECoG for story {story!r}; it has "
                             f"{self.subject_stories(subject)}.")
        return self._load(f"subjects/{subject}/ecog/{story}.npy", "ECoG")


@verbose
def read_ecog_dataset(path, *, verbose=None) -> EcogDataset:
    """Open an ECoG dataset written by :func:`write_ecog_dataset` (reads only the manifest).

    Raises
    ------
    FileNotFoundError
        ``path`` is not an ECoG dataset, or a file named by the manifest is missing.
    ValueError
        The manifest is not valid or is from a newer neurofuse.
    """
    path = Path(path).expanduser()
    fname = path / ECOG_MANIFEST
    if not fname.is_file():
        hint = (" It is a MEG/fMRI dataset: make ECoG from it with simulate_ecog "
                "(neurofuse.simulation.ecog)." if (path / "neurofuse-dataset.json").is_file()
                else "")
        raise FileNotFoundError(f"'{path}' is not a neurofuse ECoG dataset: it has no "
                                f"{ECOG_MANIFEST}.{hint}")
    try:
        manifest = json.loads(fname.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"The ECoG manifest '{fname}' is not valid JSON ({exc}); regenerate the "
                         "dataset.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != ECOG_FORMAT:
        raise ValueError(f"'{fname}' is not a {ECOG_FORMAT} manifest (format "
                         f"{manifest.get('format') if isinstance(manifest, dict) else None!r}).")
    version = manifest.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"'{fname}' has no valid integer 'schema_version' (got {version!r}).")
    if version > ECOG_SCHEMA_VERSION:
        raise ValueError(f"ECoG dataset '{path}' has schema_version {version}, newer than the "
                         f"{ECOG_SCHEMA_VERSION} this neurofuse reads: upgrade neurofuse.")
    ds = EcogDataset(path, manifest)
    expected = [f"features/{s}.npy" for s in ds.stories]
    expected += [f"subjects/{sub}/ecog/{s}.npy" for sub in ds.subjects
                 for s in ds.subject_stories(sub)]
    expected += [f"ground_truth/{g}" for g in ds.ground_truth_names]
    missing = [rel for rel in expected if not (path / rel).is_file()]
    if missing:
        raise FileNotFoundError(f"ECoG dataset '{path}' is incomplete: its manifest names "
                                f"{len(missing)} missing file(s), e.g. {missing[:3]}.")
    logger.debug("Opened %r", ds)
    return ds

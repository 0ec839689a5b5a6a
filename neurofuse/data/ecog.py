"""ECoG as the ``ecog`` sensor modality of the dataset store: electrodes and thin wrappers.

An ECoG dataset is a dataset store (``docs/dataset-format.md``) whose subjects have the
``ecog`` modality::

    DIR/
      neurofuse-dataset.json                    manifest (written last)
      features/<story>.npy                      (n_times, n_features)             float32
      subjects/<sub>/ecog/<story>.npy           (1, n_electrodes, n_times)        float32
      subjects/<sub>/ecog-info.fif              channel info (type ecog)
      ground_truth/<path>.npy                   simulations only, e.g. <sub>/<story>-clean.npy

Electrode names, hemispheres and positions (subject MRI and fsaverage/MNI coordinates,
metres) are kept in the manifest's ``modality_info["ecog"]["electrodes"]``
(:class:`EcogElectrodes`), with the units and the kind of signal.

:func:`write_ecog_dataset` (used by the ECoG simulator,
:func:`neurofuse.simulation.ecog.simulate_ecog`, and by :func:`neurofuse.data.prepare_podcast`)
writes it with :class:`~neurofuse.data.store.DatasetWriter`; :func:`read_ecog_dataset` opens it
as an :class:`EcogDataset` (a :class:`~neurofuse.data.store.Dataset` with the ECoG accessors
``neurofuse joint ecog`` uses). Stores of the former separate ECoG format (``neurofuse-ecog.json``)
are read as they are (:func:`neurofuse.data.upgrade_dataset` rewrites them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._checks import _check_finite, _check_positive, _check_type
from .._logging import logger, verbose
from .store import MANIFEST, SCHEMA_VERSION, Dataset, DatasetWriter, _check_name
from .store.manifest import LEGACY_ECOG_FORMAT
from .store.reader import _open

__all__ = [
    "ECOG_FORMAT",
    "ECOG_MANIFEST",
    "ECOG_SCHEMA_VERSION",
    "EcogDataset",
    "EcogElectrodes",
    "read_ecog_dataset",
    "write_ecog_dataset",
]

#: ECoG lives in the dataset store: its manifest, schema and format name are the store's.
ECOG_MANIFEST = MANIFEST
ECOG_SCHEMA_VERSION = SCHEMA_VERSION
ECOG_FORMAT = LEGACY_ECOG_FORMAT  # the former separate format, still read
_HEMIS = ("lh", "rh")
_MAX_COORD = 0.5  # m: positions beyond this are surely in millimetres
_SUBJECT_KEYS = ("electrodes", "ecog", "units", "signal", "anatomy")


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
def _ecog_info(electrodes: EcogElectrodes, sfreq: float):
    import mne

    return mne.create_info(list(electrodes.names), sfreq, "ecog", verbose="error")


@verbose
def write_ecog_dataset(out, *, sfreq, feature_streams, stories, subjects, ground_truth=None,
                       metadata=None, overwrite=False, verbose=None) -> Path:
    """Write an ECoG dataset atomically: a dataset store whose subjects have ``ecog``.

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
        Stimulus features of each story at ``sfreq``; stored as ``test`` stories (ECoG
        validates models fitted elsewhere).
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
    out = Path(out).expanduser()
    n_el = 0
    with DatasetWriter(out, sfreq=sfreq, feature_streams=streams, overwrite=overwrite,
                       metadata=metadata) as writer:
        for name, feats in stories.items():
            _check_name("story name", name)
            feats = np.asarray(feats)
            if feats.ndim != 2 or feats.shape[1] != n_features or feats.shape[0] < 1:
                raise ValueError(f"Features of story {name!r} must have shape (n_times, "
                                 f"{n_features}) (n_features from feature_streams), got "
                                 f"{feats.shape}.")
            writer.add_story(name, split="test", n_times=feats.shape[0])
            writer.write_features(name, feats)
        for sub, spec in subjects.items():
            _check_name("subject name", sub)
            _check_type(f"subjects[{sub!r}]", spec, dict)
            unknown = sorted(set(spec) - set(_SUBJECT_KEYS))
            if unknown:
                raise ValueError(f"Unknown key(s) {unknown} in subjects[{sub!r}]; valid keys: "
                                 + ", ".join(repr(k) for k in _SUBJECT_KEYS) + ".")
            el = spec.get("electrodes")
            if not isinstance(el, EcogElectrodes):
                raise TypeError(f"subjects[{sub!r}]['electrodes'] must be an EcogElectrodes, got "
                                f"{type(el).__name__}.")
            data = _check_type(f"subjects[{sub!r}]['ecog']", spec.get("ecog"), dict)
            if not data:
                raise ValueError(f"Subject {sub!r} has no ECoG ('ecog' is empty).")
            writer.add_subject(sub, modalities=["ecog"], anatomy=spec.get("anatomy"))
            writer.add_sensors(sub, "ecog", info=_ecog_info(el, sfreq), electrodes=el.to_json(),
                               units=str(spec.get("units", "V")),
                               signal=str(spec.get("signal", "broadband")))
            n_el += len(el)
            for story, arr in data.items():
                if story not in stories:
                    raise ValueError(f"Subject {sub!r} has ECoG for story {story!r}, which is not "
                                     f"in 'stories' ({list(stories)}).")
                arr = np.asarray(arr)
                expected = (len(el), writer._stories[story]["n_times"])
                if arr.shape != expected:
                    raise ValueError(f"ECoG of {sub!r} for story {story!r} must have shape "
                                     f"(n_electrodes, n_times) = {expected}, got {arr.shape}.")
                _check_finite(f"ECoG of {sub!r}, story {story!r}", arr)
                writer.write(sub, "ecog", story, arr[np.newaxis])
        for rel, arr in (ground_truth or {}).items():
            arr = np.asarray(arr)
            _check_finite(f"ground truth {rel!r}", arr)
            writer.write_ground_truth(rel, arr)
    logger.info("Wrote ECoG dataset '%s' (%d stories, %d subjects, %d electrodes).", out,
                len(stories), len(subjects), n_el)
    return out


class EcogDataset(Dataset):
    """A dataset with ECoG, opened by :func:`read_ecog_dataset`; arrays are memory-mapped.

    A :class:`~neurofuse.data.store.Dataset` whose ECoG accessors default to the ``ecog``
    modality.

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
        n_el = sum(self.spatial_shape(s, "ecog")[0] for s in self.subjects
                   if "ecog" in self.modalities(s))
        return (f"<EcogDataset '{self.path}' | {len(self.stories)} stories, "
                f"{len(self.subjects)} subjects, {n_el} electrodes, sfreq={self.sfreq:g} Hz>")

    def subject_stories(self, subject, modality="ecog") -> list:
        return super().subject_stories(subject, modality)

    def units(self, subject) -> str:
        return self._modality(subject, "ecog").get("units", "V")

    def signal(self, subject) -> str:
        return self._modality(subject, "ecog").get("signal", "broadband")

    def electrodes(self, subject) -> EcogElectrodes:
        return EcogElectrodes.from_json(self._modality(subject, "ecog")["electrodes"])

    def ecog(self, subject, story) -> np.ndarray:
        """ECoG of one subject and story, memmap of shape (n_electrodes, n_times).

        The mean over repeats (an array) when the story was recorded more than once.
        """
        if story not in self.subject_stories(subject):
            raise ValueError(f"Subject {subject!r} has no ECoG for story {story!r}; it has "
                             f"{self.subject_stories(subject)}.")
        arr = self.data(subject, "ecog", story)
        return arr[0] if arr.shape[0] == 1 else np.asarray(arr).mean(axis=0)


@verbose
def read_ecog_dataset(path, *, verbose=None) -> EcogDataset:
    """Open a dataset with ECoG (written by :func:`write_ecog_dataset`); reads the manifest only.

    Stores of the former ECoG format (``neurofuse-ecog.json``) are read as they are.

    Raises
    ------
    FileNotFoundError
        ``path`` is not a dataset, or a file named by the manifest is missing.
    ValueError
        The manifest is not valid or is from a newer neurofuse, or no subject has ECoG.
    """
    ds = _open(path, EcogDataset)
    if not any("ecog" in ds.modalities(s) for s in ds.subjects):
        raise ValueError(f"'{ds.path}' is a neurofuse dataset without ECoG (no subject has the "
                         "'ecog' modality). Make ECoG from a simulated study with "
                         "neurofuse.simulation.ecog.simulate_ecog.")
    return ds

"""Write a dataset store atomically: :class:`DatasetWriter`.

Everything goes to a temporary folder next to the destination that is moved into place only
when the ``with`` block succeeds and the completeness checks pass; the manifest is written
last. See ``docs/dataset-format.md``.
"""

from __future__ import annotations

import contextlib
import json
import math

import numpy as np

from ..._checks import _check_finite, _check_option, _check_positive, _check_type
from ..._io import _json_default, atomic_dir, atomic_path, save_npy, write_json
from ..._logging import logger
from ._arrays import _ArrayWrites
from ._sensors import check_anatomy_sizes, check_grid, check_sensors
from .manifest import MANIFEST, SCHEMA_VERSION, SPLITS, _check_name, _modality_entry
from .modalities import MODALITY_REGISTRY, get_modality

__all__ = ["DatasetWriter"]

_CHUNK_BYTES = 64 * 2**20


def _finite_chunked(name: str, path):
    """Check a (possibly huge) saved array for NaN/Inf, one chunk of rows at a time."""
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    if not np.issubdtype(arr.dtype, np.inexact) or arr.size == 0:
        return
    if arr.ndim == 0:
        _check_finite(name, arr)
        return
    step = max(1, _CHUNK_BYTES // max(1, arr[:1].nbytes))
    for start in range(0, arr.shape[0], step):
        chunk = np.asarray(arr[start:start + step])
        if not np.isfinite(chunk).all():
            _check_finite(f"{name} (rows {start}:{start + chunk.shape[0]})", chunk)


def _check_streams(streams):
    """Validate ``feature_streams`` ({name: [start, stop)}, no overlap); return it as lists."""
    _check_type("feature_streams", streams, dict)
    if not streams:
        raise ValueError("'feature_streams' must name at least one stream, "
                         "e.g. {'word': (0, 768)}, or be None for a store without features.")
    out, spans = {}, []
    for name, span in streams.items():
        _check_name("feature stream", name)
        ok = isinstance(span, (list, tuple)) and len(span) == 2
        ok = ok and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                        for v in span)
        if not ok or not 0 <= span[0] < span[1]:
            raise ValueError(f"feature_streams[{name!r}] must be [start, stop) with "
                             f"0 <= start < stop integers, got {span!r}.")
        out[name] = [int(span[0]), int(span[1])]
        spans.append((int(span[0]), int(span[1]), name))
    spans.sort()
    for (_, stop_a, a), (start_b, _, b) in zip(spans, spans[1:]):
        if start_b < stop_a:
            raise ValueError(f"feature_streams {a!r} and {b!r} overlap: each feature column "
                             "must belong to one stream.")
    return out


class DatasetWriter(_ArrayWrites):
    """Write a dataset atomically; use as a context manager.

    Parameters
    ----------
    path : path-like
        The dataset folder to create.
    sfreq : float
        Sampling rate of the features and of the sensor modalities, in Hz (e.g. 50.0).
    tr : float | None
        Repetition time of the source and volume modalities (fMRI), in s (e.g. 2.0); None for
        a store without them.
    feature_streams : dict of str to (int, int) | None
        Column ranges ``[start, stop)`` of each feature stream in the feature matrices, e.g.
        ``{"word": (0, 768), "phoneme": (768, 812)}``; ``n_features = max(stop)``. None for a
        store without stimulus features (e.g. epochs only).
    overwrite : bool
        Replace an existing dataset at ``path`` — only once the new one is complete.
    metadata : dict | None
        Free JSON (generator config, seed, package versions).

    Notes
    -----
    Nothing appears at ``path`` until the ``with`` block exits without error; then the
    completeness checks run, the manifest is written last and the folder is moved into place.
    Modalities are those of :data:`neurofuse.data.store.MODALITIES` (sensor: ``meg``,
    ``eeg``, ``ecog``; source: ``fmri``; volume: ``fmri-volume``).
    """

    _check_streams = staticmethod(_check_streams)

    def __init__(self, path, *, sfreq, tr=None, feature_streams=None, overwrite=False,
                 metadata=None):
        from pathlib import Path

        self.path = Path(path).expanduser()
        self.sfreq = _check_positive("sfreq", sfreq)
        self.tr = None if tr is None else _check_positive("tr", tr)
        self.feature_streams = {} if feature_streams is None else _check_streams(feature_streams)
        self.n_features = max((stop for _, stop in self.feature_streams.values()), default=0)
        self.overwrite = bool(overwrite)
        self.metadata = {} if metadata is None else _check_type("metadata", metadata, dict)
        try:
            json.dumps(self.metadata, default=_json_default)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"'metadata' must be JSON-serialisable: {exc}.") from None
        self._stories, self._subjects, self._gt, self._gt_dirs = {}, {}, {}, []
        self._repeat = {}  # (subject, modality) -> manifest entry (+ "_n" for the final check)
        self._written, self._pending = set(), {}  # relpaths written; relpath -> open memmap
        self._tmp = self._stack = None

    # -- context management ---------------------------------------------------------------
    def __enter__(self):
        if self.overwrite and self.path.is_dir() and any(self.path.iterdir()) \
                and not (self.path / MANIFEST).is_file():
            raise FileExistsError(
                f"Refusing to overwrite '{self.path}': it is a non-empty folder but not a "
                f"neurofuse dataset (no {MANIFEST}). Choose a new or empty folder.")
        self._stack = contextlib.ExitStack()
        self._tmp = self._stack.enter_context(
            atomic_dir(self.path, overwrite=self.overwrite, what="dataset"))
        return self

    def __exit__(self, exc_type, exc, tb):
        stack, self._stack = self._stack, None
        if exc_type is None:
            try:
                self._finalize()
            except BaseException as err:
                stack.__exit__(type(err), err, err.__traceback__)
                raise
        result = stack.__exit__(exc_type, exc, tb)
        self._pending.clear()
        if exc_type is None:
            logger.info("Wrote dataset '%s' (%d stories, %d subjects).", self.path,
                        len(self._stories), len(self._subjects))
        return result

    def _dest(self, relpath):
        if self._stack is None:
            raise RuntimeError("DatasetWriter must be used as a context manager: "
                               "`with DatasetWriter(path, ...) as writer: ...`.")
        if relpath in self._written:
            raise ValueError(f"'{relpath}' was already written to this dataset: "
                             "each array can be written only once.")
        out = self._tmp / relpath
        out.parent.mkdir(parents=True, exist_ok=True)
        return out

    # -- declarations ---------------------------------------------------------------------
    def add_story(self, name, *, split, n_times):
        """Declare a story (a continuous run) of ``n_times`` samples (at ``sfreq``) in ``split``."""
        _check_name("story name", name)
        if name in self._stories:
            raise ValueError(f"Story {name!r} was already added: story names must be unique.")
        _check_option("split", split, SPLITS)
        if not isinstance(n_times, (int, np.integer)) or isinstance(n_times, bool) or n_times < 1:
            raise ValueError(f"'n_times' must be a positive integer, got {n_times!r}.")
        self._stories[name] = {"split": split, "n_times": int(n_times),
                               "duration": int(n_times) / self.sfreq}

    def add_subject(self, name, *, modalities, info=None, leadfield=None, morph=None,
                    vertices=None, anatomy=None, cnr=None, n_sources=None, forward=None):
        """Declare a subject and write its anatomy files.

        Parameters
        ----------
        name : str
            Subject name, e.g. ``"sub-01"``.
        modalities : list of str
            Registered modalities (``"meg"``, ``"eeg"``, ``"ecog"``, ``"fmri"``,
            ``"fmri-volume"``).
        info : mne.Info | None
            Channel info of the subject's one sensor modality (for several, call
            :meth:`add_sensors` per modality); fixes its ``n_channels``.
        leadfield : array, shape (n_channels, n_sources) | None
            Fixed-orientation gain matrix of that sensor modality.
        morph : scipy.sparse matrix, shape (n_sources, n_sources_fsaverage) | None
            fsaverage → subject morph; stored as CSR.
        vertices : list of 2 int arrays | None
            Subject source-space vertex numbers ``[lh, rh]``; ``n_sources`` in total.
        anatomy : dict | None
            JSON references (subject id, subjects_dir, trans file...).
        cnr : dict of str to float | None
            Contrast-to-noise ratio per modality (``float("inf")`` for noiseless).
        n_sources : int | None
            Declared number of subject sources; otherwise taken from the arrays above or from
            the first source-space (fMRI) write.
        forward : mne.Forward | None
            The fixed-orientation forward solution of that sensor modality (saved as
            ``<modality>-fwd.fif`` so MNE-Python inverses can be run on the dataset).
        """
        _check_name("subject name", name)
        if name in self._subjects:
            raise ValueError(f"Subject {name!r} was already added: subject names must be unique.")
        mods = list(_check_type("modalities", modalities, (list, tuple)))
        if not mods or len(set(mods)) != len(mods):
            raise ValueError("'modalities' must be a non-empty list without repeats, "
                             f"got {mods!r}.")
        for mod in mods:
            if get_modality(mod, what="modalities").kind.sampling == "tr" and self.tr is None:
                raise ValueError(f"Modality {mod!r} is sampled once per TR but the writer was "
                                 "created with tr=None: pass DatasetWriter(..., tr=...).")
        _check_type("anatomy", {} if anatomy is None else anatomy, dict)
        sub = {"modalities": mods, "stories": {m: {} for m in mods},
               "epochs": {m: {} for m in mods}, "cnr": {}, "n_sources": None,
               "n_sources_fsaverage": None, "anatomy": anatomy or {}, "files": {},
               "modality_info": {m: _modality_entry(m) for m in mods}}
        try:
            json.dumps(sub["anatomy"], default=_json_default)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"'anatomy' must be a JSON-serialisable dict: {exc}.") from None
        for mod, val in (cnr or {}).items():
            _check_option("cnr key", mod, mods, extra="CNRs are given per declared modality.")
            sub["cnr"][mod] = _check_positive(f"cnr[{mod!r}]", val, allow_inf=True)
        sensors = None
        if any(x is not None for x in (info, leadfield, forward)):
            names = [m for m in mods if MODALITY_REGISTRY[m].kind.name == "sensor"]
            if len(names) != 1:
                raise ValueError(
                    f"add_subject's info/leadfield/forward describe the subject's one sensor "
                    f"modality, but {name!r} has {len(names)} ({names}). Call "
                    "writer.add_sensors(subject, modality, info=..., ...) per sensor modality.")
            sensors = check_sensors(name, names[0], self.sfreq, None, info=info,
                                    leadfield=leadfield, forward=forward)
        files, sizes = check_anatomy_sizes(name, n_sources, morph, vertices, sensors)
        if sizes:
            sub["n_sources"] = sizes[0][1]
        if morph is not None:
            sub["n_sources_fsaverage"] = int(files["morph"][0].shape[1])
            self._check_template(name, sub["n_sources_fsaverage"])
        self._subjects[name] = sub
        for key, (obj, fname) in files.items():
            self._write_file(f"subjects/{name}/{fname}", key, obj)
            sub["files"][key] = fname
        if sensors is not None:
            self._commit_sensors(name, sensors)

    def _check_template(self, name, n_fs):
        """Every morph starts from the store's one template source space (fsaverage)."""
        for other, sub in self._subjects.items():
            if sub["n_sources_fsaverage"] not in (None, n_fs):
                raise ValueError(
                    f"template source-space mismatch for subject {name!r}: its morph maps a "
                    f"template of {n_fs} sources (its columns) but the store's template has "
                    f"{sub['n_sources_fsaverage']} (subject {other!r}'s morph): models fit on "
                    "this store predict sources on that template. Compute the morph from the "
                    "same fsaverage source space (neurofuse.anatomy), every source kept.")

    def add_sensors(self, subject, modality, *, info=None, leadfield=None, forward=None,
                    electrodes=None, units=None, signal=None):
        """Describe one sensor modality (``meg``, ``eeg``, ``ecog``) of a declared subject.

        Parameters
        ----------
        subject : str
            A subject declared with :meth:`add_subject` that has ``modality``.
        modality : str
            A sensor modality of the subject.
        info : mne.Info | None
            Its channels (types allowed for the modality only), at the dataset's ``sfreq``;
            saved as ``<modality>-info.fif``.
        leadfield : array, shape (n_channels, n_sources) | None
            Fixed-orientation gain matrix; ``n_sources`` must be the subject's.
        forward : mne.Forward | None
            Fixed-orientation forward solution (``<modality>-fwd.fif``).
        electrodes : dict | None
            Electrode names and positions as JSON (e.g.
            :meth:`neurofuse.data.ecog.EcogElectrodes.to_json`), one per channel, in the
            channel order; kept in the manifest.
        units : str | None
            Units of the data, e.g. ``"T"``, ``"V"``, ``"z"``.
        signal : str | None
            What the signal is, e.g. ``"high-gamma envelope"``.
        """
        sub = self._subject(subject)
        _check_option("modality", modality, sub["modalities"],
                      extra=f"Subject {subject!r} was declared with these modalities.")
        if sub["modality_info"][modality]["files"] or "units" in sub["modality_info"][modality]:
            raise ValueError(f"The {modality} sensors of {subject!r} were already described.")
        shape = sub["modality_info"][modality]["shape"]
        sensors = check_sensors(subject, modality, self.sfreq, sub["n_sources"], info=info,
                                leadfield=leadfield, forward=forward, electrodes=electrodes,
                                units=units, signal=signal,
                                n_channels=None if shape is None else shape[0])
        if sensors["n_sources"] is not None:
            sub["n_sources"] = sensors["n_sources"]
        self._commit_sensors(subject, sensors)

    def _commit_sensors(self, subject, sensors):
        entry = self._subjects[subject]["modality_info"][sensors["modality"]]
        if sensors["n_channels"] is not None:
            entry["shape"] = [sensors["n_channels"]]
        entry.update(sensors["extra"])
        for key, (obj, fname) in sensors["files"].items():
            self._write_file(f"subjects/{subject}/{fname}", key, obj)
            entry["files"][key] = fname

    def add_grid(self, subject, modality, *, affine, shape=None):
        """Give a volume modality (``fmri-volume``) of a declared subject its voxel grid.

        Parameters
        ----------
        subject, modality : str
        affine : array, shape (4, 4)
            Voxel indices → scanner RAS (mm), as in NIfTI (``nibabel`` ``img.affine``).
        shape : tuple of 3 int | None
            Grid shape ``(n_x, n_y, n_z)``; otherwise taken from the first array written.
        """
        sub = self._subject(subject)
        _check_option("modality", modality, sub["modalities"],
                      extra=f"Subject {subject!r} was declared with these modalities.")
        entry = sub["modality_info"][modality]
        affine, shape = check_grid(modality, affine, shape, entry["shape"])
        entry["affine"] = affine
        if shape is not None:
            entry["shape"] = shape

    def _write_file(self, relpath, key, obj):
        dest = self._dest(relpath)
        if key == "info":
            import mne

            with atomic_path(dest, what="channel info") as tmp:
                mne.io.write_info(tmp, obj)
        elif key == "morph":
            import scipy.sparse

            with atomic_path(dest, what="morph matrix") as tmp, open(tmp, "wb") as fid:
                scipy.sparse.save_npz(fid, obj)
        elif key == "vertices":
            write_json(dest, obj, what="vertices")
        elif key == "forward":
            import mne

            with atomic_path(dest, what="forward solution") as tmp:
                mne.write_forward_solution(tmp, obj, overwrite=True, verbose="error")
        else:
            save_npy(dest, obj, what=key)
        self._written.add(relpath)

    # -- completion -------------------------------------------------------------------------
    def _finalize(self):
        if self.n_features:
            missing = [s for s in self._stories if f"features/{s}.npy" not in self._written]
            if missing:
                raise ValueError(f"Stories without features: {missing}. Call writer."
                                 "write_features(story, array) for each story before leaving "
                                 "the `with` block.")
        for name, sub in self._subjects.items():
            empty = [m for m in sub["modalities"] if not sub["stories"][m] and not sub["epochs"][m]]
            if empty:
                raise ValueError(f"Subject {name!r} declares modalities {empty} but no data "
                                 "was written for them; write some or drop the modality.")
            for mod, entry in sub["modality_info"].items():
                if entry["kind"] == "volume" and "affine" not in entry:
                    raise ValueError(f"Subject {name!r} has {mod} volumes but no grid affine: "
                                     f"call writer.add_grid({name!r}, {mod!r}, affine=...).")
        for (name, mod), entry in self._repeat.items():
            known = self._known_shape(self._subjects[name], mod)
            if known is not None and entry["_n"] != math.prod(known):
                unit = MODALITY_REGISTRY[mod].kind.unit_name
                raise ValueError(f"Repeatability of {name!r} ({mod}) has {entry['_n']} values "
                                 f"but the subject's {mod} data have {math.prod(known)} {unit}.")
        for rel, mm in list(self._pending.items()):
            mm.flush()
            _finite_chunked(rel, self._tmp / rel)
        manifest = {
            "schema_version": SCHEMA_VERSION, "sfreq": self.sfreq, "tr": self.tr,
            "feature_streams": self.feature_streams, "n_features": self.n_features,
            "stories": self._stories, "subjects": {}, "ground_truth": self._gt,
            "ground_truth_dirs": self._gt_dirs, "metadata": self.metadata,
        }
        for name, sub in self._subjects.items():
            mods = sub["modalities"]
            manifest["subjects"][name] = {
                "modalities": mods,
                "stories": {m: list(sub["stories"][m]) for m in mods},
                "n_repeats": sub["stories"],
                "epochs": {m: sub["epochs"][m] for m in mods if sub["epochs"][m]},
                "cnr": {m: ("inf" if math.isinf(v) else v) for m, v in sub["cnr"].items()},
                "n_sources": sub["n_sources"],
                "n_sources_fsaverage": sub["n_sources_fsaverage"],
                "anatomy": sub["anatomy"], "files": sub["files"],
                "modality_info": sub["modality_info"],
            }
            reps = {m: {k: v for k, v in e.items() if k != "_n"}
                    for (n, m), e in self._repeat.items() if n == name}
            if reps:
                manifest["subjects"][name]["repeatability"] = reps
        write_json(self._tmp / MANIFEST, manifest, what="dataset manifest")


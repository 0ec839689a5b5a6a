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
from ._sensors import check_anatomy_sizes, check_grid, check_sensors
from .manifest import (
    MANIFEST,
    REPEATABILITY_FILE,
    SCHEMA_VERSION,
    SPLITS,
    _check_name,
    _gt_name,
    _modality_entry,
    expected_n_trs,
)
from .modalities import MODALITIES, MODALITY_REGISTRY, get_modality

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


class DatasetWriter:
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
        self._subjects[name] = sub
        for key, (obj, fname) in files.items():
            self._write_file(f"subjects/{name}/{fname}", key, obj)
            sub["files"][key] = fname
        if sensors is not None:
            self._commit_sensors(name, sensors)

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

    # -- data -------------------------------------------------------------------------------
    def _subject(self, subject):
        return self._subjects[_check_option("subject", subject, list(self._subjects),
                                            extra="Declare it first with add_subject().")]

    def _story(self, story):
        return self._stories[_check_option("story", story, list(self._stories),
                                           extra="Declare it first with add_story().")]

    def _known_shape(self, sub, modality):
        """The spatial shape the subject's ``modality`` arrays must have (None if unknown)."""
        if MODALITY_REGISTRY[modality].kind.name == "source" and sub["n_sources"] is not None:
            return [sub["n_sources"]]
        return sub["modality_info"][modality]["shape"]

    def _check_spatial(self, subject, modality, shape, where):
        sub = self._subjects[subject]
        kind = MODALITY_REGISTRY[modality].kind
        known, got = self._known_shape(sub, modality), [int(s) for s in shape]
        if known is not None and got != list(known):
            if kind.n_spatial == 1:
                raise ValueError(f"{modality} data of subject {subject!r} {where} has {got[0]} "
                                 f"{kind.unit_name}, expected {known[0]} (n_{kind.unit_name} "
                                 "of the subject).")
            raise ValueError(f"{modality} data of subject {subject!r} {where} has grid "
                             f"{tuple(got)}, expected {tuple(known)} (the subject's grid).")

    def _slot(self, kind, shape, subject=None, story=None):
        """Validate the shape of a features or continuous modality array; return its relpath."""
        st = self._story(story)
        if kind == "features":
            if not self.n_features:
                raise ValueError("This dataset has no feature streams (feature_streams=None): "
                                 "it stores no stimulus features.")
            expected = (st["n_times"], self.n_features)
            if len(shape) == 2 and shape[0] != expected[0]:
                raise ValueError(
                    f"stories of inconsistent length: features for story {story!r} have "
                    f"{shape[0]} samples but the story's n_times is {expected[0]}. Resample or "
                    "crop the features to the story's declared length.")
            if tuple(shape) != expected:
                raise ValueError(f"features for story {story!r} must have shape (n_times, "
                                 f"n_features) = {expected}, got {tuple(shape)}.")
            return f"features/{story}.npy"
        sub = self._subject(subject)
        _check_option("modality", kind, sub["modalities"],
                      extra=f"Subject {subject!r} was declared with these modalities.")
        mkind = MODALITY_REGISTRY[kind].kind
        if mkind.sampling == "sfreq":
            n_t, what = st["n_times"], f"n_times of story {story!r}"
        else:
            n_t = expected_n_trs(st["n_times"], self.sfreq, self.tr)
            what = f"floor(n_times / (sfreq * tr)) = {st['n_times']} / {self.sfreq * self.tr:g}"
        if len(shape) != 2 + mkind.n_spatial or shape[0] < 1:
            raise ValueError(f"{kind} data must have shape {mkind.shape_doc()} with "
                             f"n_repeats >= 1, got {tuple(shape)}.")
        if shape[-1] != n_t:
            raise ValueError(
                f"stories of inconsistent length: {kind} data of subject {subject!r} for story "
                f"{story!r} has {shape[-1]} samples but {what} is {n_t}. Crop or pad the "
                "recording to the story's declared length.")
        self._check_spatial(subject, kind, shape[1:-1], f"for story {story!r}")
        return f"subjects/{subject}/{kind}/{story}.npy"

    def _set_shape(self, subject, modality, spatial):
        sub = self._subjects[subject]
        sub["modality_info"][modality]["shape"] = [int(s) for s in spatial]
        if MODALITY_REGISTRY[modality].kind.name == "source":
            sub["n_sources"] = int(spatial[0])

    def _register(self, relpath, shape, subject=None, story=None, kind=None):
        self._written.add(relpath)
        if kind in MODALITIES:
            self._subjects[subject]["stories"][kind][story] = int(shape[0])
            self._set_shape(subject, kind, shape[1:-1])

    def _write_data(self, kind, data, subject=None, story=None):
        data = np.asarray(data, dtype=np.float32)
        if kind in MODALITIES and data.ndim == 1 + MODALITY_REGISTRY[kind].kind.n_spatial:
            data = data[np.newaxis]  # one repeat: (1, *spatial, n_times)
        relpath = self._slot(kind, data.shape, subject, story)
        _check_finite(f"{kind} data for {subject + '/' if subject else ''}{story}", data)
        save_npy(self._dest(relpath), data, what=f"{kind} array")
        self._register(relpath, data.shape, subject, story, kind)

    def write_features(self, story, array):
        """Write the features of ``story``, shape (n_times, n_features), as float32."""
        self._write_data("features", array, story=story)

    def write(self, subject, modality, story, data):
        """Write one continuous recording of ``story`` (a run), as float32.

        Parameters
        ----------
        subject, modality, story : str
            Declared subject, one of its modalities, declared story.
        data : array, shape (n_repeats, *spatial, n_times) or (*spatial, n_times)
            ``spatial`` is ``(n_channels,)`` (sensor), ``(n_sources,)`` (source) or
            ``(n_x, n_y, n_z)`` (volume); ``n_times`` is the story's ``n_times`` for sensor
            modalities and ``floor(n_times / (sfreq * tr))`` for source and volume ones.
        """
        self._write_data(modality, data, subject, story)

    def write_meg(self, subject, story, data):
        """Write MEG, shape (n_repeats, n_channels, n_times) or (n_channels, n_times), float32."""
        self._write_data("meg", data, subject, story)

    def write_fmri(self, subject, story, data):
        """Write fMRI, shape (n_repeats, n_sources, n_trs) (or (n_sources, n_trs)), as float32."""
        self._write_data("fmri", data, subject, story)

    def write_epochs(self, subject, modality, name, data, *, events, labels=None,
                     event_id=None, tmin=0.0, story=None):
        """Write a set of epochs of one subject and modality, with their event times and labels.

        Parameters
        ----------
        subject, modality : str
            A declared subject and one of its modalities.
        name : str
            Name of the epoch set (e.g. a run, ``"run-01"``); becomes a file name.
        data : array, shape (n_epochs, *spatial, n_times)
            Sampled at ``sfreq`` (sensor modalities) or one sample per ``tr`` (source, volume).
        events : array, shape (n_epochs,)
            Time of each epoch's event, in seconds from the start of the run (of ``story``
            when given).
        labels : array of int, shape (n_epochs,) | None
            Class label of each epoch.
        event_id : dict of str to int | None
            Label names, as in MNE (``{"face": 1, "house": 2}``); every label must be a value.
        tmin : float
            Time of the first sample relative to its event, in seconds.
        story : str | None
            The declared story the epochs were cut from (its features are the stimulus).
        """
        from ._sensors import check_epochs

        sub = self._subject(subject)
        _check_option("modality", modality, sub["modalities"],
                      extra=f"Subject {subject!r} was declared with these modalities.")
        _check_name("epochs name", name)
        kind = MODALITY_REGISTRY[modality].kind
        data = np.asarray(data, dtype=np.float32)
        if data.ndim != 2 + kind.n_spatial or min(data.shape) < 1:
            raise ValueError(f"{modality} epochs must have shape {kind.shape_doc('n_epochs')} "
                             f"with every size >= 1, got {data.shape}.")
        self._check_spatial(subject, modality, data.shape[1:-1], f"in epochs {name!r}")
        if story is not None:
            self._story(story)
        rate = self.sfreq if kind.sampling == "sfreq" else 1.0 / self.tr
        events, labels, entry = check_epochs(
            f"{subject}/{modality}/{name}", data.shape[0], events, labels, event_id, tmin,
            story, None if story is None else self._stories[story]["duration"])
        _check_finite(f"{modality} epochs {subject}/{name}", data)
        base = f"subjects/{subject}/{modality}/epochs/{name}"
        for rel in (f"{base}.npy", f"{base}-events.npy", f"{base}-labels.npy"):
            self._dest(rel)  # refuses a second write before anything is saved
        save_npy(self._dest(f"{base}.npy"), data, what="epochs")
        save_npy(self._dest(f"{base}-events.npy"), events, what="event times")
        self._written.update({f"{base}.npy", f"{base}-events.npy"})
        if labels is not None:
            save_npy(self._dest(f"{base}-labels.npy"), labels, what="epoch labels")
            self._written.add(f"{base}-labels.npy")
        self._set_shape(subject, modality, data.shape[1:-1])
        sub["epochs"][modality][name] = {"n_epochs": int(data.shape[0]),
                                         "n_times": int(data.shape[-1]), "sfreq": rate,
                                         **entry}

    def write_repeatability(self, subject, modality, values, *, method=None, stories=None):
        """Store the repeatability of each target of one subject and modality.

        The loss weights (:func:`neurofuse.training.data.loss_weights`) use it when present.

        Parameters
        ----------
        subject : str
            A declared subject.
        modality : str
            One of the subject's modalities.
        values : array, shape (n_targets,)
            One correlation per channel, source or voxel (C order), in [-1, 1]; ``n_targets``
            must match the subject's data.
        method : str | None
            How it was computed (e.g. ``"repeat"`` or ``"split-half"``), recorded in the
            manifest.
        stories : list of str | None
            The repeated stories it was computed from, recorded in the manifest.
        """
        sub = self._subject(subject)
        _check_option("modality", modality, sub["modalities"],
                      extra=f"Subject {subject!r} was declared with these modalities.")
        values = np.asarray(values)
        if values.ndim != 1 or values.size == 0 or not np.issubdtype(values.dtype, np.number):
            raise ValueError(f"Repeatability of {subject!r} ({modality}) must be a 1-D numeric "
                             f"array of shape (n_targets,), got shape {values.shape} and dtype "
                             f"{values.dtype}.")
        values = _check_finite(f"repeatability of {subject}/{modality}", values.astype(np.float32))
        if np.any(np.abs(values) > 1 + 1e-6):
            raise ValueError(f"Repeatability of {subject!r} ({modality}) holds correlations, so "
                             f"values must lie in [-1, 1]; got range [{values.min():g}, "
                             f"{values.max():g}].")
        known = self._known_shape(sub, modality)
        unit = MODALITY_REGISTRY[modality].kind.unit_name
        if known is not None and values.size != math.prod(known):
            raise ValueError(f"Repeatability of {subject!r} ({modality}) has {values.size} values "
                             f"but the subject has {math.prod(known)} {unit}: give one value per "
                             "target.")
        if method is not None:
            _check_type("method", method, str)
        story_list = None
        if stories is not None:
            story_list = [_check_option("stories", st, list(self._stories),
                                        extra="Repeatability stories must be dataset stories.")
                          for st in _check_type("stories", stories, (list, tuple))]
        fname = REPEATABILITY_FILE.format(modality=modality)
        save_npy(self._dest(f"subjects/{subject}/{fname}"), values, what="repeatability")
        self._written.add(f"subjects/{subject}/{fname}")
        self._repeat[(subject, modality)] = {"file": fname, "method": method,
                                             "stories": story_list, "_n": int(values.size)}

    def write_ground_truth(self, relpath, array):
        """Write a ground-truth array under ``ground_truth/`` (e.g. ``"sources/story1"``)."""
        name = _gt_name(relpath)
        array = np.asarray(array)
        if np.issubdtype(array.dtype, np.inexact):
            _check_finite(f"ground truth {name!r}", array)
        save_npy(self._dest(f"ground_truth/{name}"), array, what="ground truth")
        self._written.add(f"ground_truth/{name}")
        self._gt[name] = {"shape": list(array.shape), "dtype": array.dtype.str}

    def ground_truth_dir(self, name):
        """A folder ``ground_truth/<name>/`` for a producer that writes its own files.

        For example ``model.save(writer.ground_truth_dir("encoding"), overwrite=True)``. The
        folder is inside the temporary dataset, so it appears only if the dataset completes.
        Read it back with :meth:`Dataset.ground_truth_dir`.
        """
        if self._tmp is None:
            raise RuntimeError("Use DatasetWriter as a context manager: `with DatasetWriter(...) as w:`.")
        _check_name("ground-truth folder name", name)
        if name in self._gt_dirs:
            raise ValueError(f"Ground-truth folder {name!r} was already created.")
        self._gt_dirs.append(name)
        path = self._tmp / "ground_truth" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def create_array(self, relpath, shape, dtype=np.float32):
        """Create an array in the dataset to be filled in chunks.

        Parameters
        ----------
        relpath : str
            Path relative to the dataset root: ``"ground_truth/<name>.npy"``,
            ``"features/<story>.npy"`` or ``"subjects/<sub>/<modality>/<story>.npy"``
            (shape rules as in the ``write_*`` methods).
        shape : tuple of int
        dtype : dtype
            Must be float32 for features and modality data.

        Returns
        -------
        array : np.memmap, shape ``shape``
            Zero-filled and writable. NaN/Inf are checked (chunk by chunk) when the ``with``
            block exits.
        """
        shape, dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        parts = str(relpath).replace("\\", "/").strip("/").split("/")
        stem = parts[-1].removesuffix(".npy")
        kind = subject = story = None
        if parts[0] == "ground_truth" and len(parts) > 1:
            name = _gt_name("/".join(parts[1:]))
            rel, kind = f"ground_truth/{name}", "gt"
        elif len(parts) == 2 and parts[0] == "features":
            kind, story = "features", stem
        elif len(parts) == 4 and parts[0] == "subjects" and parts[2] in MODALITIES:
            kind, subject, story = parts[2], parts[1], stem
        else:
            raise ValueError(f"create_array cannot create {relpath!r}: use "
                             "'ground_truth/<name>.npy', 'features/<story>.npy' or "
                             "'subjects/<sub>/<modality>/<story>.npy'.")
        if kind != "gt":
            if dtype != np.float32:
                raise ValueError(f"{kind} arrays are stored as float32, got dtype {dtype}.")
            rel = self._slot(kind, shape, subject, story)
        if dtype == object:
            raise TypeError("create_array refuses object arrays: they would need pickle.")
        mm = np.lib.format.open_memmap(self._dest(rel), mode="w+", dtype=dtype, shape=shape)
        self._register(rel, shape, subject, story, kind)
        if kind == "gt":
            self._gt[name] = {"shape": list(shape), "dtype": dtype.str}
        self._pending[rel] = mm
        return mm

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


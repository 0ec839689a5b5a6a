"""Array writes of :class:`~.writer.DatasetWriter`: features, continuous runs, epochs, ground truth.

:class:`_ArrayWrites` checks each array against the declarations (story length, the
subject's modalities and spatial shapes) and saves it; :class:`~.writer.DatasetWriter` adds
the declarations, the context management and the completeness checks.
"""

from __future__ import annotations

import math

import numpy as np

from ..._checks import _check_finite, _check_option, _check_type
from ..._io import save_npy
from .manifest import REPEATABILITY_FILE, _check_name, _gt_name, expected_n_trs
from .modalities import MODALITIES, MODALITY_REGISTRY


class _ArrayWrites:
    """The ``write_*`` methods and :meth:`create_array` (state lives in DatasetWriter)."""

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

        The loss weights (:func:`neurofuse.systems.joint.data.loss_weights`) use it when present.

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

    def write_events(self, story, name, onsets):
        """Store event onsets of a story (e.g. word or sentence onsets), float64.

        Parameters
        ----------
        story : str
            A declared story.
        name : str
            Kind of event, e.g. ``"word"`` or ``"sentence"``; becomes a file name
            (``events/<story>/<name>.npy``).
        onsets : array, shape (n_events,)
            Seconds from the story's first sample, non-decreasing, within
            ``[0, duration)``; may be empty.
        """
        st = self._story(story)
        _check_name("event name", name)
        onsets = np.asarray(onsets)
        if onsets.ndim != 1 or not (onsets.size == 0 or np.issubdtype(onsets.dtype, np.number)):
            raise ValueError(f"Event onsets {story}/{name} must be a 1-D numeric array of shape "
                             f"(n_events,), got shape {onsets.shape} and dtype {onsets.dtype}.")
        onsets = _check_finite(f"event onsets {story}/{name}", onsets.astype(np.float64))
        if onsets.size and (onsets.min() < 0 or onsets.max() >= st["duration"]):
            raise ValueError(f"Event onsets {story}/{name} must lie in [0, {st['duration']:g}) s "
                             f"(the story's duration), got [{onsets.min():g}, "
                             f"{onsets.max():g}]. Give seconds from the story's first sample.")
        if np.any(np.diff(onsets) < 0):
            raise ValueError(f"Event onsets {story}/{name} must be sorted (non-decreasing); "
                             "sort them with np.sort first.")
        rel = f"events/{story}/{name}.npy"
        save_npy(self._dest(rel), onsets, what="event onsets")
        self._written.add(rel)
        st.setdefault("events", {})[name] = int(onsets.size)

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


"""Read a dataset store lazily: :func:`read_dataset` and :class:`Dataset`.

Opening parses the manifest (upgrading an older schema in memory, see :mod:`.manifest`),
checks that every file it names exists and runs the cheap check of :mod:`.validate` (the
manifest against itself and against each array's header, lead fields, sampled values);
arrays are memory-mapped only when asked for. :meth:`Dataset.check` reads everything.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..._checks import _check_option
from ..._logging import logger, verbose
from .manifest import LEGACY_2D, _gt_name, read_manifest

__all__ = ["Dataset", "read_dataset"]


class Dataset:
    """A dataset opened lazily by :func:`read_dataset`: arrays are memory-mapped on request.

    Attributes
    ----------
    path : Path
    schema_version : int
        The current schema: older manifests are upgraded in memory when read (the manifest's
        ``upgraded_from`` then says from what).
    sfreq : float
        Sampling rate of the features and sensor modalities (Hz).
    tr : float | None
        Repetition time of the source and volume modalities (s); None if the store has none.
    feature_streams : dict of str to (int, int)
    n_features : int
    metadata : dict
    """

    _kind = "dataset"

    def __init__(self, path, manifest):
        self.path = Path(path)
        self._m = manifest
        self._info_cache = {}
        self.schema_version = int(manifest["schema_version"])
        self.sfreq = float(manifest["sfreq"])
        self.tr = None if manifest.get("tr") is None else float(manifest["tr"])
        self.feature_streams = {k: tuple(v) for k, v in manifest["feature_streams"].items()}
        self.n_features = int(manifest["n_features"])
        self.metadata = manifest.get("metadata", {})

    def __repr__(self):
        tr = "" if self.tr is None else f", tr={self.tr:g} s"
        return (f"<Dataset '{self.path}' | {len(self.stories)} stories, "
                f"{len(self.subjects)} subjects, sfreq={self.sfreq:g} Hz{tr}>")

    # -- stories, subjects, features, ground truth ------------------------------------------
    @property
    def stories(self) -> list:
        """Story (continuous run) names, in the order they were added."""
        return list(self._m["stories"])

    @property
    def subjects(self) -> list:
        return list(self._m["subjects"])

    @property
    def ground_truth_names(self) -> list:
        return list(self._m.get("ground_truth", {}))

    @property
    def splits(self) -> dict:
        """``{split: [story names]}`` for the splits that have stories."""
        out = {}
        for name, st in self._m["stories"].items():
            out.setdefault(st["split"], []).append(name)
        return out

    def _sub(self, subject):
        _check_option("subject", subject, self.subjects)
        return self._m["subjects"][subject]

    def n_times(self, story) -> int:
        _check_option("story", story, self.stories)
        return int(self._m["stories"][story]["n_times"])

    def _load(self, relpath, what):
        path = self.path / relpath
        if not path.is_file():
            raise FileNotFoundError(
                f"The {self._kind} manifest names {what} at '{path}' but the file is missing: "
                f"the {self._kind} is incomplete; restore or regenerate it.")
        return np.load(path, mmap_mode="r", allow_pickle=False)

    def _load_check(self, rel, what):
        if not (self.path / rel).is_file():
            self._load(rel, what)  # raises the explanatory error

    def features(self, story) -> np.memmap:
        """Stimulus features, memmap of shape (n_times, n_features)."""
        _check_option("story", story, self.stories)
        if not self.n_features:
            raise ValueError(f"{self._kind.capitalize()} '{self.path}' stores no stimulus "
                             "features (it has no feature streams).")
        return self._load(f"features/{story}.npy", "features")

    def event_names(self, story) -> list:
        """Names of the event tables of ``story`` (e.g. ``["word", "sentence"]``; may be empty)."""
        _check_option("story", story, self.stories)
        return list(self._m["stories"][story].get("events", {}))

    def events(self, story, name="word") -> np.ndarray:
        """Event onsets of a story, s from its first sample, float64 (n_events,).

        Written by :meth:`DatasetWriter.write_events`; stores without events (older ones
        included) have none: :meth:`event_names` is empty.
        """
        names = self.event_names(story)
        if not names:
            raise ValueError(f"Story {story!r} of '{self.path}' has no event tables (the store "
                             "was written without events).")
        _check_option("name", name, names, extra=f"Story {story!r} has these event tables.")
        return np.array(self._load(f"events/{story}/{name}.npy", "event onsets"),
                        dtype=np.float64)

    def ground_truth(self, relpath) -> np.memmap:
        """A ground-truth array (simulations), e.g. ``"sources/story1"``, memory-mapped."""
        name = _gt_name(relpath)
        _check_option("ground truth", name, self.ground_truth_names)
        return self._load(f"ground_truth/{name}", "ground truth")

    def ground_truth_dir(self, name) -> Path:
        """Path of a ground-truth folder written with :meth:`DatasetWriter.ground_truth_dir`."""
        _check_option("name", name, self._m.get("ground_truth_dirs", []))
        return self.path / "ground_truth" / name

    # -- modalities -------------------------------------------------------------------------
    def modalities(self, subject) -> list:
        return list(self._sub(subject)["modalities"])

    def _modality(self, subject, modality):
        sub = self._sub(subject)
        _check_option("modality", modality, sub["modalities"],
                      extra=f"Subject {subject!r} has these modalities.")
        return sub["modality_info"][modality]

    def modality_info(self, subject, modality) -> dict:
        """The manifest's description of one modality of a subject (a copy).

        Keys: ``kind`` (``"sensor"``, ``"source"``, ``"volume"``), ``shape`` (spatial shape of
        its arrays), ``files``, and where given ``units``, ``signal``, ``electrodes`` (sensor)
        or ``affine`` (volume).
        """
        return json.loads(json.dumps(self._modality(subject, modality)))

    def spatial_shape(self, subject, modality) -> tuple | None:
        """Spatial shape of the arrays: ``(n_channels,)``, ``(n_sources,)`` or ``(x, y, z)``."""
        shape = self._modality(subject, modality)["shape"]
        return None if shape is None else tuple(shape)

    def subject_stories(self, subject, modality) -> list:
        """Stories that ``subject`` has continuous data for in ``modality`` (may be a subset)."""
        return list(self._sub(subject)["stories"].get(modality, []))

    def has(self, subject, modality, story) -> bool:
        sub = self._m["subjects"].get(subject)
        return sub is not None and story in sub["stories"].get(modality, [])

    def cnr(self, subject) -> dict:
        return {m: float(v) for m, v in self._sub(subject)["cnr"].items()}

    def data(self, subject, modality, story, *, average=False):
        """Continuous data of one story, memmap (n_repeats, *spatial, n_times).

        With ``average=True``, the mean over repeats, array (*spatial, n_times).
        """
        sub = self._sub(subject)
        if not self.has(subject, modality, story):
            raise ValueError(f"Subject {subject!r} has no {modality} data for story {story!r}; "
                             f"it has {modality} for {sub['stories'].get(modality, [])}. Check "
                             "with dataset.has(subject, modality, story).")
        arr = self._load(f"subjects/{subject}/{modality}/{story}.npy", f"{modality} data")
        if modality in self._m.get(LEGACY_2D, ()):
            arr = arr[np.newaxis]  # former ECoG store: no repeat axis on disk
        return np.asarray(arr).mean(axis=0) if average else arr

    def meg(self, subject, story, *, average=False):
        """MEG, memmap (n_repeats, n_channels, n_times); if ``average``, (n_channels, n_times)."""
        return self.data(subject, "meg", story, average=average)

    def fmri(self, subject, story, *, average=False):
        """fMRI, memmap (n_repeats, n_sources, n_trs); ``average``: array (n_sources, n_trs)."""
        return self.data(subject, "fmri", story, average=average)

    def affine(self, subject, modality) -> np.ndarray:
        """Voxel → scanner RAS (mm) affine of a volume modality, shape (4, 4)."""
        entry = self._modality(subject, modality)
        if "affine" not in entry:
            raise ValueError(f"The {modality} data of {subject!r} have no grid affine (only "
                             "volume modalities do).")
        return np.array(entry["affine"], dtype=float)

    def image(self, subject, modality, story, *, repeat=0):
        """One repeat of a volume run as a ``nibabel.Nifti1Image`` of shape (x, y, z, n_trs).

        The image wraps the memory map (nothing is read until its data are used); its zooms
        are the voxel sizes (mm) and the TR (s). ``repeat=None`` averages the repeats.
        """
        import nibabel as nib

        arr = self.data(subject, modality, story, average=repeat is None)
        arr = arr if repeat is None else arr[repeat]
        img = nib.Nifti1Image(arr, self.affine(subject, modality))
        img.header.set_xyzt_units("mm", "sec")
        img.header.set_zooms((*img.header.get_zooms()[:3], self.tr))
        return img

    # -- epochs -----------------------------------------------------------------------------
    def epoch_names(self, subject, modality) -> list:
        """Names of the epoch sets of ``subject`` in ``modality`` (may be empty)."""
        self._modality(subject, modality)
        return list(self._sub(subject).get("epochs", {}).get(modality, {}))

    def epochs_info(self, subject, modality, name) -> dict:
        """An epoch set's description: ``n_epochs``, ``n_times``, ``sfreq`` (Hz), ``tmin`` (s),
        ``event_id`` (label names or None), ``story`` (or None), ``labels`` (bool)."""
        _check_option("epochs name", name, self.epoch_names(subject, modality))
        return dict(self._sub(subject)["epochs"][modality][name])

    def _epoch_file(self, subject, modality, name, suffix=""):
        self.epochs_info(subject, modality, name)
        return f"subjects/{subject}/{modality}/epochs/{name}{suffix}.npy"

    def epochs(self, subject, modality, name) -> np.memmap:
        """Epochs, memmap of shape (n_epochs, *spatial, n_times)."""
        return self._load(self._epoch_file(subject, modality, name), "epochs")

    def epoch_events(self, subject, modality, name) -> np.ndarray:
        """Event time of each epoch (s from the start of its run), float64 (n_epochs,)."""
        return np.array(self._load(self._epoch_file(subject, modality, name, "-events"),
                                   "event times"))

    def epoch_labels(self, subject, modality, name):
        """Label of each epoch, int64 (n_epochs,), or None for unlabelled epochs."""
        if not self.epochs_info(subject, modality, name)["labels"]:
            return None
        return np.array(self._load(self._epoch_file(subject, modality, name, "-labels"),
                                   "epoch labels"))

    def to_mne_epochs(self, subject, modality, name):
        """A sensor modality's epoch set as ``mne.EpochsArray`` (loads the data)."""
        import mne

        entry = self.epochs_info(subject, modality, name)
        events = self.epoch_events(subject, modality, name)
        labels = self.epoch_labels(subject, modality, name)
        labels = np.ones(len(events), np.int64) if labels is None else labels
        mne_events = np.c_[np.round(events * entry["sfreq"]).astype(np.int64),
                           np.zeros(len(events), np.int64), labels]
        return mne.EpochsArray(np.asarray(self.epochs(subject, modality, name), np.float64),
                               self.info(subject, modality), events=mne_events,
                               tmin=entry["tmin"], event_id=entry["event_id"], verbose="error")

    # -- anatomy and sensors ----------------------------------------------------------------
    def _file(self, subject, key, modality=None):
        sub = self._sub(subject)
        files = (sub["files"] if modality is None
                 else sub["modality_info"].get(modality, {}).get("files", {}))
        fname = files.get(key)
        if fname is None:
            where = "" if modality is None else f" for {modality}"
            if modality is not None and modality not in sub["modalities"]:
                where += f" (it has no {modality}, only {sub['modalities']})"
            raise ValueError(f"Subject {subject!r} was written without a {key}{where}.")
        return f"subjects/{subject}/{fname}"

    def files(self, subject, modality=None) -> dict:
        """Stored files of a subject (anatomy) or of one of its modalities: ``{key: name}``."""
        if modality is None:
            return dict(self._sub(subject)["files"])
        return dict(self._modality(subject, modality)["files"])

    def info(self, subject, modality="meg"):
        """The channel info of a sensor modality (``mne.Info``, cached)."""
        key = (subject, modality)
        if key not in self._info_cache:
            import mne

            rel = self._file(subject, "info", modality)
            self._load_check(rel, "channel info")
            self._info_cache[key] = mne.io.read_info(self.path / rel, verbose="error")
        return self._info_cache[key]

    def leadfield(self, subject, modality="meg") -> np.memmap:
        """Fixed-orientation lead field of a sensor modality, memmap (n_channels, n_sources)."""
        return self._load(self._file(subject, "leadfield", modality), "a lead field")

    def forward(self, subject, modality="meg"):
        """The fixed-orientation ``mne.Forward`` of a sensor modality (if the store has one)."""
        import mne

        if "forward" not in self._sub(subject)["modality_info"].get(modality, {}).get("files", {}):
            raise ValueError(f"Dataset '{self.path}' stores no forward solution for {subject!r}; "
                             "recompute it with neurofuse.anatomy.make_forward.")
        rel = self._file(subject, "forward", modality)
        fwd = mne.read_forward_solution(self.path / rel, verbose="error")
        return mne.convert_forward_solution(fwd, surf_ori=True, force_fixed=True, use_cps=True,
                                            verbose="error")

    def anatomy(self, subject) -> dict:
        """The subject's anatomy reference (FreeSurfer ``name``, ``subjects_dir``, ``trans``...)."""
        return dict(self._sub(subject).get("anatomy", {}))

    def morph(self, subject):
        """fsaverage → subject morph, CSR of shape (n_sources, n_sources_fsaverage)."""
        import scipy.sparse

        rel = self._file(subject, "morph")
        self._load_check(rel, "a morph matrix")
        return scipy.sparse.load_npz(self.path / rel).tocsr()

    def vertices(self, subject) -> list:
        """Subject source-space vertex numbers ``[lh, rh]`` (int64 arrays)."""
        rel = self._file(subject, "vertices")
        self._load_check(rel, "vertices")
        with open(self.path / rel) as fid:
            return [np.asarray(v, dtype=np.int64) for v in json.load(fid)]

    def repeatability(self, subject, modality):
        """Stored repeatability per target, shape (n_targets,), or None if none was stored.

        Written by :meth:`DatasetWriter.write_repeatability`; how it was computed is in
        ``repeatability_info``.
        """
        entry = self.repeatability_info(subject, modality)
        if entry is None:
            return None
        arr = self._load(f"subjects/{subject}/{entry['file']}", "repeatability")
        return np.array(arr, dtype=np.float64)

    def repeatability_info(self, subject, modality):
        """The manifest entry of a stored repeatability (``file``, ``method``, ``stories``)."""
        self._modality(subject, modality)
        entry = self._sub(subject).get("repeatability", {}).get(modality)
        return None if entry is None else dict(entry)

    # -- checks -----------------------------------------------------------------------------
    @verbose
    def check(self, *, full=True, raise_error=False, verbose=None) -> list:
        """Check the store against itself; with ``full``, read every array whole.

        Parameters
        ----------
        full : bool
            Read every array (NaN/Inf named by channel and sample range, all-zero channels of
            sensor modalities and all-zero recordings), the channel infos (sampling rate and
            channel count) and the morphs' values; ``False`` repeats the cheap check done on
            open (headers, lead fields, sampled values).
        raise_error : bool
            Raise :class:`~neurofuse.data.store.StoreError` if anything is wrong.
        verbose : bool | str | int | None
            Log level for this call (see :func:`neurofuse.set_log_level`).

        Returns
        -------
        problems : list of Problem
            Each with ``file``, ``field``, ``expected``, ``got`` and ``fix``; empty for a
            sound store.
        """
        from .validate import StoreError, check_store

        problems = check_store(self.path, full=full, manifest=self._m, dataset=self)
        logger.info("Checked %s '%s' (%s): %d problem(s).", self._kind, self.path,
                    "full" if full else "cheap", len(problems))
        if problems and raise_error:
            raise StoreError(self.path, problems, when="(every array read)" if full else "on open")
        return problems

    # -- overview ---------------------------------------------------------------------------
    def _expected_files(self):
        yield from (f"features/{s}.npy" for s in self._m["stories"] if self.n_features)
        for story, st in self._m["stories"].items():
            yield from (f"events/{story}/{e}.npy" for e in st.get("events", {}))
        for name, sub in self._m["subjects"].items():
            yield from (f"subjects/{name}/{f}" for f in sub["files"].values())
            for entry in sub["modality_info"].values():
                yield from (f"subjects/{name}/{f}" for f in entry["files"].values())
            yield from (f"subjects/{name}/{e['file']}"
                        for e in sub.get("repeatability", {}).values())
            for mod, stories in sub["stories"].items():
                yield from (f"subjects/{name}/{mod}/{s}.npy" for s in stories)
            for mod, sets in sub.get("epochs", {}).items():
                for ep, e in sets.items():
                    base = f"subjects/{name}/{mod}/epochs/{ep}"
                    yield from (f"{base}.npy", f"{base}-events.npy")
                    if e["labels"]:
                        yield f"{base}-labels.npy"
        yield from (f"ground_truth/{g}" for g in self._m.get("ground_truth", {}))

    def summary(self) -> dict:
        """A JSON-able overview (for ``neurofuse data info``); durations in seconds.

        ``total_duration`` sums, per modality, story duration × n_repeats over subjects;
        ``n_channels`` is that of the subject's first sensor modality (None without one).
        """
        stories = {n: {"split": s["split"], "duration": s["duration"], "n_times": s["n_times"]}
                   for n, s in self._m["stories"].items()}
        total, subjects = {}, {}
        for name, sub in self._m["subjects"].items():
            for mod, reps in sub["n_repeats"].items():
                total[mod] = total.get(mod, 0.0) + sum(
                    stories[s]["duration"] * r for s, r in reps.items())
            info = sub["modality_info"]
            sensors = [m for m in sub["modalities"] if info[m]["kind"] == "sensor"]
            shape0 = info[sensors[0]]["shape"] if sensors else None
            subjects[name] = {
                "modalities": sub["modalities"], "cnr": sub["cnr"],
                "n_stories": {m: len(v) for m, v in sub["stories"].items()},
                "n_epochs": {m: sum(e["n_epochs"] for e in v.values())
                             for m, v in sub.get("epochs", {}).items()},
                "n_channels": None if shape0 is None else shape0[0],
                "n_sources": sub["n_sources"],
                "shapes": {m: info[m]["shape"] for m in sub["modalities"]}}
        return {"path": str(self.path), "schema_version": self.schema_version,
                "sfreq": self.sfreq, "tr": self.tr,
                "feature_streams": {k: list(v) for k, v in self.feature_streams.items()},
                "n_features": self.n_features, "stories": stories,
                "splits": {k: len(v) for k, v in self.splits.items()},
                "subjects": subjects, "total_duration": total,
                "ground_truth": self.ground_truth_names}


def _open(path, cls, check=True):
    from .validate import StoreError, check_manifest, check_store

    path = Path(path).expanduser()
    manifest = read_manifest(path)
    if check and (problems := check_manifest(manifest)):
        raise StoreError(path, problems)
    ds = cls(path, manifest)
    missing = [rel for rel in ds._expected_files() if not (path / rel).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{cls._kind.capitalize()} '{path}' is incomplete: its manifest names {len(missing)} "
            f"missing file(s), e.g. {missing[:3]}. Restore the files or regenerate the dataset.")
    if check and (problems := check_store(path, manifest=manifest, dataset=ds)):
        raise StoreError(path, problems)
    if "upgraded_from" in manifest:
        logger.info("Read %s '%s' (%s) as schema %d; neurofuse.data.upgrade_dataset rewrites "
                    "it in the current layout.", cls._kind, path, manifest["upgraded_from"],
                    ds.schema_version)
    logger.debug("Opened %r", ds)
    return ds


@verbose
def read_dataset(path, *, check=True, verbose=None) -> Dataset:
    """Open a dataset written by :class:`DatasetWriter`, checking it cheaply.

    Stores of an older schema (version 1, and the former ECoG stores) are read as the
    current one (``docs/dataset-format.md``, "Versioning"). Arrays are memory-mapped only
    when asked for.

    Parameters
    ----------
    path : path-like
        The dataset folder.
    check : bool
        Check the store on open (``docs/dataset-format.md``, "Checks"): the manifest against
        itself, the header (shape, dtype, size) of every array against the manifest, lead
        fields finite, and a sample of every array's values — without reading whole arrays.
        :meth:`Dataset.check` reads everything.
    verbose : bool | str | int | None
        Log level for this call (see :func:`neurofuse.set_log_level`).

    Returns
    -------
    dataset : Dataset

    Raises
    ------
    FileNotFoundError
        ``path`` is not a dataset, or the manifest names a file that is missing.
    StoreError
        (a ValueError) The manifest contradicts itself or its arrays, a file is damaged
        (e.g. truncated), a lead field or a sampled value is NaN/Inf, or a recording is all
        zero; the message lists each problem with its file, field, expected and found values.
    ValueError
        The dataset was written by a newer neurofuse (schema version too new).
    """
    return _open(path, Dataset, check=check)


"""The on-disk dataset store: one documented folder format for a whole study.

A dataset holds stimulus features per story, MEG and fMRI per subject and story, each
subject's channel info, lead field, fsaverage→subject morph and source-space vertices, and
(for simulations) arbitrary ground-truth arrays, and optionally each subject's per-target
repeatability (for the loss weights). See ``docs/dataset-format.md``.

Write with :class:`DatasetWriter` (everything goes to a temporary folder that is moved into
place only when the ``with`` block succeeds); read with :func:`read_dataset`, which opens
only the manifest and memory-maps arrays when they are asked for.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from pathlib import Path

import numpy as np

from .._checks import (
    _check_finite,
    _check_option,
    _check_positive,
    _check_sfreq,
    _check_type,
)
from .._io import _json_default, atomic_dir, atomic_path, save_npy, write_json
from .._logging import logger, verbose

SCHEMA_VERSION = 1
MANIFEST = "neurofuse-dataset.json"
SPLITS = ("train", "val", "test", "anchor")
MODALITIES = ("meg", "fmri")
INFO_FILE, LEADFIELD_FILE, MORPH_FILE, VERTICES_FILE = (
    "meg-info.fif", "leadfield.npy", "morph.npz", "vertices.json")
FORWARD_FILE = "meg-fwd.fif"
REPEATABILITY_FILE = "repeatability-{modality}.npy"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_CHUNK_BYTES = 64 * 2**20


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
    parts = rel[:-4].split("/")
    for part in parts:
        _check_name("ground-truth path component", part)
    return rel


def _finite_chunked(name: str, path: Path):
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


class DatasetWriter:
    """Write a dataset atomically; use as a context manager.

    Parameters
    ----------
    path : path-like
        The dataset folder to create.
    sfreq : float
        Sampling rate of the features and MEG, in Hz (e.g. 50.0).
    tr : float
        fMRI repetition time, in s (e.g. 2.0).
    feature_streams : dict of str to (int, int)
        Column ranges ``[start, stop)`` of each feature stream in the feature matrices, e.g.
        ``{"word": (0, 768), "phoneme": (768, 812)}``. ``n_features = max(stop)``.
    overwrite : bool
        Replace an existing dataset at ``path`` — only once the new one is complete.
    metadata : dict | None
        Free JSON (generator config, seed, package versions).

    Notes
    -----
    Nothing appears at ``path`` until the ``with`` block exits without error; then the
    completeness checks run, the manifest is written last and the folder is moved into place.
    """

    def __init__(self, path, *, sfreq, tr, feature_streams, overwrite=False, metadata=None):
        self.path = Path(path).expanduser()
        self.sfreq = _check_positive("sfreq", sfreq)
        self.tr = _check_positive("tr", tr)
        self.feature_streams = self._check_streams(feature_streams)
        self.n_features = max(stop for _, stop in self.feature_streams.values())
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

    @staticmethod
    def _check_streams(streams):
        _check_type("feature_streams", streams, dict)
        if not streams:
            raise ValueError("'feature_streams' must name at least one stream, "
                             "e.g. {'word': (0, 768)}.")
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

    def _dest(self, relpath) -> Path:
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
        """Declare a story of ``n_times`` samples (at ``sfreq``) in ``split``."""
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
            Subset of ``("meg", "fmri")``.
        info : mne.Info | None
            MEG channel info (MEG channels only); fixes ``n_channels``.
        leadfield : array, shape (n_channels, n_sources) | None
            Fixed-orientation gain matrix.
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
            the first fMRI write.
        forward : mne.Forward | None
            The fixed-orientation forward solution the lead field comes from (saved as
            ``meg-fwd.fif`` so MNE-Python inverses can be run on the dataset).
        """
        _check_name("subject name", name)
        if name in self._subjects:
            raise ValueError(f"Subject {name!r} was already added: subject names must be unique.")
        mods = list(_check_type("modalities", modalities, (list, tuple)))
        if not mods or len(set(mods)) != len(mods):
            raise ValueError("'modalities' must be a non-empty list without repeats, "
                             f"got {mods!r}.")
        for mod in mods:
            _check_option("modalities", mod, MODALITIES)
        _check_type("anatomy", {} if anatomy is None else anatomy, dict)
        sub = {"modalities": mods, "stories": {m: {} for m in mods}, "cnr": {},
               "n_channels": None, "n_sources": None, "anatomy": anatomy or {}, "files": {}}
        try:
            json.dumps(sub["anatomy"], default=_json_default)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"'anatomy' must be a JSON-serialisable dict: {exc}.") from None
        for mod, val in (cnr or {}).items():
            _check_option("cnr key", mod, mods, extra="CNRs are given per declared modality.")
            sub["cnr"][mod] = _check_positive(f"cnr[{mod!r}]", val, allow_inf=True)
        files = {}
        if info is not None:
            import mne

            _check_type("info", info, mne.Info, "mne.Info")
            _check_sfreq(f"info['sfreq'] of subject {name!r}", info["sfreq"], self.sfreq,
                         how_to_fix=f"Resample the recording to the dataset's {self.sfreq:g} Hz "
                         "(raw.resample) and update the info before adding it.")
            bad = [ch for ch, t in zip(info["ch_names"], info.get_channel_types())
                   if t not in ("mag", "grad")]
            if bad:
                raise ValueError(f"'info' must hold MEG channels only, got {len(bad)} others "
                                 f"({bad[:3]}...). Use info = mne.pick_info(info, "
                                 "mne.pick_types(info, meg=True)).")
            sub["n_channels"] = len(info["ch_names"])
            files["info"] = (info, INFO_FILE)
        sizes = []  # (what, n_sources)
        if n_sources is not None:
            if not isinstance(n_sources, (int, np.integer)) or n_sources < 1:
                raise ValueError(f"'n_sources' must be a positive integer, got {n_sources!r}.")
            sizes.append(("the declared n_sources", int(n_sources)))
        if leadfield is not None:
            leadfield = np.asarray(leadfield, dtype=np.float32)
            if leadfield.ndim != 2:
                raise ValueError("'leadfield' must have shape (n_channels, n_sources), got "
                                 f"shape {leadfield.shape}.")
            _check_finite("leadfield", leadfield)
            if sub["n_channels"] is not None and leadfield.shape[0] != sub["n_channels"]:
                raise ValueError(
                    f"lead field vs channel count mismatch for subject {name!r}: the leadfield "
                    f"has {leadfield.shape[0]} rows but info has {sub['n_channels']} MEG "
                    "channels. Compute the lead field with the same info.")
            sub["n_channels"] = leadfield.shape[0]
            sizes.append(("leadfield columns", leadfield.shape[1]))
            files["leadfield"] = (leadfield, LEADFIELD_FILE)
        if morph is not None:
            import scipy.sparse

            if not scipy.sparse.issparse(morph):
                raise TypeError("'morph' must be a scipy.sparse matrix (n_sources, "
                                f"n_sources_fsaverage), got {type(morph).__name__}; a dense "
                                "morph wastes memory — pass scipy.sparse.csr_matrix(morph).")
            morph = scipy.sparse.csr_matrix(morph, dtype=np.float32)
            _check_finite("morph", morph.data)
            sizes.append(("morph rows", morph.shape[0]))
            sub["n_sources_fsaverage"] = int(morph.shape[1])
            files["morph"] = (morph, MORPH_FILE)
        if vertices is not None:
            if not isinstance(vertices, (list, tuple)) or len(vertices) != 2:
                raise ValueError("'vertices' must be [lh, rh], two arrays of vertex numbers.")
            vertices = [np.asarray(v) for v in vertices]
            for hemi, v in zip(("lh", "rh"), vertices):
                if v.ndim != 1 or (v.size and (not np.issubdtype(v.dtype, np.integer)
                                               or v.min() < 0 or np.any(np.diff(v) <= 0))):
                    raise ValueError(f"vertices[{hemi}] must be strictly increasing "
                                     "non-negative integers (as MNE numbers them).")
            sizes.append(("vertices (lh + rh)", int(sum(v.size for v in vertices))))
            files["vertices"] = ([v.tolist() for v in vertices], VERTICES_FILE)
        if forward is not None:
            import mne

            _check_type("forward", forward, mne.Forward, "mne.Forward")
            if sub["n_channels"] is not None and forward["nchan"] != sub["n_channels"]:
                raise ValueError(
                    f"lead field vs channel count mismatch for subject {name!r}: the forward "
                    f"has {forward['nchan']} channels but info has {sub['n_channels']}.")
            sizes.append(("forward sources", int(forward["nsource"])))
            files["forward"] = (forward, FORWARD_FILE)
        for what, size in sizes[1:]:
            if size != sizes[0][1]:
                kind = "morph vs source-space" if "morph" in what + sizes[0][0] else "source-space"
                raise ValueError(
                    f"{kind} mismatch for subject {name!r}: {sizes[0][0]} = {sizes[0][1]} but "
                    f"{what} = {size}. Build them from the same subject source space.")
        if sizes:
            sub["n_sources"] = sizes[0][1]
        for key, (obj, fname) in files.items():
            self._write_file(f"subjects/{name}/{fname}", key, obj)
            sub["files"][key] = fname
        self._subjects[name] = sub

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
    def _story(self, story):
        return self._stories[_check_option("story", story, list(self._stories),
                                           extra="Declare it first with add_story().")]

    def _slot(self, kind, shape, subject=None, story=None):
        """Validate the shape of a features/MEG/fMRI array and return its relpath."""
        st = self._story(story)
        if kind == "features":
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
        sub = self._subjects[_check_option("subject", subject, list(self._subjects),
                                           extra="Declare it first with add_subject().")]
        _check_option("modality", kind, sub["modalities"],
                      extra=f"Subject {subject!r} was declared with these modalities.")
        axis = "n_channels" if kind == "meg" else "n_sources"
        if kind == "meg":
            n_t, what = st["n_times"], f"n_times of story {story!r}"
        else:
            n_t = expected_n_trs(st["n_times"], self.sfreq, self.tr)
            what = f"floor(n_times / (sfreq * tr)) = {st['n_times']} / {self.sfreq * self.tr:g}"
        if len(shape) != 3 or shape[0] < 1:
            raise ValueError(f"{kind} data must have shape (n_repeats, {axis}, n_times) with "
                             f"n_repeats >= 1, got {tuple(shape)}.")
        if shape[2] != n_t:
            raise ValueError(
                f"stories of inconsistent length: {kind} data of subject {subject!r} for story "
                f"{story!r} has {shape[2]} samples but {what} is {n_t}. Crop or pad the "
                "recording to the story's declared length.")
        if sub[axis] is not None and shape[1] != sub[axis]:
            raise ValueError(f"{kind} data of subject {subject!r} for story {story!r} has "
                             f"{shape[1]} {axis[2:]}, expected {sub[axis]} "
                             f"({axis} of the subject).")
        return f"subjects/{subject}/{kind}/{story}.npy"

    def _register(self, relpath, shape, subject=None, story=None, kind=None):
        self._written.add(relpath)
        if kind in MODALITIES:
            sub = self._subjects[subject]
            sub["stories"][kind][story] = int(shape[0])
            sub["n_channels" if kind == "meg" else "n_sources"] = int(shape[1])

    def _write_data(self, kind, data, subject=None, story=None):
        data = np.asarray(data, dtype=np.float32)
        if kind in MODALITIES and data.ndim == 2:
            data = data[np.newaxis]  # (1, n_channels|n_sources, n_times)
        relpath = self._slot(kind, data.shape, subject, story)
        _check_finite(f"{kind} data for {subject + '/' if subject else ''}{story}", data)
        save_npy(self._dest(relpath), data, what=f"{kind} array")
        self._register(relpath, data.shape, subject, story, kind)

    def write_features(self, story, array):
        """Write the features of ``story``, shape (n_times, n_features), as float32."""
        self._write_data("features", array, story=story)

    def write_meg(self, subject, story, data):
        """Write MEG, shape (n_repeats, n_channels, n_times) or (n_channels, n_times), float32."""
        self._write_data("meg", data, subject, story)

    def write_fmri(self, subject, story, data):
        """Write fMRI, shape (n_repeats, n_sources, n_trs) (or (n_sources, n_trs)), as float32."""
        self._write_data("fmri", data, subject, story)

    def write_repeatability(self, subject, modality, values, *, method=None, stories=None):
        """Store the repeatability of each target of one subject and modality.

        The loss weights (:func:`neurofuse.training.data.loss_weights`) use it when present.

        Parameters
        ----------
        subject : str
            A declared subject.
        modality : 'meg' | 'fmri'
            One of the subject's modalities.
        values : array, shape (n_targets,)
            One correlation per channel (MEG) or source (fMRI), in [-1, 1]; ``n_targets`` must
            match the subject's ``n_channels`` / ``n_sources``. Stored as float32.
        method : str | None
            How it was computed (e.g. ``"repeat"`` or ``"split-half"``), recorded in the
            manifest.
        stories : list of str | None
            The repeated stories it was computed from, recorded in the manifest.
        """
        sub = self._subjects.get(_check_option("subject", subject, list(self._subjects),
                                               extra="Declare it first with add_subject()."))
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
        axis = "n_channels" if modality == "meg" else "n_sources"
        if sub[axis] is not None and values.size != sub[axis]:
            raise ValueError(f"Repeatability of {subject!r} ({modality}) has {values.size} values "
                             f"but the subject has {sub[axis]} {axis[2:]}: give one value per "
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

    def ground_truth_dir(self, name) -> Path:
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
            ``"features/<story>.npy"``, ``"subjects/<sub>/meg/<story>.npy"`` or
            ``"subjects/<sub>/fmri/<story>.npy"`` (shape rules as in the ``write_*`` methods).
        shape : tuple of int
        dtype : dtype
            Must be float32 for features, MEG and fMRI.

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
                             "'subjects/<sub>/<meg|fmri>/<story>.npy'.")
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
        missing = [s for s in self._stories if f"features/{s}.npy" not in self._written]
        if missing:
            raise ValueError(f"Stories without features: {missing}. Call writer.write_features"
                             "(story, array) for each story before leaving the `with` block.")
        for name, sub in self._subjects.items():
            empty = [m for m in sub["modalities"] if not sub["stories"][m]]
            if empty:
                raise ValueError(f"Subject {name!r} declares modalities {empty} but no data "
                                 "was written for them; write some or drop the modality.")
        for (name, mod), entry in self._repeat.items():
            axis = "n_channels" if mod == "meg" else "n_sources"
            n = self._subjects[name][axis]
            if n is not None and entry["_n"] != n:
                raise ValueError(f"Repeatability of {name!r} ({mod}) has {entry['_n']} values "
                                 f"but the subject's {mod} data have {n} {axis[2:]}.")
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
            manifest["subjects"][name] = {
                "modalities": sub["modalities"],
                "stories": {m: list(sub["stories"][m]) for m in sub["modalities"]},
                "n_repeats": sub["stories"],
                "cnr": {m: ("inf" if math.isinf(v) else v) for m, v in sub["cnr"].items()},
                "n_channels": sub["n_channels"], "n_sources": sub["n_sources"],
                "n_sources_fsaverage": sub.get("n_sources_fsaverage"),
                "anatomy": sub["anatomy"], "files": sub["files"],
            }
            reps = {m: {k: v for k, v in e.items() if k != "_n"}
                    for (n, m), e in self._repeat.items() if n == name}
            if reps:  # optional key (schema 1 readers that predate it ignore it)
                manifest["subjects"][name]["repeatability"] = reps
        write_json(self._tmp / MANIFEST, manifest, what="dataset manifest")


class _ManifestStore:
    """What every store read from a manifest shares: stories with features at ``sfreq``,
    subjects, ground truth, and memory-mapped loads that explain a missing file.

    Subclasses set :attr:`_kind`, the store's name in error messages.
    """

    _kind = "dataset"

    def __init__(self, path, manifest):
        self.path = Path(path)
        self._m = manifest
        self.schema_version = int(manifest["schema_version"])
        self.sfreq = float(manifest["sfreq"])
        self.feature_streams = {k: tuple(v) for k, v in manifest["feature_streams"].items()}
        self.n_features = int(manifest["n_features"])
        self.metadata = manifest.get("metadata", {})

    @property
    def stories(self) -> list:
        """Story names, in the order they were added."""
        return list(self._m["stories"])

    @property
    def subjects(self) -> list:
        return list(self._m["subjects"])

    @property
    def ground_truth_names(self) -> list:
        return list(self._m.get("ground_truth", {}))

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

    def features(self, story) -> np.memmap:
        """Stimulus features, memmap of shape (n_times, n_features)."""
        _check_option("story", story, self.stories)
        return self._load(f"features/{story}.npy", "features")

    def ground_truth(self, relpath) -> np.memmap:
        """A ground-truth array (simulations), e.g. ``"sources/story1"``, memory-mapped."""
        name = _gt_name(relpath)
        _check_option("ground truth", name, self.ground_truth_names)
        return self._load(f"ground_truth/{name}", "ground truth")


class Dataset(_ManifestStore):
    """A dataset opened lazily by :func:`read_dataset`: arrays are memory-mapped on request."""

    def __init__(self, path, manifest):
        super().__init__(path, manifest)
        self._info_cache = {}
        self.tr = float(manifest["tr"])

    def __repr__(self):
        return (f"<Dataset '{self.path}' | {len(self.stories)} stories, "
                f"{len(self.subjects)} subjects, sfreq={self.sfreq:g} Hz, tr={self.tr:g} s>")

    @property
    def splits(self) -> dict:
        """``{split: [story names]}`` for the splits that have stories."""
        out = {}
        for name, st in self._m["stories"].items():
            out.setdefault(st["split"], []).append(name)
        return out

    def ground_truth_dir(self, name) -> Path:
        """Path of a ground-truth folder written with :meth:`DatasetWriter.ground_truth_dir`."""
        _check_option("name", name, self._m.get("ground_truth_dirs", []))
        return self.path / "ground_truth" / name

    def modalities(self, subject) -> list:
        return list(self._sub(subject)["modalities"])

    def subject_stories(self, subject, modality) -> list:
        """Stories that ``subject`` has data for in ``modality`` (may be a subset of all)."""
        return list(self._sub(subject)["stories"].get(modality, []))

    def has(self, subject, modality, story) -> bool:
        sub = self._m["subjects"].get(subject)
        return sub is not None and story in sub["stories"].get(modality, [])

    def cnr(self, subject) -> dict:
        return {m: float(v) for m, v in self._sub(subject)["cnr"].items()}

    def _data(self, kind, subject, story, average):
        sub = self._sub(subject)
        if not self.has(subject, kind, story):
            raise ValueError(f"Subject {subject!r} has no {kind} data for story {story!r}; it "
                             f"has {kind} for {sub['stories'].get(kind, [])}. Check with "
                             "dataset.has(subject, modality, story).")
        arr = self._load(f"subjects/{subject}/{kind}/{story}.npy", f"{kind} data")
        return np.asarray(arr).mean(axis=0) if average else arr

    def meg(self, subject, story, *, average=False):
        """MEG, memmap (n_repeats, n_channels, n_times); if ``average``, (n_channels, n_times)."""
        return self._data("meg", subject, story, average)

    def fmri(self, subject, story, *, average=False):
        """fMRI, memmap (n_repeats, n_sources, n_trs); ``average``: array (n_sources, n_trs)."""
        return self._data("fmri", subject, story, average)

    def _file(self, subject, key):
        fname = self._sub(subject)["files"].get(key)
        if fname is None:
            raise ValueError(f"Subject {subject!r} was written without a {key}.")
        return f"subjects/{subject}/{fname}"

    def info(self, subject):
        """The subject's MEG channel info (``mne.Info``, cached)."""
        if subject not in self._info_cache:
            import mne

            rel = self._file(subject, "info")
            self._load_check(rel, "channel info")
            self._info_cache[subject] = mne.io.read_info(self.path / rel, verbose="error")
        return self._info_cache[subject]

    def leadfield(self, subject) -> np.memmap:
        """Fixed-orientation lead field, memmap of shape (n_channels, n_sources)."""
        return self._load(self._file(subject, "leadfield"), "a lead field")

    def anatomy(self, subject) -> dict:
        """The subject's anatomy reference (FreeSurfer ``name``, ``subjects_dir``, ``trans``...)."""
        return dict(self._sub(subject).get("anatomy", {}))

    def forward(self, subject):
        """The subject's fixed-orientation ``mne.Forward`` (if the dataset stores one)."""
        import mne

        if "forward" not in self._sub(subject)["files"]:
            raise ValueError(f"Dataset '{self.path}' stores no forward solution for {subject!r}; "
                             "recompute it with neurofuse.anatomy.make_forward.")
        rel = self._file(subject, "forward")
        fwd = mne.read_forward_solution(self.path / rel, verbose="error")
        return mne.convert_forward_solution(fwd, surf_ori=True, force_fixed=True, use_cps=True,
                                            verbose="error")

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
        _check_option("modality", modality, MODALITIES)
        entry = self._sub(subject).get("repeatability", {}).get(modality)
        return None if entry is None else dict(entry)

    def _load_check(self, rel, what):
        if not (self.path / rel).is_file():
            self._load(rel, what)  # raises the explanatory error

    def _expected_files(self):
        yield MANIFEST
        yield from (f"features/{s}.npy" for s in self._m["stories"])
        for name, sub in self._m["subjects"].items():
            yield from (f"subjects/{name}/{f}" for f in sub["files"].values())
            yield from (f"subjects/{name}/{e['file']}"
                        for e in sub.get("repeatability", {}).values())
            for mod, stories in sub["stories"].items():
                yield from (f"subjects/{name}/{mod}/{s}.npy" for s in stories)
        yield from (f"ground_truth/{g}" for g in self._m.get("ground_truth", {}))

    def summary(self) -> dict:
        """A JSON-able overview (for ``neurofuse data info``); durations in seconds.

        ``total_duration`` sums, per modality, story duration × n_repeats over subjects.
        """
        stories = {n: {"split": s["split"], "duration": s["duration"], "n_times": s["n_times"]}
                   for n, s in self._m["stories"].items()}
        total, subjects = {}, {}
        for name, sub in self._m["subjects"].items():
            for mod, reps in sub["n_repeats"].items():
                total[mod] = total.get(mod, 0.0) + sum(
                    stories[s]["duration"] * r for s, r in reps.items())
            subjects[name] = {"modalities": sub["modalities"], "cnr": sub["cnr"],
                              "n_stories": {m: len(v) for m, v in sub["stories"].items()},
                              "n_channels": sub["n_channels"], "n_sources": sub["n_sources"]}
        return {"path": str(self.path), "schema_version": self.schema_version,
                "sfreq": self.sfreq, "tr": self.tr,
                "feature_streams": {k: list(v) for k, v in self.feature_streams.items()},
                "n_features": self.n_features, "stories": stories,
                "splits": {k: len(v) for k, v in self.splits.items()},
                "subjects": subjects, "total_duration": total,
                "ground_truth": self.ground_truth_names}


@verbose
def read_dataset(path, *, verbose=None) -> Dataset:
    """Open a dataset written by :class:`DatasetWriter`; reads only the manifest.

    Raises
    ------
    FileNotFoundError
        ``path`` is not a dataset, or the manifest names a file that is missing.
    ValueError
        The dataset was written by a newer neurofuse (schema version too new).
    """
    path = Path(path).expanduser()
    if not (path / MANIFEST).is_file():
        raise FileNotFoundError(
            f"'{path}' is not a neurofuse dataset: it has no {MANIFEST}. Point to the folder "
            "given to DatasetWriter (or `neurofuse simulate study --out`), or create one with it.")
    try:
        with open(path / MANIFEST) as fid:
            manifest = json.load(fid)
    except json.JSONDecodeError as exc:
        raise ValueError(f"The manifest '{path / MANIFEST}' is not valid JSON ({exc}); the "
                         "dataset is corrupted: regenerate it.") from None
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"The manifest '{path / MANIFEST}' has no valid integer "
                         f"'schema_version' (got {version!r}); regenerate the dataset.")
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"Dataset '{path}' has schema_version {version}, newer than the {SCHEMA_VERSION} "
            "this neurofuse supports: upgrade neurofuse (pip install -U neurofuse).")
    ds = Dataset(path, manifest)
    missing = [rel for rel in ds._expected_files() if not (path / rel).is_file()]
    if missing:
        raise FileNotFoundError(
            f"Dataset '{path}' is incomplete: its manifest names {len(missing)} missing "
            f"file(s), e.g. {missing[:3]}. Restore the files or regenerate the dataset.")
    logger.debug("Opened %r", ds)
    return ds

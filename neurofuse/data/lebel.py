"""The LeBel et al. (2023) fMRI dataset (OpenNeuro ds003020) into a neurofuse dataset store.

:func:`prepare_lebel` reads the per-story preprocessed fMRI of the dataset's derivative, the
stories' audio and TextGrid alignments, computes the stimulus features of every story
(:func:`neurofuse.stimulus.features.extract_features`), projects the voxel data to the source
space and writes an fMRI-only dataset (:class:`neurofuse.data.store.DatasetWriter`).
``docs/real-data-lebel.md`` says which files go where and the command to run.

What the dataset holds (ds003020, as the dataset authors' code reads it)
-----------------------------------------------------------------------
Sources: HuthLab/deep-fMRI-dataset (``encoding/encoding_utils.py``, ``encoding/feature_spaces.py``,
``encoding/ridge_utils/stimulus_utils.py``), HuthLab/semantic-decoding (``decoding/config.py``,
``decoding/utils_resp.py``, ``decoding/utils_stim.py``, ``decoding/utils_ridge/*.py``,
``decoding/run_decoder.py``) and HuthLab/encoding-model-scaling-laws (``README.md``).

* ``derivative/preprocessed_data/<UTS01..UTS08>/<story>.hf5``: HDF5 with one dataset
  ``"data"`` of shape (n_TRs, n_voxels) (``utils_resp.get_resp``; an older version of
  ``encoding_utils.get_response`` reads the key ``"resp"``, also accepted here). The reference
  code applies ``np.nan_to_num`` to it, so NaNs occur; we do the same (replaced by 0, counted).
* ``derivative/TextGrids/<story>.TextGrid``: Praat TextGrids, tier 1 phones (ARPAbet with
  stress digits, plus non-speech labels such as ``sp``), tier 2 words.
* ``derivative/respdict.json``: ``{story: number of volumes of the scan}``.
* ``stimuli/<story>.wav``: the audio. Its time origin is the TextGrid's: the speech-model
  features of encoding-model-scaling-laws are computed on the wav and resampled onto the TR
  times built from the TextGrids.
* Some copies name the folder ``derivatives/``; both are accepted.

Timing (``load_simulated_trfiles(respdict, tr=2.0, start_time=10.0, pad=5)`` and
``DataSequence.from_grid``): the TR grid of a story has ``respdict[story] - 5`` volumes, volume
``k`` starting at ``k * tr - 10`` s of audio time (the sound starts 10 s = 5 volumes after the
first volume; the last 5 volumes, after the story, are left out), and features are evaluated
at the middle of each volume. The stimulus is then trimmed ``[5 + trim : -trim]`` with
``trim = 5`` (``apply_zscore_and_hrf``; ``config.TRIM = 5``) and stacked row for row with the
``.hf5`` data, so the ``.hf5`` files hold ``respdict[story] - 20`` volumes: volumes 10 to
``respdict - 11`` of the scan. In the raw scan's volume numbers that is ``trim_start = 10``
volumes dropped at the start and ``trim_end = 10`` at the end (5 outside the TR grid + 5
trimmed). Row ``j`` of the ``.hf5`` data therefore covers audio time
``[trim_start * tr - sound_start + j * tr, ... + tr)``, i.e. ``[10 + 2 j, 12 + 2 j)`` s with the
reference's 2.0 s (``run_decoder`` likewise places the first test volume at +10 s). The
``TRFile`` class uses ``expectedtr = 2.0045`` s, the measured interval between scanner
triggers, while the simulated TR files use 2.0 s; over a 10-min story the two grids drift
apart by ~1.3 s. neurofuse takes ``tr = 2.0045`` by default.

Repeated story: ``wheretheressmoke`` is the test story of the reference code (played in every
scanning session). That its ``.hf5`` holds the average of the repeats is reported by third
parties, not verified here. Repeats are read when an ``.hf5`` ``data`` array is 3-D,
``(n_repeats, n_TRs, n_voxels)``.

What neurofuse writes
---------------------
* One story per LeBel story, restricted to the audio that the fMRI covers: the store's
  story ``s`` starts at audio time ``t0 = trim_start * tr - sound_start`` (10.045 s by default,
  rounded up to the next feature frame) and lasts the fMRI's whole number of TRs. Features
  are computed on the whole audio (the language model sees the story from its start) and
  then cut to that window; the window is recorded in ``metadata["lebel"]["windows"]``.
* fMRI at a TR whose length is a whole number of feature frames: by default the volumes are
  resampled from the ``tr = 2.0045`` s grid onto a 2.0 s grid (100 frames at 50 Hz, as the
  model's fMRI head needs) by cubic-spline interpolation through the volume centres
  (:func:`~neurofuse.preprocessing.fmri.resample_volumes`); the store's ``tr`` is 2.0, the TR of the data it holds. ``resample_tr=None`` keeps
  the native grid (store ``tr = 2.0045``; the window start is then rounded to the nearest
  frame, at most 10 ms off). Passing ``tr=2.0`` reproduces the reference code's alignment.
* Sources: each subject's ``.hf5`` voxels are projected with a voxel→source matrix
  (:func:`read_voxel_to_source`), or the data are already on the cortical surface: 8196
  columns = the fsaverage oct6 sources (used as they are), 20484 columns = fsaverage5 vertices
  (lh then rh; each oct6 source takes the mean of the vertices nearest to it on the sphere,
  as the paper's §2.5 averages "the nearest vertices of each source").
* The subject's morph is the identity when its sources are the fsaverage oct6 sources,
  otherwise the ``morph.npz`` of the mapping folder.
* Repeatability (:func:`neurofuse.data.repeatability.compute_repeatability`) of each source
  from the subject's repeated stories that are not test stories, stored with
  :meth:`~neurofuse.data.store.DatasetWriter.write_repeatability` for the loss weights.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._checks import _check_int, _check_option, _check_positive, _check_type
from .._docs import fill_doc
from .._io import hash_arrays, hash_file, write_json
from .._logging import logger, progress_enabled, verbose
from ._prepare import (
    as_list,
    audio_duration,
    cached,
    check_feature_options,
    check_out,
    import_real,
    lm_id,
    lm_name,
    open_work_dir,
    resolve_splits,
    signature,
    split_counts,
    store_cached,
    story_features,
)
from ..preprocessing.fmri import resample_volumes, story_window

#: Interval between scanner triggers in ds003020 (``TRFile.expectedtr`` of the reference code).
LEBEL_TR = 2.0045
#: Audio time 0 is this many seconds after the first volume of a scan (``start_time``).
SOUND_START = 10.0
#: Volumes of each scan left out of the derivative ``.hf5`` at its start and at its end.
TRIM_START, TRIM_END = 10, 10
#: The story every subject heard in every session (the reference code's test story).
TEST_STORY = "wheretheressmoke"
#: Number of fsaverage oct6 sources and of fsaverage5 vertices (lh + rh).
N_OCT6, N_FSAVERAGE5 = 8196, 20484
MAPPING_FILE, MAPPING_VERTICES, MAPPING_MORPH = "voxel_to_source.npz", "vertices.json", "morph.npz"
_WORK_MARKER = "neurofuse-lebel-work.json"
_lm_id = lm_id  # the cache identity of a language model (shared with the other loaders)
_CACHE_VERSION = 1


# --------------------------------------------------------------------------------------
# Files of the dataset
# --------------------------------------------------------------------------------------

@dataclass
class LebelLayout:
    """Where the files of a ds003020 copy are.

    Attributes
    ----------
    root, derivative, preprocessed, textgrids, stimuli : Path
    respdict : dict of str to int
        Volumes per story scan (``derivative/respdict.json``).
    """

    root: Path
    derivative: Path
    preprocessed: Path
    textgrids: Path
    stimuli: Path
    respdict: dict

    def subjects(self) -> list:
        """Subject folders of ``preprocessed_data`` (e.g. ``UTS01``), sorted."""
        return sorted(p.name for p in self.preprocessed.iterdir() if p.is_dir())

    def hf5(self, subject, story) -> Path:
        return self.preprocessed / subject / f"{story}.hf5"

    def textgrid(self, story) -> Path:
        return self.textgrids / f"{story}.TextGrid"

    def wav(self, story) -> Path:
        return self.stimuli / f"{story}.wav"


def read_lebel_layout(root) -> LebelLayout:
    """Find the derivative, TextGrids, stimuli and respdict of a ds003020 copy.

    Parameters
    ----------
    root : path-like
        The dataset folder (the one holding ``derivative/`` and ``stimuli/``).

    Raises
    ------
    FileNotFoundError
        Naming the missing folder or file and where it was looked for.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"'root' = '{root}' is not a folder. Pass the ds003020 folder "
                                "(the one that holds derivative/ and stimuli/).")
    for name in ("derivative", "derivatives"):
        if (root / name).is_dir():
            derivative = root / name
            break
    else:
        raise FileNotFoundError(
            f"No derivative/ folder in '{root}': it is not a ds003020 copy, or its derivative "
            "was not downloaded (datalad get derivative).")
    pre, grids, stim = derivative / "preprocessed_data", derivative / "TextGrids", root / "stimuli"
    for path, what in ((pre, "the preprocessed fMRI (preprocessed_data/<subject>/<story>.hf5)"),
                       (grids, "the alignments (derivative/TextGrids/<story>.TextGrid)"),
                       (stim, "the audio (stimuli/<story>.wav)")):
        if not path.is_dir():
            raise FileNotFoundError(f"Missing folder '{path}' with {what}. Download it "
                                    "(datalad get) or fix 'root'.")
    resp = derivative / "respdict.json"
    if not resp.is_file():
        raise FileNotFoundError(f"Missing '{resp}' (volumes per story scan), needed to check "
                                "the length of every .hf5 file. Download it (datalad get).")
    try:
        respdict = json.loads(resp.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"'{resp}' is not valid JSON ({err}).") from None
    if not isinstance(respdict, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in respdict.values()):
        raise ValueError(f"'{resp}' must map story names to numbers of volumes.")
    return LebelLayout(root, derivative, pre, grids, stim, respdict)


def _h5py():
    return import_real("h5py", "Reading LeBel's .hf5 files")


def _hf5_key(fid, path):
    for key in ("data", "resp"):
        if key in fid:
            return key
    raise ValueError(f"'{path}' has no 'data' (or 'resp') dataset; it holds {list(fid)}. "
                     "LeBel's preprocessed files store the (n_TRs, n_voxels) array as 'data'.")


def hf5_shape(path) -> tuple:
    """``(n_repeats, n_trs, n_voxels)`` of an ``.hf5`` file, reading only its header."""
    h5py = _h5py()
    path = Path(path)
    try:
        with h5py.File(path, "r") as fid:
            shape = fid[_hf5_key(fid, path)].shape
    except OSError as err:
        raise ValueError(f"Cannot read '{path}' as HDF5 ({err}).") from None
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) == 3:
        return tuple(shape)
    raise ValueError(f"'{path}' holds an array of shape {shape}; expected (n_TRs, n_voxels) or "
                     "(n_repeats, n_TRs, n_voxels).")


def read_hf5(path) -> tuple:
    """Read an ``.hf5`` file as float32 ``(n_repeats, n_trs, n_voxels)``.

    Returns
    -------
    data : array, shape (n_repeats, n_trs, n_voxels)
        Non-finite values replaced by 0 (as the reference code's ``np.nan_to_num``).
    n_bad : int
        How many values were replaced.
    """
    h5py = _h5py()
    path = Path(path)
    hf5_shape(path)  # checks
    with h5py.File(path, "r") as fid:
        data = np.asarray(fid[_hf5_key(fid, path)][()], dtype=np.float32)
    if data.ndim == 2:
        data = data[np.newaxis]
    bad = ~np.isfinite(data)
    n_bad = int(bad.sum())
    if n_bad:
        data[bad] = 0.0
    return data, n_bad


# --------------------------------------------------------------------------------------
# Voxels -> sources
# --------------------------------------------------------------------------------------

@dataclass
class VoxelToSource:
    """A projection of one subject's data columns onto its sources.

    Attributes
    ----------
    matrix : scipy.sparse.csr_matrix, shape (n_sources, n_columns), float32
        ``sources = matrix @ data_columns``.
    vertices : list of 2 int arrays
        The sources' vertex numbers ``[lh, rh]``.
    morph : scipy.sparse.csr_matrix, shape (n_sources, n_sources_fsaverage)
        fsaverage oct6 → subject sources (the identity for the template's own sources).
    kind : str
        ``"mapping"`` (from files), ``"oct6"`` or ``"fsaverage5"`` (surface data).
    key : str
        Content hash, for the cache.
    """

    matrix: object
    vertices: list
    morph: object
    kind: str
    key: str

    @property
    def n_sources(self) -> int:
        return int(self.matrix.shape[0])


def _template():
    """The fsaverage oct6 source space of the embedded template (cached by neurofuse)."""
    from ..anatomy import get_source_space, make_template_subject

    return get_source_space(make_template_subject(meg=False), "oct6")


def _template_vertices():
    return [np.asarray(s["vertno"], np.int64) for s in _template()]


def write_voxel_to_source(folder, matrix, vertices, *, morph=None, overwrite=False):
    """Write one subject's voxel→source mapping in the format :func:`read_voxel_to_source` reads.

    Parameters
    ----------
    folder : path-like
        The subject's folder, e.g. ``MAPS/UTS01`` (created).
    matrix : scipy.sparse matrix | array, shape (n_sources, n_voxels)
        Row ``i`` gives the weights of the ``.hf5`` columns (voxels, in the file's column
        order) that make source ``i``; rows summing to 1 average them.
    vertices : list of 2 int arrays
        The sources' vertex numbers ``[lh, rh]`` (``n_sources`` in all), as MNE numbers them.
    morph : scipy.sparse matrix | None, shape (n_sources, 8196)
        fsaverage oct6 → subject morph. Omit it when the sources are the fsaverage oct6
        sources themselves (vertices equal to the template's).
    overwrite : bool
        Replace existing files.
    """
    import scipy.sparse

    folder = Path(folder).expanduser()
    files = [folder / MAPPING_FILE, folder / MAPPING_VERTICES] + \
        ([folder / MAPPING_MORPH] if morph is not None else [])
    if not overwrite and any(f.exists() for f in files):
        raise FileExistsError(f"A mapping already exists in '{folder}'; pass overwrite=True.")
    vertices = [np.asarray(v, np.int64).tolist() for v in vertices]
    from .._io import atomic_path

    for obj, name in ((matrix, MAPPING_FILE), (morph, MAPPING_MORPH)):
        if obj is None:
            continue
        with atomic_path(folder / name, what="voxel-to-source mapping") as tmp, \
                open(tmp, "wb") as fid:
            scipy.sparse.save_npz(fid, scipy.sparse.csr_matrix(obj, dtype=np.float32))
    write_json(folder / MAPPING_VERTICES, vertices, what="mapping vertices")
    return folder


def read_voxel_to_source(folder, *, n_voxels=None, subject=None) -> VoxelToSource:
    """Read and check one subject's voxel→source mapping.

    The format (one folder per subject; :func:`write_voxel_to_source` writes it):

    * ``voxel_to_source.npz``: a ``scipy.sparse.save_npz`` matrix of shape
      (n_sources, n_voxels), columns in the order of the ``.hf5`` columns;
    * ``vertices.json``: ``[[lh vertex numbers], [rh vertex numbers]]``, n_sources in all;
    * ``morph.npz`` (optional): fsaverage oct6 → subject, shape (n_sources, 8196). Without it
      the vertices must be the fsaverage oct6 sources and the morph is the identity.

    Parameters
    ----------
    folder : path-like
    n_voxels : int | None
        Columns of the subject's ``.hf5`` data, checked against the matrix.
    subject : str | None
        For the error messages.
    """
    import scipy.sparse

    folder = Path(folder).expanduser()
    who = f" of subject {subject!r}" if subject else ""
    for name in (MAPPING_FILE, MAPPING_VERTICES):
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"The voxel→source mapping{who} is incomplete: '{folder / name}' is missing. "
                f"A mapping folder holds {MAPPING_FILE} (n_sources, n_voxels), "
                f"{MAPPING_VERTICES} and optionally {MAPPING_MORPH}; see write_voxel_to_source.")
    try:
        matrix = scipy.sparse.load_npz(folder / MAPPING_FILE)
    except (ValueError, OSError) as err:
        raise ValueError(f"Cannot read '{folder / MAPPING_FILE}' with scipy.sparse.load_npz "
                         f"({err}).") from None
    matrix = scipy.sparse.csr_matrix(matrix, dtype=np.float32)
    if not np.all(np.isfinite(matrix.data)):
        raise ValueError(f"The voxel→source mapping '{folder / MAPPING_FILE}' holds NaN/Inf.")
    n_src, n_cols = matrix.shape
    if n_voxels is not None and n_cols != n_voxels:
        raise ValueError(
            f"Bad voxel→source mapping shape{who}: '{folder / MAPPING_FILE}' is ({n_src}, "
            f"{n_cols}) but the subject's .hf5 files have {n_voxels} voxels (columns). The "
            "matrix must be (n_sources, n_voxels) with the columns in the .hf5 column order "
            "(transpose it if it is (n_voxels, n_sources)).")
    try:
        vertices = json.loads((folder / MAPPING_VERTICES).read_text())
        vertices = [np.asarray(v, np.int64) for v in vertices]
        if len(vertices) != 2 or any(v.ndim != 1 for v in vertices):
            raise ValueError
    except (ValueError, TypeError):
        raise ValueError(f"'{folder / MAPPING_VERTICES}' must hold [[lh vertex numbers], "
                         "[rh vertex numbers]].") from None
    if sum(v.size for v in vertices) != n_src:
        raise ValueError(
            f"Bad voxel→source mapping shape{who}: {MAPPING_VERTICES} lists "
            f"{sum(v.size for v in vertices)} vertices but the matrix has {n_src} rows "
            "(sources); they must describe the same sources.")
    files = [folder / MAPPING_FILE, folder / MAPPING_VERTICES]
    if (folder / MAPPING_MORPH).is_file():
        morph = scipy.sparse.csr_matrix(scipy.sparse.load_npz(folder / MAPPING_MORPH),
                                        dtype=np.float32)
        if morph.shape != (n_src, N_OCT6):
            raise ValueError(
                f"Bad morph{who}: '{folder / MAPPING_MORPH}' is {morph.shape} but must be "
                f"(n_sources, n_sources_fsaverage) = ({n_src}, {N_OCT6}) (fsaverage oct6 → "
                "subject; see neurofuse.anatomy.make_morph).")
        files.append(folder / MAPPING_MORPH)
    else:
        template = _template_vertices()
        if not all(np.array_equal(a, b) for a, b in zip(vertices, template)):
            raise ValueError(
                f"The voxel→source mapping{who} in '{folder}' has no {MAPPING_MORPH}, so its "
                f"sources must be the fsaverage oct6 sources ({N_OCT6}, vertices as "
                "neurofuse.anatomy.get_source_space(make_template_subject(), 'oct6')), but "
                f"{MAPPING_VERTICES} lists other vertices. Add the fsaverage → subject morph "
                f"({MAPPING_MORPH}, e.g. from neurofuse.anatomy.make_morph).")
        morph = scipy.sparse.identity(n_src, dtype=np.float32, format="csr")
    empty = int(np.sum(np.diff(matrix.indptr) == 0))
    if empty:
        logger.warning("%d of %d sources%s receive no voxel in the mapping: their fMRI is 0 "
                       "(and so is their repeatability).", empty, n_src, who)
    key = hash_arrays("voxel-to-source", [hash_file(f) for f in files])
    return VoxelToSource(matrix, vertices, morph, "mapping", key)


def _surface_mapping(n_columns, subject):
    import scipy.sparse

    from ..anatomy.coordinates import fsaverage5_to_oct6

    if n_columns == N_OCT6:
        matrix, kind = scipy.sparse.identity(N_OCT6, dtype=np.float32, format="csr"), "oct6"
    elif n_columns == N_FSAVERAGE5:
        matrix, kind = fsaverage5_to_oct6(), "fsaverage5"
    else:
        raise ValueError(
            f"The .hf5 files of subject {subject!r} have {n_columns} columns: voxels, not a "
            f"surface ({N_OCT6} fsaverage oct6 sources or {N_FSAVERAGE5} fsaverage5 vertices). "
            "Pass voxel_to_source= a folder of voxel→source mappings (see "
            "neurofuse.data.lebel.write_voxel_to_source).")
    morph = scipy.sparse.identity(N_OCT6, dtype=np.float32, format="csr")
    return VoxelToSource(matrix, _template_vertices(), morph, kind, f"surface-{kind}")


# --------------------------------------------------------------------------------------
# prepare
# --------------------------------------------------------------------------------------

def _select(layout, subjects, stories, splits):
    available = layout.subjects()
    if not available:
        raise FileNotFoundError(f"'{layout.preprocessed}' holds no subject folder (UTS01...).")
    if subjects is None:
        subjects = available
    else:
        subjects = as_list("subjects", subjects)
        for s in subjects:
            _check_option("subjects", s, available,
                          extra=f"Subjects are the folders of '{layout.preprocessed}'.")
    have = {sub: {p.stem for p in (layout.preprocessed / sub).glob("*.hf5")} for sub in subjects}
    if stories is None:
        stories = sorted(set().union(*have.values()))
        if not stories:
            raise FileNotFoundError(f"No .hf5 file for subjects {subjects} in "
                                    f"'{layout.preprocessed}'.")
    else:
        stories = as_list("stories", stories)
        if len(set(stories)) != len(stories):
            raise ValueError(f"'stories' lists a story twice: {stories}.")
    from .store import _check_name

    for story in stories:
        _check_name("story name", story)
    for sub in subjects:
        _check_name("subject name", sub)
    problems = []
    for story in stories:
        if not any(story in have[s] for s in subjects):
            problems.append(f"no derivative/preprocessed_data/<subject>/{story}.hf5 for any of "
                            f"{subjects}")
        if story not in layout.respdict:
            problems.append(f"'{story}' missing from respdict.json")
        for path in (layout.textgrid(story), layout.wav(story)):
            if not path.is_file():
                problems.append(f"missing file '{path}'")
    if problems:
        raise FileNotFoundError(f"Cannot prepare {len(stories)} LeBel stories: "
                                + "; ".join(problems[:8])
                                + (f" (and {len(problems) - 8} more)" if len(problems) > 8 else "")
                                + ". Download the missing files or leave the stories out "
                                "('stories').")
    story_splits = resolve_splits(splits, stories, default={TEST_STORY: "test"})
    pairs = {sub: [st for st in stories if st in have[sub]] for sub in subjects}
    empty = [sub for sub, sts in pairs.items() if not sts]
    if empty:
        raise FileNotFoundError(f"Subjects {empty} have no .hf5 file for any selected story; "
                                "leave them out ('subjects').")
    return subjects, stories, story_splits, pairs


def _mappings(voxel_to_source, subjects, n_voxels):
    maps = {}
    if voxel_to_source is None:
        for sub in subjects:
            maps[sub] = _surface_mapping(n_voxels[sub], sub)
        return maps
    if isinstance(voxel_to_source, dict):
        missing = [s for s in subjects if s not in voxel_to_source]
        if missing:
            raise ValueError(f"'voxel_to_source' has no mapping for subjects {missing}.")
        folders = {s: Path(voxel_to_source[s]).expanduser() for s in subjects}
    else:
        _check_type("voxel_to_source", voxel_to_source, (str, os.PathLike),
                    "a folder, a dict {subject: folder} or None")
        base = Path(voxel_to_source).expanduser()
        if not base.is_dir():
            raise FileNotFoundError(f"'voxel_to_source' = '{base}' is not a folder (it must "
                                    "hold one mapping folder per subject).")
        folders = {s: base / s for s in subjects}
    for sub in subjects:
        if not folders[sub].is_dir():
            raise FileNotFoundError(f"No voxel→source mapping folder for subject {sub!r}: "
                                    f"'{folders[sub]}' does not exist.")
        maps[sub] = read_voxel_to_source(folders[sub], n_voxels=n_voxels[sub], subject=sub)
    return maps


@verbose
@fill_doc
def prepare_lebel(root, out, *, subjects=None, stories=None, voxel_to_source=None,
                  language_model="gpt2", layer=7, context_tokens=20, splits=None,
                  tr=LEBEL_TR, resample_tr=2.0, sound_start=SOUND_START, trim_start=TRIM_START,
                  trim_end=TRIM_END, tolerance=None, sfreq=50.0, repeatability="repeat",
                  device=None, overwrite=False, work_dir=None, keep_work=False,
                  features_fn=None, verbose=None) -> Path:
    """Turn the LeBel et al. (2023) fMRI dataset (ds003020) into a dataset store.

    Parameters
    ----------
    root : path-like
        The ds003020 folder (with ``derivative/`` and ``stimuli/``).
    %(out)s
    subjects : list of str | None
        Subjects (folders of ``derivative/preprocessed_data``, e.g. ``"UTS01"``); default all.
    stories : list of str | None
        Stories; default every story with an ``.hf5`` file for a selected subject. Each needs
        ``derivative/TextGrids/<story>.TextGrid``, ``stimuli/<story>.wav`` and a
        ``respdict.json`` entry. A subject without a story's ``.hf5`` just lacks that story.
    voxel_to_source : path-like | dict | None
        A folder with one mapping folder per subject (``<folder>/<subject>/``, see
        :func:`read_voxel_to_source`), or ``{subject: folder}``. ``None``: the ``.hf5`` data
        are already on the surface (8196 fsaverage oct6 sources or 20484 fsaverage5 vertices).
    %(language_model)s
    %(layer_context_tokens)s
    %(splits)s
        Default ``{"wheretheressmoke": "test"}``.
    tr : float
        TR of the ``.hf5`` data in s (default 2.0045, the dataset's trigger interval; 2.0
        reproduces the reference code's alignment).
    resample_tr : float | None
        Resample the volumes onto this TR (default 2.0 s = 100 frames at 50 Hz, which the
        model's fMRI head needs); ``None`` keeps ``tr``. The store's ``tr`` is the TR of the
        data written.
    sound_start : float
        Audio time 0 is this many s after the first volume of a scan (10.0).
    trim_start, trim_end : int
        Volumes of each scan missing from the ``.hf5`` at its start and end (10 and 10): the
        ``.hf5`` must hold ``respdict[story] - trim_start - trim_end`` volumes.
    tolerance : float | None
        How far (s) the fMRI may run past the end of the audio (those volumes are dropped,
        with a warning) and how much audio beyond the trimmed end volumes may be left
        uncovered. Default one TR. Beyond it: "stories of inconsistent length".
    sfreq : float
        Feature frame rate (50 Hz).
    %(repeatability)s
    %(device)s
    %(overwrite)s
    %(work_dir)s
        Here: the features and the projected fMRI of each story.
    %(keep_work)s
    %(features_fn)s
    %(verbose_loader)s

    Returns
    -------
    out : Path
        The dataset folder; open it with :func:`neurofuse.data.store.read_dataset`.
    """
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    out = check_out(out, overwrite)  # before any work
    tr, sfreq = _check_positive("tr", tr), _check_positive("sfreq", sfreq)
    store_tr = tr if resample_tr is None else _check_positive("resample_tr", resample_tr)
    resample = abs(store_tr - tr) > 1e-9 * tr
    sound_start = _check_positive("sound_start", sound_start, allow_zero=True)
    trim_start = _check_int("trim_start", trim_start, minimum=0)
    trim_end = _check_int("trim_end", trim_end, minimum=0)
    tolerance = tr if tolerance is None else _check_positive("tolerance", tolerance,
                                                             allow_zero=True)
    layer, context_tokens = check_feature_options(layer, context_tokens, features_fn=features_fn,
                                                  repeatability=repeatability)
    if abs(store_tr * sfreq - round(store_tr * sfreq)) > 1e-6:
        logger.warning("The store's TR (%g s) is %g feature frames at %g Hz, not a whole number: "
                       "the joint model's fMRI head will refuse it; pass resample_tr=2.0.",
                       store_tr, store_tr * sfreq, sfreq)

    # ---------------------------------------------------------------- check everything first
    layout = read_lebel_layout(root)
    subjects, stories, story_splits, pairs = _select(layout, subjects, stories, splits)
    shapes, n_voxels, n_rows = {}, {}, {}
    for sub in subjects:
        for story in pairs[sub]:
            shapes[sub, story] = hf5_shape(layout.hf5(sub, story))
            n_rep, rows, n_vox = shapes[sub, story]
            if n_voxels.setdefault(sub, n_vox) != n_vox:
                raise ValueError(f"The .hf5 files of subject {sub!r} have different numbers of "
                                 f"voxels ({n_voxels[sub]} and {n_vox} in '{story}').")
            expected = layout.respdict[story] - trim_start - trim_end
            if rows != expected:
                raise ValueError(
                    f"Stories of inconsistent length: '{layout.hf5(sub, story)}' has {rows} "
                    f"volumes but respdict.json gives {layout.respdict[story]} for the scan, "
                    f"i.e. {expected} after trimming {trim_start} + {trim_end} volumes. Check "
                    "'trim_start'/'trim_end', or whether this file comes from another "
                    "preprocessing.")
            n_rows[story] = rows
    maps = _mappings(voxel_to_source, subjects, n_voxels)
    windows = {}
    for story in stories:
        windows[story] = story_window(
            n_rows[story], audio_duration(layout.wav(story)), tr=tr, sfreq=sfreq,
            store_tr=store_tr, resample=resample, sound_start=sound_start,
            trim_start=trim_start, trim_end=trim_end, tolerance=tolerance, story=story)
        if windows[story]["dropped"]:
            logger.warning("Story %s: the audio ends within %g s before the end of the fMRI; "
                           "the last %d volume(s) are dropped.", story, tolerance,
                           windows[story]["dropped"])

    # ---------------------------------------------------------------- features (cached)
    work = open_work_dir(work_dir, out, marker=_WORK_MARKER,
                         generator="neurofuse.data.lebel.prepare_lebel",
                         cache_version=_CACHE_VERSION)
    bar = {"disable": not progress_enabled(), "leave": False}
    streams, infos, feat_counts = story_features(
        work, {s: (layout.wav(s), layout.textgrid(s)) for s in stories},
        cache_name="lebel-features", cache_version=_CACHE_VERSION,
        language_model=language_model, layer=layer, context_tokens=context_tokens, sfreq=sfreq,
        device=device, features_fn=features_fn)
    counts = {"features_computed": feat_counts["computed"],
              "features_cached": feat_counts["cached"], "fmri_computed": 0, "fmri_cached": 0,
              "nonfinite_replaced": {}}
    for story in stories:
        win, n_feat = windows[story], infos[story]["n_times"]
        if win["start"] + win["n_times"] > n_feat:
            raise ValueError(
                f"Stories of inconsistent length: the features of story {story!r} have "
                f"{n_feat} frames but its fMRI window needs frames {win['start']} to "
                f"{win['start'] + win['n_times']} (audio duration "
                f"{win['audio_duration']:.3f} s).")

    # ---------------------------------------------------------------- fMRI (cached)
    jobs = [(sub, story) for sub in subjects for story in pairs[sub]]
    for sub, story in tqdm(jobs, desc="fMRI to sources", **bar):
        path = layout.hf5(sub, story)
        key = hash_arrays("lebel-fmri", _CACHE_VERSION, signature(path), maps[sub].key)
        npy = work / "fmri" / sub / f"{story}.npy"
        info = cached(npy, key)
        if info is None:
            data, n_bad = read_hf5(path)  # (n_rep, n_rows, n_vox)
            proj = np.stack([np.asarray(maps[sub].matrix @ rep.T, np.float32) for rep in data])
            info = {"shape": list(proj.shape), "nonfinite": n_bad}
            store_cached(npy, key, proj, info)
            counts["fmri_computed"] += 1
        else:
            counts["fmri_cached"] += 1
        if info["nonfinite"]:
            counts["nonfinite_replaced"][f"{sub}/{story}"] = info["nonfinite"]
    n_bad = sum(counts["nonfinite_replaced"].values())
    if n_bad:
        logger.warning("Replaced %d non-finite .hf5 values by 0 (as the reference code's "
                       "np.nan_to_num) in %d files.", n_bad, len(counts["nonfinite_replaced"]))

    # ---------------------------------------------------------------- write the store
    from .. import __version__
    from .repeatability import compute_repeatability
    from .store import DatasetWriter

    metadata = {
        "generator": "neurofuse.data.lebel.prepare_lebel",
        "versions": {"neurofuse": __version__, "numpy": np.__version__},
        "units": {"fmri": "as in the derivative .hf5 files, projected to sources"},
        # audio time (s) of each story's first sample: the part of the audio the fMRI covers
        "story_offsets": {s: windows[s]["start_s"] for s in stories},
        "lebel": {
            "dataset": "LeBel et al. (2023), OpenNeuro ds003020", "root": str(layout.root),
            "tr_data": tr, "tr": store_tr, "resampled": resample, "sound_start": sound_start,
            "trim_start": trim_start, "trim_end": trim_end, "tolerance": tolerance,
            "language_model": lm_name(language_model), "layer": layer,
            "context_tokens": context_tokens,
            "voxel_to_source": {s: maps[s].kind for s in subjects},
            "nonfinite_replaced": counts["nonfinite_replaced"],
            "windows": {s: {k: windows[s][k] for k in ("start_s", "stop_s", "audio_duration",
                                                       "n_trs", "shift", "offset_error",
                                                       "dropped")}
                        for s in stories},
        },
    }
    repeated = {sub: {} for sub in subjects}  # sub -> {story: r}
    with DatasetWriter(out, sfreq=sfreq, tr=store_tr, feature_streams=streams,
                       overwrite=overwrite, metadata=metadata) as writer:
        for story in stories:
            win = windows[story]
            writer.add_story(story, split=story_splits[story], n_times=win["n_times"])
        for sub in subjects:
            writer.add_subject(sub, modalities=["fmri"], morph=maps[sub].morph,
                               vertices=maps[sub].vertices, n_sources=maps[sub].n_sources,
                               anatomy={"dataset": "ds003020", "subject": sub,
                                        "voxel_to_source": maps[sub].kind})
        for story in tqdm(stories, desc="writing", **bar):
            win = windows[story]
            feats = np.load(work / "features" / f"{story}.npy", mmap_mode="r")
            writer.write_features(story, feats[win["start"]:win["start"] + win["n_times"]])
            del feats
            for sub in subjects:
                if story not in pairs[sub]:
                    continue
                proj = np.load(work / "fmri" / sub / f"{story}.npy")  # (n_rep, n_src, n_rows)
                if resample:
                    proj = resample_volumes(proj, tr=tr, new_tr=store_tr, shift=win["shift"],
                                            n_out=win["n_trs"])
                else:
                    proj = proj[..., :win["n_trs"]]
                writer.write_fmri(sub, story, proj)
                if repeatability and proj.shape[0] >= 2 and story_splits[story] != "test":
                    repeated[sub][story] = compute_repeatability(proj, method=repeatability)
                del proj
        for sub in subjects:
            if repeated[sub]:
                writer.write_repeatability(sub, "fmri", np.mean(list(repeated[sub].values()), 0),
                                           method=repeatability, stories=list(repeated[sub]))
            elif repeatability:
                only_test = [st for st in pairs[sub] if shapes[sub, st][0] >= 2]
                if only_test:
                    logger.info("%s: the repeated stories %s are test stories, so no "
                                "repeatability is stored (the loss weights must not see test "
                                "data); give them another split (e.g. 'anchor') to use them.",
                                sub, only_test)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)

    n_rep = {st: max(shapes[s, st][0] for s in subjects if st in pairs[s]) for st in stories}
    hours = sum(windows[s]["n_times"] for s in stories) / sfreq / 3600
    logger.info(
        "Prepared LeBel ds003020 -> %s in %.1f s: %d stories (%.2f h; splits %s), %d subjects "
        "(%s), TR %g s%s; features %d computed / %d reused, fMRI %d computed / %d reused; "
        "repeated stories %s; repeatability stored for %s; %d non-finite values replaced.",
        out, time.perf_counter() - t_start, len(stories), hours,
        split_counts(story_splits),
        len(subjects), ", ".join(f"{s}: {len(pairs[s])} stories" for s in subjects), store_tr,
        f" (resampled from {tr:g} s)" if resample else "", counts["features_computed"],
        counts["features_cached"], counts["fmri_computed"], counts["fmri_cached"],
        {s: r for s, r in n_rep.items() if r > 1} or "none",
        [s for s in subjects if repeated[s]] or "nobody", n_bad)
    return out

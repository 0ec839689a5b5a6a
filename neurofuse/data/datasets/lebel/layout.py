"""Where the files of a ds003020 copy are, what they hold, and reading its ``.hf5`` files.

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
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..._prepare import check_root, import_real

#: Interval between scanner triggers in ds003020 (``TRFile.expectedtr`` of the reference code).
LEBEL_TR = 2.0045
#: Audio time 0 is this many seconds after the first volume of a scan (``start_time``).
SOUND_START = 10.0
#: Volumes of each scan left out of the derivative ``.hf5`` at its start and at its end.
TRIM_START, TRIM_END = 10, 10
#: The story every subject heard in every session (the reference code's test story).
TEST_STORY = "wheretheressmoke"


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
    root = check_root(root, dataset="ds003020", holds="derivative/ and stimuli/")
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

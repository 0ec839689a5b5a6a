"""What the BIDS loaders share: mne-bids (an optional dependency), reading a recording,
finding its sidecars, and reading BIDS tables (``.tsv``, and the ``.csv`` some datasets ship).

Private: used by :mod:`neurofuse.data.datasets.bids_meg`,
:mod:`neurofuse.data.datasets.ds000116`, :mod:`neurofuse.data.datasets.ds000117` and
:mod:`neurofuse.data.datasets.podcast`.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from ..._checks import _check_type
from .._prepare import import_real


def import_mne_bids(purpose):
    """``mne_bids``, or an ImportError that says ``"<purpose> needs mne-bids: install ..."``."""
    return import_real("mne_bids", purpose)


def open_bids_root(bids_root, subjects, task, purpose):
    """Check a BIDS folder and a loader's subject and task selection, for ``find_matching_paths``.

    Parameters
    ----------
    bids_root : path-like
        The BIDS dataset folder.
    subjects : str | list of str | None
        Subject labels, ``"01"`` or ``"sub-01"``; None: all.
    task : str | list of str | None
        Task labels; None: all.
    purpose : str
        For the missing-dependency message (see :func:`import_mne_bids`).

    Returns
    -------
    mne_bids : module
    root : Path
    labels : list of str | None
        The subject labels without ``sub-``.
    tasks : list of str | None
    """
    mne_bids = import_mne_bids(purpose)
    root = Path(bids_root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"'bids_root' = '{root}' is not a folder: point it to the BIDS "
                                "dataset (the folder with dataset_description.json).")
    labels = None
    if subjects is not None:
        subjects = [subjects] if isinstance(subjects, str) else list(subjects)
        labels = [_check_type("subjects", s, str).removeprefix("sub-") for s in subjects]
    tasks = None if task is None else ([task] if isinstance(task, str) else list(task))
    return mne_bids, root, labels, tasks


def is_first_part(bids_path) -> bool:
    """False for a calibration or cross-talk file and for a split recording's later parts
    (mne-bids reads the parts from the first)."""
    return (bids_path.acquisition not in ("calibration", "crosstalk")
            and (bids_path.split is None or bids_path.split in ("01", "1")))


def check_subjects_found(labels, found, root, what, hint=""):
    """Raise FileNotFoundError naming the requested subjects that ``found`` lacks.

    Parameters
    ----------
    labels : list of str | None
        The requested labels (without ``sub-``); None: nothing requested, nothing checked.
    found : dict of str to object
        Keyed by ``"sub-<label>"``.
    root : Path
        The BIDS folder, for the message.
    what : str
        What a subject lacks, e.g. ``"EEG run"``.
    hint : str
        Appended to the message (how to fix).
    """
    if labels is None:
        return
    absent = [f"sub-{s}" for s in labels if f"sub-{s}" not in found]
    if absent:
        raise FileNotFoundError(f"No {what} for subjects {absent} in '{root}' (found "
                                f"{sorted(found) or 'none'}).{hint}")


def channel_bads(bids_path) -> list:
    """Channels marked bad (``status`` ``bad``) in a recording's ``_channels.tsv``; none
    when it has no such file or columns."""
    path = sidecar(bids_path, "channels")
    if not path.is_file():
        return []
    fields, rows = read_table(path)
    if "status" not in fields or "name" not in fields:
        return []
    return [r["name"] for r in rows if str(r.get("status", "")).strip().lower() == "bad"]


def read_raw_bids(bids_path, *, purpose, return_event_dict=False):
    """Read a recording with mne-bids, quietly (its notes on sidecars do not matter here).

    Parameters
    ----------
    bids_path : mne_bids.BIDSPath
    purpose : str
        For the missing-dependency message (see :func:`import_mne_bids`).
    return_event_dict : bool
        Also return the ``{trial_type: value}`` of the recording's ``events.tsv``.

    Returns
    -------
    raw : mne.io.Raw
    event_id : dict of str to int
        Only with ``return_event_dict``.
    """
    import warnings

    mne_bids = import_mne_bids(purpose)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sidecar notes (electrode spaces, units, dig)
        return mne_bids.read_raw_bids(bids_path, return_event_dict=return_event_dict,
                                      verbose="error")


def sidecar(bids_path, suffix, extension=".tsv") -> Path:
    """The path of a recording's sidecar (``events.tsv``, ``channels.tsv``...), which may not
    exist."""
    return Path(bids_path.copy().update(suffix=suffix, extension=extension, check=False).fpath)


def read_table(path):
    """The header and rows of a CSV (``,``) or TSV (``\\t``) file.

    The delimiter comes from the extension (``.tsv``), else from the header line.

    Returns
    -------
    fields : list of str
        Column names, stripped and lower-case.
    rows : list of dict
        One dict per row, keyed by ``fields``.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    delimiter = "\t" if path.suffix.lower() == ".tsv" or (
        "\t" in text.split("\n", 1)[0] and "," not in text.split("\n", 1)[0]) else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    if reader.fieldnames is None:
        raise ValueError(f"'{path}' is empty; expected a header line.")
    reader.fieldnames = [str(f).strip().lower() for f in reader.fieldnames]
    return reader.fieldnames, list(reader)


def to_float(value) -> float:
    """A table cell as a float; NaN for ``n/a``, empty or missing cells."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out

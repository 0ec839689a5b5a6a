"""What the BIDS loaders share: mne-bids (an optional dependency), reading a recording,
finding its sidecars, and reading BIDS tables (``.tsv``, and the ``.csv`` some datasets ship).

Private: used by :mod:`neurofuse.data.datasets.bids_meg` and
:mod:`neurofuse.data.datasets.podcast`.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from .._prepare import import_real


def import_mne_bids(purpose):
    """``mne_bids``, or an ImportError that says ``"<purpose> needs mne-bids: install ..."``."""
    return import_real("mne_bids", purpose)


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

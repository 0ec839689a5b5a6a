"""The paired MEG–fMRI events of MEG2fMRI: :class:`PairedSet`, joined, split and saved.

A paired set is what :func:`~neurofuse.systems.meg2fmri.pairing.pair_run` and
:func:`~neurofuse.systems.meg2fmri.pairing.pair_subject` return: one MEG feature vector and
one fMRI slice per event, with where each came from. It is saved as one ``.npz`` file read
back with ``allow_pickle=False`` (text as fixed-width unicode arrays, the pairing
configuration as JSON text), written atomically.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..._io import atomic_path

__all__ = ["PairedSet", "concatenate_paired", "read_paired"]

_FORMAT = "neurofuse-meg2fmri-paired"
_ARRAYS = ("X", "Y", "subject", "story", "onset", "sample", "volume", "slice")


@dataclass
class PairedSet:
    """MEG feature vectors paired with fMRI slices, one row per event.

    Attributes
    ----------
    X : array, shape (n_events, n_features)
        float32 MEG vectors (the model's input).
    Y : array, shape (n_events, h, w) or (n_events, [n_frames,] n_x, n_y, n_z)
        float32 targets in [0, 1] (the model's target): fMRI slices, rows along the
        volume's x axis and columns along its y axis (``target="slice"``); or whole volumes
        on the native grid (``"volume"``), or sequences of them (``"sequence"``); see
        :class:`~neurofuse.systems.meg2fmri.config.PairingConfig`.
    subject, story : array of str, shape (n_events,)
    onset : array of float, shape (n_events,)
        Event onsets (s from the start of the run).
    sample : array of int, shape (n_events,)
        First MEG sample of each event's epoch.
    volume : array of int, shape (n_events,)
        First fMRI volume of each event's window (the target is at ``volume + time_index``).
    slice : array of int, shape (n_events,)
        The axial slice (z index) of each target; -1 for whole-volume targets.
    config : dict
        The :class:`~neurofuse.systems.meg2fmri.pairing.PairingConfig` that made it, as a
        dict (``PairingConfig.from_dict`` turns it back).
    """

    X: np.ndarray
    Y: np.ndarray
    subject: np.ndarray
    story: np.ndarray
    onset: np.ndarray
    sample: np.ndarray
    volume: np.ndarray
    slice: np.ndarray
    config: dict = field(default_factory=dict)

    def __post_init__(self):
        self.X = np.asarray(self.X, np.float32)
        self.Y = np.asarray(self.Y, np.float32)
        n = len(self.X)
        if self.X.ndim != 2 or self.Y.ndim not in (3, 4, 5) or len(self.Y) != n:
            raise ValueError(f"'X' must have shape (n_events, n_features) and 'Y' shape "
                             f"(n_events, h, w), (n_events, n_x, n_y, n_z) or (n_events, "
                             f"n_frames, n_x, n_y, n_z) with the same n_events, got "
                             f"{self.X.shape} and {self.Y.shape}.")
        self.subject = np.asarray(self.subject, str).reshape(-1)
        self.story = np.asarray(self.story, str).reshape(-1)
        self.onset = np.asarray(self.onset, np.float64).reshape(-1)
        for name in ("sample", "volume", "slice"):
            setattr(self, name, np.asarray(getattr(self, name), np.int64).reshape(-1))
        for name in _ARRAYS[2:]:
            if len(getattr(self, name)) != n:
                raise ValueError(f"'{name}' must have one entry per event ({n}), got "
                                 f"{len(getattr(self, name))}.")
        self.config = json.loads(json.dumps(dict(self.config)))

    def __len__(self):
        return len(self.X)

    def __repr__(self):
        kind = {3: "slices", 4: "volumes", 5: "sequences"}[self.Y.ndim]
        return (f"<PairedSet | {len(self)} events, {self.X.shape[1]} features, {kind} "
                f"{'×'.join(map(str, self.Y.shape[1:]))}, subjects {self.subjects}>")

    @property
    def subjects(self) -> list:
        """The subjects, in order of first appearance."""
        return list(dict.fromkeys(self.subject.tolist()))

    def take(self, index) -> PairedSet:
        """The events at ``index`` (int array or boolean mask), as a new set."""
        index = np.asarray(index)
        if index.dtype == bool and index.shape != (len(self),):
            raise ValueError(f"A boolean 'index' must have shape ({len(self)},), got "
                             f"{index.shape}.")
        return PairedSet(**{k: getattr(self, k)[index] for k in _ARRAYS}, config=self.config)

    def select(self, subjects=None, stories=None) -> PairedSet:
        """The events of some subjects and/or stories (``None``: all), in their order here.

        Parameters
        ----------
        subjects, stories : str | list of str | None
            Names to keep; a name that no event has raises ValueError (a typo would
            otherwise give an empty set silently).

        Returns
        -------
        paired : PairedSet
        """
        keep = np.ones(len(self), bool)
        for what, names, have in (("subjects", subjects, self.subject),
                                  ("stories", stories, self.story)):
            if names is None:
                continue
            names = [names] if isinstance(names, str) else list(names)
            missing = sorted(set(names) - set(have.tolist()))
            if missing:
                raise ValueError(f"No event of {what} {missing}; this set has "
                                 f"{sorted(set(have.tolist()))}.")
            keep &= np.isin(have, names)
        return self.take(keep)

    def save(self, path) -> Path:
        """Write the set to ``path`` (``.npz``, atomically; read it with :func:`read_paired`).

        Parameters
        ----------
        path : path-like
            The file; ``.npz`` is appended if it has another suffix.

        Returns
        -------
        path : Path
        """
        path = Path(path).expanduser()
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        meta = json.dumps({"format": _FORMAT, "version": 1, "config": self.config})
        arrays = {k: getattr(self, k) for k in _ARRAYS}
        with atomic_path(path, what="paired MEG-fMRI set") as tmp:
            with open(tmp, "wb") as fid:
                np.savez(fid, meta=np.array(meta), **arrays)
        return path


def read_paired(path) -> PairedSet:
    """Read a set written by :meth:`PairedSet.save` (no pickle involved).

    Parameters
    ----------
    path : path-like

    Returns
    -------
    paired : PairedSet
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"No paired set at '{path}': write one with PairedSet.save.")
    not_a_set = (f"'{path}' is not a paired MEG-fMRI set written by PairedSet.save (an .npz "
                 "with a 'meta' entry); make one with 'neurofuse meg2fmri prepare'.")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:  # not npz, truncated
        raise ValueError(f"{not_a_set} It could not be read: {exc}") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{not_a_set} It holds a single array of shape {data.shape}.")
    with data:
        try:
            meta = json.loads(str(data["meta"])) if "meta" in data else {}
            if meta.get("format") != _FORMAT:
                raise ValueError(f"{not_a_set} Its 'meta' entry is missing or of another "
                                 "format.")
            return PairedSet(**{k: data[k] for k in _ARRAYS}, config=meta["config"])
        except (OSError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
            raise ValueError(f"{not_a_set} It is damaged: {exc}") from None


def concatenate_paired(sets) -> PairedSet:
    """Join paired sets made with the same configuration and image size.

    Parameters
    ----------
    sets : list of PairedSet

    Returns
    -------
    paired : PairedSet
        The events of every set, in the order given.
    """
    sets = list(sets)
    if not sets:
        raise ValueError("'sets' is empty: give at least one PairedSet to concatenate.")
    first = sets[0]
    for i, other in enumerate(sets[1:], 1):
        if other.config != first.config:
            raise ValueError(f"sets[{i}] was paired with another configuration than sets[0] "
                             f"({other.config} vs {first.config}); pair them alike.")
        if other.X.shape[1:] != first.X.shape[1:] or other.Y.shape[1:] != first.Y.shape[1:]:
            raise ValueError(f"sets[{i}] has features/images of shape {other.X.shape[1:]}/"
                             f"{other.Y.shape[1:]}, sets[0] {first.X.shape[1:]}/"
                             f"{first.Y.shape[1:]}: they cannot be stacked.")
    return PairedSet(**{k: np.concatenate([getattr(s, k) for s in sets]) for k in _ARRAYS},
                     config=first.config)

"""System B's paired data: EEG and MEG epochs of the same trials, split by subject.

A dataset store (:mod:`neurofuse.data.store`) holds, per subject, an ``eeg`` and a ``meg``
epoch set of the same name (a task, e.g. ``"somatomotor"``), paired epoch by epoch
(``docs/dataset-format.md``, "Epochs"). :class:`PairedEpochs` reads them and

* splits **by subject** (the paper's held-out test is of trials; ours is of whole subjects,
  the harder and more honest test of a generator meant for new people): the last
  ``n_test_subjects`` paired subjects (sorted by name, or ``test_subjects``) are held out and
  never read while training, the ``n_val_subjects`` before them validate;
* standardises every channel by the mean and standard deviation over the *training*
  subjects' epochs and samples (gradiometers, magnetometers and EEG differ by orders of
  magnitude, and networks need unit scale), and maps generated MEG back to physical units
  (:meth:`PairedEpochs.to_physical`).

Subjects with EEG but no MEG (new subjects, new tasks: the paper's cross-dataset test) are
not paired data; :func:`eeg_epochs` reads their EEG in the same standardised scale.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from ..._checks import _check_int, _check_type
from ..._io import hash_arrays
from ..._logging import logger

__all__ = ["DataConfig", "PairedEpochs", "eeg_epochs"]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DataConfig:
    """Which epochs are paired data and how subjects split.

    Parameters
    ----------
    task : str | None
        The epoch set (task) to read; None: every set that a subject has in both ``eeg``
        and ``meg`` (their trials pooled).
    n_val_subjects, n_test_subjects : int
        Paired subjects that validate and that are held out (from the end of the sorted list).
    test_subjects : list of str | None
        Held-out subjects by name (overrides ``n_test_subjects``).
    """

    task: str | None = None
    n_val_subjects: int = 1
    n_test_subjects: int = 1
    test_subjects: list | None = None

    def __post_init__(self):
        _check_int("DataConfig.n_val_subjects", self.n_val_subjects, 0)
        _check_int("DataConfig.n_test_subjects", self.n_test_subjects, 0)
        if self.task is not None:
            _check_type("DataConfig.task", self.task, str)
        if self.test_subjects is not None:
            _check_type("DataConfig.test_subjects", self.test_subjects, (list, tuple))
            object.__setattr__(self, "test_subjects", [str(s) for s in self.test_subjects])

    @classmethod
    def from_dict(cls, d):
        """Build from a dict, refusing unknown keys."""
        d = dict(d or {})
        names = {f.name for f in fields(cls)}
        bad = sorted(set(d) - names)
        if bad:
            raise ValueError(f"Unknown DataConfig key(s) {bad}; valid keys: {sorted(names)}.")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


def _as_dataset(dataset):
    from ...data.store import Dataset, read_dataset

    return dataset if isinstance(dataset, Dataset) else read_dataset(dataset)


def _paired_sets(ds, subject, task):
    eeg = set(ds.epoch_names(subject, "eeg")) if "eeg" in ds.modalities(subject) else set()
    meg = set(ds.epoch_names(subject, "meg")) if "meg" in ds.modalities(subject) else set()
    both = sorted(eeg & meg)
    return [s for s in both if task is None or s == task]


def _check_same_channels(ds, subjects, modality):
    ref = None
    for sub in subjects:
        names = list(ds.info(sub, modality)["ch_names"])
        if ref is None:
            ref = (sub, names)
        elif names != ref[1]:
            raise ValueError(
                f"The {modality.upper()} channels of subject {sub!r} differ from those of "
                f"{ref[0]!r} ({len(names)} vs {len(ref[1])} channels, or another order). A "
                "generator maps one channel layout to another: pick the channels common to "
                "all subjects in the same order (mne's pick_channels) before writing the store.")
    return ref[1]


class PairedEpochs:
    """Paired EEG and MEG epochs of a store, split by subject, standardised per channel.

    Parameters
    ----------
    dataset : Dataset | path-like
        A store with ``eeg`` and ``meg`` epoch sets of the same name per subject.
    config : DataConfig | dict | None

    Attributes
    ----------
    subjects : dict of str to list of str
        Paired subjects of each split (``"train"``, ``"val"``, ``"test"``).
    eeg_names, meg_names : list of str
        Channel names (identical in every paired subject).
    sfreq : float
    n_times : int
    eeg_scale, meg_scale : tuple of array, shape (n_channels,)
        ``(mean, std)`` per channel over the training subjects.
    """

    def __init__(self, dataset, config=None):
        self.ds = _as_dataset(dataset)
        cfg = config if isinstance(config, DataConfig) else DataConfig.from_dict(config)
        self.config = cfg
        paired = [s for s in sorted(self.ds.subjects) if _paired_sets(self.ds, s, cfg.task)]
        if not paired:
            what = f"an epoch set named {cfg.task!r}" if cfg.task else "an epoch set"
            raise ValueError(f"No subject of the store '{self.ds.path}' has {what} in both eeg "
                             "and meg: System B trains on paired EEG and MEG epochs. Simulate a "
                             "world with `neurofuse eeg2meg simulate` or load paired data.")
        if cfg.test_subjects is not None:
            unknown = sorted(set(cfg.test_subjects) - set(paired))
            if unknown:
                raise ValueError(f"test_subjects {unknown} are not paired subjects of the store; "
                                 f"paired subjects: {paired}.")
            test = [s for s in paired if s in cfg.test_subjects]
        else:
            test = paired[len(paired) - cfg.n_test_subjects:] if cfg.n_test_subjects else []
        rest = [s for s in paired if s not in test]
        val = rest[len(rest) - cfg.n_val_subjects:] if cfg.n_val_subjects else []
        train = [s for s in rest if s not in val]
        if not train:
            raise ValueError(
                f"The store has {len(paired)} paired subject(s) ({paired}); after "
                f"{len(test)} test and {len(val)} validation subject(s) none is left to train "
                "on. Simulate more subjects or lower n_val_subjects / n_test_subjects.")
        self.subjects = {"train": train, "val": val, "test": test}
        self.eeg_names = _check_same_channels(self.ds, paired, "eeg")
        self.meg_names = _check_same_channels(self.ds, paired, "meg")
        first = self.ds.epochs_info(train[0], "eeg", _paired_sets(self.ds, train[0], cfg.task)[0])
        self.sfreq = float(first["sfreq"])
        self.n_times = int(first["n_times"])
        for sub in paired:
            for name in _paired_sets(self.ds, sub, cfg.task):
                for mod in ("eeg", "meg"):
                    e = self.ds.epochs_info(sub, mod, name)
                    if int(e["n_times"]) != self.n_times or float(e["sfreq"]) != self.sfreq:
                        raise ValueError(
                            f"{mod} epochs {sub}/{name} have {e['n_times']} samples at "
                            f"{e['sfreq']} Hz, but {train[0]}'s have {self.n_times} at "
                            f"{self.sfreq} Hz: every paired epoch must have the same length "
                            "and rate (crop or resample before writing the store).")
        self.eeg_scale = self._scale("eeg")
        self.meg_scale = self._scale("meg")
        logger.info("Paired EEG-MEG epochs: %d train / %d val / %d test subjects, %d EEG and "
                    "%d MEG channels, %d samples at %g Hz", len(train), len(val), len(test),
                    len(self.eeg_names), len(self.meg_names), self.n_times, self.sfreq)

    def __repr__(self):
        n = {k: len(v) for k, v in self.subjects.items()}
        return (f"<PairedEpochs | {n['train']} train / {n['val']} val / {n['test']} test "
                f"subjects, {len(self.eeg_names)} EEG → {len(self.meg_names)} MEG, "
                f"{self.n_times} samples at {self.sfreq:g} Hz>")

    # ------------------------------------------------------------------ reading
    def _sets(self, subject):
        return _paired_sets(self.ds, subject, self.config.task)

    def _scale(self, modality):
        total, total_sq, count = 0.0, 0.0, 0
        for sub in self.subjects["train"]:
            for name in self._sets(sub):
                x = np.asarray(self.ds.epochs(sub, modality, name), dtype=np.float64)
                total = total + x.sum(axis=(0, 2))
                total_sq = total_sq + (x ** 2).sum(axis=(0, 2))
                count += x.shape[0] * x.shape[2]
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0))
        flat = std <= 1e-12 * max(float(std.max()), 1e-300)
        if flat.any():
            names = self.eeg_names if modality == "eeg" else self.meg_names
            bad = [names[i] for i in np.flatnonzero(flat)][:5]
            raise ValueError(f"{modality.upper()} channel(s) {bad} are flat over the training "
                             "subjects; drop them (they carry no signal to map).")
        return mean.astype(np.float32), std.astype(np.float32)

    def items(self, split) -> list:
        """``(subject, set, epoch index)`` of every epoch of a split.

        The test split is only read when asked for by name; training never asks for it.
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
        out = []
        for sub in self.subjects[split]:
            for name in self._sets(sub):
                n = int(self.ds.epochs_info(sub, "eeg", name)["n_epochs"])
                out.extend((sub, name, i) for i in range(n))
        return out

    def standardize(self, data, modality):
        """Per-channel standardisation by the training scale; data (..., n_channels, n_times)."""
        mean, std = self.eeg_scale if modality == "eeg" else self.meg_scale
        return ((np.asarray(data, dtype=np.float32) - mean[:, None]) / std[:, None]).astype(
            np.float32)

    def to_physical(self, data, modality="meg"):
        """Undo :meth:`standardize`: standardised (..., n_channels, n_times) → volts / tesla."""
        mean, std = self.eeg_scale if modality == "eeg" else self.meg_scale
        return np.asarray(data, dtype=np.float64) * std[:, None] + mean[:, None]

    def load(self, items):
        """Standardised EEG (B, C_e, T) and MEG (B, C_m, T), float32, of ``items``."""
        eeg = np.stack([self.ds.epochs(s, "eeg", n)[i] for s, n, i in items])
        meg = np.stack([self.ds.epochs(s, "meg", n)[i] for s, n, i in items])
        return self.standardize(eeg, "eeg"), self.standardize(meg, "meg")

    def subject_arrays(self, subject, *, physical=False):
        """All paired epochs of one subject, its sets concatenated in :meth:`set_slices` order.

        Returns
        -------
        eeg : array, shape (n, C_e, T)
        meg : array, shape (n, C_m, T)
            Standardised unless ``physical`` (then volts and tesla, float64).
        labels : array of int, shape (n,)
            -1 for sets without labels.
        """
        eeg, meg, labels = [], [], []
        for name in self._sets(subject):
            e = np.asarray(self.ds.epochs(subject, "eeg", name), dtype=np.float64)
            m = np.asarray(self.ds.epochs(subject, "meg", name), dtype=np.float64)
            lab = self.ds.epoch_labels(subject, "eeg", name)
            eeg.append(e if physical else self.standardize(e, "eeg"))
            meg.append(m if physical else self.standardize(m, "meg"))
            labels.append(np.full(len(e), -1, int) if lab is None else np.asarray(lab, int))
        return np.concatenate(eeg), np.concatenate(meg), np.concatenate(labels)

    def set_slices(self, subject):
        """``(set name, slice)`` of each paired set in :meth:`subject_arrays`' rows."""
        start, out = 0, []
        for name in self._sets(subject):
            n = int(self.ds.epochs_info(subject, "eeg", name)["n_epochs"])
            out.append((name, slice(start, start + n)))
            start += n
        return out

    def arrays(self, split, *, physical=False):
        """All epochs of a split: ``eeg`` (n, C_e, T), ``meg`` (n, C_m, T), ``labels`` (n,).

        Standardised unless ``physical``; labels are -1 for sets without labels.
        """
        if not self.subjects[split]:
            raise ValueError(f"The {split!r} split has no subject; see DataConfig.")
        parts = [self.subject_arrays(sub, physical=physical) for sub in self.subjects[split]]
        return tuple(np.concatenate(p) for p in zip(*parts))

    # ------------------------------------------------------------------ bookkeeping
    def fingerprint(self) -> str:
        """Changes when the training data or its split change (checkpoints refuse a mismatch)."""
        parts = [self.config.to_dict(), self.subjects, self.eeg_names, self.meg_names,
                 self.sfreq, self.n_times]
        for sub in self.subjects["train"] + self.subjects["val"]:
            for name in self._sets(sub):
                parts.append([sub, name, self.ds.epochs_info(sub, "eeg", name)])
        return hash_arrays(*[str(p) for p in parts])

    def describe(self) -> dict:
        """JSON: the store, the split, the channels and the standardisation."""
        return {"store": str(self.ds.path), "config": self.config.to_dict(),
                "subjects": self.subjects, "sfreq": self.sfreq, "n_times": self.n_times,
                "eeg_names": self.eeg_names, "meg_names": self.meg_names,
                "eeg_scale": [v.tolist() for v in self.eeg_scale],
                "meg_scale": [v.tolist() for v in self.meg_scale]}


def eeg_epochs(dataset, subject, name, *, eeg_scale):
    """EEG epochs of any subject (e.g. EEG-only) standardised by a model's EEG scale.

    Parameters
    ----------
    dataset : Dataset | path-like
    subject, name : str
        Subject and epoch set.
    eeg_scale : tuple of array, shape (n_channels,)
        ``(mean, std)`` the generator was trained with (:attr:`PairedEpochs.eeg_scale`).

    Returns
    -------
    eeg : array, shape (n_epochs, n_channels, n_times), float32
    labels : array of int, shape (n_epochs,) | None
    """
    ds = _as_dataset(dataset)
    x = np.asarray(ds.epochs(subject, "eeg", name), dtype=np.float32)
    mean, std = (np.asarray(v, dtype=np.float32) for v in eeg_scale)
    if x.shape[1] != len(mean):
        raise ValueError(f"EEG epochs {subject}/{name} have {x.shape[1]} channels; the model "
                         f"was trained on {len(mean)}. Pick the model's channels, in its order.")
    lab = ds.epoch_labels(subject, "eeg", name)
    return (x - mean[:, None]) / std[:, None], (None if lab is None else np.asarray(lab))

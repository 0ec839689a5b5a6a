"""A dataset store's simultaneous EEG–fMRI runs, seen as the transcoder's data set.

:class:`StoreRuns` presents the continuous ``eeg`` and ``fmri-volume`` runs (stories) of one
subject of a dataset store (e.g. written by
:func:`neurofuse.data.datasets.prepare_eeg_fmri_bids`) with the interface that
:class:`~neurofuse.systems.transcoder.data.TranscoderData` reads from a simulated data set
(:class:`neurofuse.simulation.eeg_fmri.EEGfMRIDataset`): ``path``, ``runs``, ``config``
(``tr``, ``sfreq``, ``n_per_tr``, ``n_trs``, ``n_times``, ``grid_shape``, ``voxel_size``),
``manifest`` (``config``, ``channels``, ``split``, ``grid``) and :meth:`~StoreRuns.read_run`.
It has no ground truth (``has_truth`` is False): no sources, lead field or HRF.

* The split is the stories' ``split``: ``test`` stories are the held-out runs, never read for
  training; ``train`` and then ``val`` stories are the training runs (the transcoder's
  ``DataConfig.n_val`` holds out the last ones for validation).
* ``tr * sfreq`` must be a whole number of EEG samples per volume.
* The grid is the modality's spatial shape; the voxel size the column norms of its affine.
* Every run of a model has the same length: runs are cut to the shortest one (``n_trs``
  volumes and ``n_trs * n_per_tr`` EEG samples); what is cut is logged.

:func:`open_eeg_fmri` opens either kind of folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..._logging import logger

__all__ = ["StoreRuns", "StoreRunsConfig", "open_eeg_fmri"]

#: The split names of a store's stories that train the transcoder (in this order).
TRAIN_SPLITS = ("train", "val")


@dataclass(frozen=True)
class StoreRunsConfig:
    """Timing and grid of a store's EEG–fMRI runs (what the transcoder reads of a config).

    Parameters
    ----------
    tr : float
        Repetition time, s.
    sfreq : float
        EEG sampling rate, Hz.
    n_per_tr : int
        EEG samples per volume (``tr * sfreq``).
    n_trs : int
        Volumes per run (the shortest run's).
    grid_shape : tuple of 3 int
        fMRI voxels ``(n_x, n_y, n_z)``.
    voxel_size : tuple of 3 float
        Voxel edges, mm (column norms of the affine).
    """

    tr: float
    sfreq: float
    n_per_tr: int
    n_trs: int
    grid_shape: tuple
    voxel_size: tuple

    @property
    def n_times(self) -> int:
        """EEG samples per run (``n_trs * n_per_tr``)."""
        return self.n_trs * self.n_per_tr

    def to_json(self) -> dict:
        """JSON-serialisable fields."""
        return {"tr": self.tr, "sfreq": self.sfreq, "n_per_tr": self.n_per_tr,
                "n_trs": self.n_trs, "grid_shape": list(self.grid_shape),
                "voxel_size": list(self.voxel_size)}


def _pick_subject(ds, subject, eeg, fmri):
    both = [s for s in ds.subjects if {eeg, fmri} <= set(ds.modalities(s))]
    if subject is not None:
        if subject not in both:
            raise ValueError(f"'subject' must be a subject of '{ds.path}' with {eeg!r} and "
                             f"{fmri!r} data, one of {both}, got {subject!r}.")
        return subject
    if len(both) != 1:
        raise ValueError(f"'subject' is needed: the store '{ds.path}' has {len(both)} subjects "
                         f"with {eeg!r} and {fmri!r} data ({both}), and the transcoder models "
                         "one subject (channels and grids differ between subjects); pass one.")
    return both[0]


class StoreRuns:
    """One subject's EEG and volumetric fMRI runs of a dataset store, as the transcoder reads them.

    Parameters
    ----------
    store : path-like | neurofuse.data.store.Dataset
        A dataset store holding a continuous sensor modality (``eeg``) and a volume modality
        (``fmri-volume``) of the same stories, with a TR.
    subject : str | None
        The subject (None: the only one with both modalities).
    eeg, fmri : str
        Modality names.

    Attributes
    ----------
    path : Path
    store : neurofuse.data.store.Dataset
    subject : str
    runs : list of str
        Stories with both modalities, in the store's order.
    config : StoreRunsConfig
    manifest : dict
        ``config`` (identity of the runs, for fingerprints: subject, modalities, runs,
        timing, grid; not the folder, so a moved store keeps its models), ``channels`` (names, or
        ``ch000``... when the store keeps no ``Info``), ``split`` (``train``, ``test``: lists
        of runs), ``grid`` (``shape``, ``affine``).
    run_n_trs : dict of str to int
        Volumes of each run before the cut to ``config.n_trs``.
    has_truth : bool
        False: a store of recordings has no ground truth.
    brain_mask : array of bool, shape (n_x, n_y, n_z) | None
        The subject's brain mask stored with the runs (by
        :func:`~neurofuse.data.datasets.prepare_eeg_fmri_bids`, see
        :mod:`neurofuse.data.datasets.ds000116.mask`), None when the store has none (then
        every voxel is scored: e.g. a simulated data set, whose grid is inside the brain).
    """

    has_truth = False

    def __init__(self, store, subject=None, *, eeg="eeg", fmri="fmri-volume"):
        from ...data.datasets.ds000116.mask import read_brain_mask
        from ...data.store import Dataset, read_dataset

        ds = store if isinstance(store, Dataset) else read_dataset(store)
        self.store, self.path = ds, Path(ds.path)
        self.subject = sub = _pick_subject(ds, subject, eeg, fmri)
        self.modalities = (eeg, fmri)
        if ds.tr is None:
            raise ValueError(f"The store '{ds.path}' has no TR: its {fmri!r} runs need one.")
        n_per_tr = ds.tr * ds.sfreq
        if abs(n_per_tr - round(n_per_tr)) > 1e-6:
            raise ValueError(f"The store '{ds.path}' has {n_per_tr:g} EEG samples per volume "
                             f"(tr {ds.tr:g} s x sfreq {ds.sfreq:g} Hz); the transcoder needs "
                             "a whole number: prepare it again at an sfreq that makes "
                             f"tr * sfreq whole (e.g. {100.0 / ds.tr * round(ds.tr):g} Hz).")
        n_per_tr = int(round(n_per_tr))
        eeg_runs = set(ds.subject_stories(sub, eeg))
        fmri_runs = set(ds.subject_stories(sub, fmri))
        self.runs = [s for s in ds.stories if s in eeg_runs and s in fmri_runs]
        if not self.runs:
            raise ValueError(f"Subject {sub!r} of '{ds.path}' has no story with both {eeg!r} "
                             f"and {fmri!r} data.")
        self.run_n_trs = {}
        for run in self.runs:
            n_eeg = ds.data(sub, eeg, run).shape[-1] // n_per_tr
            self.run_n_trs[run] = min(n_eeg, ds.data(sub, fmri, run).shape[-1])
        n_trs = min(self.run_n_trs.values())
        if n_trs < 1:
            raise ValueError(f"A run of {sub!r} in '{ds.path}' holds no whole volume of EEG: "
                             f"{self.run_n_trs}.")
        cut = {r: n - n_trs for r, n in self.run_n_trs.items() if n > n_trs}
        if cut:
            logger.info("Runs cut to the shortest one's %d volumes (volumes dropped at the "
                        "end: %s).", n_trs, cut)
        affine = ds.affine(sub, fmri)
        grid = tuple(int(n) for n in ds.spatial_shape(sub, fmri))
        voxel = tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))
        self.config = StoreRunsConfig(tr=float(ds.tr), sfreq=float(ds.sfreq),
                                      n_per_tr=n_per_tr, n_trs=int(n_trs), grid_shape=grid,
                                      voxel_size=voxel)
        splits = ds.splits
        story_split = {s: name for name, stories in splits.items() for s in stories}
        train = [r for name in TRAIN_SPLITS for r in self.runs if story_split[r] == name]
        test = [r for r in self.runs if story_split[r] == "test"]
        ignored = sorted(set(self.runs) - set(train) - set(test))
        if ignored:
            logger.info("Runs of splits other than train, val and test are not used: %s",
                        ignored)
        self.brain_mask = read_brain_mask(ds, sub)
        if self.brain_mask is not None and self.brain_mask.shape != grid:
            raise ValueError(f"The brain mask of {sub!r} in '{ds.path}' has shape "
                             f"{self.brain_mask.shape} but the {fmri!r} grid is {grid}; "
                             "prepare the store again.")
        self.manifest = {
            "config": {"subject": sub, "eeg": eeg, "fmri": fmri,  # not the path: movable
                       "runs": list(self.runs), **self.config.to_json()},
            "channels": self._channels(),
            "split": {"train": train, "test": test},
            "grid": {"shape": list(grid), "affine": affine.tolist()}}

    def _channels(self):
        eeg = self.modalities[0]
        try:
            return list(self.store.info(self.subject, eeg)["ch_names"])
        except (ValueError, FileNotFoundError, KeyError):  # a store without eeg-info.fif
            n = self.store.spatial_shape(self.subject, eeg)[0]
            return [f"ch{i:03d}" for i in range(n)]

    def __repr__(self):
        split = self.manifest["split"]
        return (f"<StoreRuns {self.path.name} {self.subject}: {len(split['train'])} train / "
                f"{len(split['test'])} test runs of {self.config.n_trs} volumes, "
                f"{len(self.manifest['channels'])} ch, grid {self.config.grid_shape}>")

    def read_run(self, run, *, mmap=True):
        """The arrays of one run, cut to ``config.n_trs`` volumes.

        Parameters
        ----------
        run : str
            A story of :attr:`runs`.
        mmap : bool
            Keep them memory-mapped (else read into memory).

        Returns
        -------
        out : dict
            ``eeg`` (n_channels, n_times), ``fmri`` (n_x, n_y, n_z, n_trs): the first
            repeat of each, ``n_times = n_trs * n_per_tr``; ``onset`` (n_events,): the
            onsets (s from the first volume) of the run's events of every kind, sorted,
            those inside the cut run (the subject level epochs at them).
        """
        if run not in self.runs:
            raise ValueError(f"Invalid run {run!r}: expected one of the runs of subject "
                             f"{self.subject!r} with EEG and fMRI, {self.runs[:3]}"
                             f"{'...' if len(self.runs) > 3 else ''}.")
        cfg, (eeg, fmri) = self.config, self.modalities
        out = {"eeg": self.store.data(self.subject, eeg, run)[0, :, :cfg.n_times],
               "fmri": self.store.data(self.subject, fmri, run)[0, ..., :cfg.n_trs]}
        out = out if mmap else {k: np.array(v) for k, v in out.items()}
        events = self.events(run)
        onset = np.sort(np.concatenate([np.asarray(v, np.float64).ravel()
                                        for v in events.values()] or [np.empty(0)]))
        out["onset"] = onset[(onset >= 0) & (onset < cfg.n_trs * cfg.tr)]
        return out

    def events(self, run):
        """Event onsets of a run per event table, s from its first volume (dict of arrays)."""
        return {name: self.store.events(run, name) for name in self.store.event_names(run)}


def open_eeg_fmri(data, subject=None):
    """Open a simulated EEG–fMRI data set or a dataset store's EEG–fMRI runs.

    Parameters
    ----------
    data : path-like | EEGfMRIDataset | StoreRuns | neurofuse.data.store.Dataset
        A folder of ``neurofuse transcoder simulate`` (``manifest.json``) or a dataset
        store (``neurofuse-dataset.json``), or either already opened.
    subject : str | None
        The store's subject (see :class:`StoreRuns`); must be None for a simulated data set.

    Returns
    -------
    dataset : EEGfMRIDataset | StoreRuns
    """
    from ...data.store import Dataset
    from ...data.store.manifest import MANIFEST
    from ...simulation.eeg_fmri import EEGfMRIDataset, read_dataset

    if isinstance(data, (EEGfMRIDataset, StoreRuns)):
        ds = data
    elif isinstance(data, Dataset) or (Path(data).expanduser() / MANIFEST).is_file():
        return StoreRuns(data, subject)
    else:
        path = Path(data).expanduser()
        if not (path / "manifest.json").is_file():
            raise FileNotFoundError(
                f"'data' must be a simulated EEG-fMRI data set (manifest.json) or a dataset "
                f"store ({MANIFEST}), got '{path}' with neither; make one with 'neurofuse "
                "transcoder simulate' or 'neurofuse data prepare eeg-fmri-bids'.")
        ds = read_dataset(path)
    if subject is not None and not isinstance(ds, StoreRuns):
        raise ValueError(f"'subject' ({subject!r}) applies to a dataset store only; "
                         f"'{ds.path}' is a simulated data set (one subject): leave it out.")
    return ds

"""Training the subject-level transcoder (paper §4.3.3) on a trained group-level model.

:class:`SubjectData` turns a subject's training runs (never its test runs) into the paper's
two 4-D tensors: the group model's EEG- and fMRI-estimated sources at full resolution,
epoched at the stimulus onsets and averaged over all trials of all training runs, cut into
overlapping spatial chunks (the batch items). :func:`fit_subject` trains a fresh
:class:`~neurofuse.systems.transcoder.subject.SubjectTranscoder` on them with the same task
and loop as the group level (:class:`~neurofuse.systems.transcoder.task.TranscoderTask`).

The simulator has one anatomy, so one data set is one subject. A dataset store's runs
(:class:`~neurofuse.systems.transcoder.store.StoreRuns`, one subject) are epoched at their
events (every event kind of the run: all trials, as the paper); runs without events are left
out of the average.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..._checks import _check_int, _check_keys, _check_positive
from ..._io import hash_arrays
from ..._logging import logger, verbose
from ...training.loop import fit_task
from ...training.presets import read_fit_config
from .data import TranscoderData, downsample_eeg, normalize, pool_volume
from .model import Transcoder, load_model
from .subject import (SubjectConfig, SubjectTranscoder, chunk_starts, epoch_average,
                      group_sources, upsample_sources, upsample_space, upsample_time)
from .task import TranscoderTask
from .trainer import TrainConfig

__all__ = ["SUBJECT_PRESETS", "SubjectData", "SubjectDataConfig", "fit_subject",
           "run_averages", "subject_sources"]


@dataclass(frozen=True)
class SubjectDataConfig:
    """How the subject level's items are made.

    Parameters
    ----------
    epoch_duration : float
        Epoch length after each onset, s (paper: 3).
    chunk_size : int
        Edge of the cubic spatial chunks, voxels (paper: 16); an axis shorter than it is
        kept whole.
    chunk_step : int
        Voxels between chunk starts (8: half overlap).
    block : int
        Time steps or voxels per forward pass of the group model (memory).
    """

    epoch_duration: float = 3.0
    chunk_size: int = 16
    chunk_step: int = 8
    block: int = 4096

    def __post_init__(self):
        _check_positive("SubjectDataConfig.epoch_duration", self.epoch_duration)
        for name in ("chunk_size", "chunk_step", "block"):
            _check_int(f"SubjectDataConfig.{name}", getattr(self, name))

    def to_dict(self) -> dict:
        """JSON-serialisable settings."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values) -> SubjectDataConfig:
        """Build from a JSON/TOML dict (unknown keys raise)."""
        _check_keys("subject data setting (SubjectDataConfig)", values,
                    [f.name for f in dataclasses.fields(cls)])
        return cls(**values)


def run_averages(group_model, group, raw, sfreq, config):
    """One run's group-level source estimates at full resolution, averaged over its epochs.

    Parameters
    ----------
    group_model : Transcoder
        The trained group-level model.
    group : TranscoderData
        Its reduction of the data set (``pool``, ``n_trs``, ``n_per_tr``, ``steps_per_tr``,
        ``config.normalize``).
    raw : dict
        The run (``read_run``): ``eeg`` (n_channels, n_times), ``fmri`` (n_x, n_y, n_z,
        n_trs), ``onset`` (n_events,) stimulus onsets, s.
    sfreq : float
        EEG rate, Hz.
    config : SubjectDataConfig
        ``epoch_duration``, ``block``.

    Returns
    -------
    eeg_average : array of float32, shape (n_gx, n_gy, n_gz, n_epoch_times)
        EEG-estimated source on the group grid, at the EEG rate.
    fmri_average : array of float32, shape (n_x, n_y, n_z, n_epoch_times)
        fMRI-estimated source on the fMRI grid, interpolated to the EEG rate.
    n_epochs : int
    """
    n_keep = group.n_trs * group.n_per_tr
    d = group.n_per_tr // group.steps_per_tr
    eeg = np.asarray(raw["eeg"][:, :n_keep], np.float32)
    fmri = np.asarray(raw["fmri"][..., :group.n_trs], np.float32)
    # scale as the group model saw the run (its reduced whole-run item)
    _, _, scales = normalize(downsample_eeg(eeg, group.n_per_tr, group.steps_per_tr),
                             pool_volume(fmri, group.pool), group.config.normalize)
    eeg = (eeg - eeg.mean(-1, keepdims=True)) / scales["eeg_scale"]
    fmri = (fmri - fmri.mean(-1, keepdims=True)) / scales["fmri_scale"]
    s_eeg, s_fmri = group_sources(group_model, eeg, fmri, block=config.block)
    avg_e, n = epoch_average(s_eeg, raw["onset"], sfreq, config.epoch_duration)
    avg_f = np.concatenate([
        epoch_average(upsample_time(s_fmri[i:i + 1], d, n_keep), raw["onset"], sfreq,
                      config.epoch_duration)[0]
        for i in range(s_fmri.shape[0])])                               # per x-slab: memory
    return avg_e, avg_f, n


class SubjectData:
    """Epoch-averaged group-level source estimates of a subject, in spatial chunks.

    Parameters
    ----------
    dataset : EEGfMRIDataset | StoreRuns
        The subject's runs (the same data set, and split, as the group model's); their
        ``read_run`` gives the stimulus onsets (``onset``).
    group_model : Transcoder
        Trained group-level model.
    group_data : dict
        The group model's ``model.json`` ``data`` entry (its reduction and split).
    config : SubjectDataConfig | dict | None

    Attributes
    ----------
    eeg, fmri : arrays of float32, shape (n_x, n_y, n_z, n_epoch_times)
        EEG- and fMRI-estimated sources, epoch averages, each of unit r.m.s.
    n_epochs : int
        Trials averaged.
    """

    group_model = None  #: the group model's folder, when known (recorded in describe())

    def __init__(self, dataset, group_model, group_data, config=None):
        self.dataset = dataset
        self.config = cfg = (config if isinstance(config, SubjectDataConfig)
                             else SubjectDataConfig.from_dict(dict(config or {})))
        group = TranscoderData(dataset, group_data["steps_per_tr"], group_data["settings"])
        if group.fingerprint() != group_data["fingerprint"]:
            raise ValueError(f"The group model was trained on another data set or split than "
                             f"'{dataset.path}'; train the subject level on the group model's "
                             "own data set.")
        self.test_runs = list(group.test_runs)
        runs = group.train_runs + group.val_runs
        sim = dataset.config
        sum_e = sum_f = None
        self.n_epochs, used = 0, []
        for run in runs:
            if run in self.test_runs:  # never: the split guarantees it; kept as a guard
                raise RuntimeError(f"Test run {run!r} must never enter training.")
            raw = dataset.read_run(run, mmap=True)
            if not len(raw["onset"]):
                logger.info("Subject level: run %r has no event, left out.", run)
                continue
            avg_e, avg_f, n = run_averages(group_model, group, raw, sim.sfreq, cfg)
            sum_e = avg_e * n if sum_e is None else sum_e + avg_e * n
            sum_f = avg_f * n if sum_f is None else sum_f + avg_f * n
            self.n_epochs += n
            used.append(run)
        if not self.n_epochs:
            raise ValueError(f"No training run of '{dataset.path}' has an event (stimulus "
                             "onset) to epoch at: the subject level averages the estimated "
                             "sources over trials. Prepare the store with the runs' events "
                             "(_events.tsv).")
        runs = used
        eeg = upsample_space(sum_e / self.n_epochs, group.pool, sim.grid_shape)
        fmri = sum_f / self.n_epochs
        self.eeg, self.fmri, self.scales = normalize(eeg, fmri)
        self.runs = runs
        self.grid_shape = tuple(sim.grid_shape)
        self.chunk = tuple(min(cfg.chunk_size, n) for n in self.grid_shape)
        starts = [chunk_starts(n, cfg.chunk_size, cfg.chunk_step) for n in self.grid_shape]
        self._items = list(itertools.product(*starts))
        logger.info("Subject level: %d epochs of %d runs, %d chunks of %s voxels x %d samples",
                    self.n_epochs, len(runs), len(self._items), self.chunk, self.eeg.shape[-1])

    def items(self, purpose="train"):
        """Chunk starts ``(x0, y0, z0)`` (training); no validation or test items."""
        return list(self._items) if purpose == "train" else []

    def load(self, item, purpose="train"):
        """One chunk: ``eeg``, ``fmri`` (chunk_x, chunk_y, chunk_z, n_epoch_times), scales."""
        (x0, y0, z0), (a, b, c) = item, self.chunk
        sl = (slice(x0, x0 + a), slice(y0, y0 + b), slice(z0, z0 + c))
        return self.eeg[sl], self.fmri[sl], self.scales

    def fingerprint(self) -> str:
        """A key of the averaged tensors and the settings."""
        return hash_arrays(self.eeg, self.fmri, self.config.to_dict())

    def describe(self) -> dict:
        """JSON description (for ``model.json``; ``group_model``: the group model's folder)."""
        return {"level": "subject", "fingerprint": self.fingerprint(),
                "group_model": self.group_model,
                "dataset": str(self.dataset.path), "runs": self.runs,
                "test_runs": self.test_runs, "n_epochs": self.n_epochs,
                "chunk": list(self.chunk), "settings": self.config.to_dict()}


#: Subject-level set-ups: ``train`` (TrainConfig), ``model`` (SubjectConfig), ``data``
#: (SubjectDataConfig) sections.
SUBJECT_PRESETS = {
    "paper": {"train": {}, "model": {}, "data": {}},
    "demo": {"train": {"epochs": 8}, "model": {"channels": [8, 8, 8, 8]}, "data": {}},
    "tiny": {"train": {"epochs": 2, "lr": 3e-3},
             "model": {"channels": [4, 4, 4, 4], "temporal_kernel": 5},
             "data": {"epoch_duration": 1.0, "chunk_size": 8, "chunk_step": 8}},
}


@verbose
def fit_subject(dataset, group_model, out, *, config="paper", resume=False,
                epoch_callback=None, verbose=None):
    """Train the subject-level transcoder on a group model's estimates of one subject.

    Parameters
    ----------
    dataset : EEGfMRIDataset | StoreRuns | path-like
        The subject's data set (the group model's; its test runs are never read): a
        simulated data set or a dataset store's runs of one subject (a store's path when it
        has one subject with EEG and fMRI; else open it with
        :func:`~neurofuse.systems.transcoder.store.open_eeg_fmri`).
    group_model : path-like
        The group model's folder (``out/model`` of :func:`~.trainer.fit`).
    out : path-like
        Output folder (as :func:`~.trainer.fit`'s).
    config : str | path-like | dict
        A preset of :data:`SUBJECT_PRESETS`, a file, or a dict with ``preset``, ``train``,
        ``model``, ``data`` sections.
    resume : bool | 'override'
        Continue from ``out/checkpoints``.
    epoch_callback : callable | None
        Called as ``epoch_callback(epoch, row)`` after each epoch.
    verbose : bool | str | None

    Returns
    -------
    history : list of dict
        As :func:`~.trainer.fit`'s (no validation rows).
    """
    from .store import open_eeg_fmri

    dataset = open_eeg_fmri(dataset)
    resolved = read_fit_config(config, SUBJECT_PRESETS, ("train", "model", "data"))
    cfg = TrainConfig.from_dict(resolved["train"])
    mcfg = SubjectConfig.from_dict(resolved["model"])
    model, meta = load_model(group_model, return_meta=True)
    if not isinstance(model, Transcoder):
        raise ValueError(f"'group_model' must be a group-level model folder, got a "
                         f"{meta['format']!r}.")
    data = SubjectData(dataset, model, meta["data"],
                       SubjectDataConfig.from_dict(resolved["data"]))
    data.group_model = str(Path(group_model).expanduser().resolve())
    task = TranscoderTask(data, cfg, mcfg, model_cls=SubjectTranscoder)
    return fit_task(task, out, config=cfg.loop_config(), resume=resume, device=cfg.device,
                    epoch_callback=epoch_callback)


def subject_sources(subject_model, group_model, data, eeg, fmri, *, block=4096):
    """The subject level applied to a continuous run: sources at full resolution (paper §4.3.3).

    The run is scaled as the group model saw it (its whole-run item), the group model's
    decoders give the EEG- and fMRI-estimated sources at full resolution
    (:func:`~.subject.group_sources`, :func:`~.subject.upsample_sources`), both are scaled
    to unit r.m.s. (as :class:`SubjectData` scaled its trial averages), and the subject
    model's decoders refine them. No slicing: the EEG decoder acts on each time step, the
    fMRI decoder on each voxel (computed in blocks of ``block``).

    Parameters
    ----------
    subject_model : SubjectTranscoder
    group_model : Transcoder
        The group model the subject model was trained from.
    data : TranscoderData
        The group model's reduction of the data set (its ``pool``, ``n_per_tr``,
        ``steps_per_tr``, ``config.normalize``).
    eeg : array, shape (n_channels, n_times)
        A run's EEG, whole TRs (``n_times = n_trs * n_per_tr``).
    fmri : array, shape (n_x, n_y, n_z, n_trs)
    block : int
        Time steps or voxels per forward pass (memory).

    Returns
    -------
    eeg_sources, fmri_sources : arrays of float32, shape (n_x, n_y, n_z, n_times)
        The subject level's EEG- and fMRI-estimated sources (model units: only
        correlations are meaningful).
    """
    import torch

    block = _check_int("block", block)
    eeg = np.asarray(eeg, np.float32)
    fmri = np.asarray(fmri, np.float32)
    _, _, scales = normalize(downsample_eeg(eeg, data.n_per_tr, data.steps_per_tr),
                             pool_volume(fmri, data.pool), data.config.normalize)
    eeg = (eeg - eeg.mean(-1, keepdims=True)) / scales["eeg_scale"]
    fmri = (fmri - fmri.mean(-1, keepdims=True)) / scales["fmri_scale"]
    s_eeg, s_fmri = group_sources(group_model, eeg, fmri, block=block)
    s_eeg, s_fmri = upsample_sources(s_eeg, s_fmri, pool=data.pool, grid_shape=fmri.shape[:3],
                                     samples_per_step=data.n_per_tr // data.steps_per_tr)
    s_eeg, s_fmri, _ = normalize(s_eeg, s_fmri)
    device = next(subject_model.parameters()).device
    was_training = subject_model.training
    subject_model.eval()
    try:
        with torch.no_grad():
            e = torch.as_tensor(s_eeg, device=device)[None]              # (1, X, Y, Z, T)
            out_e = torch.cat([subject_model.eeg_decoder(e[..., t0:t0 + block]).cpu()
                               for t0 in range(0, e.shape[-1], block)], -1)[0].numpy()
            X, Y, Z, T = s_fmri.shape
            flat = torch.as_tensor(s_fmri, device=device).reshape(X * Y * Z, 1, T)
            out_f = torch.cat([subject_model.fmri_decoder.layers(flat[v0:v0 + block]).cpu()
                               for v0 in range(0, flat.shape[0], block)]).reshape(X, Y, Z, T)
    finally:
        subject_model.train(was_training)
    return out_e, out_f.numpy()

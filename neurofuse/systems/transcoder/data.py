"""Runs of a simulated EEG–fMRI data set, brought to the group level's resolution.

The group-level model (paper §4.3.3) works on a source space coarser than either modality in
one of its axes: the EEG is averaged in time, in blocks, to ``steps_per_tr`` steps per fMRI
volume (paper: ~2.7 Hz; here 2.5 Hz by default, 5 steps per 2-s TR), and the fMRI is averaged
in space, in blocks of ``fmri_pool`` voxels, to ~12 mm. Each batch item is one run (or one
chunk of a run, with ``chunk_trs``), read memory-mapped from the data set and reduced on the
fly (or kept reduced in memory with ``cache=True``).

The data set's ``test`` runs (its manifest's split) never enter training or validation:
:meth:`TranscoderData.load` refuses them unless asked for ``purpose="test"``. Validation runs,
if any, are the last ``n_val`` runs of the ``train`` split.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..._checks import _check_int, _check_keys, _check_option, _check_positive
from ..._io import hash_arrays

__all__ = ["DataConfig", "TranscoderData", "downsample_eeg", "normalize", "pool_volume",
           "pooled_shape"]

NORMALIZATIONS = ("item", "none")
PURPOSES = ("train", "val", "test")


@dataclass(frozen=True)
class DataConfig:
    """How runs become batch items.

    Parameters
    ----------
    group_voxel : float
        Target voxel edge of the group-level source grid, mm (paper: 12). The fMRI is pooled
        by ``max(1, round(group_voxel / voxel_size))`` voxels per axis; ignored when
        ``fmri_pool`` is given.
    fmri_pool : tuple of 3 int | None
        Voxels per pooled voxel along x, y, z (None: from ``group_voxel``).
    chunk_trs : int | None
        Cut each run into chunks of this many TRs (None: one whole run per item, default).
    chunk_step : int | None
        TRs between chunk starts (None: ``chunk_trs``, no overlap).
    n_val : int
        Training-split runs held out for validation (the last ones); 0: none (the paper).
    normalize : 'item' | 'none'
        ``'item'``: each item's EEG and fMRI lose their per-row mean and are divided by their
        r.m.s. over all rows (one number per modality and item), so both are of unit scale;
        ``'none'``: raw volts and BOLD units (tiny numbers: only for data already scaled).
    cache : bool
        Keep the reduced items in memory after the first epoch (fast for small data sets;
        the paper's 300 runs need ~1.2 GB) instead of reading them again every epoch.
    """

    group_voxel: float = 12.0
    fmri_pool: tuple | None = None
    chunk_trs: int | None = None
    chunk_step: int | None = None
    n_val: int = 0
    normalize: str = "item"
    cache: bool = False

    def __post_init__(self):
        _check_positive("DataConfig.group_voxel", self.group_voxel)
        if self.fmri_pool is not None:
            pool = self.fmri_pool
            if not isinstance(pool, (list, tuple)) or len(pool) != 3:
                raise ValueError(f"'DataConfig.fmri_pool' must be 3 ints (x, y, z) or None, got "
                                 f"{pool!r}.")
            object.__setattr__(self, "fmri_pool", tuple(
                _check_int(f"DataConfig.fmri_pool[{i}]", v) for i, v in enumerate(pool)))
        if self.chunk_trs is not None:
            _check_int("DataConfig.chunk_trs", self.chunk_trs)
        if self.chunk_step is not None:
            if self.chunk_trs is None:
                raise ValueError("'DataConfig.chunk_step' needs 'chunk_trs' (the chunk length); "
                                 "set chunk_trs or leave chunk_step at None.")
            _check_int("DataConfig.chunk_step", self.chunk_step)
        _check_int("DataConfig.n_val", self.n_val, 0)
        _check_option("DataConfig.normalize", self.normalize, NORMALIZATIONS)
        if not isinstance(self.cache, bool):
            raise TypeError(f"'DataConfig.cache' must be a bool, got {self.cache!r}.")

    def to_dict(self) -> dict:
        """JSON-serialisable settings."""
        out = dataclasses.asdict(self)
        if self.fmri_pool is not None:
            out["fmri_pool"] = list(self.fmri_pool)
        return out

    @classmethod
    def from_dict(cls, values) -> DataConfig:
        """Build from a JSON/TOML dict (unknown keys raise)."""
        _check_keys("data setting (DataConfig)", values, [f.name for f in dataclasses.fields(cls)])
        return cls(**values)


def downsample_eeg(eeg, n_per_tr, steps_per_tr):
    """Average EEG in blocks to ``steps_per_tr`` steps per TR (whole TRs only).

    Parameters
    ----------
    eeg : array, shape (n_channels, n_times)
    n_per_tr : int
        EEG samples per TR.
    steps_per_tr : int
        Steps per TR after averaging; must divide ``n_per_tr``.

    Returns
    -------
    eeg : array of float32, shape (n_channels, n_trs * steps_per_tr)
        ``n_trs = n_times // n_per_tr``; step ``j`` is the mean of samples
        ``[j * d, (j + 1) * d)``, ``d = n_per_tr // steps_per_tr``.
    """
    n_per_tr = _check_int("n_per_tr", n_per_tr)
    steps_per_tr = _check_int("steps_per_tr", steps_per_tr)
    if n_per_tr % steps_per_tr:
        raise ValueError(f"'steps_per_tr' ({steps_per_tr}) must divide the EEG samples per TR "
                         f"({n_per_tr}) so that each step averages whole samples; divisors: "
                         f"{[d for d in range(1, n_per_tr + 1) if n_per_tr % d == 0]}.")
    n_ch, n_times = eeg.shape
    n_trs = n_times // n_per_tr
    d = n_per_tr // steps_per_tr
    block = np.asarray(eeg[:, :n_trs * n_per_tr], dtype=np.float32)
    return block.reshape(n_ch, n_trs * steps_per_tr, d).mean(-1)        # (C, N*s)


def pooled_shape(shape, pool):
    """Grid shape after :func:`pool_volume`: ``ceil(shape / pool)`` per axis (tuple)."""
    return tuple(-(-int(n) // int(p)) for n, p in zip(shape, pool))


def pool_volume(fmri, pool):
    """Average fMRI in blocks of ``pool`` voxels (the last block of an axis may be partial).

    Parameters
    ----------
    fmri : array, shape (n_x, n_y, n_z, n_trs)
    pool : tuple of 3 int

    Returns
    -------
    pooled : array of float32, shape (*pooled_shape((n_x, n_y, n_z), pool), n_trs)
        Each value the mean of the voxels of its block that lie inside the grid.
    """
    fmri = np.asarray(fmri, dtype=np.float32)
    if tuple(pool) == (1, 1, 1):
        return fmri
    shape = pooled_shape(fmri.shape[:3], pool)
    pad = [(0, s * p - n) for s, p, n in zip(shape, pool, fmri.shape[:3])] + [(0, 0)]
    padded = np.pad(fmri, pad)
    count = np.pad(np.ones(fmri.shape[:3], np.float32), pad[:3])
    (a, b, c), (px, py, pz) = shape, pool
    total = padded.reshape(a, px, b, py, c, pz, -1).sum((1, 3, 5))     # (a, b, c, N)
    n = count.reshape(a, px, b, py, c, pz).sum((1, 3, 5))[..., None]
    return total / n


def normalize(eeg, fmri, how="item"):
    """Remove each row's mean and divide each modality by its r.m.s. over all rows.

    Parameters
    ----------
    eeg : array, shape (n_channels, n_steps)
    fmri : array, shape (n_x, n_y, n_z, n_trs)
    how : 'item' | 'none'
        ``'none'`` returns the arrays unchanged (scales 1).

    Returns
    -------
    eeg, fmri : arrays of float32
        Same shapes.
    scales : dict
        ``eeg_scale``, ``fmri_scale``: what each was divided by (1 for a constant array).
    """
    _check_option("how", how, NORMALIZATIONS)
    if how == "none":
        return eeg, fmri, {"eeg_scale": 1.0, "fmri_scale": 1.0}
    eeg = eeg - eeg.mean(-1, keepdims=True)
    fmri = fmri - fmri.mean(-1, keepdims=True)
    scales = {}
    for name, arr in (("eeg", eeg), ("fmri", fmri)):
        rms = float(np.sqrt(np.mean(np.square(arr, dtype=np.float64))))
        scales[f"{name}_scale"] = rms if rms > 0 else 1.0
    return (eeg / scales["eeg_scale"]).astype(np.float32), \
        (fmri / scales["fmri_scale"]).astype(np.float32), scales


class TranscoderData:
    """The batch items of an EEG–fMRI data set at the group level's resolution.

    Parameters
    ----------
    dataset : EEGfMRIDataset | StoreRuns
        From :func:`neurofuse.simulation.eeg_fmri.read_dataset`, or a dataset store's runs
        (:class:`~neurofuse.systems.transcoder.store.StoreRuns`).
    steps_per_tr : int
        Source steps per TR (the model's).
    config : DataConfig | dict | None

    Attributes
    ----------
    train_runs, val_runs, test_runs : list of str
        The split (``val_runs``: the last ``n_val`` of the data set's ``train`` runs).
    pool : tuple of 3 int
        fMRI voxels per pooled voxel.
    volume_shape : tuple of 3 int
        The pooled grid.
    n_channels, n_trs : int
    """

    def __init__(self, dataset, steps_per_tr, config=None):
        self.dataset = dataset
        self.config = cfg = (config if isinstance(config, DataConfig)
                             else DataConfig.from_dict(dict(config or {})))
        sim = dataset.config
        self.n_per_tr = sim.n_per_tr
        self.steps_per_tr = _check_int("steps_per_tr", steps_per_tr)
        if self.n_per_tr % self.steps_per_tr:
            raise ValueError(f"'steps_per_tr' ({steps_per_tr}) must divide the data set's EEG "
                             f"samples per TR ({self.n_per_tr} = tr {sim.tr} s x sfreq "
                             f"{sim.sfreq} Hz); choose a divisor.")
        split = dataset.manifest["split"]
        done = set(dataset.runs)
        train = [r for r in split["train"] if r in done]
        self.test_runs = [r for r in split["test"] if r in done]
        if cfg.n_val >= len(train):
            raise ValueError(f"'n_val' ({cfg.n_val}) must leave training runs: the data set has "
                             f"{len(train)} completed training runs.")
        self.train_runs = train[:len(train) - cfg.n_val]
        self.val_runs = train[len(train) - cfg.n_val:]
        self.pool = cfg.fmri_pool or tuple(max(1, int(round(cfg.group_voxel / v)))
                                           for v in sim.voxel_size)
        self.volume_shape = pooled_shape(sim.grid_shape, self.pool)
        self.n_channels = len(dataset.manifest["channels"])
        self.n_trs = sim.n_trs
        chunk = cfg.chunk_trs or self.n_trs
        if chunk > self.n_trs:
            raise ValueError(f"'chunk_trs' ({chunk}) exceeds the {self.n_trs} TRs of a run.")
        step = cfg.chunk_step or chunk
        self.chunk_trs = chunk
        self._starts = list(range(0, self.n_trs - chunk + 1, step))
        self._cache = {}

    def items(self, purpose="train"):
        """The batch items of a split: ``(run, first_tr)`` pairs (list)."""
        _check_option("purpose", purpose, PURPOSES)
        runs = {"train": self.train_runs, "val": self.val_runs, "test": self.test_runs}[purpose]
        return [(run, t0) for run in runs for t0 in self._starts]

    def load(self, item, purpose="train"):
        """One batch item, reduced and normalised.

        Parameters
        ----------
        item : tuple of (str, int)
            ``(run, first_tr)`` from :meth:`items`.
        purpose : 'train' | 'val' | 'test'
            What the item is read for; a test run read for ``'train'`` or ``'val'`` raises.

        Returns
        -------
        eeg : array of float32, shape (n_channels, chunk_trs * steps_per_tr)
        fmri : array of float32, shape (*volume_shape, chunk_trs)
        scales : dict
            See :func:`normalize`.
        """
        _check_option("purpose", purpose, PURPOSES)
        run, t0 = item
        if purpose != "test" and run in self.test_runs:
            raise RuntimeError(f"Run {run!r} belongs to the test split of '{self.dataset.path}' "
                               f"and must never be read for {purpose}.")
        key = (run, t0)
        if key in self._cache:
            return self._cache[key]
        data = self.dataset.read_run(run, mmap=True)
        t1 = t0 + self.chunk_trs
        eeg = downsample_eeg(data["eeg"][:, t0 * self.n_per_tr:t1 * self.n_per_tr],
                             self.n_per_tr, self.steps_per_tr)
        fmri = pool_volume(data["fmri"][..., t0:t1], self.pool)
        out = normalize(eeg, fmri, self.config.normalize)
        if self.config.cache:
            self._cache[key] = out
        return out

    def describe(self) -> dict:
        """JSON description: fingerprint, data set, reduction and split (for ``model.json``)."""
        return {"level": "group", "fingerprint": self.fingerprint(),
                "dataset": str(self.dataset.path), "fmri_pool": list(self.pool),
                "steps_per_tr": self.steps_per_tr, "n_per_tr": self.n_per_tr,
                "chunk_trs": self.chunk_trs, "train_runs": self.train_runs,
                "val_runs": self.val_runs, "test_runs": self.test_runs,
                "settings": self.config.to_dict()}

    def fingerprint(self) -> str:
        """A key of the data set, its split and the reduction (checkpoints refuse others)."""
        settings = {k: v for k, v in self.config.to_dict().items() if k != "cache"}
        return hash_arrays(self.dataset.manifest["config"], self.train_runs, self.val_runs,
                           self.test_runs, settings, self.steps_per_tr, list(self.pool))

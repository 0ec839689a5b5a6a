"""Training the transcoder (paper §4.4.1): its settings, presets and :func:`fit`.

:func:`fit` runs :class:`~neurofuse.systems.transcoder.task.TranscoderTask` in the generic
loop (:func:`neurofuse.training.loop.fit_task`: Adam, a checkpoint every epoch in
``out/checkpoints/`` with exact resume, the history in ``out/history.csv``). The model with the
lowest monitored loss is saved in ``out/model/``
(:func:`~neurofuse.systems.transcoder.model.load_model`), with the data's reduction and split
in its ``model.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..._checks import _check_int, _check_option, _check_positive
from ..._logging import logger, verbose
from ...training.loop import fit_task
from ...training.model_folder import AdamSettings
from ...training.presets import check_not_from_data, read_fit_config
from .config import TranscoderConfig
from .data import DataConfig, TranscoderData
from .losses import REDUCTIONS, check_weights
from .model import CYCLES
from .nets import count_parameters
from .task import TranscoderTask

__all__ = ["FIT_PRESETS", "TrainConfig", "fit", "load_fit_config"]


@dataclass(frozen=True)
class TrainConfig(AdamSettings):
    """Training settings (paper §4.4.1 defaults). Every field is overridable.

    Parameters
    ----------
    epochs : int
        Passes over the training runs (32).
    batch_size : int
        Items per batch (1).
    lr : float
        Adam's learning rate (1e-3, Adam's default; the paper does not give it).
    betas : tuple of float
        Adam's (beta1, beta2) ((0.9, 0.999)).
    weights : dict of str to float
        Weight of each loss term (``fmri2eeg``, ``eeg2fmri``, ``fmri_cycle``, ``eeg_cycle``;
        all 1: the paper's sum).
    reduction : 'mean' | 'sum'
        Each term as a mean (default) or the paper's sum of squared errors
        (:mod:`~neurofuse.systems.transcoder.losses`).
    cycle : 'transcode' | 'direct'
        How the cycle terms run (:mod:`~neurofuse.systems.transcoder.model`).
    patience : int | None
        Epochs without a lower monitored loss before stopping; None (default): all epochs.
    grad_clip : float | None
        Max global gradient norm per step (None: no clipping, as the paper).
    seed : int
        Seed of the initialisation and of the item order.
    device : str | None
        A torch device (None: CUDA when available, else the CPU).
    mixed_precision : bool
        bf16 autocast of the forward passes (off).
    """

    epochs: int = 32
    batch_size: int = 1
    lr: float = 1e-3
    betas: tuple = (0.9, 0.999)
    weights: dict = field(default_factory=dict)
    reduction: str = "mean"
    cycle: str = "transcode"
    patience: int | None = None
    grad_clip: float | None = None
    seed: int = 0
    device: str | None = None
    mixed_precision: bool = False

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            _check_int(f"TrainConfig.{name}", getattr(self, name))
        _check_positive("TrainConfig.lr", self.lr)
        self._check_adam_settings()
        object.__setattr__(self, "weights", check_weights(self.weights))
        _check_option("TrainConfig.reduction", self.reduction, REDUCTIONS)
        _check_option("TrainConfig.cycle", self.cycle, CYCLES)


#: Fields of TranscoderConfig that come from the data, never from a set-up.
_FROM_DATA = ("n_channels", "volume_shape")

#: Named training set-ups: ``train`` holds TrainConfig fields, ``model`` TranscoderConfig fields
#: (but ``n_channels`` and ``volume_shape``, from the data), ``data`` DataConfig fields.
FIT_PRESETS = {
    # The paper's group level: five layers per network, ~12 mm / 2.5 Hz, Adam, batch 1,
    # 32 epochs, whole runs. The paper gives no channel counts: these are ours.
    "paper": {"train": {}, "model": {}, "data": {}},
    # Minutes on 2 CPU cores on a demo data set (12-mm grid, 2-min runs): fewer feature maps,
    # 8 epochs, one validation run. Not tuned on any result.
    "demo": {"train": {"epochs": 8},
             "model": {"eeg_channels": [16, 16, 8, 8], "fmri_channels": [8, 8, 8, 8]},
             "data": {"n_val": 1, "cache": True}},
    # Seconds: tests.
    "tiny": {"train": {"epochs": 2, "lr": 3e-3},
             "model": {"eeg_channels": [4, 4, 4, 4], "fmri_channels": [4, 4, 4, 4],
                       "eeg_upsamplings": 2, "fmri_kernel": 3},
             "data": {"cache": True}},
}


def load_fit_config(config):
    """Resolve a training set-up into ``(TrainConfig, model_kwargs, DataConfig)``.

    Parameters
    ----------
    config : str | path-like | dict
        A preset name (``"paper"``, ``"demo"``, ``"tiny"``), a TOML/JSON file, or a dict, with
        optional keys ``preset`` (start from that preset; default ``"paper"``), ``train``,
        ``model`` and ``data`` sections. Unknown keys raise.

    Returns
    -------
    train : TrainConfig
    model_kwargs : dict
        TranscoderConfig fields but ``n_channels`` and ``volume_shape``.
    data : DataConfig
    """
    resolved = read_fit_config(config, FIT_PRESETS, ("train", "model", "data"))
    train = TrainConfig.from_dict(resolved["train"])
    model = resolved["model"]
    check_not_from_data("model", model, _FROM_DATA,
                        "data set (its channels and its grid pooled to the group level)")
    TranscoderConfig.from_dict(model)  # validates the keys and values now
    return train, model, DataConfig.from_dict(resolved["data"])


@verbose
def fit(dataset, out, *, config="paper", resume=False, epoch_callback=None, verbose=None):
    """Train the group-level transcoder on an EEG–fMRI data set's training runs.

    Parameters
    ----------
    dataset : EEGfMRIDataset | StoreRuns | path-like
        From :func:`~neurofuse.simulation.eeg_fmri.simulate_dataset`, or one subject's runs
        of a dataset store (:class:`~neurofuse.systems.transcoder.store.StoreRuns`), or
        either's folder (a store with one subject). Its ``test`` runs are never read.
    out : path-like
        Output folder: ``model/``, ``checkpoints/``, ``history.csv``, ``config.json``.
    config : str | path-like | dict
        What :func:`load_fit_config` takes (default: the ``"paper"`` preset).
    resume : bool | 'override'
        Continue from ``out/checkpoints`` exactly where it stopped (see
        :func:`~neurofuse.training.loop.fit_task`).
    epoch_callback : callable | None
        Called as ``epoch_callback(epoch, row)`` after each epoch.
    verbose : bool | str | None
        Log level for this call (e.g. ``'INFO'`` shows a progress bar).

    Returns
    -------
    history : list of dict
        One row per epoch: ``train_loss`` and ``train_<term>`` for the four terms, ``lr``,
        ``val_loss`` and ``val_<term>`` with validation runs, and ``seconds``.
    """
    from .store import open_eeg_fmri

    dataset = open_eeg_fmri(dataset)
    cfg, model_kwargs, data_cfg = load_fit_config(config)
    steps = model_kwargs.get("steps_per_tr", TranscoderConfig.steps_per_tr)
    data = TranscoderData(dataset, steps, data_cfg)
    mcfg = TranscoderConfig.from_dict({**model_kwargs, "n_channels": data.n_channels,
                                       "volume_shape": list(data.volume_shape)})
    logger.info("Transcoder: %d train / %d val runs (%d held out for test), grid %s pooled "
                "by %s, %d steps per TR, %d parameters", len(data.train_runs),
                len(data.val_runs), len(data.test_runs), data.volume_shape, data.pool, steps,
                count_parameters(_count_model(mcfg)))
    task = TranscoderTask(data, cfg, mcfg)
    return fit_task(task, out, config=cfg.loop_config(), resume=resume, device=cfg.device,
                    epoch_callback=epoch_callback)


def _count_model(mcfg):
    from .model import Transcoder

    return Transcoder(mcfg)

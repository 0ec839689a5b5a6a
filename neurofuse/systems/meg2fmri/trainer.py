"""Training the MEG2fMRI cGAN (paper §3.4): its settings, presets and :func:`fit`.

:func:`fit` runs the cGAN's task (:class:`~neurofuse.systems.meg2fmri.task.CganTask`: the
discriminator's and the generator's steps and losses) in the generic loop
(:func:`neurofuse.training.loop.fit_task`: the two Adam optimisers and their StepLR schedules,
a checkpoint every epoch in ``out/checkpoints/`` with exact resume, the history in
``out/history.csv``). The model with the lowest validation MSE is saved in ``out/model/``
(:func:`~neurofuse.systems.meg2fmri.model.load_model`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..._checks import _check_finite, _check_int, _check_ndim, _check_positive
from ..._io import hash_arrays
from ..._logging import logger, verbose
from ...training.loop import fit_task
from ...training.model_folder import AdamSettings
from ...training.presets import check_not_from_data, read_fit_config
from .model import CganConfig
from .task import SNAPSHOT_FILE, CganTask

__all__ = ["FIT_PRESETS", "TrainConfig", "fit", "load_fit_config"]


@dataclass(frozen=True)
class TrainConfig(AdamSettings):
    """Training settings (paper §3.4 defaults). Every field is overridable.

    Parameters
    ----------
    epochs : int
        Number of epochs (125).
    batch_size : int
        Pairs per mini-batch (32), split across data-parallel processes.
    lr : float
        Adam's learning rate of both networks (1e-4).
    betas : tuple of float
        Adam's (beta1, beta2) ((0.5, 0.999)).
    lr_step, lr_gamma : int, float
        StepLR: the learning rate is multiplied by ``lr_gamma`` (0.5) every ``lr_step`` (20)
        epochs.
    recon_weight : float
        Weight of the MSE reconstruction term against the adversarial term (100). The paper
        does not give it; 100 is Pix2Pix's weight of its L1 term. With slices in [0, 1] the
        MSE (about 0.01-0.05 per pixel) is far smaller than the adversarial BCE (about 0.7),
        so a weight near 1 would leave the pixels to the discriminator alone; 100 makes the
        two terms comparable, the balance Pix2Pix chose. Its MSE gradient ``2 * error`` is
        still smaller than L1's ``sign(error)`` for errors below 0.5.
    patience : int | None
        Epochs without a lower validation MSE before stopping; None (default): train all
        ``epochs``, as the paper.
    grad_clip : float | None
        Max global gradient norm per optimiser step (None: no clipping, as the paper).
    seed : int
        Seed of the initialisation and of the mini-batch order.
    device : str | None
        A torch device (None: CUDA when available, else the CPU).
    mixed_precision : bool
        bf16 autocast on CUDA (ignored on CPU).
    """

    epochs: int = 125
    batch_size: int = 32
    lr: float = 1e-4
    betas: tuple = (0.5, 0.999)
    lr_step: int = 20
    lr_gamma: float = 0.5
    recon_weight: float = 100.0
    patience: int | None = None
    grad_clip: float | None = None
    seed: int = 0
    device: str | None = None
    mixed_precision: bool = False

    def __post_init__(self):
        for name in ("epochs", "batch_size", "lr_step"):
            object.__setattr__(self, name, _check_int(f"TrainConfig.{name}", getattr(self, name)))
        _check_positive("TrainConfig.lr", self.lr)
        _check_positive("TrainConfig.lr_gamma", self.lr_gamma)
        _check_positive("TrainConfig.recon_weight", self.recon_weight, allow_zero=True)
        self._check_adam_settings()


#: Named training set-ups: ``train`` holds TrainConfig fields, ``model`` CganConfig fields
#: (``n_features`` comes from the data).
FIT_PRESETS = {
    # The paper's model and schedule (§3.3-3.4).
    "paper": {"train": {}, "model": {}},
    # The paper's model on a shorter schedule (40 epochs, the learning rate halved every 15)
    # for a quick look; the demo trains with "paper". Not tuned on any result.
    "demo": {"train": {"epochs": 40, "lr_step": 15}, "model": {}},
    # Seconds: a small model for tests.
    "tiny": {"train": {"epochs": 3, "batch_size": 8, "lr": 1e-3, "lr_step": 2},
             "model": {"hidden": [32, 64], "d_channels": [8, 16], "g_channels": [8, 8]}},
}


def load_fit_config(config):
    """Resolve a training set-up into ``(TrainConfig, model_kwargs)``.

    Parameters
    ----------
    config : str | path-like | dict
        A preset name (``"paper"``, ``"demo"``, ``"tiny"``), a TOML/JSON file, or a dict, with
        optional keys ``preset`` (start from that preset; default ``"paper"``), ``train``
        (TrainConfig fields) and ``model`` (CganConfig fields but ``n_features``). Unknown
        keys raise.

    Returns
    -------
    train : TrainConfig
    model_kwargs : dict
        CganConfig fields.
    """
    resolved = read_fit_config(config, FIT_PRESETS, ("train", "model"))
    train = TrainConfig.from_dict(resolved["train"])
    model = resolved["model"]
    check_not_from_data("model", model, ("n_features",),
                        "data (the width of the MEG vectors passed to fit)")
    CganConfig.from_dict({"n_features": 1, **model})  # validates the keys now
    return train, model


def _resolve_config(config):
    """``(TrainConfig, model_kwargs)`` of what :func:`fit`'s ``config`` takes: None (the
    defaults), a TrainConfig or a dict of its fields, or a set-up (:func:`load_fit_config`)."""
    if config is None or isinstance(config, TrainConfig):
        return config or TrainConfig(), {}
    if isinstance(config, dict) and not {"preset", "train", "model"} & set(config):
        return TrainConfig.from_dict(config), {}
    return load_fit_config(config)


def _check_pairs(X, Y, xname, yname):
    X = _check_finite(xname, _check_ndim(xname, X, 2, "(n_pairs, n_features)"))
    Y = np.asarray(Y)
    if Y.ndim not in (3, 4, 5):
        raise ValueError(f"'{yname}' must have shape (n_pairs, height, width) (slices), "
                         f"(n_pairs, n_x, n_y, n_z) (volumes) or (n_pairs, n_frames, n_x, n_y, "
                         f"n_z) (sequences), got shape {Y.shape}.")
    Y = _check_finite(yname, Y)
    if len(X) != len(Y):
        raise ValueError(f"'{xname}' holds {len(X)} pairs but '{yname}' {len(Y)}; they must "
                         "be the MEG vectors and target slices of the same pairs.")
    return np.asarray(X, np.float32), np.asarray(Y, np.float32)


@verbose
def fit(X_train, Y_train, out, *, X_val=None, Y_val=None, config=None, model_config=None,
        snapshot_inputs=None, snapshot_every=1, resume=False, epoch_callback=None,
        verbose=None):
    """Train the MEG2fMRI cGAN on paired MEG vectors and slices.

    Parameters
    ----------
    X_train : array, shape (n_train, n_features)
        MEG vectors of the training pairs.
    Y_train : array, shape (n_train, height, width)
        Their target slices, min-max normalised to [0, 1]; or whole volumes, shape
        (n_train, n_x, n_y, n_z), or sequences of them, (n_train, n_frames, n_x, n_y, n_z),
        which train the 3-D networks (:mod:`~neurofuse.systems.meg2fmri.volume_nets`).
    out : path-like
        Output folder: ``model/`` (lowest validation MSE), ``checkpoints/``, ``history.csv``,
        ``config.json`` and, with ``snapshot_inputs``, ``snapshots.safetensors``.
    X_val, Y_val : array | None
        Validation pairs, shaped as the training ones (pairs of the training subjects held out
        from training; never the test subjects). Without them ``val_mse`` is not logged and
        the model with the lowest training reconstruction MSE is kept.
    config : TrainConfig | dict | str | path-like | None
        Training settings: a TrainConfig, a dict of its fields, or what
        :func:`load_fit_config` takes (a preset name, a config file, a dict with ``preset``,
        ``train`` and ``model`` sections; its ``model`` section then applies too).
    model_config : dict | None
        CganConfig fields but ``n_features`` (overrides a preset's ``model`` section).
    snapshot_inputs : array, shape (n_inputs, n_features) | None
        MEG vectors (e.g. a few validation pairs) whose generated slices are recorded after
        every ``snapshot_every``-th epoch and after the last; read them with
        :func:`~neurofuse.systems.meg2fmri.task.read_snapshots`. (An early stop, with
        ``patience``, records its last epoch only if it falls on ``snapshot_every``.)
    snapshot_every : int
        See ``snapshot_inputs``.
    resume : bool
        Continue from ``out/checkpoints`` exactly where it stopped.
    epoch_callback : callable | None
        Called as ``epoch_callback(epoch, row)`` after each epoch (``row``: the history dict).
    verbose : bool | str | None
        Log level for this call (e.g. ``'INFO'`` shows a progress bar).

    Returns
    -------
    history : list of dict
        One row per epoch: ``train_d_loss``, ``train_g_loss``, ``train_g_adv`` (adversarial
        BCE), ``train_g_recon`` (MSE), ``lr_discriminator``, ``lr_generator`` (after the
        epoch's scheduler step), ``val_mse`` and ``seconds``.
    """
    cfg, model_kwargs = _resolve_config(config)
    model_kwargs = {**model_kwargs, **dict(model_config or {})}
    if "n_features" in model_kwargs:
        raise ValueError("'model_config' must not set 'n_features': it is X_train's width.")
    X_train, Y_train = _check_pairs(X_train, Y_train, "X_train", "Y_train")
    if len(X_train) == 0:
        raise ValueError("'X_train' holds no pairs.")
    if (X_val is None) != (Y_val is None):
        raise ValueError("Pass both 'X_val' and 'Y_val', or neither.")
    # (n, h, w): slices; (n, X, Y, Z): volumes; (n, F, X, Y, Z): sequences of F volumes.
    image_shape = Y_train.shape[2:] if Y_train.ndim == 5 else Y_train.shape[1:]
    n_frames = Y_train.shape[1] if Y_train.ndim == 5 else None
    if "image_shape" in model_kwargs and tuple(model_kwargs["image_shape"]) != image_shape:
        raise ValueError(f"'model_config' sets image_shape {tuple(model_kwargs['image_shape'])}"
                         f" but the targets of Y_train are {image_shape}.")
    if "n_frames" in model_kwargs and model_kwargs["n_frames"] != n_frames:
        raise ValueError(f"'model_config' sets n_frames {model_kwargs['n_frames']} but Y_train "
                         f"holds {n_frames} frames per pair (its shape {Y_train.shape}).")
    extra = {} if n_frames is None else {"n_frames": n_frames}
    mcfg = CganConfig.from_dict({**model_kwargs, "n_features": X_train.shape[1],
                                 "image_shape": list(image_shape), **extra})
    if X_val is not None:
        X_val, Y_val = _check_pairs(X_val, Y_val, "X_val", "Y_val")
        if X_val.shape[1:] != X_train.shape[1:] or Y_val.shape[1:] != Y_train.shape[1:]:
            raise ValueError(f"Validation pairs {X_val.shape[1:]} -> {Y_val.shape[1:]} do not "
                             f"match the training pairs {X_train.shape[1:]} -> "
                             f"{Y_train.shape[1:]}.")
    lo, hi = float(Y_train.min()), float(Y_train.max())
    if lo < 0 or hi > 1:
        logger.warning("Y_train spans [%.3g, %.3g], outside [0, 1]: the slices are expected "
                       "min-max normalised (the generator's output range is %s).", lo, hi,
                       "[0, 1]" if mcfg.output_range == "unit" else "[-1, 1]")
    if snapshot_inputs is not None:
        snapshot_inputs = _check_finite("snapshot_inputs", _check_ndim(
            "snapshot_inputs", snapshot_inputs, 2, "(n_inputs, n_features)"))
        if snapshot_inputs.shape[1] != X_train.shape[1]:
            raise ValueError(f"'snapshot_inputs' has {snapshot_inputs.shape[1]} features, "
                             f"X_train {X_train.shape[1]}.")
    snapshot_every = _check_int("snapshot_every", snapshot_every)
    data_key = {"n_train": len(X_train), "n_val": 0 if X_val is None else len(X_val),
                "hash": hash_arrays(X_train, Y_train, X_val, Y_val)}
    task = CganTask(X_train, Y_train, cfg, mcfg, X_val=X_val, Y_val=Y_val,
                    snapshot_inputs=snapshot_inputs, snapshot_every=snapshot_every,
                    snapshot_path=Path(out).expanduser() / SNAPSHOT_FILE, data_key=data_key)
    return fit_task(task, out, config=cfg.loop_config(), resume=resume, device=cfg.device,
                    epoch_callback=epoch_callback)

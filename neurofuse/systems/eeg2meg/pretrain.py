"""Self-supervised pretraining of System B's EEG encoder: masked patch modelling, offline.

Li & Wang freeze a *pretrained* LaBraM (§II-B). No LaBraM weights can be downloaded here, so
besides loading a user's local checkpoint (:mod:`neurofuse.nn.labram_checkpoint`) neurofuse
pretrains the encoder itself on unlabelled EEG epochs (simulated by default; they must be
disjoint from the paired EEG–MEG data the generator is trained and tested on: the data's
fingerprint is stored in ``model.json`` under ``pretraining.data`` so that can be checked).

What is learned (our choice, LaBraM-like):

* Every channel of every epoch is one univariate sequence (as the encoder sees it in Eq. 1),
  standardised per channel (mean and standard deviation of that channel over all epochs of
  its array), cut into patches of ``patch_size`` samples.
* With channel names (``ch_names``) each sequence also gets its electrode's row of LaBraM's
  electrode embedding, which is then trained too; without, that embedding is not used.
* In every sequence a fraction ``mask_ratio`` of the patches (``round(mask_ratio * P)``, at
  least one; LaBraM: 0.5) is drawn at random and their tokens are replaced by the encoder's
  learned mask token.
* A linear head on the encoder's output tokens predicts the masked patches' content and the
  loss is the mean squared error over the *masked* patches only:

  - ``target="fourier"`` (default): LaBraM's neural tokenizer reconstructs the Fourier
    amplitude and phase of each patch, each standardised per sample (over all its patches and
    frequencies). We regress those two spectra directly (no vector-quantised codebook in
    between): the one-sided spectrum of every patch (``rfft``, ``patch_size // 2 + 1``
    frequencies), amplitude and phase each standardised over the sequence's patches and
    frequencies (sample standard deviation), loss = MSE(amplitude) + MSE(phase);
  - ``target="waveform"``: the patch's (standardised) samples, loss = their MSE (a masked
    auto-encoder).

It runs as a :class:`~neurofuse.training.task.Task` in the shared loop
(:func:`~neurofuse.training.loop.fit_task`): AdamW, a checkpoint every epoch and exact resume,
early stopping on the validation loss (masks of the validation sequences are drawn once from
``seed``, so the number is comparable across epochs), the best encoder in ``out/model/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..._checks import _check_finite, _check_int, _check_option, _check_positive
from ..._io import hash_arrays, hash_file
from ..._logging import logger, verbose
from ...nn.labram import LaBraM, LaBraMConfig, electrode_indices, freeze
from ...training.loop import fit_task
from ...training.model_folder import AdamSettings, read_model_folder, save_model_folder
from ...training.task import Task

__all__ = ["ENCODER_FORMAT", "TARGETS", "MaskedPatchModel", "PretrainConfig", "PretrainTask",
           "import_labram_checkpoint", "load_encoder", "masked_patch_loss", "patch_targets",
           "pretrain_encoder", "random_patch_mask"]

ENCODER_FORMAT = "neurofuse.eeg2meg.labram"
ENCODER_FORMAT_VERSION = 1
TARGETS = ("fourier", "waveform")


@dataclass(frozen=True)
class PretrainConfig(AdamSettings):
    """Settings of the masked-patch pretraining (LaBraM's optimiser settings by default).

    Parameters
    ----------
    epochs : int
        Passes over the training sequences.
    batch_size : int
        Univariate sequences (channels of epochs) per batch.
    lr : float
        AdamW's learning rate (LaBraM: 5e-4).
    betas : tuple of float
        AdamW's (beta1, beta2) (LaBraM: (0.9, 0.98)).
    weight_decay : float
        AdamW's decoupled weight decay (LaBraM: 0.05), not applied to biases, norms, the
        cls/mask tokens and the embeddings.
    mask_ratio : float
        Fraction of each sequence's patches that are masked, in (0, 1] (LaBraM: 0.5).
    target : 'fourier' | 'waveform'
        What the masked patches' tokens must predict (see the module docstring).
    val_fraction : float
        Fraction of the epochs (of each array) held out for the validation loss (0: none;
        the training loss is then monitored).
    patience : int | None
        Epochs without a lower monitored loss before stopping (None: all epochs).
    grad_clip : float | None
        Max global gradient norm (LaBraM: 3.0).
    seed : int
        Seed of the initialisation, the split, the batch order and the masks.
    device : str | None
        A torch device (None: CUDA when available, else the CPU).
    mixed_precision : bool
        bf16 autocast of the forward passes.
    """

    epochs: int = 50
    batch_size: int = 64
    lr: float = 5e-4
    betas: tuple = (0.9, 0.98)
    weight_decay: float = 0.05
    mask_ratio: float = 0.5
    target: str = "fourier"
    val_fraction: float = 0.1
    patience: int | None = None
    grad_clip: float | None = 3.0
    seed: int = 0
    device: str | None = None
    mixed_precision: bool = False

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            _check_int(f"PretrainConfig.{name}", getattr(self, name))
        _check_positive("PretrainConfig.lr", self.lr)
        _check_positive("PretrainConfig.weight_decay", self.weight_decay, allow_zero=True)
        ratio = _check_positive("PretrainConfig.mask_ratio", self.mask_ratio)
        if ratio > 1:
            raise ValueError(f"'PretrainConfig.mask_ratio' must be in (0, 1], got {ratio}.")
        _check_option("PretrainConfig.target", self.target, TARGETS)
        frac = _check_positive("PretrainConfig.val_fraction", self.val_fraction,
                               allow_zero=True)
        if frac >= 1:
            raise ValueError(f"'PretrainConfig.val_fraction' must be in [0, 1), got {frac}.")
        self._check_adam_settings()


# ---------------------------------------------------------------------------- the objective
def random_patch_mask(n_sequences, n_patches, ratio, *, generator=None, device=None):
    """Mask ``round(ratio * n_patches)`` (at least 1) random patches of every sequence.

    Parameters
    ----------
    n_sequences, n_patches : int
    ratio : float
        Fraction in (0, 1].
    generator : torch.Generator | None
        Random source (None: torch's global one, which the loop's checkpoints restore).
    device : torch.device | None

    Returns
    -------
    mask : Tensor of bool, shape (n_sequences, n_patches)
    """
    n_mask = min(n_patches, max(1, int(round(ratio * n_patches))))
    scores = torch.rand(n_sequences, n_patches, generator=generator)
    idx = scores.argsort(dim=1)[:, :n_mask]
    mask = torch.zeros(n_sequences, n_patches, dtype=torch.bool)
    mask.scatter_(1, idx, True)
    return mask.to(device) if device is not None else mask


def _standardise(x):
    """(x - mean) / std over all but the first axis (sample std, as torch.std)."""
    dims = tuple(range(1, x.ndim))
    return (x - x.mean(dims, keepdim=True)) / (x.std(dims, keepdim=True) + 1e-8)


def patch_targets(x, patch_size, target="fourier"):
    """What the masked patches must predict.

    Parameters
    ----------
    x : Tensor, shape (N, T)
        Univariate sequences, ``T`` a multiple of ``patch_size``.
    patch_size : int
    target : 'fourier' | 'waveform'

    Returns
    -------
    targets : Tensor, shape (N, P, F)
        ``'waveform'``: the samples (F = patch_size). ``'fourier'``: the standardised
        amplitude then phase of each patch's one-sided spectrum (F = 2 * (patch_size // 2 +
        1)), each standardised per sequence over its patches and frequencies.
    """
    _check_option("target", target, TARGETS)
    patches = x.reshape(x.shape[0], -1, patch_size).float()  # (N, P, patch_size)
    if target == "waveform":
        return patches
    spec = torch.fft.rfft(patches, dim=-1)  # (N, P, patch_size // 2 + 1)
    return torch.cat((_standardise(spec.abs()), _standardise(torch.angle(spec))), dim=-1)


def masked_patch_loss(pred, targets, mask, target="fourier"):
    """Mean squared error over the masked patches only.

    Parameters
    ----------
    pred, targets : Tensor, shape (N, P, F)
    mask : Tensor of bool, shape (N, P)
    target : 'fourier' | 'waveform'
        With ``'fourier'`` the loss is MSE(amplitude half) + MSE(phase half), as LaBraM.

    Returns
    -------
    loss : Tensor, shape ()
    """
    err = (pred.float() - targets)[mask]  # (n_masked, F)
    if target == "fourier":
        amp, phase = err.chunk(2, dim=-1)
        return amp.pow(2).mean() + phase.pow(2).mean()
    return err.pow(2).mean()


class MaskedPatchModel(nn.Module):
    """A :class:`~neurofuse.nn.labram.LaBraM` encoder and a linear head for masked patches.

    Parameters
    ----------
    encoder_config : LaBraMConfig
    target : 'fourier' | 'waveform'
    """

    def __init__(self, encoder_config, target="fourier"):
        super().__init__()
        self.target = _check_option("target", target, TARGETS)
        self.encoder = LaBraM(encoder_config)
        p = self.encoder.patch_size
        n_out = p if target == "waveform" else 2 * (p // 2 + 1)
        self.head = nn.Linear(self.encoder.embed_dim, n_out)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, x, mask, electrodes=None):
        """Predictions (N, P, F) for sequences ``x`` (N, T) with masked patches ``mask``
        (N, P) and, optionally, each sequence's electrode row ``electrodes`` (N,)."""
        # the encoder is channel-independent: N sequences are N channels of one sample
        tokens = self.encoder(x.unsqueeze(0), mask=mask.unsqueeze(0),
                              electrodes=electrodes)  # (1, N, P, D)
        return self.head(tokens[0])


# ---------------------------------------------------------------------------- data
def _as_arrays(eeg_epochs):
    arrays = list(eeg_epochs) if isinstance(eeg_epochs, (list, tuple)) else [eeg_epochs]
    if not arrays:
        raise ValueError("'eeg_epochs' is empty: pass an array (n_epochs, n_channels, "
                         "n_times) of EEG epochs or a list of such arrays.")
    out = []
    for i, arr in enumerate(arrays):
        name = "eeg_epochs" if len(arrays) == 1 else f"eeg_epochs[{i}]"
        arr = np.asarray(arr)
        if arr.ndim != 3:
            raise ValueError(f"'{name}' must have shape (n_epochs, n_channels, n_times), got "
                             f"shape {arr.shape}.")
        out.append(_check_finite(name, arr).astype(np.float64))
    times = sorted({a.shape[2] for a in out})
    if len(times) > 1:
        raise ValueError(f"The arrays of 'eeg_epochs' have different lengths {times}: crop "
                         "the epochs to one length (a multiple of the encoder's patch_size).")
    return out


def _electrodes(ch_names, arrays):
    """Electrode rows (n_channels,) per array, or None per array without names."""
    if ch_names is None:
        return [None] * len(arrays)
    names = list(ch_names)
    if names and isinstance(names[0], str):
        names = [names] * len(arrays)
    if len(names) != len(arrays):
        raise ValueError(f"'ch_names' must name the channels of each of the {len(arrays)} "
                         f"arrays of 'eeg_epochs' (one list per array), got {len(names)} lists.")
    rows = []
    for i, (arr, chs) in enumerate(zip(arrays, names)):
        if len(chs) != arr.shape[1]:
            raise ValueError(f"'ch_names' for array {i} holds {len(chs)} names but the array "
                             f"has {arr.shape[1]} channels.")
        rows.append(np.asarray(electrode_indices(chs), dtype=np.int64))
    return rows


def _split(arrays, electrodes, val_fraction, seed):
    """Standardised univariate sequences (N, T) float32 of the training and validation
    epochs (split by epoch within each array) and their electrode rows (N,) or None."""
    rng = np.random.default_rng(seed)
    train, val, train_el, val_el = [], [], [], []
    for arr, rows in zip(arrays, electrodes):
        mean = arr.mean(axis=(0, 2), keepdims=True)
        std = arr.std(axis=(0, 2), keepdims=True)
        flat = std[0, :, 0] == 0
        if flat.any():
            logger.warning("%d flat EEG channel(s) (zero variance) in the pretraining data: "
                           "kept as zeros.", int(flat.sum()))
            std[std == 0] = 1.0
        z = ((arr - mean) / std).astype(np.float32)
        order = rng.permutation(len(z))
        n_val = int(round(val_fraction * len(z)))
        val.append(z[order[:n_val]].reshape(-1, z.shape[2]))
        train.append(z[order[n_val:]].reshape(-1, z.shape[2]))
        if rows is not None:
            val_el.append(np.tile(rows, n_val))
            train_el.append(np.tile(rows, len(z) - n_val))
    if not train_el:
        return np.concatenate(train), np.concatenate(val), None, None
    return np.concatenate(train), np.concatenate(val), np.concatenate(train_el), np.concatenate(
        val_el)


class PretrainTask(Task):
    """Masked patch modelling of univariate EEG sequences for the shared loop.

    Parameters
    ----------
    train, val : ndarray, shape (n_sequences, n_times)
        Standardised univariate sequences (``val`` may have no rows).
    config : PretrainConfig
    encoder_config : LaBraMConfig
    train_electrodes, val_electrodes : ndarray of int, shape (n_sequences,) | None
        Each sequence's row of the electrode embedding (None: no electrode embedding).
    """

    train_logs = ("loss",)
    progress_keys = ("train_loss", "val_loss")
    no_batches_hint = "Pass more EEG epochs, or lower val_fraction."
    # the electrode embedding is unused without channel names
    ddp_options = {"find_unused_parameters": True}

    def __init__(self, train, val, config, encoder_config, *, train_electrodes=None,
                 val_electrodes=None):
        self.train, self.val = train, val
        self.train_el, self.val_el = train_electrodes, val_electrodes
        self.cfg, self.enc_cfg = config, encoder_config
        self.fingerprint = hash_arrays(train, val, *(() if train_electrodes is None else
                                                     (train_electrodes, val_electrodes)))

    def setup(self, ctx):
        self.device = ctx.device
        self.rank, self.world_size = ctx.rank, ctx.world_size
        return MaskedPatchModel(self.enc_cfg, self.cfg.target).to(ctx.device)

    def configure_optimizers(self, model):
        no_decay = ("cls_token", "mask_token", "pos_embed", "time_embed")
        decay, plain = [], []
        for name, p in model.named_parameters():
            (plain if p.ndim < 2 or name.split(".")[-1] in no_decay else decay).append(p)
        groups = [{"params": decay, "weight_decay": self.cfg.weight_decay},
                  {"params": plain, "weight_decay": 0.0}]
        return {"main": torch.optim.AdamW(groups, lr=self.cfg.lr, betas=self.cfg.betas)}, {}

    def train_batches(self, epoch):
        order = torch.randperm(len(self.train))
        for b0 in range(0, len(order), self.cfg.batch_size):
            idx = order[b0:b0 + self.cfg.batch_size][self.rank::self.world_size]
            if len(idx):
                yield idx

    def _loss(self, model, ctx, seqs, mask, electrodes):
        x = torch.as_tensor(seqs, device=self.device)
        mask = mask.to(self.device)
        if electrodes is not None:
            electrodes = torch.as_tensor(electrodes, device=self.device)
        with ctx.autocast():
            pred = model(x, mask, electrodes)  # through the DDP wrapper when there is one
        targets = patch_targets(x, self.enc_cfg.patch_size, self.cfg.target)
        return masked_patch_loss(pred, targets, mask, self.cfg.target)

    def _n_patches(self):
        return self.train.shape[1] // self.enc_cfg.patch_size

    def training_step(self, ctx, batch, optimizer):
        idx = batch.numpy()
        mask = random_patch_mask(len(idx), self._n_patches(), self.cfg.mask_ratio)
        model = ctx.model if ctx.model is not None else ctx.module
        loss = self._loss(model, ctx, self.train[idx], mask,
                          None if self.train_el is None else self.train_el[idx])
        return loss, {"loss": float(loss.detach())}

    def validate(self, ctx, epoch):
        """``val_loss``: the masked loss of the validation sequences under masks drawn once
        from ``seed`` (a generator of its own: the training RNG is untouched)."""
        if not len(self.val):
            return {}
        gen = torch.Generator().manual_seed(self.cfg.seed + 1)
        total, n = 0.0, 0
        for b0 in range(0, len(self.val), self.cfg.batch_size):
            seqs = self.val[b0:b0 + self.cfg.batch_size]
            mask = random_patch_mask(len(seqs), self._n_patches(), self.cfg.mask_ratio,
                                     generator=gen)
            el = None if self.val_el is None else self.val_el[b0:b0 + self.cfg.batch_size]
            total += float(self._loss(ctx.module, ctx, seqs, mask, el)) * len(seqs)
            n += len(seqs)
        return {"val_loss": total / n}

    def model_config(self, model):
        # the data's fingerprint is in config(): a resume on other data names it
        return {"encoder": self.enc_cfg.to_dict(), "target": self.cfg.target}

    def config(self):
        return {**self.cfg.to_dict(), "data": self.fingerprint}

    def _describe(self):
        return {"data": self.fingerprint, "n_train_sequences": int(len(self.train)),
                "n_val_sequences": int(len(self.val)), "n_times": int(self.train.shape[1]),
                "target": self.cfg.target, "mask_ratio": self.cfg.mask_ratio,
                "electrodes": self.train_el is not None}

    def run_config(self, model):
        return {"train": self.cfg.to_dict(), "encoder": self.enc_cfg.to_dict(),
                "data": self._describe()}

    def save_model(self, model, path):
        save_model_folder(path, model.encoder, {
            "format": ENCODER_FORMAT, "format_version": ENCODER_FORMAT_VERSION,
            "config": self.enc_cfg.to_dict(), "pretraining": self._describe()}, overwrite=True)


def _encoder_config(encoder_config):
    if isinstance(encoder_config, LaBraMConfig):
        return encoder_config
    if isinstance(encoder_config, str):
        return LaBraMConfig.from_dict({"preset": encoder_config})
    if isinstance(encoder_config, dict):
        return LaBraMConfig.from_dict(encoder_config)
    raise TypeError(f"'encoder_config' must be a LaBraMConfig, a dict of its fields (optionally "
                    f"with 'preset') or a preset name, got {type(encoder_config).__name__}.")


@verbose
def pretrain_encoder(eeg_epochs, out, *, encoder_config="small", config=None, ch_names=None,
                     resume=False, device=None, epoch_callback=None, verbose=None) -> Path:
    """Pretrain a LaBraM encoder by masked patch modelling on unlabelled EEG epochs.

    Parameters
    ----------
    eeg_epochs : array, shape (n_epochs, n_channels, n_times) | list of arrays
        Unlabelled EEG (any unit: each channel is standardised). A list may mix channel
        counts (every channel is its own sequence) but not lengths. ``n_times`` must be a
        multiple of the encoder's ``patch_size``. Keep it disjoint from the paired EEG–MEG
        data.
    out : path-like
        Output folder: ``model/`` (the best encoder), ``checkpoints/``, ``history.csv``,
        ``config.json``.
    encoder_config : str | dict | LaBraMConfig
        The encoder's sizes: a preset name of :data:`~neurofuse.nn.labram.LABRAM_PRESETS`
        (default ``"small"``: 50-sample patches, 0.2 s at 250 Hz), a dict of
        :class:`~neurofuse.nn.labram.LaBraMConfig` fields (optionally with ``preset``), or a
        config.
    config : PretrainConfig | dict | None
        Training settings (None: the defaults).
    ch_names : list of str | list of list of str | None
        Channel names of the epochs (one list per array of a list), to train LaBraM's
        electrode embedding too (:func:`~neurofuse.nn.labram.electrode_indices`); None: the
        electrode embedding is not used (nor trained).
    resume : bool | 'override'
        Continue from ``out/checkpoints`` exactly where it stopped
        (:func:`~neurofuse.training.loop.fit_task`).
    device : str | None
        Overrides ``config.device``.
    epoch_callback : callable | None
        Called as ``epoch_callback(epoch, row)`` after each epoch.
    verbose : bool | str | None
        Log level for this call.

    Returns
    -------
    path : Path
        The encoder's model folder ``out/model`` (:func:`load_encoder`).
    """
    enc_cfg = _encoder_config(encoder_config)
    if config is None:
        cfg = PretrainConfig()
    elif isinstance(config, PretrainConfig):
        cfg = config
    else:
        cfg = PretrainConfig.from_dict(dict(config))
    arrays = _as_arrays(eeg_epochs)
    n_times = arrays[0].shape[2]
    enc_cfg.n_patches(n_times)  # a clear error before any work
    electrodes = _electrodes(ch_names, arrays)
    if ch_names is not None and not enc_cfg.n_electrodes:
        raise ValueError("'ch_names' was given but the encoder has no electrode embedding "
                         "(n_electrodes=0): build it with n_electrodes=128 or drop ch_names.")
    train, val, train_el, val_el = _split(arrays, electrodes, cfg.val_fraction, cfg.seed)
    if not len(train):
        raise ValueError(f"No training epochs remain after holding out val_fraction="
                         f"{cfg.val_fraction} of {sum(len(a) for a in arrays)} epochs: pass "
                         "more epochs or lower val_fraction.")
    logger.info("LaBraM pretraining: %d training / %d validation sequences of %d samples, "
                "%d patches each, target %s", len(train), len(val), n_times,
                n_times // enc_cfg.patch_size, cfg.target)
    task = PretrainTask(train, val, cfg, enc_cfg, train_electrodes=train_el,
                        val_electrodes=val_el)
    fit_task(task, out, config=cfg.loop_config(), resume=resume,
             device=device if device is not None else cfg.device,
             epoch_callback=epoch_callback)
    return Path(out).expanduser() / "model"


@verbose
def import_labram_checkpoint(checkpoint, out, *, patch_size=200, conv_stride=8, layout="auto",
                             overwrite=False, verbose=None, **sizes) -> Path:
    """Write a user's local LaBraM checkpoint as an encoder folder the generator takes.

    The weights are read safely, their keys mapped and checked, the sizes inferred
    (:func:`~neurofuse.nn.labram_checkpoint.labram_from_checkpoint`), and the encoder saved
    in the format :func:`pretrain_encoder` writes, so that :func:`load_encoder`,
    :func:`~neurofuse.systems.eeg2meg.trainer.fit` (``encoder=``) and
    ``neurofuse eeg2meg fit|evaluate --encoder`` take it in place of our own pretraining.

    Parameters
    ----------
    checkpoint : path-like
        A local ``.pth``/``.pt``/``.bin``/``.ckpt``/``.safetensors`` file (the original
        repository's, braindecode's or neurofuse's key layout; nothing is downloaded).
    out : path-like
        Output folder; the encoder goes to ``out/model``.
    patch_size : int
        Samples per patch the checkpoint was trained with (not stored in weights; LaBraM's
        200, i.e. 1 s at its 200 Hz). The generator's epochs must hold a multiple of it.
    conv_stride : int
        Stride of the first patch convolution (LaBraM's 8).
    layout : 'auto' | 'labram' | 'braindecode' | 'neurofuse'
        Key layout of the checkpoint.
    overwrite : bool
        Replace an existing ``out/model``.
    verbose : bool | str | None
        Log level for this call.
    **sizes
        :class:`~neurofuse.nn.labram.LaBraMConfig` fields that override the inferred ones
        (e.g. ``n_heads`` for a checkpoint without q/k norms).

    Returns
    -------
    path : Path
        ``out/model``. Its ``model.json`` records, under ``pretraining``, the checkpoint's
        file name, SHA-256 and key layout.

    Notes
    -----
    The generator reads every EEG channel through the encoder without LaBraM's electrode
    embedding (it learns a channel embedding of its own), as it does with our pretraining.
    LaBraM was pretrained on EEG at 200 Hz; resample the EEG to the rate the checkpoint
    expects.
    """
    from ...nn.labram_checkpoint import labram_from_checkpoint

    path = Path(checkpoint).expanduser()
    model = Path(out).expanduser() / "model"
    if model.exists() and not overwrite:  # before reading a large file
        raise FileExistsError(f"The encoder folder '{model}' already exists: pass "
                              "overwrite=True (--overwrite) to replace it, or another out.")
    encoder, info = labram_from_checkpoint(path, patch_size=patch_size, conv_stride=conv_stride,
                                           layout=layout, return_info=True, **sizes)
    used = info["layout"]
    save_model_folder(model, encoder, {
        "format": ENCODER_FORMAT, "format_version": ENCODER_FORMAT_VERSION,
        "config": encoder.config.to_dict(),
        "pretraining": {"source": "checkpoint", "file": path.name, "sha256": hash_file(path),
                        "layout": used}}, overwrite=overwrite)
    logger.info("Imported the LaBraM checkpoint '%s' (%s layout, %d tensors not used by the "
                "encoder): %s", path, used, len(info["dropped"]), model)
    return model


def load_encoder(path, *, frozen=True, return_meta=False):
    """Read an encoder written by :func:`pretrain_encoder`.

    Parameters
    ----------
    path : path-like
        The model folder (``out/model``) or the pretraining output folder ``out``.
    frozen : bool
        Freeze it (:func:`~neurofuse.nn.labram.freeze`: no gradients, eval mode), as System
        B's generator uses it.
    return_meta : bool
        Also return ``model.json`` (sizes, and under ``pretraining`` the data's fingerprint,
        sequence counts, target and mask ratio).

    Returns
    -------
    encoder : LaBraM
        On the CPU.
    meta : dict
        Only with ``return_meta``.
    """
    path = Path(path).expanduser()
    if not (path / "model.json").is_file() and (path / "model" / "model.json").is_file():
        path = path / "model"
    meta, state = read_model_folder(path, formats=[ENCODER_FORMAT],
                                    version=ENCODER_FORMAT_VERSION,
                                    made_by="neurofuse.systems.eeg2meg.pretrain."
                                            "pretrain_encoder")
    encoder = LaBraM(LaBraMConfig.from_dict(meta["config"]))
    encoder.load_state_dict(state)
    encoder = freeze(encoder) if frozen else encoder.eval()
    return (encoder, meta) if return_meta else encoder

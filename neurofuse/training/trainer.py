"""Training the joint model (paper §2.6): curriculum, early stopping, checkpoints, resume, DDP.

:func:`fit` trains a :class:`~neurofuse.models.joint.JointModel` on a dataset store:

* 40-s pieces, batch 8, loss on the last 20 s (:mod:`neurofuse.training.data`);
* ``L = a1 (1 - r_MEG) + a2 (1 - r_fMRI) + a3 L_smooth`` with a1 = 1, a3 = 1e-4 and a2 = 0 for
  the first ``meg_first_epochs`` (20) epochs, then 1 (:mod:`neurofuse.training.losses`);
  MEG and fMRI terms are weighted by each target's repeatability;
* AdamW, gradient clipping, early stopping on the validation stories with the same loss
  (the early-stopping memory restarts when the curriculum switches a2 on, since the loss
  changes meaning then);
* a checkpoint every epoch in ``out/checkpoints/epoch-NNNN/`` (written atomically; the
  ``out/checkpoints/latest`` pointer moves only once the new one is complete, so a kill at any
  moment leaves the last good checkpoint readable); ``resume=True`` continues exactly (model,
  optimizer, scheduler, torch RNG, epoch, curriculum, early-stopping state);
* data-parallel over processes started by ``torchrun`` (DDP; gloo on CPU, NCCL on GPU).

The best model (lowest validation loss) is saved in ``out/model/`` and every epoch is logged
to ``out/history.csv``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from .._checks import _check_keys, _check_option, _check_positive
from .._io import atomic_dir, atomic_path, write_json
from .._logging import logger, progress_enabled, verbose
from .data import PieceLoader, loss_weights, make_pieces
from .losses import joint_loss

CHECKPOINT_FORMAT_VERSION = 1


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (paper §2.6 defaults). Every field is overridable.

    Parameters
    ----------
    piece_seconds, loss_seconds : float
        Piece length and the final part of it that enters the loss (40 s, 20 s).
    batch_size : int
        Global batch size in pieces (8), split across data-parallel processes.
    max_epochs : int
        Upper bound on epochs.
    meg_first_epochs : int
        Epochs with ``alpha_fmri = 0`` before the fMRI term is switched on (20).
    alpha_meg, alpha_fmri, alpha_smooth : float
        a1 (1), a2 after the curriculum (1), a3 (1e-4).
    lr, weight_decay : float
        AdamW settings.
    grad_clip : float | None
        Max global gradient norm.
    scheduler : 'constant' | 'cosine'
        Learning-rate schedule over ``max_epochs``.
    patience : int
        Epochs without validation improvement before stopping.
    loss_weighting : 'repeatability' | 'uniform'
        Per-target weights of the correlation terms.
    seed : int
        Initialisation, dropout and shuffling seed.
    mixed_precision : bool
        bf16 autocast on CUDA (ignored on CPU).
    block_size : int
        Query block of the windowed attention.
    """

    piece_seconds: float = 40.0
    loss_seconds: float = 20.0
    batch_size: int = 8
    max_epochs: int = 100
    meg_first_epochs: int = 20
    alpha_meg: float = 1.0
    alpha_fmri: float = 1.0
    alpha_smooth: float = 1e-4
    lr: float = 3e-4
    weight_decay: float = 0.01
    grad_clip: float | None = 1.0
    scheduler: str = "constant"
    patience: int = 10
    loss_weighting: str = "repeatability"
    seed: int = 0
    mixed_precision: bool = False
    block_size: int = 128

    def __post_init__(self):
        for name in ("batch_size", "max_epochs", "patience", "block_size"):
            val = getattr(self, name)
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise ValueError(f"TrainConfig.{name} must be an int >= 1, got {val!r}.")
        if not isinstance(self.meg_first_epochs, int) or self.meg_first_epochs < 0:
            raise ValueError(f"TrainConfig.meg_first_epochs must be an int >= 0, got "
                             f"{self.meg_first_epochs!r}.")
        for name in ("piece_seconds", "loss_seconds", "lr"):
            _check_positive(f"TrainConfig.{name}", getattr(self, name))
        for name in ("alpha_meg", "alpha_fmri", "alpha_smooth", "weight_decay"):
            _check_positive(f"TrainConfig.{name}", getattr(self, name), allow_zero=True)
        if self.grad_clip is not None:
            _check_positive("TrainConfig.grad_clip", self.grad_clip)
        _check_option("TrainConfig.scheduler", self.scheduler, ["constant", "cosine"])
        _check_option("TrainConfig.loss_weighting", self.loss_weighting,
                      ["repeatability", "uniform"])

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        _check_keys("training setting (TrainConfig)", values,
                    [f.name for f in dataclasses.fields(cls)])
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def alphas(self, epoch: int) -> tuple:
        """(a1, a2, a3) in ``epoch`` (0-based): the MEG-first curriculum."""
        a2 = 0.0 if epoch < self.meg_first_epochs else self.alpha_fmri
        return self.alpha_meg, a2, self.alpha_smooth


# ---------------------------------------------------------------------------- helpers


def _dist():
    """(rank, world_size, is_distributed) of the current process group."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size(), True
    return 0, 1, False


def _to_device(batch, device):
    out = {"features": torch.as_tensor(batch["features"], device=device),
           "loss_start": torch.as_tensor(batch["loss_start"], device=device)}
    for kind in ("meg", "fmri"):
        out[kind] = {s: (torch.as_tensor(a, device=device), torch.as_tensor(r, device=device))
                     for s, (a, r) in batch[kind].items()}
    return out


def _weights_tensors(weights, device):
    return {k: torch.as_tensor(v, dtype=torch.float32, device=device) for k, v in weights.items()}


def _flatten_optimizer(opt_state: dict):
    """Split an optimizer state dict into tensors (for safetensors) and JSON."""
    tensors, meta = {}, {"param_groups": opt_state["param_groups"], "state": {}}
    for idx, st in opt_state["state"].items():
        meta["state"][str(idx)] = {}
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"opt.{idx}.{key}"] = val.detach().cpu().contiguous()
                meta["state"][str(idx)][key] = "__tensor__"
            else:
                meta["state"][str(idx)][key] = val
    return tensors, meta


def _unflatten_optimizer(tensors, meta):
    state = {}
    for idx, st in meta["state"].items():
        state[int(idx)] = {k: (tensors[f"opt.{idx}.{k}"] if v == "__tensor__" else v)
                           for k, v in st.items()}
    return {"state": state, "param_groups": meta["param_groups"]}


def _rng_state():
    st = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            st[f"torch_cuda{i}"] = s
    return st


def _set_rng_state(tensors):
    torch.set_rng_state(tensors["torch_cpu"])
    if torch.cuda.is_available():
        cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda")]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)


# ---------------------------------------------------------------------------- checkpoints


def save_checkpoint(ckpt_dir, *, model, optimizer, scheduler, trainer_state, train_config):
    """Write ``ckpt_dir/epoch-NNNN`` atomically, then move the ``latest`` pointer to it."""
    from safetensors.torch import save_file

    ckpt_dir = Path(ckpt_dir)
    name = f"epoch-{trainer_state['epoch']:04d}"
    tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    tensors.update({f"model.{k}": v.cpu() for k, v in model.flat_state().items()})
    tensors.update({f"rng.{k}": v for k, v in _rng_state().items()})
    with atomic_dir(ckpt_dir / name, overwrite=True, what="checkpoint") as tmp:
        save_file(tensors, str(tmp / "state.safetensors"))
        write_json(tmp / "state.json", {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "model_config": model.config_dict(),
            "train_config": train_config.to_dict(),
            "trainer": trainer_state,
            "optimizer": opt_meta,
            "scheduler": scheduler.state_dict(),
        })
    with atomic_path(ckpt_dir / "latest", what="checkpoint pointer") as tmp:
        tmp.write_text(name + "\n")
    # Older checkpoints go only after the pointer has moved.
    for old in ckpt_dir.glob("epoch-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return ckpt_dir / name


def load_checkpoint(ckpt_dir):
    """Read the checkpoint that ``ckpt_dir/latest`` points to: (tensors, meta)."""
    from safetensors.torch import load_file

    ckpt_dir = Path(ckpt_dir)
    pointer = ckpt_dir / "latest"
    if not pointer.is_file():
        raise FileNotFoundError(f"No checkpoint to resume from in '{ckpt_dir}' (no 'latest' "
                                "pointer). Start without --resume.")
    path = ckpt_dir / pointer.read_text().strip()
    meta = json.loads((path / "state.json").read_text())
    if meta.get("format_version", 0) > CHECKPOINT_FORMAT_VERSION:
        raise ValueError(f"Checkpoint '{path}' is from a newer neurofuse; upgrade to resume it.")
    return load_file(str(path / "state.safetensors")), meta


# ---------------------------------------------------------------------------- fit


@verbose
def fit(dataset, out, *, train_config=None, encoder_kwargs=None, resume=False, device=None,
        denoised_fmri=None, epoch_callback=None, verbose=None):
    """Train the joint model on a dataset store.

    Parameters
    ----------
    dataset : Dataset | path-like
        Opened with :func:`neurofuse.data.store.read_dataset` if a path.
    out : path-like
        Output folder: ``model/`` (best model), ``checkpoints/``, ``history.csv``,
        ``config.json``.
    train_config : TrainConfig | dict | None
        Training settings (unknown keys raise).
    encoder_kwargs : dict | None
        :class:`~neurofuse.models.encoder.StimulusEncoder` sizes (paper defaults otherwise).
    resume : bool
        Continue from ``out/checkpoints`` exactly where it stopped.
    device : str | torch.device | None
        Defaults to CUDA (this process's local rank under torchrun) when available, else CPU.
    denoised_fmri : dict | None
        ``{subject: {story: array (n_sources, n_trs)}}``: training-story fMRI targets to use
        instead of the recordings, e.g. the fMRI ridge ceiling's predictions (paper footnote
        2). Validation always uses the recorded fMRI.
    epoch_callback : callable | None
        Called as ``epoch_callback(epoch, row)`` after each epoch (``row``: the history dict).
    verbose : bool | str | None

    Returns
    -------
    history : list of dict
        One row per epoch: losses, validation correlations, learning rate, seconds.
    """
    from tqdm.auto import tqdm

    from ..data.store import read_dataset
    from ..models.joint import JointModel

    if not hasattr(dataset, "splits"):
        dataset = read_dataset(dataset)
    cfg = train_config if isinstance(train_config, TrainConfig) else \
        TrainConfig.from_dict(dict(train_config or {}))
    rank, world, distributed = _dist()
    if device is None:
        if torch.cuda.is_available():
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        else:
            device = torch.device("cpu")
    device = torch.device(device)
    out = Path(out).expanduser()
    ckpt_dir = out / "checkpoints"
    if not resume and rank == 0 and (out / "checkpoints" / "latest").is_file():
        raise FileExistsError(f"'{out}' already holds a training run. Pass resume=True "
                              "(--resume) to continue it, or choose another --out.")

    meg_subs = [s for s in dataset.subjects if "meg" in dataset.modalities(s)]
    fmri_subs = [s for s in dataset.subjects if "fmri" in dataset.modalities(s)]
    train_stories = dataset.splits.get("train", [])
    val_stories = dataset.splits.get("val", [])
    if not train_stories:
        raise ValueError("The dataset has no training stories (split 'train').")
    torch.manual_seed(cfg.seed)
    enc_kwargs = {"block_size": cfg.block_size, **(encoder_kwargs or {})}
    model = JointModel.from_dataset(dataset, encoder_kwargs=enc_kwargs).to(device)
    weights = {}
    for kind, subs in (("meg", meg_subs), ("fmri", fmri_subs)):
        for s in subs:
            weights[(kind, s)] = loss_weights(dataset, s, kind, mode=cfg.loss_weighting)
    weights = _weights_tensors(weights, device)

    train = PieceLoader(dataset, make_pieces(dataset, train_stories, piece_seconds=cfg.piece_seconds,
                                             loss_seconds=cfg.loss_seconds),
                        batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed, rank=rank,
                        world_size=world, meg_subjects=meg_subs, fmri_subjects=fmri_subs,
                        fmri_targets=denoised_fmri)
    val = PieceLoader(dataset, make_pieces(dataset, val_stories, piece_seconds=cfg.piece_seconds,
                                           loss_seconds=cfg.loss_seconds),
                      batch_size=cfg.batch_size, shuffle=False, rank=rank, world_size=world,
                      meg_subjects=meg_subs, fmri_subjects=fmri_subs)
    if len(val.pieces) == 0:
        logger.warning("No validation pieces: early stopping uses the training loss.")

    ddp_model = model
    if distributed:
        # Heads of subjects absent from a batch (and the HRFs in the MEG-first phase) get no
        # gradient, so DDP must look for unused parameters. Buffers are fixed physics built
        # identically from the dataset on every rank (and sparse CSR morphs, which DDP cannot
        # broadcast), so they are not synchronised.
        with warnings.catch_warnings():  # torch >= 2.12 deprecates broadcast_buffers but
            # its replacement still syncs buffers at construction, which sparse ones cannot.
            warnings.filterwarnings("ignore", ".*broadcast_buffers", FutureWarning)
            ddp_model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=True, broadcast_buffers=False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.scheduler == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.max_epochs)
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)
    state = {"epoch": 0, "best_val": math.inf, "bad_epochs": 0, "phase_alpha_fmri": None,
             "history": [], "stopped": False}
    if resume:
        tensors, meta = load_checkpoint(ckpt_dir)
        if meta["model_config"] != json.loads(json.dumps(model.config_dict())):
            raise ValueError("Incompatible checkpoint: it was made for another model or dataset "
                             "(different sizes or subjects). Use a fresh --out.")
        model.load_flat_state({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
        scheduler.load_state_dict(meta["scheduler"])
        _set_rng_state({k[4:]: v for k, v in tensors.items() if k.startswith("rng.")})
        state = meta["trainer"]
        logger.info("Resuming after epoch %d", state["epoch"])
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", {"train": cfg.to_dict(), "model": model.config_dict(),
                                         "dataset": str(dataset.path)})

    spt = int(round(dataset.tr * dataset.sfreq))
    amp = (torch.autocast("cuda", dtype=torch.bfloat16) if cfg.mixed_precision and
           device.type == "cuda" else contextlib.nullcontext())

    def run_batch(batch, alphas):
        b = _to_device(batch, device)
        with amp:
            # Heads whose loss weight is 0 are not evaluated (the MEG-first phase skips fMRI).
            pred = ddp_model(b["features"], meg=list(b["meg"]) if alphas[0] else [],
                             fmri=list(b["fmri"]) if alphas[1] else [])
        pred.sources, pred.meg, pred.fmri = (pred.sources.float(),
                                             {k: v.float() for k, v in pred.meg.items()},
                                             {k: v.float() for k, v in pred.fmri.items()})
        return joint_loss(pred, b, weights, alpha_meg=alphas[0], alpha_fmri=alphas[1],
                          alpha_smooth=alphas[2], samples_per_tr=spt)

    bar = tqdm(total=cfg.max_epochs, initial=state["epoch"], desc="epochs",
               disable=not progress_enabled() or rank != 0)
    while state["epoch"] < cfg.max_epochs and not state["stopped"]:
        epoch = state["epoch"]
        alphas = cfg.alphas(epoch)
        if state["phase_alpha_fmri"] != alphas[1]:  # curriculum switch: new loss, new memory
            state["phase_alpha_fmri"], state["best_val"], state["bad_epochs"] = alphas[1], math.inf, 0
        t0 = time.perf_counter()
        model.train()
        sums, n_batches = {"total": 0.0, "meg": 0.0, "fmri": 0.0, "smooth": 0.0}, 0
        for batch in train.epoch(epoch):
            terms = run_batch(batch, alphas)
            optimizer.zero_grad(set_to_none=True)
            # weight = local pieces * world / global pieces (1 on one process): DDP's mean of
            # the weighted local means is the mean over the global batch, even or not.
            (terms.total * batch["weight"]).backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            if batch["n_real"]:
                for k, v in terms.as_floats().items():
                    sums[k] += v
                n_batches += 1
        scheduler.step()
        row = {"epoch": epoch + 1, **{f"train_{k}": v / max(n_batches, 1) for k, v in sums.items()},
               "alpha_fmri": alphas[1], "lr": optimizer.param_groups[0]["lr"]}
        row.update(_validate(model, val, run_batch, alphas, distributed))
        row["seconds"] = time.perf_counter() - t0
        monitor = row.get("val_total", row["train_total"])
        improved = monitor < state["best_val"] - 1e-6
        if improved:
            state["best_val"], state["bad_epochs"] = monitor, 0
        else:
            state["bad_epochs"] += 1
        # Stop only once the fMRI phase is reached (or there is no fMRI to wait for).
        in_final_phase = alphas[1] == cfg.alpha_fmri or not fmri_subs
        if state["bad_epochs"] >= cfg.patience and in_final_phase:
            state["stopped"] = True
        state["epoch"] = epoch + 1
        state["history"].append(row)
        if rank == 0:
            if improved:
                model.save(out / "model", overwrite=True)
            _write_history(out / "history.csv", state["history"])
            save_checkpoint(ckpt_dir, model=model, optimizer=optimizer, scheduler=scheduler,
                            trainer_state=state, train_config=cfg)
        if distributed:
            torch.distributed.barrier()
        bar.update(1)
        bar.set_postfix({k: f"{row[k]:.3f}" for k in ("train_total", "val_total", "val_meg_r",
                                                       "val_fmri_r") if k in row})
        logger.info("epoch %d: %s", epoch + 1, ", ".join(
            f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"))
        if epoch_callback is not None:
            epoch_callback(epoch, row)
    bar.close()
    if rank == 0 and not (out / "model").exists():
        model.save(out / "model", overwrite=True)
    return state["history"]


@torch.no_grad()
def _validate(model, loader, run_batch, alphas, distributed):
    """Validation loss (same format as training) and mean correlations."""
    if not loader.pieces:
        return {}
    model.eval()
    sums = torch.zeros(4)
    n = torch.zeros(1)
    for batch in loader.epoch(0):
        terms = run_batch(batch, alphas)
        b = batch["n_real"]  # 0 for a stand-in piece (see PieceLoader.epoch)
        sums += torch.tensor([terms.total, terms.meg, terms.fmri, terms.smooth]).float() * b
        n += b
    if distributed:
        torch.distributed.all_reduce(sums)
        torch.distributed.all_reduce(n)
    total, meg, fmri, smooth = (sums / n.clamp_min(1)).tolist()
    out = {"val_total": total, "val_smooth": smooth}
    # 1 - weighted mean r per modality (computed with the modality switched on).
    out["val_meg_r"] = 1.0 - meg
    if alphas[1] > 0:
        out["val_fmri_r"] = 1.0 - fmri
    return out


def _write_history(path, history):
    keys = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    with atomic_path(path, what="training log") as tmp:
        tmp.write_text(buf.getvalue())


#: Named training set-ups: ``train`` holds TrainConfig fields, ``encoder`` StimulusEncoder sizes.
FIT_PRESETS = {
    # The paper's model and schedule (§2.2, §2.6).
    "paper": {"train": {}, "encoder": {}},
    # A small model that learns the demo study on 2 CPU cores in a few minutes. Its source
    # layer is smoothed (15 mm FWHM, not in the paper): with the demo's 14 minutes of training
    # stories per subject, unsmoothed per-source weights fit noise. 15 mm had the lowest
    # validation loss of none / 10 / 15 / 20 mm on the demo study (docs/simulation-benchmark.md).
    "demo": {
        "train": {"max_epochs": 30, "meg_first_epochs": 10, "patience": 6, "lr": 1e-3},
        "encoder": {"d_model": 64, "n_layers": 2, "n_heads": 2, "d_ff": 128, "window": 250,
                    "dropout": 0.1, "source_fwhm": 15.0},
    },
    # Seconds: for tests.
    "tiny": {
        "train": {"max_epochs": 3, "meg_first_epochs": 1, "piece_seconds": 8.0,
                  "loss_seconds": 4.0, "batch_size": 4, "lr": 1e-3},
        "encoder": {"d_model": 16, "n_layers": 2, "n_heads": 2, "d_ff": 32, "window": 50,
                    "dropout": 0.1},
    },
}


def load_fit_config(config):
    """Resolve a training set-up into ``(TrainConfig, encoder_kwargs)``.

    Parameters
    ----------
    config : str | path-like | dict
        A preset name (``"paper"``, ``"demo"``, ``"tiny"``), a TOML/JSON file, or a dict, with
        optional keys ``preset`` (start from that preset), ``train`` (TrainConfig fields) and
        ``encoder`` (StimulusEncoder sizes). Unknown keys raise.
    """
    from ..models.encoder import EncoderConfig

    if isinstance(config, str) and config in FIT_PRESETS:
        config = {"preset": config}
    if not isinstance(config, dict):
        fname = Path(config).expanduser()
        if not fname.is_file():
            raise FileNotFoundError(f"Training config '{fname}' not found. Pass a preset name "
                                    f"({', '.join(FIT_PRESETS)}) or a .toml/.json file.")
        if fname.suffix.lower() == ".toml":
            import tomllib

            config = tomllib.loads(fname.read_text())
        else:
            config = json.loads(fname.read_text())
    config = dict(config)
    unknown = sorted(set(config) - {"preset", "train", "encoder"})
    if unknown:
        raise ValueError(f"Unknown training config section(s) {unknown}: expected 'preset', "
                         "'train' and 'encoder'.")
    base = FIT_PRESETS[_check_option("preset", config.get("preset", "paper"), list(FIT_PRESETS))]
    train = TrainConfig.from_dict({**base["train"], **config.get("train", {})})
    encoder = {**base["encoder"], **config.get("encoder", {})}
    EncoderConfig.from_dict(encoder)  # validates the keys now, not after loading data
    return train, encoder

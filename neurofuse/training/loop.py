"""The generic training loop: one :func:`fit_task` for every system.

It runs a :class:`~neurofuse.training.task.Task` (which knows the model, the batches and the
losses) and owns the rest:

* the device (CUDA -- this process's ``LOCAL_RANK`` under ``torchrun`` -- when available,
  else CPU), chosen and checked once here (:func:`neurofuse.training.device.select_device`);
* data parallelism over the processes of an initialised process group (DDP; the group is
  set up by the caller, e.g. the CLI under ``torchrun``);
* one or several optimizers (stepped in order for every batch, e.g. a GAN's discriminator
  then generator) and their schedulers (stepped once per epoch);
* gradient clipping (global norm over each optimizer's parameters) and optional bf16
  mixed precision on CUDA or CPU (:meth:`RunContext.autocast`; off by default);
* a checkpoint every epoch (:mod:`neurofuse.training.checkpoint`; atomic, safetensors + JSON)
  and ``resume=True`` that continues exactly (model, optimizers, schedulers, torch RNG, epoch,
  early-stopping memory, history);
* early stopping on the task's validation loss (:meth:`Task.monitor`) after ``patience``
  epochs without an improvement larger than ``min_delta``, not before ``min_epochs`` epochs
  nor while :meth:`~Task.may_stop` says no; the memory restarts when the task's
  :meth:`~Task.phase` changes. :func:`replay_early_stopping` applies the same rule to a
  recorded run;
* the best model in ``out/model/``, one history row per epoch in ``out/history.csv``, and a
  progress bar;
* guards that stop training with :class:`TrainingDivergedError` rather than save a broken
  model: a non-finite training loss (checked every step, before the backward pass), a
  non-finite weight (checked after every epoch) or a non-finite validation number; and an
  epoch without a single training batch is a ``ValueError``. What earlier epochs wrote
  (checkpoints, the best model, the history) is kept.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from .._checks import _check_finite, _check_int, _check_keys, _check_positive
from .._io import atomic_path, make_dir, write_json
from .._logging import logger, progress_enabled, verbose
from .checkpoint import load_checkpoint, restore_checkpoint, save_checkpoint
from .device import select_device
from .task import RunContext

__all__ = ["LoopConfig", "TrainingDivergedError", "fit_task", "replay_early_stopping",
           "select_device"]

_CAUSES = ("Likely causes: NaN or Inf values in the training data (a neurofuse store: run "
           "'neurofuse data info --check DATA', which names each one), or a learning rate too "
           "high for the data's scale (lower it, or set grad_clip).")


class TrainingDivergedError(FloatingPointError):
    """Training produced a non-finite loss, weight or validation number and was stopped."""


def _check_loss(loss, *, epoch, batch, optimizer, out):
    if not bool(torch.isfinite(loss.detach()).all()):
        raise TrainingDivergedError(
            f"Training stopped: the loss of optimizer '{optimizer}' is "
            f"{float(loss.detach().float().sum())} at epoch {epoch + 1}, batch {batch + 1}. "
            f"{_CAUSES} What earlier epochs wrote to '{out}' is kept.")


def _check_resumed_settings(saved, task, ckpt_dir, *, override, added):
    """Refuse to resume with training settings other than the checkpoint's."""
    now = task.config()
    if saved is None or now is None:
        return
    now = json.loads(json.dumps(now))
    # keys the checkpoint lacks were added by a later neurofuse: compared at the value every
    # earlier run had where the task names it (Task.added_later), else not compared
    saved = with_added_later(saved, added)
    changed = [k for k in sorted(saved) if saved[k] != now.get(k)
               and k not in task.resume_may_change]
    if not changed:
        return
    what = "; ".join(f"{k}: {saved[k]!r} in the checkpoint, {now.get(k)!r} now" for k in changed)
    if override:
        logger.warning("Resuming with changed training settings (override): %s", what)
        return
    raise ValueError(
        f"Cannot resume the run in '{ckpt_dir.parent}' with other training settings or data "
        f"than it was started with ({what}). Resume with the run's own settings and data, "
        "start a fresh --out, or resume with resume='override' to continue with the new "
        "settings anyway.")


def with_added_later(saved, added):
    """Fill the settings a later neurofuse added into a record written before them.

    The one rule by which a checkpoint or fit record written before a setting existed is
    compared (:attr:`Task.added_later <neurofuse.training.task.Task.added_later>`).

    Parameters
    ----------
    saved : dict | object
        A JSON config as recorded (a non-dict is returned as it is).
    added : dict
        The settings added later, with the value every earlier run had; its dicts are
        sections of ``saved`` (so a setting whose own value is a dict cannot be added).

    Returns
    -------
    filled : dict | object
        A copy of ``saved`` with ``added``'s leaves it lacks (JSON values), ``saved``
        winning; a section ``saved`` lacks stays absent.
    """
    if not (isinstance(saved, dict) and isinstance(added, dict)):
        return saved
    out = dict(saved)
    for k, v in added.items():
        if k in out:
            out[k] = with_added_later(out[k], v)
        elif not isinstance(v, dict):
            out[k] = json.loads(json.dumps(v))  # as a record holds it (a tuple: a list)
    return out


def _added_later(task):
    """``task.added_later`` checked: ``{"config": dict, "model_config": dict}`` (both kept)."""
    added = task.added_later
    if not (isinstance(added, dict) and set(added) <= {"config", "model_config"}
            and all(isinstance(v, dict) for v in added.values())):
        raise TypeError(f"'{type(task).__name__}.added_later' must be a dict {{'config': "
                        f"{{...}}, 'model_config': {{...}}}} of settings added later (the keys "
                        f"of Task.config and Task.model_config, with their old values); got "
                        f"{added!r}. Nest training settings under 'config'.")
    return {"config": added.get("config", {}), "model_config": added.get("model_config", {})}


def _differences(saved, now, limit=5):
    """``"key: <saved> in the checkpoint, <now> now"`` for the leaves where two JSON configs
    differ (nested keys dotted; the first ``limit``, then how many more)."""
    diffs, absent = [], object()

    def walk(a, b, path):
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b), key=str):
                walk(a.get(k, absent), b.get(k, absent), f"{path}.{k}" if path else str(k))
        elif a != b:
            a, b = ("absent" if v is absent else repr(v) for v in (a, b))
            diffs.append(f"{path or 'config'}: {a} in the checkpoint, {b} now")

    walk(saved, now, "")
    more = f"; and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return "; ".join(diffs[:limit]) + more


def _check_weights(model, *, epoch, out):
    bad = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise TrainingDivergedError(
            f"Training stopped: after epoch {epoch + 1} the weights {shown} hold NaN or Inf "
            f"(the loss was finite: an infinite gradient?). {_CAUSES} What earlier epochs "
            f"wrote to '{out}' is kept.")


@dataclass(frozen=True)
class LoopConfig:
    """Settings of the generic loop.

    Parameters
    ----------
    max_epochs : int
        Upper bound on epochs.
    patience : int | None
        Epochs without improvement of :meth:`Task.monitor` before stopping; None: never stop
        early.
    min_epochs : int
        Early stopping may end training only after this many epochs (0: from the first). A
        model can sit on a validation plateau for a while before it improves again (the
        joint model's does, on small data); the best epoch is still the one kept.
    min_delta : float
        Smallest decrease that counts as an improvement.
    grad_clip : float | None
        Max global gradient norm per optimizer step; None: no clipping.
    mixed_precision : bool
        bf16 autocast (on CUDA or CPU: the device's autocast) for the forward passes the task
        wraps in ``ctx.autocast()``; parameters and optimizer states stay float32. Resume
        stays exact (bit for bit on the same device and thread count).
    seed : int
        Seed of torch's RNG, set just before :meth:`Task.setup`.
    """

    max_epochs: int = 100
    patience: int | None = 10
    min_epochs: int = 0
    min_delta: float = 1e-6
    grad_clip: float | None = None
    mixed_precision: bool = False
    seed: int = 0

    def __post_init__(self):
        _check_int("LoopConfig.max_epochs", self.max_epochs)
        if self.patience is not None:
            _check_int("LoopConfig.patience", self.patience)
        _check_int("LoopConfig.min_epochs", self.min_epochs, minimum=0)
        _check_positive("LoopConfig.min_delta", self.min_delta, allow_zero=True)
        if self.grad_clip is not None:
            _check_positive("LoopConfig.grad_clip", self.grad_clip)
        _check_int("LoopConfig.seed", self.seed, minimum=0)

    @classmethod
    def from_dict(cls, values: dict) -> LoopConfig:
        _check_keys("loop setting (LoopConfig)", values,
                    [f.name for f in dataclasses.fields(cls)])
        return cls(**values)


def _dist():
    """(rank, world_size, is_distributed) of the current process group."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size(), True
    return 0, 1, False


def _named(value):
    """A dict of named optimizers/schedulers from a dict, one object, or None."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)
    return {"main": value}


def _wrap_ddp(model, device, options):
    with warnings.catch_warnings():  # torch >= 2.12 deprecates broadcast_buffers but its
        # replacement still syncs buffers at construction, which sparse ones cannot.
        warnings.filterwarnings("ignore", ".*broadcast_buffers", FutureWarning)
        return torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, **options)


def _params(optimizer):
    return [p for group in optimizer.param_groups for p in group["params"]]


@verbose
def fit_task(task, out, *, config=None, resume=False, device=None, epoch_callback=None,
             verbose=None):
    """Train ``task``'s model, writing checkpoints, the best model and the history to ``out``.

    Parameters
    ----------
    task : Task
        What to train (see :mod:`neurofuse.training.task`).
    out : path-like
        Output folder: ``model/`` (best model), ``checkpoints/``, ``history.csv`` and the
        task's ``config.json``.
    config : LoopConfig | dict | None
        Loop settings (unknown keys raise).
    resume : bool | ``"override"``
        Continue from ``out/checkpoints`` exactly where it stopped. Training settings that
        differ from the checkpoint's (:meth:`Task.config`, the task's data fingerprint
        included) are refused, naming each, but those of :attr:`Task.resume_may_change`
        (e.g. the number of epochs); ``"override"`` resumes with the new settings anyway
        (logged). A run early stopping ended goes on if the current ``patience`` and
        ``min_epochs`` would not have stopped it there (exactly as a run started with them).
    device : str | torch.device | None
        See :func:`select_device`.
    epoch_callback : callable | None
        Called as ``epoch_callback(epoch, row)`` after each epoch (``row``: the history dict).
    verbose : bool | str | None

    Returns
    -------
    history : list of dict
        One row per epoch: ``epoch``, ``train_<key>`` means of the steps' logs, the task's
        :meth:`~Task.epoch_info`, the learning rate(s) (``lr``, or ``lr_<name>`` with several
        optimizers), the task's validation numbers, and ``seconds``.
    """
    from tqdm.auto import tqdm

    cfg = config if isinstance(config, LoopConfig) else LoopConfig.from_dict(dict(config or {}))
    rank, world, distributed = _dist()
    device = select_device(device)
    out = Path(out).expanduser()
    ckpt_dir = out / "checkpoints"
    if not resume and rank == 0 and (ckpt_dir / "latest").is_file():
        raise FileExistsError(f"'{out}' already holds a training run. Pass resume=True "
                              "(--resume) to continue it, or choose another --out.")

    if resume and not (ckpt_dir / "latest").is_file():
        # Killed before its first checkpoint: there is nothing to lose, and a fresh start is
        # what the interrupted run would have done (same seed, same weights).
        logger.warning("Nothing to resume in '%s' (no checkpoint yet: the run stopped before "
                       "its first epoch ended); starting from the beginning.", out)
        resume = False
    added = _added_later(task)  # a malformed one is an error before any work
    ctx = RunContext(device=device, rank=rank, world_size=world, distributed=distributed,
                     mixed_precision=cfg.mixed_precision)
    torch.manual_seed(cfg.seed)
    model = task.setup(ctx)
    ctx.module = model
    ctx.model = _wrap_ddp(model, device, task.ddp_options) if distributed else model
    optimizers, schedulers = task.configure_optimizers(model)
    optimizers, schedulers = _named(optimizers), _named(schedulers)
    if not optimizers:
        raise ValueError("The task's configure_optimizers returned no optimizer.")
    state = {"epoch": 0, "best_val": math.inf, "bad_epochs": 0, "phase": None,
             "history": [], "stopped": False}
    if resume:
        tensors, meta = load_checkpoint(ckpt_dir)
        now = json.loads(json.dumps(task.model_config(model)))
        saved = with_added_later(meta["model_config"], added["model_config"])
        if saved != now:
            raise ValueError("Incompatible checkpoint: it was made for another model or dataset "
                             f"({_differences(saved, now)}). Use a fresh --out, "
                             "or resume with the run's own settings.")
        _check_resumed_settings(meta.get("config"), task, ckpt_dir, added=added["config"],
                                override=resume == "override")
        task.load_model_state(model, {k[6:]: v for k, v in tensors.items()
                                      if k.startswith("model.")})
        restore_checkpoint(tensors, meta, optimizers=optimizers, schedulers=schedulers)
        state = meta["trainer"]
        if state["stopped"] and not _stops(state, state["epoch"] - 1, cfg,
                                           task.may_stop(state["epoch"] - 1)):
            logger.info("The run stopped early after epoch %d; the current settings "
                        "(patience %s, min_epochs %d) would not have stopped it: %s.",
                        state["epoch"], cfg.patience, cfg.min_epochs,
                        "it goes on" if state["epoch"] < cfg.max_epochs
                        else f"but max_epochs ({cfg.max_epochs}) is reached")
            state["stopped"] = False
        logger.info("Resuming after epoch %d", state["epoch"])
    run_config = task.run_config(model)
    if rank == 0:
        make_dir(out, what="training output folder")
        if run_config is not None:
            write_json(out / "config.json", run_config, what="run settings")

    bar = tqdm(total=cfg.max_epochs, initial=state["epoch"], desc="epochs",
               disable=not progress_enabled() or rank != 0)
    while state["epoch"] < cfg.max_epochs and not state["stopped"]:
        epoch = ctx.epoch = state["epoch"]
        phase = task.phase(epoch)
        if state["phase"] != phase:  # a new phase: new loss, new early-stopping memory
            state["phase"], state["best_val"], state["bad_epochs"] = phase, math.inf, 0
        t0 = time.perf_counter()
        model.train()
        sums, n_batches, n_seen = dict.fromkeys(task.train_logs, 0.0), 0, 0
        for i_batch, batch in enumerate(task.train_batches(epoch)):
            counted = False
            n_seen += 1
            for name, optimizer in optimizers.items():
                loss, logs = task.training_step(ctx, batch, name)
                _check_loss(loss, epoch=epoch, batch=i_batch, optimizer=name, out=out)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(_params(optimizer), cfg.grad_clip)
                optimizer.step()
                if logs is not None:
                    for k, v in logs.items():
                        sums[k] = sums.get(k, 0.0) + v
                    counted = True
            n_batches += counted
        if not n_seen:
            raise ValueError(f"The task gave no training batch in epoch {epoch + 1}: there is "
                             f"nothing to train on. {task.no_batches_hint}".rstrip())
        _check_weights(model, epoch=epoch, out=out)
        for scheduler in schedulers.values():
            scheduler.step()
        row = {"epoch": epoch + 1, **{f"train_{k}": v / max(n_batches, 1) for k, v in sums.items()},
               **task.epoch_info(epoch)}
        if len(optimizers) == 1:
            row["lr"] = next(iter(optimizers.values())).param_groups[0]["lr"]
        else:
            row.update({f"lr_{k}": o.param_groups[0]["lr"] for k, o in optimizers.items()})
        model.eval()
        with torch.no_grad():
            row.update(task.validate(ctx, epoch))
        row["seconds"] = time.perf_counter() - t0
        monitor = task.monitor(row)
        if not math.isfinite(monitor):
            raise TrainingDivergedError(
                f"Training stopped: the number early stopping watches is {monitor} after epoch "
                f"{epoch + 1} (history row: {row}). With finite weights this points at NaN or "
                f"Inf values in the validation data. What earlier epochs wrote to '{out}' is "
                "kept.")
        improved = _early_stopping_step(state, monitor, epoch, cfg, task.may_stop(epoch))
        state["epoch"] = epoch + 1
        state["history"].append(row)
        if rank == 0:
            if improved:
                task.save_model(model, out / "model")
            _write_history(out / "history.csv", state["history"])
            save_checkpoint(ckpt_dir, model_state=task.model_state(model), optimizers=optimizers,
                            schedulers=schedulers, trainer_state=state,
                            model_config=task.model_config(model), config=task.config())
        if distributed:
            torch.distributed.barrier()
        bar.update(1)
        bar.set_postfix({k: f"{row[k]:.3f}" for k in task.progress_keys if k in row})
        logger.info("epoch %d: %s", epoch + 1, ", ".join(
            f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"))
        if epoch_callback is not None:
            epoch_callback(epoch, row)
    bar.close()
    if rank == 0 and not (out / "model").exists():
        task.save_model(model, out / "model")
    return state["history"]


def _stops(state, epoch, cfg, may_stop):
    """Whether early stopping ends training after ``epoch`` (0-based), given ``state``."""
    return (cfg.patience is not None and state["bad_epochs"] >= cfg.patience
            and epoch + 1 >= cfg.min_epochs and bool(may_stop))


def _early_stopping_step(state, monitor, epoch, cfg, may_stop):
    """Update ``state`` (best_val, bad_epochs, stopped) with ``epoch``'s monitored number;
    return whether it improved on the best so far. The one rule of :func:`fit_task` and
    :func:`replay_early_stopping`."""
    improved = monitor < state["best_val"] - cfg.min_delta
    if improved:
        state["best_val"], state["bad_epochs"] = monitor, 0
    else:
        state["bad_epochs"] += 1
    if _stops(state, epoch, cfg, may_stop):
        state["stopped"] = True
    return improved


def replay_early_stopping(monitor, *, config, phases=None, may_stop=None) -> dict:
    """Where :func:`fit_task` would stop on a recorded run, under other stopping settings.

    Training up to the stopping epoch does not depend on the stopping rule, so one run
    trained without early stopping tells where every rule would have stopped it and which
    epoch it would have kept (exactly, on the same device and thread count).

    Parameters
    ----------
    monitor : sequence of float, shape (n_epochs,)
        The number early stopping watches (:meth:`Task.monitor`), epoch by epoch.
    config : LoopConfig | dict
        The rule: ``patience``, ``min_epochs``, ``min_delta``, ``max_epochs``.
    phases : sequence | None, shape (n_epochs,)
        The task's :meth:`~Task.phase` of each epoch (a new phase restarts the memory).
    may_stop : sequence of bool | None, shape (n_epochs,)
        The task's :meth:`~Task.may_stop` of each epoch (default: always).

    Returns
    -------
    replay : dict
        ``{"epochs": trained, "best_epoch": kept (1-based), "best": its monitored number,
        "stopped": whether early stopping ended training}`` (``stopped`` as the loop's
        checkpoint records it: also True when it fires at the ``max_epochs``-th epoch). The
        record must reach the stop (or ``max_epochs``), else a ValueError says so; epochs
        past ``max_epochs`` are ignored.
    """
    cfg = config if isinstance(config, LoopConfig) else LoopConfig.from_dict(dict(config))
    monitor = [float(m) for m in _check_finite(
        "monitor", [float(m) for m in monitor], how_to_fix="fit_task stops a run whose "
        "monitored number is not finite (TrainingDivergedError), so no record of one holds "
        "it: pass the recorded epochs before it.")]
    n = len(monitor)
    phases = [None] * n if phases is None else list(phases)
    may_stop = [True] * n if may_stop is None else list(may_stop)
    if len(phases) != n or len(may_stop) != n:
        raise ValueError(f"'phases' ({len(phases)}) and 'may_stop' ({len(may_stop)}) must "
                         f"have one entry per epoch of 'monitor' ({n}).")
    state = {"best_val": math.inf, "bad_epochs": 0, "phase": None, "stopped": False}
    best_epoch, best = None, math.inf
    for epoch in range(min(n, cfg.max_epochs)):
        if state["phase"] != phases[epoch]:
            state["phase"], state["best_val"], state["bad_epochs"] = phases[epoch], math.inf, 0
        if _early_stopping_step(state, monitor[epoch], epoch, cfg, may_stop[epoch]):
            best_epoch, best = epoch + 1, monitor[epoch]
        if state["stopped"]:
            return {"epochs": epoch + 1, "best_epoch": best_epoch, "best": best,
                    "stopped": True}
    if n < cfg.max_epochs:
        raise ValueError(f"'monitor' holds {n} epochs and the rule (patience "
                         f"{cfg.patience}, min_epochs {cfg.min_epochs}) has not stopped by "
                         f"then: it cannot tell where training would end. Record a run of "
                         f"max_epochs ({cfg.max_epochs}) epochs without early stopping.")
    return {"epochs": cfg.max_epochs, "best_epoch": best_epoch, "best": best,
            "stopped": False}


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

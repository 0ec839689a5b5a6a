"""What one system trains: the task protocol of the generic training loop.

:func:`neurofuse.training.loop.fit_task` owns everything every system needs the same way
(device, data-parallel processes, optimiser steps, gradient clipping, mixed precision,
checkpoints and exact resume, early stopping, history, progress). A :class:`Task` owns what is
unique to one system: it builds the model and its data, yields the batches of an epoch, turns
a batch into a loss, validates, and says what to save.

The loop calls, in this order::

    task.setup(ctx) -> model                        # torch is seeded just before
    task.configure_optimizers(model) -> optimizers, schedulers
    for each epoch:
        task.phase(epoch)                           # a new phase resets early stopping
        for batch in task.train_batches(epoch):
            for name, optimizer in optimizers:      # in order (e.g. discriminator, generator)
                loss, logs = task.training_step(ctx, batch, name)
                zero_grad; loss.backward(); clip; optimizer.step()
        schedulers step
        row = {epoch, train_* means, **task.epoch_info(epoch), lr, **task.validate(ctx, epoch)}
        task.monitor(row) -> validation loss for early stopping (if task.may_stop(epoch))
        task.save_model(model, out / "model") when it improved; checkpoint
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch

__all__ = ["RunContext", "Task"]


@dataclass
class RunContext:
    """Where and how the loop runs; handed to the task's methods.

    Attributes
    ----------
    device : torch.device
        Where the model and the batches live.
    rank, world_size : int
        This process and the number of data-parallel processes (0 and 1 without DDP).
    distributed : bool
        Whether a process group is initialised.
    mixed_precision : bool
        Whether :meth:`autocast` switches bf16 autocast on (on CUDA and on CPU alike).
    model : torch.nn.Module | None
        The model to call in forward passes: the DDP wrapper under data parallelism (so
        gradients are averaged across processes), else the model itself.
    module : torch.nn.Module | None
        The model itself (for its parameters, ``train()``/``eval()``, saving).
    epoch : int
        The current epoch (0-based).
    """

    device: torch.device
    rank: int = 0
    world_size: int = 1
    distributed: bool = False
    mixed_precision: bool = False
    model: torch.nn.Module | None = field(default=None, repr=False)
    module: torch.nn.Module | None = field(default=None, repr=False)
    epoch: int = 0

    def autocast(self):
        """bf16 autocast on :attr:`device` when mixed precision is on, else a no-op context.

        On CUDA and on CPU alike: inside it, matmuls, linear layers and convolutions run in
        bfloat16 (torch's autocast op lists) while the parameters, their gradients and the
        optimizer states stay float32. Wrap the forward pass only; compute losses in float32
        (``.float()`` the outputs).
        """
        if self.mixed_precision:
            if not torch.amp.is_autocast_available(self.device.type):
                raise ValueError(f"mixed_precision=True needs bf16 autocast, which torch does "
                                 f"not offer on device type {self.device.type!r}; use a CUDA "
                                 "or CPU device, or set mixed_precision=False.")
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


class Task:
    """Base class of a system's training task (override what the system needs).

    Attributes
    ----------
    train_logs : tuple of str
        Keys of the training step's ``logs`` always reported (as ``train_<key>``, 0 when no
        batch reported them).
    progress_keys : tuple of str
        History columns shown on the progress bar.
    ddp_options : dict
        Keyword arguments of :class:`torch.nn.parallel.DistributedDataParallel`.
    no_batches_hint : str
        Appended to the error raised when an epoch yields no training batch: what in this
        system's data or settings leads there, and the fix.
    resume_may_change : tuple of str
        Keys of :meth:`config` a resumed run may change (e.g. train for more epochs).
    added_later : dict
        Settings added after runs were checkpointed, with the value every such run had:
        ``{"config": {key: value}, "model_config": {key: value or nested dict}}`` for keys of
        :meth:`config` and :meth:`model_config`. A checkpoint without one is compared as
        holding that value (:func:`~neurofuse.training.loop.with_added_later`), so it
        resumes under it and is refused under another.
    """

    train_logs: tuple = ()
    no_batches_hint: str = ""
    resume_may_change: tuple = ("max_epochs", "epochs", "patience", "min_epochs", "device")
    added_later: dict = {}
    progress_keys: tuple = ("train_loss", "val_loss")
    ddp_options: dict = {}

    # ---------------------------------------------------------------- required
    def setup(self, ctx: RunContext) -> torch.nn.Module:
        """Build the model on ``ctx.device`` and the data of this process; return the model."""
        raise NotImplementedError

    def configure_optimizers(self, model):
        """Return ``(optimizers, schedulers)``: dicts of named optimizers and schedulers
        (schedulers may be empty). Optimizers step in the order of the dict."""
        raise NotImplementedError

    def train_batches(self, epoch: int):
        """Yield the training batches of ``epoch`` (any objects :meth:`training_step` takes)."""
        raise NotImplementedError

    def training_step(self, ctx: RunContext, batch, optimizer: str):
        """Loss of ``batch`` for the optimizer named ``optimizer``.

        Returns
        -------
        loss : Tensor, shape ()
            What is backpropagated before that optimizer steps.
        logs : dict of str to float | None
            Numbers averaged over the epoch as ``train_<key>``; None leaves the batch out of
            the averages (e.g. a stand-in batch of a data-parallel process).
        """
        raise NotImplementedError

    # ---------------------------------------------------------------- optional
    def validate(self, ctx: RunContext, epoch: int) -> dict:
        """Validation numbers of ``epoch`` (run in eval mode without gradients)."""
        return {}

    def monitor(self, row: dict) -> float:
        """The number early stopping minimises, from the epoch's history row."""
        return row.get("val_loss", row.get("train_loss"))

    def phase(self, epoch: int):
        """A JSON-serialisable label of the loss in ``epoch`` (e.g. a curriculum stage).

        When it changes, the loss changes meaning and early stopping starts afresh.
        """
        return None

    def may_stop(self, epoch: int) -> bool:
        """Whether early stopping may end training after ``epoch``."""
        return True

    def epoch_info(self, epoch: int) -> dict:
        """Extra history columns of ``epoch`` (before the learning rates)."""
        return {}

    def model_state(self, model) -> dict:
        """The model's tensors for a checkpoint (dense)."""
        return {k: v.detach().contiguous() for k, v in model.state_dict().items()}

    def load_model_state(self, model, tensors: dict) -> None:
        """Inverse of :meth:`model_state`."""
        model.load_state_dict(tensors)

    def model_config(self, model) -> dict | None:
        """JSON description of the model; a checkpoint with another one is not resumed."""
        return None

    def config(self) -> dict | None:
        """JSON training settings stored in checkpoints (a resume with others is refused):
        include a fingerprint of the training data (e.g. ``"data"``)."""
        return None

    def run_config(self, model) -> dict | None:
        """What ``out/config.json`` records (None: no file)."""
        return None

    def save_model(self, model, path) -> None:
        """Write the (best) model to the folder ``path`` (overwriting it)."""
        from safetensors.torch import save_file

        from .._io import atomic_dir

        with atomic_dir(path, overwrite=True, what="model") as tmp:
            save_file({k: v.cpu() for k, v in self.model_state(model).items()},
                      str(tmp / "model.safetensors"))

"""The generic training loop shared by every system.

A system describes what it trains as a :class:`~neurofuse.training.task.Task` (model, batches,
losses, validation); :func:`~neurofuse.training.loop.fit_task` runs it: device, data-parallel
processes, optimisers, schedulers, gradient clipping, mixed precision, atomic safetensors
checkpoints with exact resume (:mod:`neurofuse.training.checkpoint`), early stopping, history
and progress bar.
"""

from .checkpoint import load_checkpoint, restore_checkpoint, save_checkpoint
from .device import available_devices, select_device
from .loop import LoopConfig, TrainingDivergedError, fit_task, replay_early_stopping
from .task import RunContext, Task

__all__ = ["LoopConfig", "RunContext", "Task", "TrainingDivergedError", "available_devices",
           "fit_task", "load_checkpoint", "replay_early_stopping", "restore_checkpoint",
           "save_checkpoint", "select_device"]

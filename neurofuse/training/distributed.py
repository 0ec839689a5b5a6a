"""Joining and leaving the process group of a data-parallel (DDP) run started by ``torchrun``.

``torchrun --nproc_per_node=N -m neurofuse.cli joint fit ...`` starts N processes and
describes the group in each one's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``). :func:`init_distributed` joins that group once, at the
edge (the command line), and chooses the process's device; the training loop then reads
rank and world size from :mod:`torch.distributed`. Without ``torchrun`` (``WORLD_SIZE``
unset or 1) nothing is initialised.
"""

from __future__ import annotations

import os
from typing import NamedTuple


class DistributedContext(NamedTuple):
    """Where this process stands in a (possibly one-process) run.

    Attributes
    ----------
    distributed : bool
        Whether this process joined a process group (and must call :func:`cleanup_distributed`).
    rank : int
        This process's rank (0 without a group).
    world_size : int
        Number of processes (1 without a group).
    device : torch.device
        The device this process trains on.
    """

    distributed: bool
    rank: int
    world_size: int
    device: object


def init_distributed(device=None, *, backend=None):
    """Join the process group that ``torchrun`` describes in the environment, if any.

    Parameters
    ----------
    device : str | torch.device | None
        Device of this process. Default: ``cuda:LOCAL_RANK`` when CUDA is available, else the
        CPU (:func:`neurofuse.training.device.select_device`).
    backend : str | None
        ``torch.distributed`` backend; default ``"nccl"`` when CUDA is available, else
        ``"gloo"``.

    Returns
    -------
    context : DistributedContext
        ``(distributed, rank, world_size, device)``.
    """
    import torch

    from .device import select_device

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = select_device(device)
    if not distributed:
        return DistributedContext(False, 0, 1, device)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL collectives run on the current device
    if not torch.distributed.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    return DistributedContext(True, torch.distributed.get_rank(),
                              torch.distributed.get_world_size(), device)


def cleanup_distributed():
    """Leave the process group :func:`init_distributed` joined (nothing when there is none)."""
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


__all__ = ["DistributedContext", "cleanup_distributed", "init_distributed"]

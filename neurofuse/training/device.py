"""The one place a torch device is chosen and checked: :func:`select_device`.

Every command line group (``--device``), the training loop and prediction go through it, so
``--device cuda`` on a CPU-only PyTorch, ``--device tpu`` or ``--device cuda:7`` on a machine
with two GPUs is one clear ``ValueError`` naming the parameter, the devices this machine has,
and the fix -- not a torch traceback minutes into a run.
"""

from __future__ import annotations

import os

import torch

__all__ = ["available_devices", "select_device"]

#: Device types neurofuse runs on (others that torch parses, e.g. ``meta``, are refused).
SUPPORTED = ("cpu", "cuda", "mps", "xpu")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _xpu_count() -> int:
    xpu = getattr(torch, "xpu", None)
    return xpu.device_count() if xpu is not None and xpu.is_available() else 0


def available_devices() -> list:
    """The devices this machine and this PyTorch build can run on.

    Returns
    -------
    devices : list of str
        ``"cpu"``, then ``"cuda:0"`` ... for each visible CUDA GPU, ``"mps"`` on Apple
        silicon, ``"xpu:0"`` ... for Intel GPUs.
    """
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        out.append("mps")
    out += [f"xpu:{i}" for i in range(_xpu_count())]
    return out


def _refuse(name, value, why, fix):
    raise ValueError(f"Invalid value for the '{name}' parameter: {value!r} {why} This machine "
                     f"can run on: {', '.join(available_devices())}. {fix}")


_FIX = ("Pass one of those (e.g. --device cpu), or leave the device out to use a CUDA GPU "
        "when there is one, else the CPU.")


def select_device(device=None, *, name="device") -> torch.device:
    """The torch device to run on, checked against what this machine has.

    Parameters
    ----------
    device : str | torch.device | None
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"xpu"``... None: CUDA when
        available (device ``LOCAL_RANK`` under ``torchrun``), else the CPU.
    name : str
        The parameter's name in error messages.

    Returns
    -------
    device : torch.device

    Raises
    ------
    ValueError
        For a string torch does not know, a device type neurofuse does not run on, or a
        device this machine lacks (CUDA on a CPU-only PyTorch build, a GPU index beyond the
        visible GPUs, MPS off Apple silicon); the message lists the available devices and
        says how to fix it.
    """
    if device is None:
        if torch.cuda.is_available():
            rank = int(os.environ.get("LOCAL_RANK", 0))
            if rank >= torch.cuda.device_count():
                raise ValueError(
                    f"This process has LOCAL_RANK {rank} but only {torch.cuda.device_count()} "
                    "CUDA GPU(s) are visible: start at most that many processes per node "
                    "(torchrun --nproc_per_node) or make more GPUs visible "
                    "(CUDA_VISIBLE_DEVICES).")
            return torch.device("cuda", rank)
        return torch.device("cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"'{name}' must be a str such as 'cpu' or 'cuda:0', a torch.device or "
                        f"None, got {type(device).__name__} ({device!r:.80}).")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        _refuse(name, device, "is not a device name PyTorch knows.", _FIX)
    if dev.type not in SUPPORTED:
        _refuse(name, device, f"is a '{dev.type}' device, which neurofuse does not run on "
                f"(it runs on {', '.join(SUPPORTED)}).", _FIX)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            if torch.version.cuda is None:
                _refuse(name, device, f"asks for a CUDA GPU, but this PyTorch "
                        f"({torch.__version__}) is a CPU-only build.",
                        "Pass --device cpu, or install a CUDA build of PyTorch "
                        "(https://pytorch.org/get-started/locally/) on a machine with a GPU.")
            _refuse(name, device, "asks for a CUDA GPU, but none is visible (no GPU, no driver, "
                    "or CUDA_VISIBLE_DEVICES hides them).",
                    "Pass --device cpu, or check nvidia-smi and CUDA_VISIBLE_DEVICES.")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            _refuse(name, device, f"does not exist: {count} CUDA GPU(s) are visible, numbered "
                    f"from 0 to {count - 1}.", "Pass one of those.")
    elif dev.type == "mps" and not _mps_available():
        _refuse(name, device, "asks for Apple's Metal (MPS) backend, which this machine or "
                "PyTorch build does not have.", _FIX)
    elif dev.type == "xpu":
        count = _xpu_count()
        if count == 0 or (dev.index is not None and dev.index >= count):
            _refuse(name, device, "asks for an Intel GPU (XPU) that this machine or PyTorch "
                    "build does not have.", _FIX)
    return dev

"""Training checkpoints: safetensors + JSON (no pickle), written atomically, for exact resume.

A checkpoint is a folder ``ckpt_dir/epoch-NNNN/`` with

``state.safetensors``
    ``model.<key>`` (the model's tensors), ``opt.<name>.<param index>.<key>`` (the tensors of
    each named optimizer's state, e.g. Adam's moments) and ``rng.<key>`` (torch's CPU and CUDA
    random-number-generator states).
``state.json``
    ``format_version``; ``checksums`` (``{"state.safetensors": hash}``, verified when the
    checkpoint is read: a damaged file is refused); ``model_config`` (what the model was built with: a resume with another
    model is refused); ``config`` (the training settings); ``trainer`` (the loop's state:
    epoch, early-stopping memory, history); ``optimizers`` (the non-tensor part of each
    optimizer's state dict: param groups, step counts); ``schedulers`` (their state dicts).

The folder is written under a temporary name and renamed when complete; only then does the
``ckpt_dir/latest`` pointer move to it, and only then are older checkpoints removed, so a kill
at any moment leaves the last good checkpoint readable.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from .._io import atomic_dir, atomic_path, check_file_hash, hash_file, read_config, write_json

__all__ = ["CHECKPOINT_FORMAT_VERSION", "load_checkpoint", "restore_checkpoint",
           "save_checkpoint"]

#: Version 2 names its optimizers and schedulers; version 1 (one optimizer, written by the
#: joint model's trainer before the generic loop existed) is converted when read.
CHECKPOINT_FORMAT_VERSION = 2


def _flatten_optimizer(name: str, opt_state: dict):
    """Split an optimizer state dict into tensors (for safetensors) and JSON."""
    tensors, meta = {}, {"param_groups": opt_state["param_groups"], "state": {}}
    for idx, st in opt_state["state"].items():
        meta["state"][str(idx)] = {}
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"opt.{name}.{idx}.{key}"] = val.detach().cpu().contiguous()
                meta["state"][str(idx)][key] = "__tensor__"
            else:
                meta["state"][str(idx)][key] = val
    return tensors, meta


def _unflatten_optimizer(name: str, tensors: dict, meta: dict) -> dict:
    state = {}
    for idx, st in meta["state"].items():
        state[int(idx)] = {k: (tensors[f"opt.{name}.{idx}.{k}"] if v == "__tensor__" else v)
                           for k, v in st.items()}
    return {"state": state, "param_groups": meta["param_groups"]}


def _rng_state() -> dict:
    st = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            st[f"torch_cuda{i}"] = s
    return st


def _set_rng_state(tensors: dict) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    if torch.cuda.is_available():
        cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda")]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(ckpt_dir, *, model_state, optimizers, schedulers=None, trainer_state,
                    model_config=None, config=None):
    """Write ``ckpt_dir/epoch-NNNN`` atomically, then move the ``latest`` pointer to it.

    Parameters
    ----------
    ckpt_dir : path-like
        Folder of the run's checkpoints.
    model_state : dict of str to Tensor
        The model's tensors (dense; safetensors stores no sparse layouts).
    optimizers : dict of str to torch.optim.Optimizer
        Named optimizers.
    schedulers : dict of str to LRScheduler | None
        Named learning-rate schedulers.
    trainer_state : dict
        JSON-serialisable loop state; ``trainer_state["epoch"]`` (int) names the folder.
    model_config, config : dict | None
        JSON-serialisable model description and training settings.

    Returns
    -------
    path : Path
        The new checkpoint folder.
    """
    from safetensors.torch import save_file

    ckpt_dir = Path(ckpt_dir)
    name = f"epoch-{trainer_state['epoch']:04d}"
    tensors, opt_meta = {}, {}
    for opt_name, opt in optimizers.items():
        opt_tensors, opt_meta[opt_name] = _flatten_optimizer(opt_name, opt.state_dict())
        tensors.update(opt_tensors)
    tensors.update({f"model.{k}": v.cpu() for k, v in model_state.items()})
    tensors.update({f"rng.{k}": v for k, v in _rng_state().items()})
    with atomic_dir(ckpt_dir / name, overwrite=True, what="checkpoint") as tmp:
        save_file(tensors, str(tmp / "state.safetensors"))
        write_json(tmp / "state.json", {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "checksums": {"state.safetensors": hash_file(tmp / "state.safetensors")},
            "model_config": model_config,
            "config": config,
            "trainer": trainer_state,
            "optimizers": opt_meta,
            "schedulers": {k: s.state_dict() for k, s in (schedulers or {}).items()},
        })
    with atomic_path(ckpt_dir / "latest", what="checkpoint pointer") as tmp:
        tmp.write_text(name + "\n")
    # Older checkpoints go only after the pointer has moved.
    for old in ckpt_dir.glob("epoch-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return ckpt_dir / name


def _from_version_1(tensors: dict, meta: dict):
    """A version-1 checkpoint (the joint model's single AdamW) in the version-2 layout."""
    tensors = {(f"opt.main.{k[4:]}" if k.startswith("opt.") else k): v
               for k, v in tensors.items()}
    trainer = dict(meta["trainer"])
    if "phase_alpha_fmri" in trainer:
        trainer["phase"] = trainer.pop("phase_alpha_fmri")
    meta = {"format_version": CHECKPOINT_FORMAT_VERSION, "model_config": meta["model_config"],
            "config": meta.get("train_config"), "trainer": trainer,
            "optimizers": {"main": meta["optimizer"]}, "schedulers": {"main": meta["scheduler"]}}
    return tensors, meta


def load_checkpoint(ckpt_dir):
    """Read the checkpoint that ``ckpt_dir/latest`` points to.

    Returns
    -------
    tensors : dict of str to Tensor
        ``model.*``, ``opt.*`` and ``rng.*`` tensors.
    meta : dict
        The contents of ``state.json`` (see the module docstring) but the checksums, verified.
    """
    from safetensors.torch import load_file

    ckpt_dir = Path(ckpt_dir)
    pointer = ckpt_dir / "latest"
    if not pointer.is_file():
        raise FileNotFoundError(f"No checkpoint to resume from in '{ckpt_dir}' (no 'latest' "
                                "pointer). Start without --resume.")
    path = ckpt_dir / pointer.read_text().strip()
    meta = read_config(path / "state.json", what="checkpoint record",
                       fix="the checkpoint is damaged: resume from an earlier one or start again")
    if meta.get("format_version", 0) > CHECKPOINT_FORMAT_VERSION:
        raise ValueError(f"Checkpoint '{path}' is from a newer neurofuse; upgrade to resume it.")
    check_file_hash(path / "state.safetensors", meta.pop("checksums", {}).get(
        "state.safetensors"), record=path / "state.json", what="checkpoint tensors")
    tensors = load_file(str(path / "state.safetensors"))
    if meta.get("format_version", 0) < 2:
        tensors, meta = _from_version_1(tensors, meta)
    return tensors, meta


def restore_checkpoint(tensors, meta, *, optimizers, schedulers=None):
    """Load the optimizers', schedulers' and RNG states of a checkpoint in place.

    The model's tensors (``model.*``) are the caller's to load.

    Parameters
    ----------
    tensors, meta
        From :func:`load_checkpoint`.
    optimizers, schedulers : dict
        Named as when the checkpoint was saved.
    """
    schedulers = schedulers or {}
    for what, given, saved in (("optimizers", optimizers, meta["optimizers"]),
                               ("schedulers", schedulers, meta["schedulers"])):
        if sorted(given) != sorted(saved):
            raise ValueError(f"Incompatible checkpoint: it holds the {what} {sorted(saved)}, "
                             f"this training uses {sorted(given)}. Use a fresh --out.")
    for name, opt in optimizers.items():
        opt.load_state_dict(_unflatten_optimizer(name, tensors, meta["optimizers"][name]))
    for name, sched in schedulers.items():
        sched.load_state_dict(meta["schedulers"][name])
    _set_rng_state({k[4:]: v for k, v in tensors.items() if k.startswith("rng.")})

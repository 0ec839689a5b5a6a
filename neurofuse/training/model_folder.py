"""What every trained model of a system shares: its folder and its training settings.

A *model folder* holds ``model.safetensors`` (the weights, no pickle) and ``model.json`` (what
the system needs to rebuild the network, its format and version, and a SHA-256 of the
weights checked on load). :func:`save_model_folder` writes one atomically and
:func:`read_model_folder` reads it back with every check (format, version, checksum).

:class:`AdamSettings` is the part of a system's ``TrainConfig`` dataclass that is the same
everywhere: Adam's betas, gradient clipping, device and bf16 flags checked alike, JSON round
trips and the generic loop's share (:class:`~neurofuse.training.loop.LoopConfig`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .._checks import _check_int, _check_keys, _check_positive
from .._io import atomic_dir, check_file_hash, hash_file, read_config, write_json
from .loop import LoopConfig

__all__ = ["AdamSettings", "read_model_folder", "save_model_folder"]

WEIGHTS = "model.safetensors"
DESCRIPTION = "model.json"


def save_model_folder(path, module, description, *, overwrite=False) -> Path:
    """Write ``module``'s weights and ``description`` into a model folder (atomically).

    Parameters
    ----------
    path : path-like
        The folder.
    module : torch.nn.Module
        Its ``state_dict()`` is saved (moved to the CPU, contiguous).
    description : dict
        JSON entries of ``model.json`` (``format``, ``format_version``, the configuration...);
        the weights' checksum is added under ``checksums``.
    overwrite : bool
        Replace an existing folder (only once the new one is complete).

    Returns
    -------
    path : Path
    """
    from safetensors.torch import save_file

    with atomic_dir(path, overwrite=overwrite, what="model") as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()},
                  str(tmp / WEIGHTS))
        write_json(tmp / DESCRIPTION, {**description,
                                       "checksums": {WEIGHTS: hash_file(tmp / WEIGHTS)}})
    return Path(path)


def read_model_folder(path, *, formats, version, made_by):
    """Read and check a folder written by :func:`save_model_folder`.

    Parameters
    ----------
    path : path-like
        The model folder.
    formats : list of str
        The ``format`` values this reader accepts.
    version : int
        The newest ``format_version`` this neurofuse reads.
    made_by : str
        What writes such folders, for messages (e.g. ``"the MEG2fMRI fit"``).

    Returns
    -------
    description : dict
        The contents of ``model.json``.
    state : dict of str to torch.Tensor
        The weights (on the CPU), verified against their checksum.
    """
    from safetensors.torch import load_file

    path = Path(path).expanduser()
    cfg_file = path / DESCRIPTION
    if not cfg_file.is_file():
        raise FileNotFoundError(f"'{path}' is not a neurofuse model folder (no {DESCRIPTION}). "
                                f"Pass the 'model' folder written by {made_by}.")
    meta = read_config(cfg_file, what="model description",
                       fix="the model folder is damaged: restore it or fit again")
    if meta.get("format") not in formats:
        expected = " or ".join(repr(f) for f in formats)
        raise ValueError(f"'{path}' holds a {meta.get('format')!r}, not a {expected} model.")
    if meta.get("format_version", 0) > version:
        raise ValueError(f"Model format v{meta['format_version']} is newer than this neurofuse "
                         f"supports (v{version}); upgrade neurofuse.")
    check_file_hash(path / WEIGHTS, meta.get("checksums", {}).get(WEIGHTS), record=cfg_file,
                    what="model weights")
    return meta, load_file(str(path / WEIGHTS))


class AdamSettings:
    """Shared checks and conversions of a ``TrainConfig`` dataclass that trains with Adam.

    The dataclass has the fields ``epochs``, ``patience``, ``grad_clip``, ``betas``, ``seed``,
    ``device`` and ``mixed_precision``, and calls :meth:`_check_adam_settings` from its
    ``__post_init__``.
    """

    def _check_adam_settings(self):
        _check_int("TrainConfig.seed", self.seed, minimum=0)
        if self.patience is not None:
            _check_int("TrainConfig.patience", self.patience)
        if self.grad_clip is not None:
            _check_positive("TrainConfig.grad_clip", self.grad_clip)
        betas = tuple(self.betas) if isinstance(self.betas, (list, tuple)) else None
        if betas is None or len(betas) != 2 or not all(
                isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
            raise ValueError("'TrainConfig.betas' must be two numbers in [0, 1), e.g. "
                             f"(0.9, 0.999), got {self.betas!r}.")
        object.__setattr__(self, "betas", tuple(float(b) for b in betas))
        if self.device is not None and not isinstance(self.device, str):
            raise TypeError(f"'TrainConfig.device' must be a str such as 'cpu' or 'cuda', or "
                            f"None, got {type(self.device).__name__}.")
        if not isinstance(self.mixed_precision, bool):
            raise TypeError(f"'TrainConfig.mixed_precision' must be a bool, got "
                            f"{self.mixed_precision!r}.")

    @classmethod
    def from_dict(cls, values: dict):
        """Build from a JSON/TOML dict (unknown keys raise)."""
        _check_keys("training setting (TrainConfig)", values,
                    [f.name for f in dataclasses.fields(cls)])
        return cls(**values)

    def to_dict(self) -> dict:
        """JSON-serialisable settings."""
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        return out

    def loop_config(self) -> LoopConfig:
        """The generic loop's share of these settings."""
        return LoopConfig(max_epochs=self.epochs, patience=self.patience,
                          grad_clip=self.grad_clip, mixed_precision=self.mixed_precision,
                          seed=self.seed)

"""Load a user's local LaBraM checkpoint into :class:`~neurofuse.nn.labram.LaBraM`, safely.

Nothing is downloaded: the user passes a file they have. ``.pth``/``.pt``/``.bin`` files are
read with ``torch.load(weights_only=True)`` (no arbitrary code runs; the only extra class
allowed is :class:`argparse.Namespace`, which the original repository stores next to the
weights), ``.safetensors`` files with safetensors.

Three key layouts are understood:

``"labram"``
    The original repository (https://github.com/935963004/LaBraM): the weights under
    ``"model"`` (or ``"module"``/``"state_dict"``), the pretraining model's encoder under the
    prefix ``student.`` (its ``lm_head``/``projection_head`` are dropped), convolutions as
    ``Conv2d`` weights of shape (out, in, 1, k), ``blocks.N.attn.qkv.weight``,
    ``blocks.N.attn.q_bias``/``v_bias``, ``q_norm``/``k_norm``, ``gamma_1``/``gamma_2``,
    ``pos_embed`` and ``time_embed``; a fine-tuned model's ``fc_norm`` becomes our final
    ``norm`` and its classifier ``head`` is dropped.
``"braindecode"``
    braindecode's ``Labram`` (without the learned patcher): ``patch_embed.temporal_conv.*``,
    ``position_embedding``, ``temporal_embedding``, ``blocks.N.mlp.0``/``mlp.2``,
    ``fc_norm``; its ``final_layer`` is dropped.
``"neurofuse"``
    Our own module's ``state_dict()``.

After the keys are mapped, the key set and every shape are checked against the module: a
mismatch raises :class:`LaBraMCheckpointError` naming the missing, unexpected and
mis-shaped keys and how to fix it (usually: build the module with the checkpoint's sizes,
which :func:`labram_from_checkpoint` infers).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from .._logging import logger, verbose
from .labram import LaBraM, LaBraMConfig

__all__ = ["LAYOUTS", "LaBraMCheckpointError", "convert_labram_state", "labram_from_checkpoint",
           "load_labram_checkpoint", "read_state_dict"]

LAYOUTS = ("auto", "labram", "braindecode", "neurofuse")

#: Keys a checkpoint may lack: the module keeps its own initial values (a fine-tuned LaBraM
#: has no mask token; only masked-patch pretraining uses it).
_MAY_MISS = ("mask_token",)
#: Heads and pretraining extras of the original layouts that the encoder does not use.
_DROPPED = re.compile(r"^(lm_head|head|projection_head|final_layer)\.|"
                      r"(^|\.)relative_position_index$")
_WRAPPERS = ("model", "module", "state_dict", "model_state", "model_state_dict")


class LaBraMCheckpointError(ValueError):
    """A checkpoint that does not fit the LaBraM module (keys or shapes), or cannot be read."""


def read_state_dict(path) -> dict:
    """Read a checkpoint file's tensors without unpickling arbitrary objects.

    Parameters
    ----------
    path : path-like
        A ``.pth``/``.pt``/``.bin`` (``torch.save``) or ``.safetensors`` file.

    Returns
    -------
    state : dict of str to Tensor
        The tensors, unwrapped from ``"model"``/``"module"``/``"state_dict"`` entries.
    """
    import argparse
    import pickle

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"No LaBraM checkpoint at '{path}': pass the path of a local "
                                ".pth, .pt or .safetensors file (nothing is downloaded).")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj = load_file(str(path), device="cpu")
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            raise LaBraMCheckpointError(f"'{path}' is not a readable safetensors file "
                                        f"({exc}).") from exc
    elif suffix in (".pth", ".pt", ".bin", ".ckpt"):
        try:
            with torch.serialization.safe_globals([argparse.Namespace]):
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, AttributeError, EOFError) as exc:
            raise LaBraMCheckpointError(
                f"'{path}' cannot be read safely with torch.load(weights_only=True): {exc}. "
                "neurofuse does not unpickle arbitrary objects. If you trust the file, save "
                "its weights once as safetensors (torch.load(..., weights_only=False)['model'] "
                "then safetensors.torch.save_file) and pass that file.") from exc
    else:
        raise LaBraMCheckpointError(f"Unknown checkpoint type '{path.suffix}' of '{path}': "
                                    "expected .pth, .pt, .bin, .ckpt or .safetensors.")
    for _ in range(3):  # {"model": {...}} or {"state_dict": {"module": ...}}
        if isinstance(obj, dict) and not any(torch.is_tensor(v) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    state = ({k: v for k, v in obj.items() if torch.is_tensor(v)}
             if isinstance(obj, dict) else {})
    if not state:
        raise LaBraMCheckpointError(
            f"'{path}' holds no tensors under the top level or a {list(_WRAPPERS)} entry: "
            "is it a LaBraM checkpoint?")
    return state


def _detect_layout(state) -> str:
    keys = list(state)
    if any(k.startswith(("patch_embed.temporal_conv.", "patch_embed.segment_patch."))
           or k in ("position_embedding", "temporal_embedding") for k in keys):
        return "braindecode"
    if any(k.startswith("student.") for k in keys) or any(
            k.endswith("patch_embed.conv1.weight") and state[k].ndim == 4 for k in keys):
        return "labram"
    return "neurofuse"


def convert_labram_state(state, *, layout="auto"):
    """Map a LaBraM state dict of ``layout`` onto :class:`~neurofuse.nn.labram.LaBraM`'s keys.

    Parameters
    ----------
    state : dict of str to Tensor
        From :func:`read_state_dict` (or a module's ``state_dict()``).
    layout : 'auto' | 'labram' | 'braindecode' | 'neurofuse'
        The key layout (see the module docstring); ``'auto'`` recognises it.

    Returns
    -------
    state : dict of str to Tensor
        Our keys and shapes (not yet checked against a module).
    layout : str
        The layout used.
    dropped : list of str
        Keys left out (heads and pretraining extras the encoder does not use).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"Invalid value for the 'layout' parameter: expected one of "
                         f"{list(LAYOUTS)}, got {layout!r}.")
    if layout == "auto":
        layout = _detect_layout(state)
    # (our key, the checkpoint's key, tensor): messages name the checkpoint's keys
    items = [(re.sub(r"^(module\.|_orig_mod\.)+", "", k), k, v) for k, v in state.items()]
    dropped = []
    if any(k.startswith("student.") for k, _, _ in items):  # LaBraM's pretraining wrapper
        dropped = [orig for k, orig, _ in items if not k.startswith("student.")]
        items = [(k[len("student."):], orig, v) for k, orig, v in items
                 if k.startswith("student.")]
    if layout == "braindecode":
        if any(k.startswith("patch_embed.segment_patch.") for k, _, _ in items):
            raise LaBraMCheckpointError(
                "This braindecode Labram checkpoint uses the learned patcher "
                "(patch_embed.segment_patch.*, learned_patcher=True), which LaBraM's "
                "architecture does not have; use a checkpoint made with learned_patcher=False.")
        renamed = []
        for k, orig, v in items:
            k = k.replace("patch_embed.temporal_conv.", "patch_embed.")
            k = {"position_embedding": "pos_embed", "temporal_embedding": "time_embed"}.get(k, k)
            k = re.sub(r"^(blocks\.\d+\.mlp)\.0\.", r"\1.fc1.", k)
            k = re.sub(r"^(blocks\.\d+\.mlp)\.2\.", r"\1.fc2.", k)
            renamed.append((k, orig, v))
        items = renamed
    out = {}
    for k, orig, v in items:
        if _DROPPED.search(k):
            dropped.append(orig)
            continue
        if re.fullmatch(r"patch_embed\.conv\d\.weight", k) and v.ndim == 4 and v.shape[2] == 1:
            v = v[:, :, 0]  # Conv2d (out, in, 1, k) → Conv1d (out, in, k)
        out[k] = v
    if "norm.weight" not in out and "fc_norm.weight" in out:  # a fine-tuned model
        out["norm.weight"], out["norm.bias"] = out.pop("fc_norm.weight"), out.pop("fc_norm.bias")
    elif "fc_norm.weight" in out:
        for k in ("fc_norm.weight", "fc_norm.bias"):
            dropped.append(k)
            out.pop(k)
    return out, layout, sorted(dropped)


def _check_against(module, state, layout, source):
    expected = module.state_dict()
    missing = sorted(k for k in expected if k not in state and k not in _MAY_MISS)
    unexpected = sorted(k for k in state if k not in expected)
    misshaped = [f"{k}: {tuple(state[k].shape)} in the checkpoint, {tuple(expected[k].shape)} "
                 "in the module" for k in sorted(state)
                 if k in expected and state[k].shape != expected[k].shape]
    if not (missing or unexpected or misshaped):
        return

    def shown(keys):
        return ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")

    parts = [f"missing keys: {shown(missing)}" if missing else "",
             f"unexpected keys: {shown(unexpected)}" if unexpected else "",
             f"mis-shaped keys: {shown(misshaped)}" if misshaped else ""]
    raise LaBraMCheckpointError(
        f"The LaBraM checkpoint {source} (read as the {layout!r} layout) does not fit the "
        f"module: {'; '.join(p for p in parts if p)}. Fix: build the module with the "
        "checkpoint's sizes (neurofuse.nn.labram_checkpoint.labram_from_checkpoint infers "
        "them; patch_size, conv_stride and conv_groups cannot be read from weights), or pass the right "
        f"layout= (one of {list(LAYOUTS[1:])}) if the guess was wrong.")


@verbose
def load_labram_checkpoint(module, checkpoint, *, layout="auto", verbose=None) -> dict:
    """Load a LaBraM checkpoint into ``module`` after checking every key and shape.

    Parameters
    ----------
    module : LaBraM
        The encoder to fill (its sizes must match the checkpoint's).
    checkpoint : path-like | dict of str to Tensor
        A local file (:func:`read_state_dict`) or an already read state dict.
    layout : 'auto' | 'labram' | 'braindecode' | 'neurofuse'
        Key layout of the checkpoint (:func:`convert_labram_state`).
    verbose : bool | str | None
        Log level for this call.

    Returns
    -------
    info : dict
        ``layout`` (the one used), ``dropped`` (keys left out) and ``kept_initial`` (module
        keys the checkpoint lacked that keep their initial values, e.g. ``mask_token``).
    """
    if not isinstance(module, LaBraM):
        raise TypeError(f"'module' must be a neurofuse.nn.labram.LaBraM, got "
                        f"{type(module).__name__}.")
    source = "given as a dict" if isinstance(checkpoint, dict) else f"'{checkpoint}'"
    state = checkpoint if isinstance(checkpoint, dict) else read_state_dict(checkpoint)
    state, layout, dropped = convert_labram_state(state, layout=layout)
    _check_against(module, state, layout, source)
    kept = sorted(k for k in module.state_dict() if k not in state)
    with torch.no_grad():
        module.load_state_dict(state, strict=False)
    logger.info("Loaded LaBraM weights (%s layout) from %s; left out %d keys%s", layout,
                source, len(dropped), f", kept initial {kept}" if kept else "")
    return {"layout": layout, "dropped": dropped, "kept_initial": kept}


def _infer_sizes(state) -> dict:
    """The :class:`LaBraMConfig` fields a (converted) state dict determines."""
    sizes = {}
    if "cls_token" in state:
        sizes["embed_dim"] = int(state["cls_token"].shape[-1])
    depth = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    if depth:
        sizes["depth"] = max(depth) + 1
    if "patch_embed.conv1.weight" in state:
        sizes["conv_channels"] = int(state["patch_embed.conv1.weight"].shape[0])
        sizes["conv_kernels"] = [int(state[f"patch_embed.conv{i}.weight"].shape[-1])
                                 for i in (1, 2, 3) if f"patch_embed.conv{i}.weight" in state]
    if "blocks.0.attn.q_norm.weight" in state and "embed_dim" in sizes:
        sizes["n_heads"] = sizes["embed_dim"] // int(state["blocks.0.attn.q_norm.weight"].shape[0])
    sizes["qk_norm"] = "blocks.0.attn.q_norm.weight" in state
    sizes["qkv_bias"] = "blocks.0.attn.q_bias" in state
    if "blocks.0.mlp.fc1.weight" in state and "embed_dim" in sizes:
        sizes["mlp_ratio"] = state["blocks.0.mlp.fc1.weight"].shape[0] / sizes["embed_dim"]
    if "blocks.0.gamma_1" not in state:
        sizes["init_values"] = 0.0
    if "time_embed" in state:
        sizes["max_patches"] = int(state["time_embed"].shape[1])
    sizes["n_electrodes"] = int(state["pos_embed"].shape[1]) - 1 if "pos_embed" in state else 0
    if "patch_embed.norm1.weight" in state and "conv_channels" in sizes:
        # GroupNorm's group count is not stored; LaBraM uses 4 (keep it when it divides)
        sizes["conv_groups"] = 4 if sizes["conv_channels"] % 4 == 0 else 1
    return sizes


@verbose
def labram_from_checkpoint(checkpoint, *, patch_size=200, conv_stride=8, layout="auto",
                           return_info=False, verbose=None, **sizes) -> LaBraM:
    """Build a :class:`~neurofuse.nn.labram.LaBraM` with a checkpoint's sizes and load it.

    Parameters
    ----------
    checkpoint : path-like | dict of str to Tensor
        A local LaBraM checkpoint (see :func:`load_labram_checkpoint`).
    patch_size : int
        Samples per patch the checkpoint was trained with (LaBraM's: 200 at 200 Hz); weights
        do not store it.
    conv_stride : int
        Stride of the first patch convolution (LaBraM's: 8); weights do not store it.
    layout : 'auto' | 'labram' | 'braindecode' | 'neurofuse'
        Key layout of the checkpoint.
    return_info : bool
        Also return :func:`load_labram_checkpoint`'s ``info`` (layout used, keys dropped).
    verbose : bool | str | None
        Log level for this call.
    **sizes
        :class:`~neurofuse.nn.labram.LaBraMConfig` fields that override the inferred ones
        (e.g. ``conv_groups`` -- GroupNorms do not store it; 4 as LaBraM when it divides
        the conv channels --, ``n_heads`` when the checkpoint has no q/k norms, dropouts).

    Returns
    -------
    encoder : LaBraM
        On the CPU, in training mode (call :func:`~neurofuse.nn.labram.freeze` to freeze it).
    info : dict
        Only with ``return_info``.
    """
    state = checkpoint if isinstance(checkpoint, dict) else read_state_dict(checkpoint)
    converted, used, _ = convert_labram_state(state, layout=layout)
    inferred = _infer_sizes(converted)
    if "n_heads" not in inferred and "n_heads" not in sizes:
        raise LaBraMCheckpointError("The checkpoint has no q/k norms, so its number of "
                                    "attention heads cannot be inferred: pass n_heads= "
                                    "(neurofuse eeg2meg import-encoder: --n-heads).")
    cfg = LaBraMConfig.from_dict({**inferred, "patch_size": patch_size,
                                  "conv_stride": conv_stride, **sizes})
    module = LaBraM(cfg)
    info = load_labram_checkpoint(module, state, layout=used)
    return (module, info) if return_info else module

"""Loading local LaBraM checkpoints in the original and braindecode layouts, safely."""

import argparse

import pytest
import torch

from neurofuse.nn.labram import LaBraM, LaBraMConfig
from neurofuse.nn.labram_checkpoint import (LaBraMCheckpointError, convert_labram_state,
                                            labram_from_checkpoint, load_labram_checkpoint,
                                            read_state_dict)

# Tiny sizes in LaBraM's proportions: 1 block, q/v biases, q/k norms, layer scale, electrodes.
SIZES = {"preset": "tiny", "depth": 2, "qkv_bias": True, "n_electrodes": 6}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(seed):
    torch.manual_seed(seed)
    model = LaBraM(LaBraMConfig.from_dict(SIZES)).eval()
    with torch.no_grad():  # no parameter left at a constant initial value
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model


def _block_keys(prefix, mlp=("fc1", "fc2")):
    """The original repository's per-block key names (modeling_finetune.py's Block)."""
    keys = []
    for i in range(2):
        b = f"{prefix}blocks.{i}."
        keys += [b + "gamma_1", b + "gamma_2", b + "norm1.weight", b + "norm1.bias",
                 b + "attn.q_bias", b + "attn.v_bias", b + "attn.qkv.weight",
                 b + "attn.q_norm.weight", b + "attn.q_norm.bias", b + "attn.k_norm.weight",
                 b + "attn.k_norm.bias", b + "attn.proj.weight", b + "attn.proj.bias",
                 b + "norm2.weight", b + "norm2.bias"]
        keys += [f"{b}mlp.{m}.{w}" for m in mlp for w in ("weight", "bias")]
    return keys


def _conv_keys(prefix):
    return [f"{prefix}conv{i}.{w}" for i in (1, 2, 3) for w in ("weight", "bias")] + [
        f"{prefix}norm{i}.{w}" for i in (1, 2, 3) for w in ("weight", "bias")]


def _official_pretraining_state(model):
    """A fake checkpoint of LaBraM's pretraining model (NeuralTransformerForMEM), keyed by the
    original names: encoder under 'student.', Conv2d weights (out, in, 1, k), extra heads."""
    ours = model.state_dict()
    names = (["student.cls_token", "student.mask_token", "student.pos_embed",
              "student.time_embed", "student.norm.weight", "student.norm.bias"]
             + _conv_keys("student.patch_embed.") + _block_keys("student."))
    state = {}
    for name in names:
        v = ours[name[len("student."):]].clone()
        if "patch_embed.conv" in name and name.endswith("weight"):
            v = v.unsqueeze(2)
        state[name] = v
    d = model.embed_dim
    state.update({"student.lm_head.weight": torch.randn(16, d), "student.lm_head.bias":
                  torch.zeros(16), "lm_head.weight": torch.randn(16, d),
                  "lm_head.bias": torch.zeros(16), "projection_head.0.weight": torch.randn(d, d),
                  "projection_head.0.bias": torch.zeros(d)})
    return state


def _braindecode_state(model):
    """A fake braindecode Labram state dict (learned_patcher=False, use_mean_pooling=True)."""
    ours = model.state_dict()
    state = {"cls_token": ours["cls_token"], "position_embedding": ours["pos_embed"],
             "temporal_embedding": ours["time_embed"], "fc_norm.weight": ours["norm.weight"],
             "fc_norm.bias": ours["norm.bias"], "final_layer.weight": torch.randn(3, 28),
             "final_layer.bias": torch.zeros(3)}
    for name in _conv_keys("patch_embed.temporal_conv."):
        v = ours[name.replace("temporal_conv.", "")]
        state[name] = v.unsqueeze(2) if ".conv" in name and name.endswith("weight") else v
    for name in _block_keys("", mlp=("0", "2")):
        state[name] = ours[name.replace("mlp.0.", "mlp.fc1.").replace("mlp.2.", "mlp.fc2.")]
    return state


def _assert_same(a, b):
    for k, v in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[k], v, rtol=0, atol=0, msg=k)
    x = torch.randn(2, 3, 100)
    torch.testing.assert_close(a(x, electrodes=[0, 2, 5]), b(x, electrodes=[0, 2, 5]))


def test_original_pretraining_layout(tmp_path):
    source = _model(0)
    path = tmp_path / "labram-base.pth"
    torch.save({"model": _official_pretraining_state(source), "epoch": 49,
                "args": argparse.Namespace(lr=5e-4, model="labram_base")}, path)
    target = _model(1)
    info = load_labram_checkpoint(target, path)
    assert info["layout"] == "labram" and info["kept_initial"] == []
    assert "lm_head.weight" in info["dropped"] and "student.lm_head.weight" in info["dropped"]
    _assert_same(source, target)


def test_original_finetuned_layout(tmp_path):
    """A fine-tuned NeuralTransformer: no prefix, no mask token, fc_norm, a classifier head."""
    source = _model(0)
    state = {k[len("student."):]: v for k, v in _official_pretraining_state(source).items()
             if k.startswith("student.") and "lm_head" not in k and "mask_token" not in k}
    state["fc_norm.weight"], state["fc_norm.bias"] = state.pop("norm.weight"), state.pop(
        "norm.bias")
    state.update({"head.weight": torch.randn(2, 28), "head.bias": torch.zeros(2)})
    target = _model(1)
    info = load_labram_checkpoint(target, state)
    assert info["layout"] == "labram" and info["kept_initial"] == ["mask_token"]
    source.mask_token.data.copy_(target.mask_token)
    _assert_same(source, target)


def test_braindecode_layout_safetensors(tmp_path):
    from safetensors.torch import save_file

    source = _model(0)
    path = tmp_path / "labram.safetensors"
    save_file({k: v.contiguous() for k, v in _braindecode_state(source).items()}, str(path))
    target = _model(1)
    info = load_labram_checkpoint(target, path)
    assert info["layout"] == "braindecode" and info["kept_initial"] == ["mask_token"]
    assert info["dropped"] == ["final_layer.bias", "final_layer.weight"]
    source.mask_token.data.copy_(target.mask_token)
    _assert_same(source, target)


def test_own_layout_and_inferred_sizes(tmp_path):
    source = _model(0)
    path = tmp_path / "ours.pt"
    torch.save(source.state_dict(), path)
    target = _model(1)
    assert load_labram_checkpoint(target, path)["layout"] == "neurofuse"
    _assert_same(source, target)
    built = labram_from_checkpoint(_official_pretraining_state(source), patch_size=50,
                                   conv_groups=2)  # GroupNorm groups are not stored
    assert built.config == source.config
    _assert_same(source, built.eval())


def test_wrong_keys_clear_error():
    state = _official_pretraining_state(_model(0))
    state["student.blocks.0.attn.qkv_weight"] = state.pop("student.blocks.0.attn.qkv.weight")
    with pytest.raises(LaBraMCheckpointError) as err:
        load_labram_checkpoint(_model(1), state)
    msg = str(err.value)
    assert "missing keys: blocks.0.attn.qkv.weight" in msg
    assert "unexpected keys: blocks.0.attn.qkv_weight" in msg
    assert "Fix:" in msg and "labram_from_checkpoint" in msg


def test_wrong_sizes_clear_error():
    state = _official_pretraining_state(_model(0))
    torch.manual_seed(0)
    wider = LaBraM(LaBraMConfig.from_dict({**SIZES, "max_patches": 4, "n_electrodes": 8}))
    with pytest.raises(LaBraMCheckpointError, match=r"mis-shaped keys: pos_embed: \(1, 7, 28\) "
                       r"in the checkpoint, \(1, 9, 28\) in the module, time_embed"):
        load_labram_checkpoint(wider, state)
    deeper = LaBraM(LaBraMConfig.from_dict({**SIZES, "depth": 3}))
    with pytest.raises(LaBraMCheckpointError, match=r"missing keys: blocks\.2\."):
        load_labram_checkpoint(deeper, state)


def test_unsafe_or_unreadable_files(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": _model(0).state_dict(), "extra": _Opaque()}, path)
    with pytest.raises(LaBraMCheckpointError, match="weights_only=True"):
        read_state_dict(path)
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        read_state_dict(tmp_path / "missing.pth")
    (tmp_path / "w.npz").write_bytes(b"")
    with pytest.raises(LaBraMCheckpointError, match="expected .pth"):
        read_state_dict(tmp_path / "w.npz")
    torch.save({"epoch": 3}, tmp_path / "empty.pt")
    with pytest.raises(LaBraMCheckpointError, match="no tensors"):
        read_state_dict(tmp_path / "empty.pt")
    with pytest.raises(ValueError, match="layout"):
        convert_labram_state({}, layout="timm")


class _Opaque:
    """A class a weights-only unpickler must refuse."""


def test_patch_convolutions_match_the_original_conv2d_form():
    """The original TemporalConv (Conv2d with (1, k) kernels over (B, 1, N·A, T), GroupNorm,
    GELU, then 'B C NA T -> B NA (T C)') with the checkpoint's 4-D weights gives our tokens."""
    model = _model(0)
    state = _official_pretraining_state(model)
    w = {k[len("student.patch_embed."):]: v for k, v in state.items()
         if k.startswith("student.patch_embed.")}
    patches = torch.randn(2, 3, 50)  # (B, N·A, T): 3 patches of 50 samples
    x = patches.unsqueeze(1)
    for i, (stride, pad) in zip((1, 2, 3), (((1, 8), (0, 7)), ((1, 1), (0, 1)),
                                            ((1, 1), (0, 1)))):
        x = torch.nn.functional.conv2d(x, w[f"conv{i}.weight"], w[f"conv{i}.bias"],
                                       stride=stride, padding=pad)
        x = torch.nn.functional.gelu(torch.nn.functional.group_norm(
            x, 2, w[f"norm{i}.weight"], w[f"norm{i}.bias"]))
    B, C, NA, T = x.shape
    expected = x.permute(0, 2, 3, 1).reshape(B, NA, T * C)  # (T C): time outer, maps inner
    target = _model(1)
    load_labram_checkpoint(target, state)
    got = target.patch_embed(patches)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def _original_forward(s, x, input_chans, n_heads):
    """LaBraM's pretraining encoder forward (modeling_pretrain.py, no mask) written out from
    the original's order of operations over a checkpoint's tensors ``s`` ('student.' keys
    stripped). ``x``: (B, N, A, T) patches of N electrodes; returns (B, N·A, D) tokens."""
    F = torch.nn.functional
    B, N, A, T = x.shape
    h = x.reshape(B, 1, N * A, T)
    for i, (stride, pad) in zip((1, 2, 3), (((1, 8), (0, 7)), ((1, 1), (0, 1)),
                                            ((1, 1), (0, 1)))):
        h = F.conv2d(h, s[f"patch_embed.conv{i}.weight"], s[f"patch_embed.conv{i}.bias"],
                     stride=stride, padding=pad)
        h = F.gelu(F.group_norm(h, 2, s[f"patch_embed.norm{i}.weight"],
                                s[f"patch_embed.norm{i}.bias"]))
    C = h.shape[1]
    h = h.permute(0, 2, 3, 1).reshape(B, N * A, -1)  # 'B C NA T -> B NA (T C)'
    D = h.shape[-1]
    h = torch.cat((s["cls_token"].expand(B, -1, -1), h), dim=1)
    pos_used = s["pos_embed"][:, input_chans]
    pos = pos_used[:, 1:].unsqueeze(2).expand(B, -1, A, -1).flatten(1, 2)
    h = h + torch.cat((pos_used[:, :1].expand(B, -1, -1), pos), dim=1)
    h[:, 1:] += s["time_embed"][:, :A].unsqueeze(1).expand(B, N, -1, -1).flatten(1, 2)
    for i in range(2):
        b = {k[len(f"blocks.{i}."):]: v for k, v in s.items() if k.startswith(f"blocks.{i}.")}
        y = F.layer_norm(h, (D,), b["norm1.weight"], b["norm1.bias"], 1e-6)
        bias = torch.cat((b["attn.q_bias"], torch.zeros_like(b["attn.v_bias"]),
                          b["attn.v_bias"]))
        qkv = F.linear(y, b["attn.qkv.weight"], bias)
        qkv = qkv.reshape(B, y.shape[1], 3, n_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        dh = q.shape[-1]
        q = F.layer_norm(q, (dh,), b["attn.q_norm.weight"], b["attn.q_norm.bias"], 1e-6)
        k = F.layer_norm(k, (dh,), b["attn.k_norm.weight"], b["attn.k_norm.bias"], 1e-6)
        att = ((q * dh ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, y.shape[1], -1)
        h = h + b["gamma_1"] * F.linear(y, b["attn.proj.weight"], b["attn.proj.bias"])
        y = F.layer_norm(h, (D,), b["norm2.weight"], b["norm2.bias"], 1e-6)
        y = F.linear(F.gelu(F.linear(y, b["mlp.fc1.weight"], b["mlp.fc1.bias"])),
                     b["mlp.fc2.weight"], b["mlp.fc2.bias"])
        h = h + b["gamma_2"] * y
    h = F.layer_norm(h, (D,), s["norm.weight"], s["norm.bias"], 1e-6)
    assert C * (h.shape[-1] // C) == D
    return h[:, 1:]


def test_loaded_encoder_equals_the_original_forward():
    """One electrode's sequence through LaBraM's own forward (written out above from the
    original's operations, on the checkpoint's tensors) gives our loaded module's tokens:
    the key mapping, shapes and the order of operations agree."""
    state = _official_pretraining_state(_model(0))
    s = {k[len("student."):]: v for k, v in state.items() if k.startswith("student.")}
    target = _model(1)
    load_labram_checkpoint(target, state)
    x = torch.randn(2, 1, 150)
    for electrode in (0, 4):
        expected = _original_forward(s, x.reshape(2, 1, 3, 50), [0, electrode + 1], 2)
        got = target(x, electrodes=[electrode])[:, 0]
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)

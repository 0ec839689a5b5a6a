"""LaBraM's architecture as System B's channel-independent EEG encoder (neurofuse.nn.labram)."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from neurofuse.nn.labram import (LABRAM_CHANNELS, LABRAM_PRESETS, LaBraM, LaBraMConfig,
                                 electrode_indices, freeze)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny(**changes):
    torch.manual_seed(0)
    return LaBraM(LaBraMConfig.from_dict({"preset": "tiny", **changes})).eval()


def test_shapes_and_attributes():
    model = _tiny()
    x = torch.randn(2, 3, 200)
    out = model(x)
    assert out.shape == (2, 3, 200 // 50, 28)
    assert (model.patch_size, model.embed_dim) == (50, 28)
    tokens, cls = model(x, return_cls=True)
    assert torch.equal(tokens, out) and cls.shape == (2, 3, 28)
    # a patch size other than LaBraM's 200, with a projection when the conv features differ
    proj = _tiny(patch_size=25, embed_dim=32, max_patches=8)
    assert proj.patch_proj is not None
    assert proj.patch_proj.in_features == 4 * ((25 + 14 - 15) // 8 + 1)
    assert proj(torch.randn(1, 2, 100)).shape == (1, 2, 4, 32)


def test_labram_base_sizes():
    """LaBraM-Base: 200-sample patches → 25 conv outputs × 8 maps = 200 features (no
    projection), ~5.8 M parameters (the original reports 5.8 M)."""
    cfg = LaBraMConfig.from_dict({"preset": "base"})
    assert cfg.conv_length == 25 and cfg.conv_features == 200 == cfg.embed_dim
    model = LaBraM(cfg)
    assert model.patch_proj is None
    n = sum(p.numel() for p in model.parameters())
    assert 5.5e6 < n < 6.0e6


def test_channel_independence():
    """Changing channel j's input leaves channel i's tokens unchanged (Eq. 1)."""
    model = _tiny(n_electrodes=8)
    x = torch.randn(2, 4, 150)
    y = x.clone()
    y[:, 2] = torch.randn(2, 150) * 3
    for electrodes in (None, [0, 3, 5, 7]):
        a, b = model(x, electrodes=electrodes), model(y, electrodes=electrodes)
        keep = [0, 1, 3]
        torch.testing.assert_close(a[:, keep], b[:, keep], rtol=1e-5, atol=1e-6)
        assert (a[:, 2] - b[:, 2]).abs().max() > 1e-3


def test_channels_are_univariate_sequences():
    """Encoding (B, C, T) equals encoding every channel as its own (B·C, 1, T) sequence."""
    model = _tiny()
    x = torch.randn(3, 5, 100)
    whole = model(x)
    alone = model(x.reshape(15, 1, 100)).reshape(3, 5, 2, 28)
    torch.testing.assert_close(whole, alone, rtol=1e-5, atol=1e-6)


def test_time_not_multiple_of_patch_size():
    model = _tiny()
    with pytest.raises(ValueError, match="patch_size"):
        model(torch.randn(1, 2, 210))
    with pytest.raises(ValueError, match="max_patches"):
        model(torch.randn(1, 2, 50 * 9))
    with pytest.raises(ValueError, match=r"\(batch, n_channels, n_times\)"):
        model(torch.randn(2, 100))


def test_attention_matches_hand_computation():
    """The block's attention (SDPA) equals softmax(q̂ k̂ᵀ / √d_h) v with LaBraM's q/k
    LayerNorms and q/v biases, computed by hand."""
    torch.manual_seed(1)
    model = _tiny(qkv_bias=True)
    attn = model.blocks[0].attn
    with torch.no_grad():
        attn.q_bias.normal_()
        attn.v_bias.normal_()
    x = torch.randn(3, 5, 28)
    d, h = 28, attn.n_heads
    dh = d // h
    w = attn.qkv.weight
    q = x @ w[:d].T + attn.q_bias
    k = x @ w[d:2 * d].T  # no key bias
    v = x @ w[2 * d:].T + attn.v_bias

    def heads(t):
        return t.view(3, 5, h, dh).transpose(1, 2)

    q, k, v = heads(q), heads(k), heads(v)
    q = F.layer_norm(q, (dh,), attn.q_norm.weight, attn.q_norm.bias, 1e-6)
    k = F.layer_norm(k, (dh,), attn.k_norm.weight, attn.k_norm.bias, 1e-6)
    a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), dim=-1)
    expected = attn.proj((a @ v).transpose(1, 2).reshape(3, 5, d))
    torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-6)


def test_mask_replaces_tokens():
    """A fully masked sequence no longer depends on its signal; an unmasked one does."""
    model = _tiny()
    x, y = torch.randn(1, 2, 100), torch.randn(1, 2, 100)
    mask = torch.ones(1, 2, 2, dtype=torch.bool)
    torch.testing.assert_close(model(x, mask=mask), model(y, mask=mask))
    assert (model(x) - model(y)).abs().max() > 1e-3
    with pytest.raises(ValueError, match="mask"):
        model(x, mask=torch.ones(1, 2, 3, dtype=torch.bool))


def test_electrodes():
    assert electrode_indices(["fp1", "Cz", "O2"]) == [0, LABRAM_CHANNELS.index("CZ"), 82]
    assert len(LABRAM_CHANNELS) == 128
    with pytest.raises(ValueError, match="BOGUS"):
        electrode_indices(["Cz", "BOGUS"])
    model = _tiny(n_electrodes=128)
    x = torch.randn(1, 2, 100)
    with_names = model(x, electrodes=["Cz", "Pz"])
    model.set_electrodes(["Cz", "Pz"])
    torch.testing.assert_close(model(x), with_names)
    assert "electrodes" not in model.state_dict()
    model.set_electrodes(None)
    assert (model(x) - with_names).abs().max() > 1e-4
    with pytest.raises(ValueError, match="no electrode embedding"):
        _tiny()(x, electrodes=[0, 1])
    with pytest.raises(ValueError, match="rows 0..127"):
        model(x, electrodes=[0, 128])


def test_freeze():
    model = _tiny().train()
    assert freeze(model) is model and not model.training
    assert not any(p.requires_grad for p in model.parameters())


def test_config_round_trip_and_errors():
    cfg = LaBraMConfig.from_dict({"preset": "small", "depth": 2})
    assert LaBraMConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert LaBraM(cfg).config == LaBraM(**{**LABRAM_PRESETS["small"], "depth": 2}).config
    assert LaBraM(preset="small", depth=2).config == cfg
    assert LaBraM({"preset": "small"}, depth=2).config == cfg
    assert LaBraM().config == LaBraMConfig()
    with pytest.raises(ValueError, match="n_heads"):
        LaBraMConfig(embed_dim=30, n_heads=4)
    with pytest.raises(ValueError, match="odd"):
        LaBraMConfig(conv_kernels=(14, 3, 3))
    with pytest.raises(ValueError, match="did you mean 'patch_size'"):
        LaBraMConfig.from_dict({"patch_sise": 50})
    with pytest.raises(ValueError, match="preset"):
        LaBraMConfig.from_dict({"preset": "giant"})

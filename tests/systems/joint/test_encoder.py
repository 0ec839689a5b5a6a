"""Tests for neurofuse.systems.joint.encoder: configuration, shapes, impl equivalence,
gradients and input checks of the stimulus encoder."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from neurofuse.systems.joint.encoder import EncoderConfig, EncoderLayer, StimulusEncoder

SMALL = {
    "d_stim": 12,
    "d_model": 16,
    "n_layers": 3,
    "n_heads": 2,
    "d_ff": 24,
    "dropout": 0.2,
    "window": 9,
    "d_src": 20,
    "block_size": 4,
}


def _small(**overrides):
    torch.manual_seed(0)
    return StimulusEncoder(**{**SMALL, **overrides})


def test_defaults_are_the_paper_architecture():
    cfg = EncoderConfig()
    assert cfg.to_dict() == {
        "d_stim": 852,
        "d_model": 256,
        "n_layers": 4,
        "n_heads": 2,
        "d_ff": 512,
        "dropout": 0.2,
        "window": 500,
        "d_src": 8196,
        "block_size": 128,
        "source_init_scale": 0.01,
        "source_fwhm": None,  # the paper does not smooth the source layer
    }
    m = StimulusEncoder()
    assert m.config == cfg
    assert m.input_layer.weight.shape == (256, 852)
    assert m.source_layer.weight.shape == (8196, 256)
    assert len(m.layers) == 4
    for layer in m.layers:
        assert layer.attn.lag_embedding.shape == (500, 256)
        assert layer.attn.n_heads == 2 and layer.linear1.out_features == 512


def test_forward_shapes_and_encode():
    m = _small().eval()
    x = torch.randn(3, 25, 12)
    out = m(x)
    assert out.shape == (3, 25, 20)
    torch.testing.assert_close(m.encode(x), out, rtol=0, atol=0)


def test_blocked_matches_dense_values_and_gradients():
    m = _small().double().eval()
    x = torch.randn(2, 31, 12, dtype=torch.float64)
    results = {}
    for impl in ("blocked", "dense"):
        m.zero_grad()
        out = m(x, impl=impl)
        out.square().mean().backward()
        results[impl] = (out.detach(), {n: p.grad.clone() for n, p in m.named_parameters()})
    torch.testing.assert_close(results["blocked"][0], results["dense"][0], rtol=0, atol=1e-12)
    for name, g in results["blocked"][1].items():
        torch.testing.assert_close(g, results["dense"][1][name], rtol=0, atol=1e-12, msg=name)


def test_causal_end_to_end():
    m = _small().double().eval()
    x = torch.randn(1, 30, 12, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 20:] = 0.0
    torch.testing.assert_close(m(x)[:, :20], m(x2)[:, :20], rtol=0, atol=1e-12)


def test_gradient_reaches_every_lag_embedding():
    m = _small().train()
    m(torch.randn(2, 20, 12)).pow(2).mean().backward()
    for i, layer in enumerate(m.layers):
        g = layer.attn.lag_embedding.grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, f"layer {i}"
    assert m.input_layer.weight.grad.abs().sum() > 0


def test_encoder_layer_matches_torch_post_norm_layout():
    """With the lag term zeroed and the window covering T, the layer is a causal
    nn.TransformerEncoderLayer (post-norm, ReLU) with the same weights."""
    torch.manual_seed(0)
    d_model, n_heads, d_ff, T = 16, 2, 24, 11
    ours = EncoderLayer(d_model, n_heads, d_ff, dropout=0.0, window=T, block_size=4).eval()
    ref = torch.nn.TransformerEncoderLayer(
        d_model, n_heads, d_ff, dropout=0.0, batch_first=True
    ).eval()
    with torch.no_grad():
        ours.attn.lag_embedding.zero_()
        a = ours.attn
        ref.self_attn.in_proj_weight.copy_(
            torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])
        )
        ref.self_attn.in_proj_bias.copy_(torch.cat([a.q_proj.bias, torch.zeros_like(a.q_proj.bias), a.v_proj.bias]))
        ref.self_attn.out_proj.weight.copy_(a.out_proj.weight)
        ref.self_attn.out_proj.bias.copy_(a.out_proj.bias)
        for name in ("linear1", "linear2", "norm1", "norm2"):
            getattr(ref, name).load_state_dict(getattr(ours, name).state_dict())
    x = torch.randn(2, T, d_model)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(T)
    torch.testing.assert_close(ours(x), ref(x, src_mask=mask, is_causal=True), rtol=0, atol=1e-5)


def test_config_roundtrip_and_frozen():
    m = _small()
    d = m.config.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert EncoderConfig.from_dict(d) == m.config
    assert EncoderConfig.from_dict({"d_model": 64}).d_model == 64  # missing keys: defaults
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.config.d_model = 8
    m2 = StimulusEncoder.from_config(d)
    m2.load_state_dict(m.state_dict())
    x = torch.randn(1, 15, 12)
    torch.testing.assert_close(m2.eval()(x), m.eval()(x), rtol=0, atol=0)
    assert StimulusEncoder.from_config(m.config).config == m.config


def test_config_unknown_key():
    with pytest.raises(
        ValueError, match=r"Unknown EncoderConfig key.*'d_modle'.*did you mean 'd_model'.*Valid keys"
    ):
        EncoderConfig.from_dict({"d_modle": 128})
    with pytest.raises(ValueError, match="'d_modle'"):
        StimulusEncoder.from_config({"d_modle": 128})


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"window": 0}, ValueError, "'window' must be an int >= 1, got 0"),
        (
            {"d_model": 16, "n_heads": 3},
            ValueError,
            r"'d_model' \(16\) must be divisible by 'n_heads' \(3\)",
        ),
        ({"dropout": 1.5}, ValueError, r"'dropout' must be in \[0, 1\)"),
        ({"n_layers": 2.0}, TypeError, "'n_layers' must be an int"),
        ({"d_src": True}, TypeError, "'d_src' must be an int"),
    ],
)
def test_config_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        StimulusEncoder(**{**SMALL, **kwargs})


def test_feature_errors():
    m = _small()
    with pytest.raises(
        ValueError, match=r"wrong dimension.*d_stim=12.*got 13.*built for d_stim=12"
    ):
        m(torch.randn(1, 10, 13))
    with pytest.raises(ValueError, match=r"3-D.*features\[None\]"):
        m(torch.randn(10, 12))
    with pytest.raises(TypeError, match="torch.Tensor"):
        m(torch.randn(1, 10, 12).numpy())
    with pytest.raises(TypeError, match="floating-point"):
        m(torch.ones(1, 10, 12, dtype=torch.int64))
    x = torch.randn(1, 10, 12)
    x[0, 4, 1] = float("nan")
    x[0, 6, 2] = float("inf")
    with pytest.raises(ValueError, match=r"1 NaN and 1 infinite.*first at index \(0, 4, 1\)"):
        m(x)
    with pytest.raises(ValueError, match="'impl'"):
        m(torch.randn(1, 10, 12), impl="fast")


def test_source_layer_starts_small():
    """The source layer's draw is PyTorch's default times source_init_scale; bias at 0."""
    torch.manual_seed(0)
    big = _small(source_init_scale=1.0)
    small = _small(source_init_scale=0.01)
    torch.testing.assert_close(small.source_layer.weight, 0.01 * big.source_layer.weight)
    assert not small.source_layer.bias.any()
    bound = 1 / SMALL["d_model"] ** 0.5  # kaiming-uniform bound of nn.Linear
    assert float(big.source_layer.weight.detach().abs().max()) <= bound
    assert float(big.source_layer.weight.detach().abs().max()) > 0.9 * bound
    # the other layers do not depend on it
    torch.testing.assert_close(small.input_layer.weight, big.input_layer.weight)
    with pytest.raises(ValueError, match="source_init_scale"):
        EncoderConfig(source_init_scale=0.0)


def test_smoothed_source_layer_equals_dense_smoothing():
    """sources = K (W z + b): against a dense float64 computation, values and gradients."""
    import scipy.sparse

    plain = _small().eval()  # no dropout: calls are comparable
    smooth = _small(source_fwhm=10.0).eval()
    x = torch.randn(2, 30, SMALL["d_stim"])
    # same draw; K = I until a smoother is set
    torch.testing.assert_close(smooth.source_layer.weight, plain.source_layer.weight)
    torch.testing.assert_close(smooth(x), plain(x), rtol=0, atol=0)
    rng = np.random.default_rng(0)
    d_src = SMALL["d_src"]
    k = scipy.sparse.random_array((d_src, d_src), density=0.2, random_state=rng) + \
        scipy.sparse.eye_array(d_src)
    k = scipy.sparse.csr_array(k / k.sum(axis=1)[:, None])
    smooth.source_layer.set_smoother(k)
    with torch.no_grad():
        smooth.source_layer.bias.normal_()
    out = smooth(x)
    z = smooth.hidden(x).double()
    w, b = smooth.source_layer.weight.double(), smooth.source_layer.bias.double()
    kd = torch.as_tensor(k.toarray())
    ref = (z @ w.T + b) @ kd.T
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(out)
    (out * g).sum().backward()
    w_ref = w.detach().clone().requires_grad_(True)
    (((z.detach() @ w_ref.T + b.detach()) @ kd.T) * g.double()).sum().backward()
    torch.testing.assert_close(smooth.source_layer.weight.grad.double(), w_ref.grad,
                               rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match=r"'matrix' must be \(.*d_src"):
        smooth.source_layer.set_smoother(scipy.sparse.eye_array(d_src + 1))
    with pytest.raises(ValueError, match="without smoothing.*source_fwhm"):
        plain.source_layer.set_smoother(k)
    with pytest.raises(ValueError, match="source_fwhm"):
        EncoderConfig(source_fwhm=-1.0)
    assert EncoderConfig(source_fwhm=0).source_fwhm is None  # TOML's way to say "none"

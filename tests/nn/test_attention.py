"""Tests for neurofuse.nn.attention: the blocked lag-window attention against the dense
reference, causality, the window edge, an analytic lag case, and the absence of T x T tensors."""

import math
import time

import numpy as np
import pytest
import torch

from neurofuse.nn.attention import LagWindowAttention, lag_window_attention


def _make(d_model=16, n_heads=2, window=10, block_size=4, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    m = LagWindowAttention(d_model, n_heads, window=window, block_size=block_size).to(dtype)
    with torch.no_grad():  # make the lag term as large as the content term
        m.lag_embedding.normal_(std=1.0)
    return m.eval()


def _out_and_grads(m, x, impl):
    m.zero_grad()
    x = x.detach().clone().requires_grad_(True)
    out = m(x, impl=impl)
    # A loss that weights every output differently, so that all gradients are exercised.
    w = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    (out * w).sum().backward()
    grads = {"x": x.grad.clone()}
    grads.update({name: p.grad.clone() for name, p in m.named_parameters()})
    return out.detach(), grads


# (B, T, window, block_size): T shorter than, equal to and longer than the window, T not a
# multiple of block_size, block_size larger than T, window of 1, window not a multiple of
# block_size and block_size not dividing window - 1.
CASES = [
    (2, 7, 10, 3),
    (3, 10, 10, 4),
    (2, 53, 10, 8),
    (1, 37, 5, 128),
    (2, 100, 1, 16),
    (2, 130, 33, 7),
    (3, 96, 17, 16),
]


@pytest.mark.parametrize("B, T, window, block_size", CASES)
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_blocked_matches_dense(B, T, window, block_size, dtype, tol):
    m = _make(window=window, block_size=block_size, dtype=dtype)
    x = torch.randn(B, T, 16, dtype=dtype)
    out_b, grads_b = _out_and_grads(m, x, "blocked")
    out_d, grads_d = _out_and_grads(m, x, "dense")
    assert out_b.shape == (B, T, 16)
    torch.testing.assert_close(out_b, out_d, rtol=0, atol=tol)
    assert grads_b.keys() == grads_d.keys()
    assert "lag_embedding" in grads_b
    for name in grads_b:
        scale = max(1.0, grads_d[name].abs().max().item())
        torch.testing.assert_close(grads_b[name], grads_d[name], rtol=0, atol=tol * scale, msg=name)
    # "auto" is "blocked"
    torch.testing.assert_close(m(x, impl="auto"), out_b, rtol=0, atol=0)


def test_lag_embedding_rows_beyond_T_get_no_gradient():
    # Only lags that occur (0 .. T-1) can receive a gradient; the others must be exactly 0.
    m = _make(window=20, block_size=4)
    _, grads = _out_and_grads(m, torch.randn(2, 6, 16, dtype=torch.float64), "blocked")
    g = grads["lag_embedding"]
    assert torch.all(g[6:] == 0)
    assert torch.all(g[:6].abs().sum(dim=1) > 0)


@pytest.mark.parametrize("impl", ["blocked", "dense"])
def test_causal(impl):
    m = _make(window=12, block_size=5)
    x = torch.randn(2, 40, 16, dtype=torch.float64)
    out = m(x, impl=impl)
    for t in (0, 4, 5, 17, 38):
        x2 = x.clone()
        x2[:, t + 1 :] = torch.randn_like(x2[:, t + 1 :])
        out2 = m(x2, impl=impl)
        torch.testing.assert_close(out2[:, : t + 1], out[:, : t + 1], rtol=0, atol=1e-13)
        assert not torch.allclose(out2[:, t + 1 :], out[:, t + 1 :])


@pytest.mark.parametrize("impl", ["blocked", "dense"])
@pytest.mark.parametrize("t", [12, 13, 19, 35])
def test_window_edge(impl, t):
    window = 12
    m = _make(window=window, block_size=5)
    x = torch.randn(1, 40, 16, dtype=torch.float64)
    out = m(x, impl=impl)[0, t]
    # x at t - window is out of sight ...
    x2 = x.clone()
    x2[:, t - window] += 10.0
    torch.testing.assert_close(m(x2, impl=impl)[0, t], out, rtol=0, atol=1e-13)
    # ... x at t - window + 1 (lag window - 1) is the oldest sample the query sees.
    x3 = x.clone()
    x3[:, t - window + 1] += 10.0
    assert (m(x3, impl=impl)[0, t] - out).abs().max() > 1e-3


@pytest.mark.parametrize("impl", ["blocked", "dense"])
def test_lag_embedding_selects_latency_analytically(impl):
    """Scores depend only on the lag term: each head attends to its own chosen lag.

    With q_t = c (constant), k = 0, v = x and out = identity, head h's score is
    c_h . P_h[lag] / sqrt(d_head), which is ``a / sqrt(d_head)`` at the head's lag L_h and 0
    at the other lags in the window, so

        out_t[head h] = (e^s x_{t - L_h} + sum_{other visible t'} x_t') / (e^s + n_visible - 1)

    (a uniform average over the visible samples while t < L_h).
    """
    d_model, n_heads, window, T = 4, 2, 8, 23
    d_head = d_model // n_heads
    lags, a = (3, 6), 6.0
    m = LagWindowAttention(d_model, n_heads, window=window, block_size=5).double().eval()
    eye = torch.eye(d_model, dtype=torch.float64)
    with torch.no_grad():
        for lin in (m.q_proj, m.k_proj, m.v_proj, m.out_proj):
            if lin.bias is not None:
                lin.bias.zero_()
        m.q_proj.weight.zero_()
        m.q_proj.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]))  # c: head 0 (1, 0), head 1 (0, 1)
        m.k_proj.weight.zero_()
        m.v_proj.weight.copy_(eye)
        m.out_proj.weight.copy_(eye)
        m.lag_embedding.zero_()
        m.lag_embedding[lags[0], 0] = a  # head 0 (channels 0-1) prefers lag 3
        m.lag_embedding[lags[1], 3] = a  # head 1 (channels 2-3) prefers lag 6
    x = torch.randn(2, T, d_model, dtype=torch.float64)
    out = m(x, impl=impl).detach().numpy()

    xn = x.numpy()
    expected = np.zeros_like(xn)
    s = a / math.sqrt(d_head)
    for h, lag in enumerate(lags):
        ch = slice(h * d_head, (h + 1) * d_head)
        for t in range(T):
            visible = np.arange(max(0, t - window + 1), t + 1)
            w = np.where(t - visible == lag, np.exp(s), 1.0)
            expected[:, t, ch] = np.einsum("s,bsc->bc", w / w.sum(), xn[:, visible, ch])
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)
    # And with a large preference the output is (nearly) the input delayed by the lag.
    with torch.no_grad():
        m.lag_embedding.mul_(10.0)
    out = m(x, impl=impl)
    torch.testing.assert_close(
        out[:, 10:, :2], x[:, 10 - lags[0] : T - lags[0], :2], rtol=0, atol=1e-6
    )
    torch.testing.assert_close(
        out[:, 10:, 2:], x[:, 10 - lags[1] : T - lags[1], 2:], rtol=0, atol=1e-6
    )


def test_functional_form_and_shapes():
    torch.manual_seed(1)
    B, H, T, Dh, W = 2, 3, 29, 4, 9
    q, k, v = (torch.randn(B, H, T, Dh, dtype=torch.float64) for _ in range(3))
    p = torch.randn(H, W, Dh, dtype=torch.float64)
    out_b = lag_window_attention(q, k, v, p, block_size=6)
    out_d = lag_window_attention(q, k, v, p, impl="dense")
    assert out_b.shape == (B, H, T, Dh)
    torch.testing.assert_close(out_b, out_d, rtol=0, atol=1e-12)


def test_module_attributes_dtype_and_device_free():
    m = LagWindowAttention(32, 4, window=50)
    assert m.lag_embedding.shape == (50, 32)
    assert 0.01 < m.lag_embedding.std().item() < 0.03  # N(0, 0.02^2)
    assert m.d_head == 8 and m.window == 50 and m.block_size == 128
    assert len(list(m.buffers())) == 0  # no device state
    assert "window=50" in repr(m)
    m = m.double()
    out = m(torch.randn(2, 70, 32, dtype=torch.float64))
    assert out.dtype == torch.float64 and out.shape == (2, 70, 32)
    assert LagWindowAttention(8, 2, bias=False).q_proj.bias is None


def test_dropout_only_in_training():
    m = LagWindowAttention(16, 2, window=10, dropout=0.5, block_size=4)
    x = torch.randn(2, 30, 16)
    m.eval()
    torch.testing.assert_close(m(x), m(x), rtol=0, atol=0)
    torch.testing.assert_close(m(x), m(x, impl="dense"), rtol=0, atol=1e-5)
    m.train()
    torch.manual_seed(0)
    assert not torch.allclose(m(x), m(x))


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (
            {"d_model": 16, "n_heads": 3},
            ValueError,
            r"'d_model' \(16\).*divisible.*'n_heads' \(3\)",
        ),
        (
            {"d_model": 16, "n_heads": 2, "window": 0},
            ValueError,
            "'window' must be an int >= 1, got 0",
        ),
        ({"d_model": 16, "n_heads": 2, "window": 2.5}, TypeError, "'window' must be an int"),
        ({"d_model": 16, "n_heads": 2, "block_size": 0}, ValueError, "'block_size'"),
        (
            {"d_model": 16, "n_heads": 2, "dropout": 1.0},
            ValueError,
            r"'dropout' must be in \[0, 1\)",
        ),
        ({"d_model": 0, "n_heads": 2}, ValueError, "'d_model'"),
    ],
)
def test_constructor_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        LagWindowAttention(**kwargs)


def test_forward_errors():
    m = LagWindowAttention(16, 2, window=10)
    with pytest.raises(ValueError, match="'impl'.*'blocked'.*got 'flex'"):
        m(torch.randn(1, 5, 16), impl="flex")
    with pytest.raises(ValueError, match=r"shape \(B, T, d_model=16\), got \(1, 5, 8\)"):
        m(torch.randn(1, 5, 8))
    with pytest.raises(ValueError, match="got"):
        m(torch.randn(5, 16))


class _LargestTensor(torch.utils._python_dispatch.TorchDispatchMode):
    """Record the largest tensor (in elements) that any aten op creates."""

    def __init__(self):
        super().__init__()
        self.largest = (0, None)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.numel() > self.largest[0]:
                self.largest = (t.numel(), (str(func), tuple(t.shape)))
        return out


def test_blocked_never_allocates_t_by_t():
    B, T, d_model, n_heads, window = 1, 20000, 32, 2, 500
    dense_bytes = B * n_heads * T * T * 4  # the (B, H, T, T) float32 scores alone
    assert dense_bytes > 1e9
    m = LagWindowAttention(d_model, n_heads, window=window)
    x = torch.randn(B, T, d_model, requires_grad=True)
    mode = _LargestTensor()
    with mode:
        m(x).sum().backward()  # forward and backward
    numel, where = mode.largest
    assert x.grad.shape == x.shape and m.lag_embedding.grad.abs().sum() > 0
    # Largest tensors are O(T * d_model) activations or O(block * (block + window)) blocks.
    assert numel <= max(B * T * d_model, B * n_heads * 128 * (128 + window + 128)), where
    assert numel * 4 < dense_bytes / 1000


def test_timing_cpu_forward_backward():
    """Not an assertion: prints the blocked forward+backward time at the paper's sizes."""
    B, T, d_model, window = 8, 2000, 256, 500
    torch.manual_seed(0)
    m = LagWindowAttention(d_model, 2, window=window)
    x = torch.randn(B, T, d_model, requires_grad=True)
    m(x[:, :300]).sum().backward()  # warm-up
    t0 = time.perf_counter()
    m(x).sum().backward()
    elapsed = time.perf_counter() - t0
    print(
        f"\nLagWindowAttention blocked fwd+bwd, B={B}, T={T}, d_model={d_model}, "
        f"window={window}, {torch.get_num_threads()} threads: {elapsed:.2f} s"
    )


@pytest.mark.gpu
@pytest.mark.parametrize("train", [False, True])
def test_blocked_matches_dense_cuda(train):
    """On CUDA, SDPA may pick a fused kernel for the blocked impl; the result must not change."""
    torch.manual_seed(0)
    m = LagWindowAttention(256, 2, window=500, block_size=128).cuda()
    with torch.no_grad():
        m.lag_embedding.normal_(std=0.5)
    m.train(train)
    if train:  # dropout 0 keeps training-mode autograd paths comparable
        m.dropout = 0.0
    x = torch.randn(2, 1100, 256, device="cuda")
    out_b, grads_b = _out_and_grads(m, x, "blocked")
    out_d, grads_d = _out_and_grads(m, x, "dense")
    torch.testing.assert_close(out_b, out_d, rtol=1e-5, atol=1e-5)
    for name in grads_b:
        scale = max(1.0, grads_d[name].abs().max().item())
        torch.testing.assert_close(
            grads_b[name], grads_d[name], rtol=1e-5, atol=1e-5 * scale, msg=name
        )

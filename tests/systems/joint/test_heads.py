"""Physics heads against independent numpy/scipy references."""

import numpy as np
import pytest
import scipy.signal
import scipy.sparse
import torch

from neurofuse.physics.hrf import spm_hrf
from neurofuse.systems.joint import heads
from neurofuse.systems.joint.heads import (
    DoubleGammaHRF,
    FMRIHead,
    MEGHead,
    analytic_envelope,
    envelope_tr_means,
    hilbert_transform,
)


@pytest.mark.parametrize("n", [99, 100, 101, 128])
def test_envelope_matches_scipy_hilbert(n):
    x = np.random.default_rng(n).standard_normal((3, n, 4))
    ours = analytic_envelope(torch.as_tensor(x), dim=1).numpy()
    ref = np.abs(scipy.signal.hilbert(x, axis=1))
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("tr", [1.0, 1.5, 2.0])
def test_hrf_initialised_at_spm_canonical(tr):
    hrf = DoubleGammaHRF(tr)
    kernel = hrf.kernel().detach().double().numpy()
    ref = spm_hrf(1.0 / tr)  # independent numpy implementation, same sampling
    assert kernel.shape == ref.shape
    np.testing.assert_allclose(kernel, ref, atol=1e-6)
    assert np.argmax(kernel) * tr == pytest.approx(5.0, abs=tr)  # mode of gamma(6, 1)


def test_hrf_parameters_receive_gradients():
    hrf = DoubleGammaHRF(2.0)
    p = torch.rand(2, 20, 5)
    hrf(p).pow(2).sum().backward()
    assert hrf.log_params.grad is not None and torch.all(hrf.log_params.grad != 0)


def _sparse_morph(n_to, n_from, seed=0):
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n_to), 3)
    cols = rng.integers(0, n_from, size=len(rows))
    m = scipy.sparse.csr_array((rng.random(len(rows)), (rows, cols)), shape=(n_to, n_from))
    return scipy.sparse.csr_array(m / m.sum(1)[:, None])


def test_meg_head_is_leadfield_times_morph():
    rng = np.random.default_rng(1)
    L = rng.standard_normal((7, 30)) * 1e-8
    M = _sparse_morph(30, 40)
    head = MEGHead.from_forward(L, M)
    s = rng.standard_normal((2, 50, 40))
    ours = head(torch.as_tensor(s, dtype=torch.float64)).numpy() / head.scale
    ref = np.einsum("ck,btk->btc", L, np.einsum("kj,btj->btk", M.toarray(), s))
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    with pytest.raises(ValueError, match="Morph vs source-space mismatch"):
        MEGHead.from_forward(L[:, :29], M)


def test_fmri_head_matches_numpy_pipeline():
    rng = np.random.default_rng(2)
    M = _sparse_morph(12, 20)
    head = FMRIHead(M, sfreq=50.0, tr=2.0)
    s = rng.standard_normal((2, 1000, 20))
    ours = head(torch.as_tensor(s, dtype=torch.float32)).detach().double().numpy()
    x = np.einsum("kj,btj->btk", M.toarray(), s)
    env = np.abs(scipy.signal.hilbert(x, axis=1))
    p = env.reshape(2, 10, 100, 12).mean(2)
    h = spm_hrf(0.5)
    ref = np.stack([[np.convolve(p[b, :, k], h)[:10] for k in range(12)] for b in range(2)])
    np.testing.assert_allclose(ours, ref.transpose(0, 2, 1), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="whole number of TRs"):
        head(torch.zeros(1, 150, 20))


@pytest.mark.parametrize("n", [99, 100])
def test_hilbert_transform_is_scipy_imaginary_part_and_antisymmetric(n):
    x = np.random.default_rng(n).standard_normal((3, 4, n))
    ours = hilbert_transform(torch.as_tensor(x), dim=-1).numpy()
    np.testing.assert_allclose(ours, scipy.signal.hilbert(x, axis=-1).imag, rtol=1e-10,
                               atol=1e-12)
    # adjoint is -H: <H a, b> = -<a, H b>
    a, b = (torch.as_tensor(np.random.default_rng(n + i).standard_normal(n)) for i in (1, 2))
    assert float(hilbert_transform(a) @ b) == pytest.approx(-float(a @ hilbert_transform(b)),
                                                             abs=1e-10)


def _reference_p(morph, s, spt):
    """Textbook order in float64: dense morph, complex-FFT envelope (scipy), TR mean."""
    x = np.einsum("kj,btj->bkt", morph.toarray(), s)  # (B, n_sub, T)
    env = np.sqrt(np.abs(scipy.signal.hilbert(x, axis=-1)) ** 2 + 1e-12)  # the head's eps
    B, R, T = env.shape
    return env.reshape(B, R, T // spt, spt).mean(-1).transpose(1, 0, 2)  # (R, B, n_tr)


@pytest.mark.parametrize("chunk_elements, dtype, tol", [(64, torch.float32, 1e-5),
                                                        (2**19, torch.float32, 1e-5),
                                                        (64, torch.float64, 1e-10)])
def test_fused_envelope_means_values_and_gradients(chunk_elements, dtype, tol, monkeypatch):
    """Several morphs at once, tiny or large chunks, an empty morph row: equal to the
    textbook order, and gradients equal to autograd through the float64 dense reference."""
    monkeypatch.setattr(heads, "CHUNK_ELEMENTS", chunk_elements)
    rng = np.random.default_rng(3)
    B, T, S, spt = 2, 60, 15, 10
    morphs = [_sparse_morph(11, S, seed=4), _sparse_morph(7, S, seed=5)]
    morphs[1] = scipy.sparse.csr_array(morphs[1].multiply((np.arange(7) != 3)[:, None]))
    morphs = [m.astype(np.float32).astype(np.float64) for m in morphs]  # the heads' buffers
    hs = [FMRIHead(m, sfreq=10.0, tr=1.0) for m in morphs]
    s = torch.tensor(rng.standard_normal((S, B, T)), dtype=dtype, requires_grad=True)
    sh = torch.cat([s, hilbert_transform(s, dim=-1)], dim=2).transpose(0, 1)  # (B, S, 2T)
    ps = envelope_tr_means(hs, sh)
    s_np = s.detach().double().numpy().transpose(1, 2, 0)  # (B, T, S)
    for p, m in zip(ps, morphs):
        assert p.dtype == dtype
        np.testing.assert_allclose(p.detach().numpy(), _reference_p(m, s_np, spt), rtol=tol,
                                   atol=tol / 10)
    w = [torch.as_tensor(rng.standard_normal(p.shape)) for p in ps]
    sum((p.double() * wi).sum() for p, wi in zip(ps, w)).backward()

    s64 = s.detach().double().requires_grad_(True)
    ref = 0
    for m, wi in zip(morphs, w):
        x = torch.einsum("kj,jbt->kbt", torch.as_tensor(m.toarray()), s64)  # (R, B, T)
        env = analytic_envelope(x, dim=-1, eps=1e-12)
        ref = ref + (env.view(x.shape[0], B, T // spt, spt).mean(-1) * wi).sum()
    ref.backward()
    np.testing.assert_allclose(s.grad.numpy(), s64.grad.numpy(), rtol=10 * tol,
                               atol=tol * float(s64.grad.abs().max()))


def test_fmri_head_uses_the_current_morph_after_a_buffer_swap():
    rng = np.random.default_rng(6)
    a, b = _sparse_morph(9, 12, seed=7), _sparse_morph(9, 12, seed=8)
    head = FMRIHead(a, sfreq=10.0, tr=1.0)
    s = torch.as_tensor(rng.standard_normal((1, 40, 12)), dtype=torch.float32)
    head(s)  # builds the chunk cache for morph a
    head.morph = FMRIHead(b, sfreq=10.0, tr=1.0).morph  # as load_flat_state does
    torch.testing.assert_close(head(s), FMRIHead(b, sfreq=10.0, tr=1.0)(s))


def test_hrf_toeplitz_is_the_causal_convolution():
    hrf = DoubleGammaHRF(2.0)
    p = torch.rand(3, 20, 4, dtype=torch.float64)
    h = hrf.kernel().detach().double().numpy()
    ref = np.stack([[np.convolve(p[b, :, k].numpy(), h)[:20] for k in range(4)]
                    for b in range(3)]).transpose(0, 2, 1)
    np.testing.assert_allclose(hrf(p.float()).detach().numpy(), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hrf.convolve_last(p.float().transpose(1, 2)).detach().numpy(),
                               ref.transpose(0, 2, 1), rtol=1e-5, atol=1e-6)

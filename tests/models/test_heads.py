"""Physics heads against independent numpy/scipy references."""

import numpy as np
import pytest
import scipy.signal
import scipy.sparse
import torch

from neurofuse.hemodynamics import spm_hrf
from neurofuse.models.heads import DoubleGammaHRF, FMRIHead, MEGHead, analytic_envelope


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

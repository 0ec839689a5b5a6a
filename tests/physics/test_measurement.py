"""neurofuse.physics.measurement: sensors = L M s exactly, BOLD of morphed sources, noise at a
CNR (realised within tolerance, none at inf, draws in a fixed order)."""

import math

import numpy as np
import pytest
import scipy.sparse

from neurofuse.physics import make_bold
from neurofuse.physics.measurement import (
    add_noise,
    apply_gain,
    make_gain,
    measure_bold,
    referenced_noise_sigma,
)


def _integer_problem(seed=0, n_channels=5, n_sub=12, n_src=20, n_times=30):
    """Small-integer L, M, s: every product and sum is exact in float64."""
    rng = np.random.default_rng(seed)
    L = rng.integers(-5, 6, (n_channels, n_sub)).astype(float)
    dense_m = rng.integers(0, 4, (n_sub, n_src)) * (rng.random((n_sub, n_src)) < 0.3)
    M = scipy.sparse.csr_array(dense_m.astype(float))
    s = rng.integers(-9, 10, (n_src, n_times)).astype(float)
    return L, M, s


def test_sensor_measurement_equals_l_m_s_exactly():
    L, M, s = _integer_problem()
    gain = make_gain(L, M)
    assert isinstance(gain, np.ndarray) and gain.shape == (5, 20)
    np.testing.assert_array_equal(gain, L @ M.toarray())
    np.testing.assert_array_equal(apply_gain(gain, s), L @ M.toarray() @ s)
    np.testing.assert_array_equal(apply_gain(gain, s), L @ (M @ s))
    # No morph: the lead field itself; a sparse weighting (ECoG) stays sparse.
    np.testing.assert_array_equal(make_gain(L), L)
    W = scipy.sparse.csr_array(np.abs(L))
    g = make_gain(W, M, dtype=np.float32)
    assert scipy.sparse.issparse(g) and g.dtype == np.float32
    np.testing.assert_array_equal(g.toarray(), (np.abs(L) @ M.toarray()).astype(np.float32))
    np.testing.assert_array_equal(apply_gain(g, s.astype(np.float32)),
                                  (np.abs(L) @ M.toarray() @ s).astype(np.float32))


def test_gain_shape_errors():
    L, M, s = _integer_problem()
    with pytest.raises(ValueError, match="'morph'.*12"):
        make_gain(L, M.T)
    with pytest.raises(ValueError, match="'leadfield'"):
        make_gain(L[0], M)
    with pytest.raises(ValueError, match="'sources'.*20"):
        apply_gain(make_gain(L, M), s[:5])


def test_measure_bold_is_make_bold_of_morphed_sources():
    rng = np.random.default_rng(1)
    n_src, n_sub = 30, 11
    M = scipy.sparse.random(n_sub, n_src, density=0.2, random_state=1, format="csr")
    s = rng.standard_normal((n_src, 50 * 20)).astype(np.float32)
    bold = measure_bold(s, 50.0, 2.0, morph=M, rows_per_chunk=4)
    assert bold.shape == (n_sub, 10) and bold.dtype == np.float32
    ref = make_bold(M.toarray() @ s.astype(np.float64), 50.0, 2.0)
    np.testing.assert_allclose(bold, ref, rtol=1e-4, atol=1e-6)
    # Chunking the morph rows does not change the numbers.
    np.testing.assert_array_equal(measure_bold(s, 50.0, 2.0, morph=M, rows_per_chunk=1000), bold)
    np.testing.assert_array_equal(measure_bold(s, 50.0, 2.0), make_bold(s, 50.0, 2.0))
    with pytest.raises(ValueError, match="'sources'.*30"):
        measure_bold(s[:5], 50.0, 2.0, morph=M)


@pytest.mark.parametrize("cnr", [0.3, 1.0, 5.0])
def test_noise_realises_the_requested_cnr_per_row(cnr):
    rng = np.random.default_rng(2)
    scale = np.array([[1e-13], [1.0], [50.0]])
    signal = np.sin(np.linspace(0, 60, 40_000))[None] * scale  # rows of very different size
    noisy = add_noise(np.random.default_rng(3), signal, cnr, n_repeats=2)
    assert noisy.shape == (2, 3, 40_000) and noisy.dtype == np.float32
    noise = noisy - signal
    realised = signal.std(-1) / noise.std(-1)  # (2, 3)
    # s.e. of a sample s.d. over 40000 samples ~ 0.35 %; 2 % is > 5 s.e.
    np.testing.assert_allclose(realised, cnr, rtol=0.02)
    # Repeats carry independent noise.
    r = np.corrcoef(noise[0, 1], noise[1, 1])[0, 1]
    assert abs(r) < 0.03
    # One reference sigma for every row (the ECoG convention): the same noise s.d. everywhere.
    fixed = add_noise(rng, signal, cnr, sigma_signal=2.0) - signal
    np.testing.assert_allclose(fixed.std(-1), 2.0 / cnr, rtol=0.02)


def test_infinite_cnr_adds_no_noise_and_draws_nothing():
    rng = np.random.default_rng(4)
    signal = rng.standard_normal((3, 100))
    state = rng.bit_generator.state
    out = add_noise(rng, signal, math.inf, n_repeats=3)
    assert rng.bit_generator.state == state
    np.testing.assert_array_equal(out, np.broadcast_to(signal.astype(np.float32), (3, 3, 100)))
    np.testing.assert_array_equal(add_noise(rng, signal, float("inf")), signal.astype(np.float32))
    with pytest.raises(ValueError, match="'cnr'"):
        add_noise(rng, signal, 0.0)


def test_noise_draws_match_the_simulators_formulas():
    """Frozen copies of the study's and the ECoG simulator's former inline noise: same draws,
    same float operations, so simulated datasets stay byte-identical."""
    signal64 = np.random.default_rng(5).standard_normal((4, 250)) * [[1.0], [2.0], [3.0], [4.0]]
    signal32 = signal64.astype(np.float32)
    for signal in (signal64, signal32):  # MEG (float64 clean) and BOLD (float32 clean)
        rng = np.random.default_rng(6)
        sigma = signal.std(axis=1, keepdims=True) / 0.7
        ref = np.empty((3, *signal.shape), np.float32)
        for r in range(3):
            ref[r] = signal + sigma * rng.standard_normal(signal.shape)
        np.testing.assert_array_equal(
            add_noise(np.random.default_rng(6), signal, 0.7, n_repeats=3), ref)
    amplitude, cnr = 3e-9, 1.7  # ECoG: one sigma for all electrodes, float32 draws
    clean = (signal32 * 1e-9).astype(np.float32)
    rng = np.random.default_rng(7)
    ref = clean + np.float32(amplitude / cnr) * rng.standard_normal(clean.shape, dtype=np.float32)
    out = add_noise(np.random.default_rng(7), clean, cnr, sigma_signal=amplitude,
                    noise_dtype=np.float32)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, ref)


def test_referenced_noise_sigma_gives_the_target_variance_after_the_average_reference():
    """Noise of s.d. tau, referenced by P = I - 1 1^T / n, has covariance P diag(tau^2) P:
    its diagonal must be sigma^2 exactly (hand algebra), where the uniform correction
    sigma / sqrt(1 - 1/n) misses on electrodes of unequal power."""
    rng = np.random.default_rng(0)
    n = 30
    sigma = rng.uniform(0.5, 2.0, n)
    proj = np.eye(n) - np.ones((n, n)) / n
    for shape in ((n,), (n, 1)):
        tau = referenced_noise_sigma(sigma.reshape(shape))
        assert tau.shape == shape
        got = np.sqrt(np.diag(proj @ np.diag(tau.ravel() ** 2) @ proj))
        np.testing.assert_allclose(got, sigma, rtol=1e-12)
    uniform = sigma / np.sqrt(1 - 1 / n)
    miss = np.sqrt(np.diag(proj @ np.diag(uniform**2) @ proj)) / sigma - 1
    assert np.abs(miss).max() > 0.03  # what the per-electrode version fixes
    # equal powers: the familiar uniform correction
    np.testing.assert_allclose(referenced_noise_sigma(np.ones(n)), 1 / np.sqrt(1 - 1 / n))
    with pytest.raises(ValueError, match="sigma_signal"):
        referenced_noise_sigma(np.ones((n, 2)))

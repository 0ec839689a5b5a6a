"""neurofuse.physics.envelope against scipy.signal.hilbert and an analytic limit."""

import numpy as np
import pytest
from scipy import signal
from scipy.fft import next_fast_len

from neurofuse.physics import envelope


@pytest.mark.parametrize("n", [101, 128, 999, 1000])
def test_envelope_matches_scipy_hilbert(n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal((3, n))
    np.testing.assert_allclose(envelope(x), np.abs(signal.hilbert(x)), rtol=0, atol=1e-10)
    # Other axis.
    np.testing.assert_allclose(
        envelope(x.T, axis=0), np.abs(signal.hilbert(x.T, axis=0)), rtol=0, atol=1e-10
    )


def test_envelope_of_am_signal_is_modulator():
    # Analytic limit: for a slow positive modulator times a fast carrier with a whole number
    # of periods in the window, the envelope equals the modulator.
    sfreq, n = 1000.0, 4000
    t = np.arange(n) / sfreq
    mod = 1.5 + np.cos(2 * np.pi * 1.0 * t)
    x = mod * np.cos(2 * np.pi * 100.0 * t)
    np.testing.assert_allclose(envelope(x), mod, atol=1e-9)
    assert envelope(x.astype(np.float32)).dtype == np.float32


def test_envelope_errors():
    with pytest.raises(ValueError, match="NaN"):
        envelope(np.array([1.0, np.nan, 2.0]))
    with pytest.raises(TypeError, match="real"):
        envelope(np.ones(4, complex))




@pytest.mark.parametrize("n_fft", ["fast", 1500])
def test_envelope_padded_fft_matches_scipy(n_fft):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 1009))  # prime length: 'fast' pads (to 1024)
    N = next_fast_len(1009) if n_fft == "fast" else n_fft
    assert N > 1009
    ref = np.abs(signal.hilbert(x, N=N, axis=-1)[:, :1009])
    np.testing.assert_allclose(envelope(x, n_fft=n_fft), ref, rtol=0, atol=1e-10)
    # Padding changes the result (the periodic extension differs): the option does something.
    assert np.abs(envelope(x, n_fft=n_fft) - envelope(x)).max() > 1e-3
    with pytest.raises(ValueError, match="n_fft"):
        envelope(x, n_fft=100)
    with pytest.raises(ValueError, match="n_fft"):
        envelope(x, n_fft="slow")

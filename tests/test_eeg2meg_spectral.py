"""System B's spectral calibration: the Eq. 7 filter and the Eq. 8 band loss against MNE."""

import mne
import numpy as np
import pytest
import torch

from neurofuse.systems.eeg2meg.spectral import BANDS, BandFilterBank, SpectralFilter, band_loss


def test_bands_are_the_papers():
    assert BANDS == {"delta": (0.5, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0),
                     "beta": (13.0, 30.0), "gamma": (30.0, 100.0)}


@pytest.mark.parametrize("n_times", [500, 501])
@pytest.mark.parametrize("per_channel", [False, True])
def test_spectral_filter_is_the_identity_at_initialisation(n_times, per_channel):
    y = torch.randn(2, 3, n_times, dtype=torch.float64)
    filt = SpectralFilter(n_times, 3, per_channel=per_channel)
    torch.testing.assert_close(filt(y), y, rtol=0, atol=1e-12)
    y32 = y.float()
    torch.testing.assert_close(filt(y32), y32, rtol=0, atol=1e-5)


def test_spectral_filter_applies_its_complex_weights_like_numpy():
    rng = np.random.default_rng(0)
    y = rng.standard_normal((2, 3, 64))
    w = rng.standard_normal(33) + 1j * rng.standard_normal(33)
    filt = SpectralFilter(64).double()
    with torch.no_grad():
        filt.weight.copy_(torch.from_numpy(np.stack([w.real, w.imag], -1)))
    expected = np.fft.irfft(np.fft.rfft(y, axis=-1) * w, n=64, axis=-1)
    np.testing.assert_allclose(filt(torch.from_numpy(y)).detach().numpy(), expected,
                               atol=1e-12)
    with pytest.raises(ValueError, match="64 samples"):
        filt(torch.zeros(1, 3, 65, dtype=torch.float64))


@pytest.mark.parametrize("pad", ["reflect_limited", "constant"])
@pytest.mark.parametrize("n_times", [100, 300, 500, 2500])  # 100: shorter than every filter
def test_band_filters_match_mne_filter_data(n_times, pad):
    sfreq = 250.0
    rng = np.random.default_rng(n_times)
    y = rng.standard_normal((2, 4, n_times))
    bank = BandFilterBank(sfreq, pad=pad)
    assert bank.names == tuple(BANDS)
    out = bank(torch.from_numpy(y)).numpy()  # (n_bands, 2, 4, n_times)
    for i, (lo, hi) in enumerate(BANDS.values()):
        expected = mne.filter.filter_data(y, sfreq, lo, hi, pad=pad, verbose="error")
        np.testing.assert_allclose(out[i], expected, rtol=0, atol=1e-10 * np.abs(y).max())


def test_a_band_reaching_nyquist_becomes_a_high_pass_like_mne():
    sfreq = 200.0
    y = np.random.default_rng(1).standard_normal((3, 400))
    bank = BandFilterBank(sfreq)
    gamma = bank(torch.from_numpy(y))[bank.names.index("gamma")].numpy()
    expected = mne.filter.filter_data(y, sfreq, 30.0, None, verbose="error")
    np.testing.assert_allclose(gamma, expected, atol=1e-10)
    bank = BandFilterBank(50.0)  # γ starts above Nyquist (25 Hz)
    assert "gamma" not in bank.names and "beta" in bank.names


def test_a_sinusoid_lands_in_its_own_band():
    sfreq, t = 250.0, np.arange(2500) / 250.0
    y = torch.from_numpy(np.sin(2 * np.pi * 10.0 * t))  # α
    out = BandFilterBank(sfreq)(y).numpy()[:, 500:-500]  # away from the edges
    power = (out ** 2).mean(axis=-1)
    assert power.argmax() == list(BANDS).index("alpha")
    assert power[list(BANDS).index("alpha")] == pytest.approx(0.5, rel=0.02)  # gain ≈ 1


def test_band_loss_is_the_sum_of_per_band_mean_squared_errors_and_has_gradients():
    sfreq = 250.0
    rng = np.random.default_rng(2)
    y, y_hat = rng.standard_normal((2, 2, 3, 500))
    expected = sum(((mne.filter.filter_data(y_hat, sfreq, lo, hi, verbose="error")
                     - mne.filter.filter_data(y, sfreq, lo, hi, verbose="error")) ** 2).mean()
                   for lo, hi in BANDS.values())
    y_hat_t = torch.from_numpy(y_hat).requires_grad_(True)
    loss = band_loss(y_hat_t, torch.from_numpy(y), BandFilterBank(sfreq))
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    loss.backward()
    assert torch.isfinite(y_hat_t.grad).all() and y_hat_t.grad.abs().sum() > 0
    assert band_loss(torch.from_numpy(y), torch.from_numpy(y), BandFilterBank(sfreq)) == 0


def test_half_precision_input_is_filtered_in_float32():
    y = torch.randn(2, 3, 500)
    bank = BandFilterBank(250.0)
    out = bank(y.to(torch.bfloat16))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, bank(y.to(torch.bfloat16).float()), rtol=0, atol=0)


@pytest.mark.parametrize("pad", ["reflect_limited", "constant"])
def test_band_loss_factor_equals_filtering_every_band(pad):
    # the quadratic form of band_loss must equal filtering each band and summing the MSEs
    bank = BandFilterBank(250.0, pad=pad)
    d = torch.randn(3, 7, 250, dtype=torch.float64)
    direct = bank(d).pow(2).mean(dim=(1, 2, 3)).sum()
    assert band_loss(d, torch.zeros_like(d), bank).item() == pytest.approx(direct.item(),
                                                                          rel=1e-10)
    d32 = d.float()
    assert band_loss(d32, torch.zeros_like(d32), bank).item() == pytest.approx(direct.item(),
                                                                              rel=1e-4)


def test_band_loss_edge_weight_depends_on_the_padding():
    # The weight band_loss gives each sample of a 1-s epoch (the diagonal of Σ_b M_bᵀ M_b),
    # from MNE's own filtering of unit impulses: reflect_limited pads with 2 x[0] − x[k], so
    # the δ filter, longer than the epoch, sees mostly the first and last samples; zero
    # padding weighs them like the others.
    sfreq, n = 250.0, 250
    for pad in ("reflect_limited", "constant"):
        impulses = np.eye(n)
        q = sum(mne.filter.filter_data(impulses, sfreq, lo, hi, pad=pad, verbose="error") ** 2
                for lo, hi in BANDS.values())  # q[i, j] = Σ_b (M_b e_i)_j²
        weight = q.sum(axis=1)  # ||M e_i||² summed over bands: Q's diagonal
        factor = BandFilterBank(sfreq, pad=pad).loss_factor(n, torch.float64).numpy()
        np.testing.assert_allclose((factor ** 2).sum(axis=1), weight, rtol=1e-8)
        edge, middle = weight[[0, -1]], np.median(weight)
        if pad == "reflect_limited":
            assert (edge > 50 * middle).all()
        else:
            assert (edge < 1.5 * middle).all()


def test_an_unknown_padding_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="'pad'.*'reflect_limited', 'constant'.*got 'edge'"):
        BandFilterBank(250.0, pad="edge")

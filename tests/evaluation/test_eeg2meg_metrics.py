"""System B's per-band signal metrics against analytic limits, scipy, scikit-learn,
scikit-image and MNE's filters."""

import mne
import numpy as np
import pytest
from scipy.stats import pearsonr
from skimage.metrics import structural_similarity
from sklearn.metrics import normalized_mutual_info_score

from neurofuse.evaluation.eeg2meg.signal_metrics import (
    BANDS,
    METRICS,
    band_filter,
    compute_band_metrics,
    nmi_per_epoch,
    normalize_like,
    pearson_per_epoch,
    rmse_per_epoch,
    ssim_per_epoch,
    summarize_band_metrics,
)

SFREQ = 250.0


def _noise(seed, shape=(6, 12, 500)):
    return np.random.default_rng(seed).standard_normal(shape)


def test_bands_are_the_papers():
    assert BANDS == {"delta": (0.5, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0),
                     "beta": (13.0, 30.0), "gamma": (30.0, 100.0)}


def test_one_definition_of_the_bands():
    # the world, the generator's loss and the scores use the same object
    from neurofuse.physics.bands import BANDS as physics_bands
    from neurofuse.simulation.eeg_meg import BANDS as world_bands
    from neurofuse.systems.eeg2meg.spectral import BANDS as loss_bands

    assert BANDS is physics_bands is world_bands is loss_bands


def test_identical_signals_score_perfectly():
    # channels with very different units (T vs T/m): scored on the real channel's scale
    x = _noise(0) * np.geomspace(1e-13, 1e-11, 12)[None, :, None]
    for norm in ("zscore", "minmax"):
        m = compute_band_metrics(x, x, SFREQ, normalization=norm)
        assert list(m) == list(BANDS)
        for band in BANDS:
            np.testing.assert_allclose(m[band]["pearson"], 1.0, atol=1e-10)
            np.testing.assert_allclose(m[band]["rmse"], 0.0, atol=1e-12)
            np.testing.assert_allclose(m[band]["nmi"], 1.0, atol=1e-12)
            np.testing.assert_allclose(m[band]["ssim"], 1.0, atol=1e-12)


def test_independent_noise_scores_near_zero():
    a, b = _noise(1), _noise(2)
    m = compute_band_metrics(a, b, SFREQ, bands={"beta": BANDS["beta"], "gamma": BANDS["gamma"]})
    for band in m:
        assert abs(np.mean(m[band]["pearson"])) < 0.03
        assert np.mean(m[band]["nmi"]) < 0.02
        assert abs(np.mean(m[band]["ssim"])) < 0.05
        # same power, independent: RMSE -> sqrt(2) real-channel s.d. on the z-score scale
        assert np.mean(m[band]["rmse"]) == pytest.approx(np.sqrt(2), rel=0.1)
    # a correlated pair scores between the two limits, and r tracks the mixing weight
    c = 0.6 * a + 0.8 * b  # r(a, c) = 0.6 for white noise, in every band
    m = compute_band_metrics(c, a, SFREQ, bands={"alpha": BANDS["alpha"]})["alpha"]
    assert np.mean(m["pearson"]) == pytest.approx(0.6, abs=0.05)
    assert 0.05 < np.mean(m["nmi"]) < 0.9


def test_pearson_agrees_with_scipy_and_skips_flat_channels():
    s, r = _noise(3, (3, 5, 200)), _noise(4, (3, 5, 200))
    s[:, :2] += r[:, :2]
    s[1, 3] = 0.0  # a flat synthetic channel in epoch 1
    mean, per_ch = pearson_per_epoch(s, r)
    for e in range(3):
        for c in range(5):
            if (e, c) == (1, 3):
                assert np.isnan(per_ch[e, c])
                continue
            assert per_ch[e, c] == pytest.approx(pearsonr(s[e, c], r[e, c]).statistic, abs=1e-12)
    ref = [np.mean([pearsonr(s[e, c], r[e, c]).statistic for c in range(5) if (e, c) != (1, 3)])
           for e in range(3)]
    np.testing.assert_allclose(mean, ref, atol=1e-12)
    # an epoch with only flat channels is NaN, and is left out of the summary
    s[2] = 0.0
    assert np.isnan(pearson_per_epoch(s, r)[0][2])


def test_rmse_by_hand():
    s = np.zeros((2, 3, 8))
    r = np.zeros((2, 3, 8))
    r[0] = 2.0
    r[1, 0, :4] = 4.0  # (16 * 4) / 24 -> sqrt(8/3)
    np.testing.assert_allclose(rmse_per_epoch(s, r), [2.0, np.sqrt(64 / 24)])


def test_normalization_uses_the_real_scale_only():
    r = (_noise(5, (4, 3, 100)) + 5.0) * np.array([1.0, 10.0, 1e-12])[None, :, None]
    s = 2.0 * r
    rn, sn = normalize_like(r, s, kind="zscore")
    np.testing.assert_allclose(rn.mean(axis=(0, 2)), 0.0, atol=1e-9)
    np.testing.assert_allclose(rn.std(axis=(0, 2)), 1.0)
    # the synthetic signal is not rescaled to its own statistics: a gain error stays visible
    assert sn.std(axis=(0, 2)) == pytest.approx([2.0] * 3)
    rn, _ = normalize_like(r, s, kind="minmax")
    np.testing.assert_allclose(rn.min(axis=(0, 2)), 0.0, atol=1e-12)
    np.testing.assert_allclose(rn.max(axis=(0, 2)), 1.0)
    # a constant real channel keeps scale 1 (no division by zero)
    r[:, 0] = 3.0
    rn, sn = normalize_like(r, s)
    assert np.all(np.isfinite(rn)) and np.all(np.isfinite(sn))


def test_nmi_agrees_with_sklearn_on_quantile_bins():
    s, r = _noise(6, (2, 4, 300)), _noise(7, (2, 4, 300))
    s = s + r
    bins = 8
    for e in range(2):
        lr = np.searchsorted(np.quantile(r[e], np.linspace(0, 1, bins + 1)[1:-1]), r[e].ravel(),
                             side="right")
        ls = np.searchsorted(np.quantile(s[e], np.linspace(0, 1, bins + 1)[1:-1]), s[e].ravel(),
                             side="right")
        assert np.bincount(lr).tolist() == [150] * bins  # equally populated
        assert nmi_per_epoch(s, r, bins=bins)[e] == pytest.approx(
            normalized_mutual_info_score(lr, ls), abs=1e-12)
    # limit cases as sklearn: a constant signal against a varying one, two constants
    const = np.zeros((1, 4, 300))
    assert nmi_per_epoch(const, r[1:], bins=bins)[0] == pytest.approx(  # lr: labels of r[1]
        normalized_mutual_info_score(np.zeros(1200, int), lr), abs=1e-12)
    assert nmi_per_epoch(const, const, bins=bins)[0] == 1.0
    # NMI sees amplitude relations, not scale: a monotone map of the real signal gives 1
    np.testing.assert_allclose(nmi_per_epoch(np.exp(r), r, bins=bins), 1.0)


def test_ssim_agrees_with_skimage_with_explicit_data_range():
    s, r = _noise(8, (2, 9, 60)), _noise(9, (2, 9, 60))
    s = 0.5 * s + r
    got = ssim_per_epoch(s, r)
    for e in range(2):
        rng = r[e].max() - r[e].min()
        assert got[e] == pytest.approx(structural_similarity(r[e], s[e], data_range=rng,
                                                             win_size=7), abs=1e-12)
    fixed = ssim_per_epoch(s, r, data_range=4.0, win_size=5)
    assert fixed[1] == pytest.approx(structural_similarity(r[1], s[1], data_range=4.0,
                                                           win_size=5), abs=1e-12)
    with pytest.raises(ValueError, match="ssim_win_size"):
        ssim_per_epoch(s[:, :4], r[:, :4])


def test_band_filter_equals_mne_and_passes_its_band(monkeypatch):
    from neurofuse.evaluation.eeg2meg import signal_metrics

    monkeypatch.setattr(signal_metrics, "_FILTER_CHUNK", 4)  # rows in chunks of 4 (and 2)
    x = _noise(10, (2, 3, 750))
    for name, (lo, hi) in BANDS.items():
        ref = mne.filter.filter_data(x, SFREQ, lo, hi, method="fir", phase="zero",
                                     fir_design="firwin", verbose="error")
        np.testing.assert_allclose(band_filter(x, SFREQ, (lo, hi), name=name), ref,
                                   rtol=1e-9, atol=1e-12 * np.abs(ref).max())
    # longer signals (filter shorter than the signal), 1-D input, and units of 1e-13 T
    long = _noise(18, (2, 4000)) * 1e-13
    for lo, hi in ((0.5, 4.0), (8.0, 13.0), (None, 40.0), (30.0, None)):
        ref = mne.filter.filter_data(long, SFREQ, lo, hi, verbose="error")
        np.testing.assert_allclose(band_filter(long, SFREQ, (lo, hi)), ref, rtol=1e-9,
                                   atol=1e-12 * np.abs(ref).max())
        np.testing.assert_allclose(band_filter(long[0], SFREQ, (lo, hi)), ref[0], rtol=1e-9,
                                   atol=1e-12 * np.abs(ref).max())
    # a 10 Hz sinusoid is kept by alpha and removed by beta (away from the edges)
    t = np.arange(1500) / SFREQ
    sine = np.sin(2 * np.pi * 10 * t)[None]
    mid = slice(400, 1100)
    alpha = band_filter(sine, SFREQ, BANDS["alpha"])
    beta = band_filter(sine, SFREQ, BANDS["beta"])
    assert np.std(alpha[0, mid]) == pytest.approx(np.std(sine[0, mid]), rel=0.02)
    assert np.std(beta[0, mid]) < 0.02 * np.std(sine[0, mid])
    # gamma at 200 Hz sampling reaches Nyquist: high-pass only, like mne with h_freq=None
    ref = mne.filter.filter_data(x, 200.0, 30.0, None, verbose="error")
    np.testing.assert_allclose(band_filter(x, 200.0, BANDS["gamma"]), ref, rtol=1e-9,
                               atol=1e-12 * np.abs(ref).max())
    # (None, None) is the unfiltered signal
    np.testing.assert_array_equal(band_filter(x, SFREQ, (None, None)), x)


def test_band_metrics_pick_out_the_band_with_the_shared_signal():
    # synthetic = real in alpha, independent elsewhere: r high in alpha only
    rng = np.random.default_rng(11)
    t = np.arange(500) / SFREQ
    shared = np.sin(2 * np.pi * 10 * t + rng.uniform(0, 2 * np.pi, (4, 8, 1)))
    real = 3 * shared + _noise(12, (4, 8, 500))
    synth = 3 * shared + _noise(13, (4, 8, 500))
    m = compute_band_metrics(synth, real, SFREQ, bands={"alpha": BANDS["alpha"],
                                                        "gamma": BANDS["gamma"]})
    assert np.mean(m["alpha"]["pearson"]) > 0.9
    assert abs(np.mean(m["gamma"]["pearson"])) < 0.1
    assert np.mean(m["alpha"]["rmse"]) < np.mean(m["gamma"]["rmse"])


def test_summary_rows():
    a, b = _noise(14, (5, 8, 250)), _noise(15, (5, 8, 250))
    m = compute_band_metrics(a + b, a, SFREQ, bands={"beta": BANDS["beta"]})
    m["beta"]["pearson"][0] = np.nan
    (row,) = summarize_band_metrics(m, method="generator")
    assert row["method"] == "generator" and row["band"] == "beta" and row["n_epochs"] == 5
    assert row["pearson"] == pytest.approx(np.mean(m["beta"]["pearson"][1:]))
    for metric in METRICS:
        assert row[f"{metric}_sd"] == pytest.approx(np.nanstd(m["beta"][metric]))
        assert isinstance(row[metric], float)


def test_input_errors_name_the_parameter():
    x = _noise(16, (2, 8, 100))
    with pytest.raises(ValueError, match="same shape"):
        compute_band_metrics(x, x[:, :4], SFREQ)
    with pytest.raises(ValueError, match="'synthetic' must have shape"):
        compute_band_metrics(x[0], x[0], SFREQ)
    with pytest.raises(ValueError, match="normalization"):
        compute_band_metrics(x, x, SFREQ, normalization="max")
    with pytest.raises(ValueError, match="Nyquist"):
        compute_band_metrics(x, x, 50.0, bands={"gamma": BANDS["gamma"]})
    bad = x.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="'real' contains 1 NaN"):
        compute_band_metrics(x, bad, SFREQ)


def test_filter_longer_than_epoch_is_logged(catch_logs):
    x = _noise(17, (2, 8, 250))  # 1-s epochs: the delta filter has 1651 taps at 250 Hz
    with catch_logs("warning") as log:
        band_filter(x, SFREQ, BANDS["delta"], name="delta")
    assert "delta" in log.text and "1651" in log.text and "longer than the signal" in log.text
    with catch_logs("warning") as log:
        band_filter(x, SFREQ, BANDS["gamma"], name="gamma")  # 111 taps: fine
    assert log.text == ""

"""neurofuse.physics.hrf: HRF against scipy/nilearn, BOLD against a loop reference, and the
two orders of HRF convolution and TR averaging against each other."""

import numpy as np
import pytest
from scipy import signal, stats

from neurofuse.physics import convolve_hrf, make_bold, spm_hrf, tr_kernel, tr_mean


def test_spm_hrf_matches_scipy_gamma_and_peaks_at_mode():
    sfreq = 50.0
    hrf = spm_hrf(sfreq)
    assert hrf.shape == (int(32 * sfreq) + 1,)
    assert np.isclose(hrf.sum(), 1.0)
    # Independent reference: scipy.stats.gamma with shape 6 / 16, scale 1.
    t = np.arange(hrf.size) / sfreq
    ref = stats.gamma(a=6.0, scale=1.0).pdf(t) - stats.gamma(a=16.0, scale=1.0).pdf(t) / 6
    ref /= ref.sum()
    np.testing.assert_allclose(hrf, ref, rtol=1e-10, atol=1e-14)
    # Mode of gamma(a=6, scale=1) is (a - 1) * scale = 5 s; the undershoot term barely
    # moves it (its density at 5 s is ~1e-4 of the peak's).
    assert abs(t[np.argmax(hrf)] - 5.0) <= 1.0 / sfreq + 1e-12
    # Undershoot: the minimum is negative and comes after the peak (~15 s).
    assert hrf.min() < 0
    assert 12.0 < t[np.argmin(hrf)] < 18.0
    # Dispersion scales time: shape peak/dispersion, scale dispersion -> mode
    # (peak/dispersion - 1) * dispersion = peak - dispersion.
    hrf2 = spm_hrf(100.0, peak=8.0, dispersion=2.0, ratio=0.0)
    assert abs(np.argmax(hrf2) / 100.0 - 6.0) <= 0.011


def test_spm_hrf_matches_nilearn_shape():
    nilearn_fl = pytest.importorskip("nilearn.glm.first_level")
    # nilearn is not like-for-like: its grid is np.linspace(0, 32, n) (spacing 32/(n-1),
    # not exactly dt) and it evaluates the gammas at t - dt (loc=dt), i.e. its sample j
    # is our curve at time j * 32 / (n - 1) - dt, and it uses ratio 0.167 not 1/6. So we
    # interpolate our (finely sampled) kernel at nilearn's effective times, take the same
    # ratio, and compare the shapes after normalising both to unit peak.
    t_r, oversampling = 2.0, 100
    ref = nilearn_fl.spm_hrf(t_r, oversampling=oversampling, time_length=32.0)
    dt = t_r / oversampling
    t_nl = np.linspace(0, 32.0, ref.size) - dt
    sfreq = 1000.0
    ours = spm_hrf(sfreq, ratio=0.167)
    ours_on_nl = np.interp(t_nl, np.arange(ours.size) / sfreq, ours, left=0.0)
    np.testing.assert_allclose(ours_on_nl / ours_on_nl.max(), ref / ref.max(), atol=2e-3)


def test_spm_hrf_errors():
    with pytest.raises(ValueError, match="'sfreq'"):
        spm_hrf(-1.0)
    with pytest.raises(ValueError, match="'length'"):
        spm_hrf(1.0, length=0.5)
    with pytest.raises(ValueError, match="'peak'"):
        spm_hrf(10.0, peak=0.0)


def _reference_bold(sources, sfreq, tr):
    """Slow, independent reference: loops and np.convolve."""
    hrf = spm_hrf(sfreq)
    n = int(round(sfreq * tr))
    n_trs = sources.shape[1] // n
    out = np.empty((sources.shape[0], n_trs))
    for i, s in enumerate(sources):
        env = np.abs(signal.hilbert(s))
        conv = np.convolve(env, hrf)[: s.size]
        out[i] = [conv[k * n : (k + 1) * n].mean() for k in range(n_trs)]
    return out


def test_make_bold_matches_reference_and_chunking():
    rng = np.random.default_rng(0)
    sfreq, tr = 50.0, 2.0
    sources = rng.standard_normal((7, 50 * 60 + 33))  # 60 s plus a partial TR
    bold = make_bold(sources, sfreq, tr, chunk_size=3)
    assert bold.shape == (7, 30)
    np.testing.assert_allclose(bold, _reference_bold(sources, sfreq, tr), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(make_bold(sources, sfreq, tr, chunk_size=512), bold, rtol=1e-12)
    bold32 = make_bold(sources.astype(np.float32), sfreq, tr)
    assert bold32.dtype == np.float32
    np.testing.assert_allclose(bold32, bold, rtol=1e-4)


def test_make_bold_step_response_and_causality():
    # A carrier switched on at 100 s: BOLD stays 0 before, then rises with the HRF's
    # delay and settles at the envelope amplitude (unit-sum HRF).
    sfreq, tr = 50.0, 1.0
    n = int(200 * sfreq)
    t = np.arange(n) / sfreq
    amp = 2.0
    x = np.where(t >= 100.0, amp * np.cos(2 * np.pi * 5.0 * t), 0.0)[np.newaxis]
    bold = make_bold(x, sfreq, tr)[0]
    # The FFT envelope smears the on-step a little backwards (periodic, non-causal
    # Hilbert transform); the HRF keeps it ~0 well before the onset.
    assert np.abs(bold[:95]).max() < 1e-2 * amp
    assert np.argmax(np.diff(bold)) in range(101, 108)  # steepest rise ~2-6 s after onset
    # Steady state after 32 s (HRF length) + slack: integral of the HRF = 1.
    np.testing.assert_allclose(bold[140:190], amp, rtol=2e-3)


def test_make_bold_errors():
    x = np.zeros((2, 500))
    with pytest.raises(ValueError, match="whole number of samples"):
        make_bold(x, 50.0, 2.01)
    with pytest.raises(ValueError, match="NaN"):
        bad = x.copy()
        bad[1, 3] = np.nan
        make_bold(bad, 50.0, 2.0)
    with pytest.raises(ValueError, match="less than one TR"):
        make_bold(x[:, :50], 50.0, 2.0)
    with pytest.raises(ValueError, match="n_sources, n_times"):
        make_bold(np.zeros(100), 50.0, 2.0)
    with pytest.raises(ValueError, match="hrf_kwargs"):
        make_bold(x, 50.0, 2.0, hrf_kwargs={"delay": 6})
    with pytest.raises(ValueError, match="chunk_size"):
        make_bold(x, 50.0, 2.0, chunk_size=0)
    # Custom HRF parameters are passed through.
    b1 = make_bold(
        np.random.default_rng(1).standard_normal((1, 5000)), 50.0, 2.0, hrf_kwargs={"peak": 4.0}
    )
    assert b1.shape == (1, 50)


def test_tr_mean_and_convolve_hrf_match_loops():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 103))
    h = rng.standard_normal(17)
    ref = np.array([[np.convolve(row, h)[:103] for row in block] for block in x])
    np.testing.assert_allclose(convolve_hrf(x, h), ref, rtol=1e-10, atol=1e-12)
    means = tr_mean(x, 10)
    assert means.shape == (2, 3, 10)
    np.testing.assert_allclose(means[1, 2, 4], x[1, 2, 40:50].mean(), rtol=1e-13)


@pytest.mark.parametrize("n_per_tr", [1, 4, 25])
def test_tr_averaging_commutes_with_a_kernel_on_whole_trs(n_per_tr):
    """The linear part: averaging over TRs and convolving with a kernel whose taps sit on
    whole TRs commute exactly (the kernel zero-stuffed to sfreq vs sampled every TR)."""
    rng = np.random.default_rng(n_per_tr)
    g = spm_hrf(1.0 / 2.0)  # TR-rate kernel (TR = 2 s)
    stuffed = np.zeros((len(g) - 1) * n_per_tr + 1)
    stuffed[::n_per_tr] = g
    p = rng.standard_normal((4, 60 * n_per_tr + 3))
    np.testing.assert_allclose(tr_mean(convolve_hrf(p, stuffed), n_per_tr),
                               convolve_hrf(tr_mean(p, n_per_tr), g), rtol=1e-9, atol=1e-12)


def test_convolve_then_average_vs_average_then_convolve():
    """make_bold's order (HRF at sfreq, then TR mean) against the joint model's (TR mean, then
    HRF sampled every TR): equal with tr_kernel for a TR-constant envelope, and within the
    documented bound ||tr_kernel(h) - spm_hrf(1/tr)||_1 * max|p| of the TR-rate kernel."""
    sfreq, tr = 50.0, 2.0
    n = int(sfreq * tr)
    rng = np.random.default_rng(5)
    P = np.abs(rng.standard_normal((3, 90))) + 1.0  # TR-constant envelope (>= 0)
    p = np.repeat(P, n, axis=-1)
    h = spm_hrf(sfreq)
    first = tr_mean(convolve_hrf(p, h), n)  # make_bold's order
    H = tr_kernel(h, n)
    assert H.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(first, convolve_hrf(P, H), rtol=1e-10, atol=1e-12)
    g = spm_hrf(1.0 / tr)  # what DoubleGammaHRF uses at its initial parameters
    second = convolve_hrf(P, g)
    bound = np.abs(np.pad(H, (0, max(0, len(g) - len(H)))) -
                   np.pad(g, (0, max(0, len(H) - len(g))))).sum() * np.abs(P).max()
    diff = np.abs(first - second).max()
    assert diff <= bound
    assert 0.0 < diff  # the orders are not the same computation ...
    assert bound < 0.2 * np.abs(P).max()  # ... but close: the HRF is slow compared to a TR
    # For a constant envelope both give the constant once the HRF has passed (unit sum).
    c = np.full((1, 40 * n), 2.0)
    np.testing.assert_allclose(tr_mean(convolve_hrf(c, h), n)[:, 20:], 2.0, rtol=1e-10)
    np.testing.assert_allclose(convolve_hrf(tr_mean(c, n), g)[:, 20:], 2.0, rtol=1e-10)

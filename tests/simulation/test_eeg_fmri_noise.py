"""Noise of the EEG–fMRI simulator: physiological and motion spectra (scipy.signal.welch),
the motion term against image resampling (scipy.ndimage.shift), and the SNR scaling."""

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import ndimage, signal

from neurofuse.anatomy.volume import make_volume_grid
from neurofuse.simulation.eeg_fmri import make_config, make_setup, simulate_run
from neurofuse.simulation.eeg_fmri.noise import (
    motion_noise,
    motion_parameters,
    physio_phase,
    scale_to_snr,
)


def _peak(x, fs, nperseg):
    f, p = signal.welch(x, fs=fs, nperseg=nperseg, axis=-1)
    p = p.mean(0) if p.ndim > 1 else p
    return f[np.argmax(p[1:]) + 1]  # skip DC


@pytest.mark.parametrize("freq", [0.3, 1.1])
def test_physiological_rhythm_peaks_at_its_rate(freq):
    rng = np.random.default_rng(0)
    fs = 10.0
    phase = physio_phase(rng, int(1200 * fs), fs, freq, jitter=0.05)
    rate = np.diff(phase) * fs / (2 * np.pi)
    assert rate.mean() == pytest.approx(freq, rel=1e-3)
    assert rate.std() == pytest.approx(0.05 * freq, rel=0.01)
    assert _peak(np.cos(phase), fs, 1024) == pytest.approx(freq, rel=0.1)  # within 2 s.d.
    # without jitter the mean rate is exact
    phase = physio_phase(rng, int(600 * fs), fs, freq, jitter=0.0)
    assert_allclose(np.diff(phase) * fs / (2 * np.pi), freq)


@pytest.mark.parametrize(("name", "alias"), [("respiratory", 0.2), ("cardiac", 0.1)])
def test_fmri_physiological_noise_aliases_at_the_tr(name, alias):
    """At TR = 2 s the 0.3 Hz respiration shows at 0.2 Hz and the 1.1 Hz heart at 0.1 Hz, in
    every slice (each sampled at its own time)."""
    cfg = make_config("snr10", "tiny", bem="sphere", duration=1200.0, fmri_snr=0.01,
                      noise_mix={name: 1.0}, rate_jitter=0.01)
    setup = make_setup(cfg)
    fmri = simulate_run(setup, 0)["fmri"].reshape(-1, cfg.n_trs)
    brain = setup.physio_gain[name] > 0
    assert _peak(fmri[brain], 1 / cfg.tr, 128) == pytest.approx(alias, abs=0.01)
    assert not fmri[~brain].any()  # physiological noise only inside the brain


def test_motion_is_slow_and_has_the_requested_size():
    rng = np.random.default_rng(1)
    params = motion_parameters(rng, 4000, 2.0, cutoff=0.02, sd_mm=0.3, sd_deg=0.2)
    assert params.shape == (4000, 6)
    assert_allclose(params.std(0), [0.3] * 3 + [0.2] * 3)
    f, p = signal.welch(params, fs=0.5, nperseg=512, axis=0)
    assert (p[f > 0.04].sum(0) < 0.01 * p.sum(0)).all()  # 4th-order low-pass at 0.02 Hz
    assert (p[f <= 0.02].sum(0) > 0.8 * p.sum(0)).all()


def test_motion_term_is_the_first_order_image_shift():
    """A small translation: -∇S0 · t is S0 moved by t (scipy.ndimage.shift) to first order."""
    grid = make_volume_grid((24, 24, 20), 4.0, center=(0, 0, 0))
    pos = grid.voxel_centers().reshape(*grid.shape, 3)
    s0 = np.exp(-np.sum((pos / 25.0) ** 2, axis=-1))  # smooth blob, a.u.
    t = np.array([0.2, -0.1, 0.15])  # mm
    params = np.r_[t, 0, 0, 0][None]
    pred = motion_noise(params, s0, grid)[:, 0].reshape(grid.shape)
    moved = ndimage.shift(s0, t / 4.0, order=3, mode="nearest") - s0  # image moved by +t
    inner = (slice(2, -2),) * 3  # central differences vs spline: away from the edges
    assert_allclose(pred[inner], moved[inner], atol=0.05 * np.abs(moved).max())
    assert np.corrcoef(pred[inner].ravel(), moved[inner].ravel())[0, 1] > 0.995
    # a rotation about z moves a point at (x, 0) along +y: the change is -dS0/dy * angle * x
    rot = motion_noise(np.array([[0, 0, 0, 0, 0, 1.0]]), s0, grid)[:, 0].reshape(grid.shape)
    gy = np.gradient(s0, 4.0, axis=1)
    c = grid.voxel_centers().mean(0)
    assert_allclose(rot, -(gy * (pos[..., 0] - c[0]) - np.gradient(s0, 4.0, axis=0)
                           * (pos[..., 1] - c[1])) * np.pi / 180, atol=1e-12)


def test_scale_to_snr_is_exact_and_checks_its_input():
    rng = np.random.default_rng(2)
    s, n = rng.standard_normal((5, 300)), rng.standard_normal((5, 300)) * 3
    out = scale_to_snr(s, n, 4.0)
    assert math.sqrt(s.var(1).sum() / out.var(1).sum()) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="'snr' must be > 0"):
        scale_to_snr(s, n, 0.0)
    with pytest.raises(ValueError, match="signal is constant"):
        scale_to_snr(np.ones((5, 300)), n, 1.0)

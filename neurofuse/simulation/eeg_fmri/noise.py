"""Noise of the EEG–fMRI simulator: physiological rhythms, head motion, thermal, and the SNR.

fMRI noise ``N_F`` (paper §4.2: respiratory, cardiac and background Gaussian noise, with
magnitudes that vary over space, motion artefacts) is the sum of four components, each
normalised to unit r.m.s. over the source voxels and weighted by the square root of its
share of the noise variance (``noise_mix``), then scaled to the requested SNR
(:func:`scale_to_snr`):

* **thermal**: white Gaussian, the same level in every voxel (inside and outside the head);
* **respiratory** and **cardiac** (RETROICOR-like, first harmonic): a run-wide phase
  ``φ(t) = 2π ∫ f(t') dt'`` with a rate ``f`` that wanders slowly around its mean
  (``respiration_freq`` ~0.3 Hz, ``cardiac_freq`` ~1.1 Hz; relative s.d. ``rate_jitter``,
  smoothed over ~20 s) (:func:`physio_phase`); voxel ``v`` sees ``g_v cos(φ(t) - θ_v)``
  with a random phase ``θ_v`` and a gain ``g_v`` that is largest in CSF (pulsatility, bulk
  motion near the ventricles and sulci) and zero outside the brain (:func:`physio_noise`).
  Evaluated at each slice's own acquisition time, so at TR = 2 s both rhythms alias: a
  voxel's series peaks at ``|f - round(f TR) / TR|`` (0.2 Hz for 0.3 Hz, 0.1 Hz for 1.1 Hz);
* **motion** (:func:`motion_parameters`, :func:`motion_noise`): six rigid-body parameters per
  volume (translations in mm, rotations in degrees about the grid centre), Gaussian noise
  low-passed below ``motion_cutoff`` (4th-order Butterworth, zero phase), scaled to
  ``motion_mm`` / ``motion_deg`` s.d. They enter as the first-order partial-volume change of
  the EPI image ``S0`` (:func:`~neurofuse.anatomy.volume.make_epi_baseline`) moving under
  the voxel: ``-∇S0(x) · u(x)``, ``u(x) = t + ω × (x - c)`` (small-angle displacement),
  largest at tissue boundaries and the brain's edge, as real motion artefacts.

SNR (both modalities): ``snr = sqrt(sum_v var_t(signal_v) / sum_v var_t(noise_v))`` over the
EEG channels or the fMRI source voxels, realised exactly for each run.
"""

from __future__ import annotations

import math

import numpy as np

from ..._checks import _check_positive

__all__ = ["motion_noise", "motion_parameters", "physio_noise", "physio_phase",
           "scale_to_snr", "snr_factor"]


def snr_factor(signal, noise, snr):
    """The factor ``c`` with ``sqrt(sum var(signal) / sum var(c noise)) == snr``.

    Parameters
    ----------
    signal : array, shape (n_rows, n_times)
    noise : array, shape (n_rows, n_times)
        Any non-constant noise.
    snr : float
        > 0.

    Returns
    -------
    factor : float
        Variances are over the last axis, summed over rows.
    """
    snr = _check_positive("snr", snr)
    var_s = float(np.sum(np.var(signal, axis=-1)))
    var_n = float(np.sum(np.var(noise, axis=-1)))
    if var_s <= 0:
        raise ValueError("The signal is constant over time: an SNR cannot be set. Check that "
                         "the sources are active within the run.")
    if var_n <= 0:
        raise ValueError("The noise is constant over time and cannot be scaled to an SNR.")
    return math.sqrt(var_s / var_n) / snr


def scale_to_snr(signal, noise, snr):
    """``noise`` scaled so that ``sqrt(sum var(signal) / sum var(noise)) == snr``.

    Parameters
    ----------
    signal : array, shape (n_rows, n_times)
    noise : array, shape (n_rows, n_times)
        Any non-constant noise (it is scaled, not redrawn).
    snr : float
        > 0.

    Returns
    -------
    noise : array, shape (n_rows, n_times), float64
    """
    return np.asarray(noise, np.float64) * snr_factor(signal, noise, snr)


def physio_phase(rng, n_times, sfreq, freq, jitter=0.05, smooth=20.0):
    """Phase of a quasi-periodic physiological rhythm, sampled at ``sfreq``.

    Parameters
    ----------
    rng : numpy.random.Generator
    n_times : int
    sfreq : float
        Hz.
    freq : float
        Mean rate, Hz.
    jitter : float
        Relative s.d. of the rate.
    smooth : float
        Time scale of the rate's changes (Gaussian smoothing s.d.), s.

    Returns
    -------
    phase : array, shape (n_times,)
        Radians, ``phase[k] = φ(k / sfreq)``, random start in [0, 2π).
    """
    from scipy.ndimage import gaussian_filter1d

    wander = gaussian_filter1d(rng.standard_normal(n_times), smooth * sfreq, mode="wrap")
    wander -= wander.mean()  # the run's mean rate is exactly ``freq``
    wander /= max(wander.std(), 1e-300)
    rate = freq * (1.0 + jitter * wander)  # Hz
    if rate.min() <= 0:
        raise ValueError(f"'jitter' ({jitter}) is too large: the rate would go negative; use a "
                         "relative s.d. below ~0.25.")
    return rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.cumsum(rate) / sfreq


def physio_noise(rng, phase, sfreq, times, gain):
    """A physiological rhythm seen by each voxel at its own sampling times.

    Parameters
    ----------
    rng : numpy.random.Generator
    phase : array, shape (n_times,)
        :func:`physio_phase` at ``sfreq``.
    sfreq : float
    times : array, shape (n_voxels, n_samples)
        Acquisition times of each voxel, s.
    gain : array, shape (n_voxels,)
        Amplitude per voxel.

    Returns
    -------
    noise : array, shape (n_voxels, n_samples)
        ``gain_v cos(φ(t) - θ_v)``, ``θ_v`` uniform.
    """
    theta = rng.uniform(0, 2 * np.pi, len(gain))
    phi = np.interp(times, np.arange(len(phase)) / sfreq, phase)
    return gain[:, None] * np.cos(phi - theta[:, None])


def motion_parameters(rng, n_trs, tr, *, cutoff=0.02, sd_mm=0.3, sd_deg=0.3):
    """Rigid head motion per volume: slow, low-passed Gaussian noise.

    Parameters
    ----------
    rng : numpy.random.Generator
    n_trs : int
    tr : float
        s.
    cutoff : float
        Low-pass corner, Hz (< 1 / (2 tr)).
    sd_mm, sd_deg : float
        s.d. of each translation (mm) and rotation (degrees).

    Returns
    -------
    params : array, shape (n_trs, 6)
        Translations x, y, z (mm) and rotations about x, y, z (degrees), zero mean.
    """
    from scipy import signal

    sos = signal.butter(4, cutoff, btype="lowpass", fs=1.0 / tr, output="sos")
    pad = int(math.ceil(3.0 / (cutoff * tr)))
    raw = signal.sosfiltfilt(sos, rng.standard_normal((n_trs + 2 * pad, 6)), axis=0)
    raw = raw[pad:pad + n_trs]
    raw -= raw.mean(axis=0)
    raw /= np.maximum(raw.std(axis=0), 1e-300)
    return raw * np.array([sd_mm] * 3 + [sd_deg] * 3)


def motion_noise(params, baseline, grid, center=None):
    """The partial-volume change of the EPI image under small rigid motion.

    Parameters
    ----------
    params : array, shape (n_trs, 6)
        :func:`motion_parameters` (mm, degrees).
    baseline : array, shape grid.shape
        The EPI image ``S0`` (a.u.).
    grid : VolumeGrid
    center : array, shape (3,) | None
        Centre of rotation, mm (None: the grid's centre).

    Returns
    -------
    noise : array, shape (n_voxels, n_trs)
        ``-∇S0(x_v) · (t + ω × (x_v - c))`` per voxel (C order) and volume, a.u.
    """
    grad = np.stack(np.gradient(np.asarray(baseline, float), *grid.voxel_size), -1)
    grad = grad.reshape(-1, 3)  # (n_voxels, 3) a.u./mm (grid axes are RAS, diagonal affine)
    pos = grid.voxel_centers()
    c = pos.mean(0) if center is None else np.asarray(center, float)
    # g . (ω × r) = ω . (r × g): one (n_voxels, 6) design, linear in the parameters
    design = np.concatenate([grad, np.cross(pos - c, grad)], axis=1)
    motion = np.asarray(params, float) * np.array([1.0] * 3 + [np.pi / 180] * 3)
    return -design @ motion.T

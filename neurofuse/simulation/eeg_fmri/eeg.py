"""The EEG side of the EEG–fMRI simulator: ERP kernel, 64-channel cap, ``E = G (X * d) + N``.

Paper eqs. 2-3: the event-related potential ``P = X * d`` (causal convolution of the source
activity with the "potential impulse response function" ``d`` of ~470 ms), and the scalp EEG
``E = G P + N_E`` with the lead field ``G`` and Gaussian sensor noise. Because the sources are
``X = diag(w) A[label]`` (:mod:`.sources`), the simulator computes ``G X`` as
``(G diag(w) S) A`` with ``S`` the source → region indicator, never forming ``X``.

The kernel (:func:`erp_kernel`) is a triphasic wave, ``d(t) = sin(3π t / T) · sin(π t / T)``
for ``0 <= t <= T`` (``T = erp_duration``), zero at both ends and after ``T``: a positive
deflection at 0.21 T, a negative one at 0.5 T and a positive one at 0.79 T (for T = 470 ms:
99, 235 and 371 ms, P1-, N2- and P3-like latencies), scaled so the negative peak is -1 (the
positive ones are +0.56).

Sensor noise (:func:`add_sensor_noise`): white Gaussian, equal variance on every channel,
average-referenced like the lead field, scaled so that
``sqrt(sum_ch var(G P) / sum_ch var(N)) = snr`` exactly for the run.
"""

from __future__ import annotations

import math

import numpy as np

from ..._checks import _check_positive
from ...physics.hrf import convolve_hrf
from .noise import scale_to_snr

__all__ = ["add_sensor_noise", "erp_kernel", "make_cap_info", "measure_eeg"]


def erp_kernel(sfreq, duration=0.47):
    """The ERP kernel ``d`` sampled at ``sfreq`` (peak magnitude 1; see the module docstring).

    Parameters
    ----------
    sfreq : float
        Hz.
    duration : float
        Kernel length ``T``, s.

    Returns
    -------
    kernel : array, shape (floor(duration * sfreq) + 1,)
        ``kernel[k] = d(k / sfreq)``.
    """
    sfreq = _check_positive("sfreq", sfreq)
    duration = _check_positive("duration", duration)
    n = int(math.floor(duration * sfreq + 1e-9)) + 1
    if n < 3:
        raise ValueError(f"'duration' ({duration} s) must span at least 2 samples at "
                         f"{sfreq:g} Hz; increase it or 'sfreq'.")
    t = np.arange(n) / sfreq / duration
    d = np.sin(3 * np.pi * t) * np.sin(np.pi * t)
    return d / np.abs(d).max()


def make_cap_info(montage="biosemi64", sfreq=105.0):
    """The EEG channels of the simulator, positioned on the fsaverage head.

    Parameters
    ----------
    montage : str
        ``'biosemi64'``: BioSemi's 64 labels (all 10-10 positions) taken from the
        ``colin27_1005`` montage, which carries the fsaverage fiducials, so the electrodes
        sit on the template's scalp (the ``biosemi64`` montage itself is a sphere). Any
        other name goes to :func:`~neurofuse.anatomy.sensors.make_eeg_info`.
    sfreq : float
        Hz.

    Returns
    -------
    info : mne.Info
        ``'eeg'`` channels, head coordinates, unreferenced (the simulator average-references
        the lead field and the noise).
    """
    import mne

    from ...anatomy.sensors import make_eeg_info

    if montage != "biosemi64":
        return make_eeg_info(montage, sfreq, verbose="error")
    names = mne.channels.make_standard_montage("biosemi64").ch_names
    info = make_eeg_info("colin27_1005", sfreq, verbose="error")
    return mne.pick_info(info, mne.pick_channels(info["ch_names"], names, ordered=True))


def measure_eeg(gain, weight, label, activity, kernel):
    """Noiseless EEG ``G (X * d)`` of region-structured sources.

    Parameters
    ----------
    gain : array, shape (n_channels, n_sources)
        Lead field, V/(A·m).
    weight : array, shape (n_sources,)
        Spatial weight of each source.
    label : array of int, shape (n_sources,)
        Region of each source.
    activity : array, shape (n_regions, n_times)
        Region time courses (sum of their components), A·m.
    kernel : array, shape (n_taps,)
        ERP kernel at the sampling rate (:func:`erp_kernel`).

    Returns
    -------
    eeg : array, shape (n_channels, n_times), float64
        V.
    """
    n_regions = activity.shape[0]
    mix = np.zeros((gain.shape[0], n_regions))  # (n_channels, n_regions): G diag(w) S
    np.add.at(mix.T, label, (gain * weight).T)
    return mix @ convolve_hrf(np.asarray(activity, np.float64), kernel)


def add_sensor_noise(eeg, snr, rng):
    """EEG plus white, average-referenced sensor noise at ``snr`` (see the module docstring).

    Parameters
    ----------
    eeg : array, shape (n_channels, n_times)
        Noiseless EEG.
    snr : float
        ``inf``: return ``eeg`` unchanged (nothing drawn).
    rng : numpy.random.Generator

    Returns
    -------
    noisy : array, shape (n_channels, n_times), float64
    sigma : float
        s.d. of the noise per channel (0 without noise).
    """
    if math.isinf(snr):
        return np.asarray(eeg, np.float64), 0.0
    noise = rng.standard_normal(eeg.shape)
    noise -= noise.mean(axis=0, keepdims=True)  # average reference, as the lead field
    noise = scale_to_snr(eeg, noise, snr)
    return eeg + noise, float(np.sqrt(np.mean(noise.var(axis=1))))

"""Configuration of the simultaneous EEG–fMRI simulator: one frozen dataclass and presets.

:class:`EEGfMRIConfig` holds every size and rate of a simulated data set (paper §4.2):
the source grid, the sampling rate, the run length, the regions and their activity, the
kernels, the fMRI acquisition (TR, slice order) and the noise. :func:`make_config` builds one
from a *size* preset (``'tiny'`` for tests, ``'demo'``, ``'paper'``: 64 × 64 × 35 voxels at
105 Hz, ten-minute runs) and a *scenario* preset (the paper's three, :data:`SCENARIOS`).
The configuration is validated once and round-trips through JSON (:meth:`EEGfMRIConfig.to_json`,
:meth:`EEGfMRIConfig.from_json`), which is how a data set records it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from ..._checks import _check_int, _check_keys, _check_option, _check_positive
from .._config import JSONSettings

__all__ = ["SCENARIOS", "SIZES", "EEGfMRIConfig", "make_config"]

#: Default oscillation bands (Hz) of the oscillatory regions: theta, alpha, beta, low gamma.
DEFAULT_BANDS = ((4.0, 8.0), (8.0, 13.0), (13.0, 30.0), (30.0, 45.0))

#: Parameters of :func:`~neurofuse.physics.hrf.spm_hrf` that ``hrf`` may set.
HRF_KEYS = ("peak", "undershoot", "ratio", "length", "dispersion", "undershoot_dispersion")

#: Default shares of the fMRI noise variance (over source voxels) per component.
DEFAULT_NOISE_MIX = {"thermal": 0.4, "respiratory": 0.2, "cardiac": 0.2, "motion": 0.2}


@dataclass(frozen=True)
class EEGfMRIConfig(JSONSettings):
    """Every parameter of a simulated simultaneous EEG–fMRI data set.

    Attributes
    ----------
    grid_shape : tuple of 3 int
        Voxels ``(n_x, n_y, n_z)``; slices are along z (``grid_shape[2]`` slices).
    voxel_size : tuple of 3 float
        Voxel edges, mm.
    grid_center : tuple of 3 float
        Grid centre in fsaverage MRI (MNI305) mm.
    gm_threshold : float
        Grey-matter probability of a source voxel.
    orientation : 'normal' | 'random'
        Dipole orientation per source voxel (:mod:`neurofuse.anatomy.volume_forward`).
    montage : str
        EEG cap: ``'biosemi64'`` (its 64 labels at the ``colin27_1005`` positions, which sit
        on the fsaverage head) or any MNE built-in montage name.
    bem : 'bem' | 'sphere'
        Head model of the lead field (three-layer BEM of the template, or a fitted sphere).
    sfreq : float
        Sampling rate of sources and EEG, Hz (paper: 105).
    duration : float
        Run length, s (paper: 600); a whole number of TRs.
    tr : float
        fMRI repetition time, s; ``tr * sfreq`` whole.
    n_regions : int
        Regions (k-means clusters of source positions); each has its own event-related
        impulse train.
    n_oscillatory : int
        How many regions also carry an ongoing oscillation ("oscillatory" sources; the others
        are "sparse"), cycling through ``bands``.
    bands : tuple of (float, float)
        Oscillation bands, Hz (upper edges below ``sfreq / 2``).
    n_conditions : int
        Event types of the design; each region responds to one.
    isi : (float, float)
        Range of the uniform inter-event interval, s.
    latency : (float, float)
        Range of the per-region response latency after an event, s.
    amplitude_jitter : float
        Relative s.d. of the per-event, per-region impulse amplitude (lognormal).
    spontaneous_rate : float
        Extra impulses per second per region, outside the design (Poisson), 0 for none.
    source_density : float
        Impulse amplitude of a source per cm³ of its voxel, A·m/cm³ (the ERP kernel has unit
        peak): a voxel of ``V`` cm³ fires impulses of ``source_density * V`` A·m, so the EEG keeps
        its scale across grid resolutions (tens of µV with the defaults).
    oscillation_amplitude : float
        r.m.s. of an oscillation relative to the impulse amplitude.
    erp_duration : float
        Length of the ERP ("potential impulse response") kernel, s (paper: ~0.47).
    hrf : dict
        Keyword arguments of :func:`~neurofuse.physics.hrf.spm_hrf` (empty: canonical).
    bold_drive : 'amplitude' | 'envelope'
        What the HRF convolves: the source amplitude (paper eq. 1, default) or its
        amplitude envelope (neurofuse's MEG–fMRI physics).
    slice_order : 'sequential' | 'interleaved'
        Slice acquisition order along z.
    interleave : int
        Step of the interleaved order (5: slices 0, 5, 10, ..., 1, 6, ...).
    eeg_snr, fmri_snr : float
        ``sqrt(sum var(signal) / sum var(noise))`` over channels / source voxels; ``inf``
        for none.
    noise_mix : dict
        Shares of the fMRI noise variance: ``thermal``, ``respiratory``, ``cardiac``,
        ``motion`` (>= 0, normalised to sum 1).
    respiration_freq, cardiac_freq : float
        Mean respiratory and cardiac rates, Hz.
    rate_jitter : float
        Relative s.d. of the slowly varying physiological rates.
    motion_mm, motion_deg : float
        s.d. of the rigid head translations (mm) and rotations (degrees).
    motion_cutoff : float
        Upper frequency of the head motion (low-pass), Hz; must be below ``1 / (2 tr)``.
    seed : int
        Seed of the whole data set (run ``i`` uses ``(seed, i)``).
    """

    _INF_FIELDS = ("eeg_snr", "fmri_snr")

    grid_shape: tuple = (14, 17, 12)
    voxel_size: tuple = (12.0, 12.0, 12.0)
    grid_center: tuple = (0.0, -18.0, 12.0)
    gm_threshold: float = 0.35
    orientation: str = "normal"
    montage: str = "biosemi64"
    bem: str = "bem"
    sfreq: float = 105.0
    duration: float = 600.0
    tr: float = 2.0
    n_regions: int = 8
    n_oscillatory: int = 4
    bands: tuple = DEFAULT_BANDS
    n_conditions: int = 2
    isi: tuple = (2.0, 6.0)
    latency: tuple = (0.0, 0.15)
    amplitude_jitter: float = 0.2
    spontaneous_rate: float = 0.05
    source_density: float = 1e-9
    oscillation_amplitude: float = 0.5
    erp_duration: float = 0.47
    hrf: dict = field(default_factory=dict)
    bold_drive: str = "amplitude"
    slice_order: str = "sequential"
    interleave: int = 5
    eeg_snr: float = math.inf
    fmri_snr: float = math.inf
    noise_mix: dict = field(default_factory=lambda: dict(DEFAULT_NOISE_MIX))
    respiration_freq: float = 0.3
    cardiac_freq: float = 1.1
    rate_jitter: float = 0.05
    motion_mm: float = 0.3
    motion_deg: float = 0.3
    motion_cutoff: float = 0.02
    seed: int = 0

    def __post_init__(self):
        def _tuple(name, n, conv=float):
            value = getattr(self, name)
            if len(value) != n:
                raise ValueError(f"'{name}' must have {n} values, got {value!r}.")
            object.__setattr__(self, name, tuple(conv(v) for v in value))

        _tuple("grid_shape", 3, int)
        _tuple("voxel_size", 3)
        _tuple("grid_center", 3)
        _tuple("isi", 2)
        _tuple("latency", 2)
        for i, n in enumerate(self.grid_shape):
            _check_int(f"grid_shape[{i}]", n, 1)
        for i, v in enumerate(self.voxel_size):
            _check_positive(f"voxel_size[{i}]", v)
        object.__setattr__(self, "bands", tuple(tuple(float(f) for f in b) for b in self.bands))
        _check_option("orientation", self.orientation, ["normal", "random"])
        _check_option("bem", self.bem, ["bem", "sphere"])
        _check_option("bold_drive", self.bold_drive, ["amplitude", "envelope"])
        _check_option("slice_order", self.slice_order, ["sequential", "interleaved"])
        _check_int("interleave", self.interleave, 1)
        for name in ("sfreq", "duration", "tr", "source_density", "erp_duration",
                     "respiration_freq", "cardiac_freq", "motion_cutoff"):
            _check_positive(name, getattr(self, name))
        for name in ("amplitude_jitter", "spontaneous_rate", "oscillation_amplitude",
                     "rate_jitter", "motion_mm", "motion_deg"):
            _check_positive(name, getattr(self, name), allow_zero=True)
        for name in ("eeg_snr", "fmri_snr"):
            _check_positive(name, getattr(self, name), allow_inf=True)
        n_per_tr = self.tr * self.sfreq
        if abs(n_per_tr - round(n_per_tr)) > 1e-6:
            raise ValueError(f"'tr' * 'sfreq' must be a whole number of samples, got "
                             f"{self.tr} s * {self.sfreq} Hz = {n_per_tr:g}; change 'tr' or "
                             "'sfreq'.")
        n_trs = self.duration / self.tr
        if abs(n_trs - round(n_trs)) > 1e-6 or round(n_trs) < 1:
            raise ValueError(f"'duration' ({self.duration} s) must be a whole number (>= 1) of "
                             f"TRs of {self.tr} s; use e.g. {self.tr * max(round(n_trs), 1):g}.")
        _check_int("n_regions", self.n_regions, 1)
        _check_int("n_oscillatory", self.n_oscillatory, 0)
        if self.n_oscillatory > self.n_regions:
            raise ValueError(f"'n_oscillatory' ({self.n_oscillatory}) must be <= 'n_regions' "
                             f"({self.n_regions}).")
        if self.n_oscillatory and not self.bands:
            raise ValueError("'bands' is empty but 'n_oscillatory' > 0; give at least one band.")
        for lo, hi in self.bands:
            if not 0 < lo < hi < self.sfreq / 2:
                raise ValueError(f"Each band must satisfy 0 < low < high < sfreq / 2 = "
                                 f"{self.sfreq / 2:g} Hz, got ({lo}, {hi}).")
        _check_int("n_conditions", self.n_conditions, 1)
        if not 0 < self.isi[0] <= self.isi[1]:
            raise ValueError(f"'isi' must be (low, high) with 0 < low <= high, got {self.isi}.")
        if not 0 <= self.latency[0] <= self.latency[1]:
            raise ValueError(f"'latency' must be (low, high) with 0 <= low <= high, got "
                             f"{self.latency}.")
        _check_keys("hrf", self.hrf, HRF_KEYS)
        _check_keys("noise_mix", self.noise_mix, DEFAULT_NOISE_MIX)
        for key, share in self.noise_mix.items():
            _check_positive(f"noise_mix[{key!r}]", share, allow_zero=True)
        if not sum(self.noise_mix.values()) > 0:
            raise ValueError("'noise_mix' shares must not all be 0.")
        if self.motion_cutoff >= 0.5 / self.tr:
            raise ValueError(f"'motion_cutoff' ({self.motion_cutoff} Hz) must be below the "
                             f"volume Nyquist frequency 1 / (2 tr) = {0.5 / self.tr:g} Hz.")
        _check_int("seed", self.seed, 0)

    @property
    def source_amplitude(self) -> float:
        """Impulse amplitude of one source, A·m: ``source_density`` × voxel volume (cm³)."""
        return self.source_density * float(np.prod(self.voxel_size)) * 1e-3

    @property
    def n_times(self) -> int:
        """Samples per run at ``sfreq``."""
        return int(round(self.duration * self.sfreq))

    @property
    def n_per_tr(self) -> int:
        """Samples per TR."""
        return int(round(self.tr * self.sfreq))

    @property
    def n_trs(self) -> int:
        """Volumes per run."""
        return int(round(self.duration / self.tr))


#: Size presets: grid, run length and regions.
SIZES = {
    # a few hundred sources, 40-s runs: tests (seconds).
    "tiny": dict(grid_shape=(10, 12, 9), voxel_size=(16.0, 16.0, 16.0), duration=40.0,
                 sfreq=50.0, n_regions=6, n_oscillatory=3, bands=((4.0, 8.0), (8.0, 13.0),
                                                                   (13.0, 20.0))),
    # ~12 mm, a thousand sources, 2-min runs: the demo.
    "demo": dict(grid_shape=(14, 17, 12), voxel_size=(12.0, 12.0, 12.0), duration=120.0),
    # paper §4.2: 64 x 64 x 35 voxels (3 x 3 x 4 mm, a typical EPI), 105 Hz, 10-min runs.
    "paper": dict(grid_shape=(64, 64, 35), voxel_size=(3.0, 3.0, 4.0), duration=600.0,
                  sfreq=105.0, n_regions=16, n_oscillatory=8),
}

#: The paper's three scenarios (Fig. 4): sequential noise-free, interleave-5 noise-free, and
#: interleave 5 with noise at SNR 10 on both modalities.
SCENARIOS = {
    "noise_free": dict(slice_order="sequential", eeg_snr=math.inf, fmri_snr=math.inf),
    "interleave5_noise_free": dict(slice_order="interleaved", interleave=5, eeg_snr=math.inf,
                                   fmri_snr=math.inf),
    "snr10": dict(slice_order="interleaved", interleave=5, eeg_snr=10.0, fmri_snr=10.0),
}


def _check_config(config):
    """Raise a TypeError unless ``config`` is an :class:`EEGfMRIConfig`; return it."""
    if not isinstance(config, EEGfMRIConfig):
        raise TypeError(f"'config' must be an EEGfMRIConfig (see make_config), got "
                        f"{type(config).__name__}.")
    return config


def make_config(scenario="noise_free", size="demo", **overrides):
    """A configuration from a scenario and a size preset, with overrides.

    Parameters
    ----------
    scenario : 'noise_free' | 'interleave5_noise_free' | 'snr10'
        Acquisition and noise (:data:`SCENARIOS`).
    size : 'tiny' | 'demo' | 'paper'
        Grid, rate and run length (:data:`SIZES`).
    **overrides
        Any :class:`EEGfMRIConfig` field, applied last.

    Returns
    -------
    config : EEGfMRIConfig
    """
    _check_option("scenario", scenario, list(SCENARIOS))
    _check_option("size", size, list(SIZES))
    _check_keys("EEGfMRIConfig", overrides, [f.name for f in dataclasses.fields(EEGfMRIConfig)])
    return EEGfMRIConfig(**{**SIZES[size], **SCENARIOS[scenario], **overrides})

"""One simulated subject in the scanner and one run of simultaneous EEG–fMRI.

:func:`make_setup` builds what every run of a data set shares (seeded by ``config.seed``):
the grid in fsaverage MRI coordinates, the grey-matter sources and their EEG lead field
(:mod:`neurofuse.anatomy.volume_forward`), the regions (:func:`.sources.make_regions`), the
ERP kernel and HRF, the slice offsets, the EPI baseline and the spatial gains of the
physiological noise. :func:`simulate_run` draws one run (seeded by ``(seed, run)``):

1. events and components (:mod:`.sources`), region activity ``A`` (n_regions, n_times);
2. EEG ``E = G (X * d) + N_E`` (:mod:`.eeg`), ``X[j] = w_j A[label_j]``;
3. fMRI ``F_v[m] = w_v (A * h)(m TR + δ_z(v))`` at source voxels, 0 elsewhere (:mod:`.fmri`;
   ``A`` replaced by its envelope with ``bold_drive='envelope'``), plus ``N_F`` (:mod:`.noise`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..._logging import logger
from ...anatomy.volume import make_epi_baseline, make_volume_grid
from ...anatomy.volume_forward import make_volume_forward, make_volume_sources
from ...physics.hrf import spm_hrf
from .config import EEGfMRIConfig, _check_config
from .eeg import add_sensor_noise, erp_kernel, make_cap_info, measure_eeg
from .fmri import sample_bold, slice_offsets
from .noise import motion_noise, motion_parameters, physio_noise, physio_phase, snr_factor
from .sources import make_components, make_events, make_regions, region_activity

__all__ = ["Setup", "make_setup", "simulate_run"]


@dataclass(frozen=True, eq=False)
class Setup:
    """What all runs of a simulated data set share.

    Attributes
    ----------
    config : EEGfMRIConfig
    sources : VolumeSources
        The sources kept by the forward model (inside the inner skull).
    info : mne.Info
        The EEG channels.
    leadfield : array, shape (n_channels, n_sources)
        Average-referenced, V/(A·m).
    regions : Regions
    erp_kernel : array, shape (n_erp_taps,)
    hrf : array, shape (n_hrf_taps,)
        The HRF at ``sfreq`` (:func:`~neurofuse.physics.hrf.spm_hrf`).
    slice_offsets : array, shape (n_slices,)
        s.
    baseline : array, shape grid.shape
        EPI image used by the motion term.
    physio_gain : dict of str to array, shape (n_voxels,)
        ``'respiratory'`` and ``'cardiac'`` amplitude per voxel (C order).
    """

    config: EEGfMRIConfig
    sources: object
    info: object
    leadfield: np.ndarray
    regions: object
    erp_kernel: np.ndarray
    hrf: np.ndarray
    slice_offsets: np.ndarray
    baseline: np.ndarray
    physio_gain: dict

    @property
    def grid(self):
        """The voxel grid (fsaverage MRI mm)."""
        return self.sources.grid


def make_setup(config):
    """Anatomy, lead field, regions, kernels and noise maps of a data set (seeded).

    Parameters
    ----------
    config : EEGfMRIConfig

    Returns
    -------
    setup : Setup
    """
    _check_config(config)
    rng = np.random.default_rng([config.seed, 0])
    grid = make_volume_grid(config.grid_shape, config.voxel_size, center=config.grid_center)
    sources = make_volume_sources(grid, gm_threshold=config.gm_threshold,
                                  orientation=config.orientation, seed=rng)
    info = make_cap_info(config.montage, config.sfreq)
    leadfield, kept, _ = make_volume_forward(sources, info, bem=config.bem)
    sources = sources.subset(kept)
    regions = make_regions(sources.pos * 1e3, config, rng)
    tissues = sources.tissues
    mask = tissues["mask"].ravel().astype(float)
    csf, gm = tissues["csf"].ravel(), tissues["gm"].ravel()
    n_vox = grid.n_voxels
    physio_gain = {  # strongest in CSF (pulsation, bulk motion near ventricles and sulci)
        "respiratory": mask * (0.3 + csf) * rng.lognormal(0.0, 0.3, n_vox),
        "cardiac": mask * (0.1 + 0.3 * gm + csf) * rng.lognormal(0.0, 0.3, n_vox),
    }
    offsets = slice_offsets(config.grid_shape[2], config.tr, config.slice_order,
                            config.interleave)
    logger.info("EEG-fMRI setup: %d sources, %d channels, %d regions (%d oscillatory)",
                sources.n_sources, len(info["ch_names"]), config.n_regions, config.n_oscillatory)
    return Setup(config, sources, info, leadfield, regions,
                 erp_kernel(config.sfreq, config.erp_duration), spm_hrf(config.sfreq, **config.hrf),
                 offsets, make_epi_baseline(tissues), physio_gain)


def _fmri_noise(setup, fmri_clean, src_vox, rng):
    """The noise volume series (n_voxels, n_trs) at the configured SNR, the motion parameters
    (or None) and the physiological phases."""
    cfg = setup.config
    n_vox, n_trs = fmri_clean.shape
    z_of = np.unravel_index(np.arange(n_vox), setup.grid.shape)[2]
    slice_times = np.arange(n_trs)[None] * cfg.tr + setup.slice_offsets[:, None]  # (nz, n_trs)
    info, noise, used = {}, np.zeros((n_vox, n_trs)), []
    shares = {k: v for k, v in cfg.noise_mix.items() if v > 0}
    params = None
    for name in shares:  # one component at a time: peak memory ~3 volume series
        if name == "thermal":
            comp = rng.standard_normal((n_vox, n_trs))
        elif name in ("respiratory", "cardiac"):
            freq = cfg.respiration_freq if name == "respiratory" else cfg.cardiac_freq
            phase = physio_phase(rng, cfg.n_times, cfg.sfreq, freq, cfg.rate_jitter)
            info[f"{name}_phase"] = phase
            comp = physio_noise(rng, phase, cfg.sfreq, slice_times[z_of], setup.physio_gain[name])
        else:
            params = motion_parameters(rng, n_trs, cfg.tr, cutoff=cfg.motion_cutoff,
                                       sd_mm=cfg.motion_mm, sd_deg=cfg.motion_deg)
            comp = motion_noise(params, setup.baseline, setup.grid)
        scale = math.sqrt(np.mean(np.var(comp[src_vox], axis=1)))
        if scale > 0:
            noise += comp * (math.sqrt(shares[name]) / scale)
            used.append(name)
        del comp
    if not used:
        raise ValueError("Every fMRI noise component with a non-zero share in 'noise_mix' is "
                         "zero (e.g. motion_mm = motion_deg = 0); give another component a share.")
    factor = snr_factor(fmri_clean[src_vox], noise[src_vox], cfg.fmri_snr)
    noise *= factor
    return noise, params, info


def simulate_run(setup, run):
    """Simulate run number ``run`` of a data set (seeded by ``(config.seed, run)``).

    Parameters
    ----------
    setup : Setup
    run : int
        Run number (>= 0).

    Returns
    -------
    out : dict
        ``eeg`` (n_channels, n_times) float32, V; ``fmri`` (*grid.shape, n_trs) float32;
        ``components`` (n_components, n_times) float64, A·m; ``comp_region`` (int64) and
        ``comp_kind`` (list of str); ``onset`` (s) and ``condition`` of the events;
        ``motion`` (n_trs, 6) or None; ``physio`` dict of phases (n_times,); ``eeg_sigma``
        (noise s.d. per channel, V) and ``fmri_noise`` (bool).
    """
    cfg = setup.config
    rng = np.random.default_rng([cfg.seed, 1, int(run)])
    reg = setup.regions
    onset, condition = make_events(cfg, rng)
    comps, comp_region, comp_kind = make_components(reg, onset, condition, cfg, rng)
    act = region_activity(comps, comp_region, reg.n_regions)  # (n_regions, n_times)
    src = setup.sources
    eeg_clean = measure_eeg(setup.leadfield, reg.weight, reg.label, act, setup.erp_kernel)
    eeg, eeg_sigma = add_sensor_noise(eeg_clean, cfg.eeg_snr, rng)
    if cfg.bold_drive == "envelope":
        from ...physics.envelope import envelope

        act = envelope(act, axis=-1)
    bold = sample_bold(act, cfg.sfreq, cfg.tr, setup.slice_offsets, cfg.hrf)  # (nz, n_reg, n_trs)
    z_src = np.unravel_index(src.voxels, setup.grid.shape)[2]
    fmri = np.zeros((setup.grid.n_voxels, cfg.n_trs))
    fmri[src.voxels] = reg.weight[:, None] * bold[z_src, reg.label]
    motion, physio = None, {}
    if not math.isinf(cfg.fmri_snr):
        noise, motion, physio = _fmri_noise(setup, fmri, src.voxels, rng)
        fmri += noise
    return {"eeg": eeg.astype(np.float32),
            "fmri": fmri.reshape(*setup.grid.shape, cfg.n_trs).astype(np.float32),
            "components": comps, "comp_region": comp_region, "comp_kind": comp_kind,
            "onset": onset, "condition": condition, "motion": motion, "physio": physio,
            "eeg_sigma": eeg_sigma, "fmri_noise": not math.isinf(cfg.fmri_snr)}

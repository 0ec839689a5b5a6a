"""Memory and disk a simulated study needs, estimated from its config before any work.

:func:`estimate_study` adds up, from :class:`~neurofuse.simulation.study.StudyConfig` alone
(its story plan, subjects, spacing, feature widths, volume grid):

* **disk**: stimulus features, every subject's recordings (MEG, source-level fMRI, EPI
  volumes) of every story and repeat, the ground-truth sources kept (``save_sources``), and
  per subject its lead field and forward model;
* **memory** at the peak: what is held for the whole run (each MEG subject's forward model,
  lead field and gain, the ground-truth encoding model) plus the largest story's arrays (its
  features, the noiseless MEG of every MEG subject at once, one subject's noisy repeats, a
  chunk of morphed sources and the BOLD transients, the volumes of one subject).

:func:`check_study_resources` refuses a study that does not fit, naming the largest parts and
the fields to reduce (``--force`` / ``NEUROFUSE_IGNORE_LIMITS=1`` to try anyway).
"""

from __future__ import annotations

import math

from .._resources import check_disk, check_memory

__all__ = ["N_SOURCES", "check_study_resources", "estimate_study"]

#: Sources of each source-space spacing (both hemispheres).
N_SOURCES = {"oct5": 2052, "oct6": 8196, "ico4": 5124, "ico5": 20484}
#: MEG channels of the simulated subjects (Vectorview: 102 magnetometers, 204 gradiometers).
N_MEG = 306
_F32, _F64 = 4, 8


def _plan(config):
    """``[(split, n_times, n_repeats, count)]``: the story plan, or for a huge number of
    stories (whose plan alone would take minutes) the mean story of each split, and the
    longest possible story."""
    if config.n_stories <= 10_000:
        return [(split, round(dur * config.sfreq), rep, 1)
                for _, split, dur, rep in config.story_plan()]
    mean = round(config.story_duration * config.sfreq)
    longest = round(config.story_duration * (1 + config.story_duration_jitter) * config.sfreq)
    reps = {"train": 1, "val": config.n_repeats_val, "test": config.n_repeats_test,
            "anchor": config.n_repeats_anchor}
    plan = [(split, mean, reps[split], getattr(config, f"n_{split}")) for split in reps]
    return plan + [("train", longest, max(reps.values()), 0)]


def estimate_study(config):
    """Peak memory and bytes written by :func:`~neurofuse.simulation.study.simulate_study`.

    Parameters
    ----------
    config : StudyConfig

    Returns
    -------
    memory : dict
        ``{"total": bytes, part: bytes, ...}``.
    disk : dict
        ``{"total": bytes, part: bytes, ...}``.
    """
    n_src = N_SOURCES[config.spacing]
    d = sum(config.feature_dims)
    spt = round(config.tr * config.sfreq)
    # EEG subjects (at most 94 electrodes, an average-referenced lead field and gain each) are
    # counted as MEG subjects (306 channels): an upper bound.
    n_meg = config.n_meg_subjects + config.n_paired_subjects + config.n_eeg_subjects
    n_fmri = config.n_fmri_subjects
    n_paired = config.n_paired_subjects
    voxels = math.prod(config.volume_shape) if n_paired else 0
    plan = _plan(config)
    kept = {"all": {"train", "val", "test", "anchor"}, "test": {"test"}, "none": set()}[
        config.save_sources]
    disk = {
        "stimulus features": sum(_F32 * c * n * d for _, n, _, c in plan),
        "MEG recordings": sum(_F32 * c * n_meg * rep * N_MEG * n for _, n, rep, c in plan),
        "fMRI recordings": sum(_F32 * c * n_fmri * rep * n_src * (n // spt)
                               for _, n, rep, c in plan),
        "fMRI volumes": sum(_F32 * c * n_paired * (rep + 1) * voxels * (n // spt)
                            for _, n, rep, c in plan),
        "ground-truth sources": sum(_F32 * c * n_src * n for split, n, _, c in plan
                                    if split in kept),
        # lead field (float32) and forward solution (3 orientations) per MEG subject
        "lead fields and forward models": n_meg * _F32 * N_MEG * n_src * 4,
        "ground-truth encoding model": _F64 * n_src * (d + 4),
    }
    n_max = max((n for _, n, _, _ in plan), default=0)
    rep_max = max((rep for _, _, rep, c in plan if c), default=1)
    n_tr = n_max // spt
    gain = N_MEG * n_src  # elements of one MEG subject's lead field
    # Measured (oct6, a cached forward model): a MEG subject holds its forward model (~21
    # bytes per lead-field element with its source space), lead field (float32) and gain
    # (float64); reading or computing the forward model peaks at ~111 bytes per element.
    held = {"forward models and gains": n_meg * 33 * gain,
            "ground-truth encoding model": _F64 * n_src * (d + 4)}
    anatomy = {"forward models and gains": max(n_meg - 1, 0) * 33 * gain,
               "computing one forward model": 111 * gain if n_meg else 0}
    chunk = min(config.chunk_size, n_max)
    stories = {
        **held,
        "one story's features": _F32 * n_max * d,
        "noiseless MEG of every MEG subject": _F64 * n_meg * N_MEG * n_max,
        "noisy repeats of one subject": (_F32 * rep_max + 2 * _F64) * N_MEG * n_max
        if n_meg else 0,
        # measure_bold: 1024 morphed sources (float32), make_bold's 512-source transients
        "BOLD transients": (_F32 * min(1024, n_src) + 24 * min(512, n_src)) * n_max
        if n_fmri else 0,
        "source chunk": _F32 * n_src * (2 * chunk + 256),
        "volumes of one subject": _F64 * (rep_max + 2) * voxels * n_tr,
    }
    calibration = {**held, "calibration features": _F32 * round(
        config.calibration_duration * config.sfreq) * d * 3}
    memory = max((anatomy, calibration, stories), key=lambda p: sum(p.values()))
    memory = {"total": int(sum(memory.values())), **{k: int(v) for k, v in memory.items()}}
    disk = {"total": int(sum(disk.values())), **{k: int(v) for k, v in disk.items()}}
    return memory, disk


def check_study_resources(config, out):
    """Refuse a study that does not fit in memory or on the disk of ``out``.

    Parameters
    ----------
    config : StudyConfig
    out : path-like
        The dataset folder to be written.

    Returns
    -------
    memory, disk : dict
        As :func:`estimate_study`.

    Raises
    ------
    neurofuse._resources.ResourceError
        Naming both sizes, the largest parts and the fields to reduce.
    """
    memory, disk = estimate_study(config)
    n_subjects = (config.n_meg_subjects + config.n_fmri_subjects + config.n_paired_subjects
                  + config.n_eeg_subjects)
    what = (f"Simulating {config.n_stories} stories of about {config.story_duration:g} s for "
            f"{n_subjects} "
            f"subjects on {N_SOURCES[config.spacing]} sources ({config.spacing})")
    fields = ("story_duration, the number of stories (n_train, n_val, n_test, n_anchor) or "
              "of repeats, the number of subjects (n_meg_subjects, n_fmri_subjects, "
              "n_paired_subjects, n_eeg_subjects), or use a coarser spacing (oct5)")
    check_memory(memory["total"], what=what, reduce=fields,
                 parts={k: v for k, v in memory.items() if k != "total"})
    check_disk(disk["total"], out, what=what, reduce=fields,
               parts={k: v for k, v in disk.items() if k != "total"})
    return memory, disk

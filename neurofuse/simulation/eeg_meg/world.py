"""Simulate the paired EEG + MEG world into a dataset store.

:func:`simulate_eeg_meg_world` makes, for every subject (:func:`make_world_subject`), its
anatomy, the fixed-orientation forward models of its 70-channel EEG cap (three-layer BEM)
and its 306-channel MEG (single-shell BEM: the skull does not change magnetic fields), and
its :class:`~.sources.SourceModel`; then, task by task and ``chunk_trials`` trials at a time,
the trials' source activity, the EEG (average-referenced) and MEG they produce, and sensor
noise at the requested CNR per modality. Everything lands in one
:class:`neurofuse.data.store.DatasetWriter` store (see :func:`simulate_eeg_meg_world` for the
layout), so EEG and MEG epochs of a subject pair up by task name and epoch index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..._checks import _check_type
from ..._logging import logger, verbose
from ...physics.measurement import add_noise, referenced_noise_sigma
from .config import BANDS, TASK_NAMES, EEGMEGWorldConfig
from .regions import REGIONS, radiality
from .sources import ONGOING, SourceModel, make_source_model, simulate_trials
from .tasks import TASKS

__all__ = ["WorldSubject", "make_world_subject", "simulate_eeg_meg_world"]


@dataclass(frozen=True, eq=False)
class WorldSubject:
    """One subject of the world: anatomy, sensors, forward models, source model.

    Attributes
    ----------
    name : str
        Store name (``sub-01``, ``sub-101``...).
    index : int
        Anatomy index (:func:`neurofuse.anatomy.make_simulated_subject`).
    paired : bool
        EEG + MEG (True) or EEG only.
    subject : neurofuse.anatomy.Subject
    eeg_info : mne.Info
        EEG channels with an active average-reference projector (the data are referenced).
    eeg_forward : mne.Forward
        Fixed-orientation EEG forward (three-layer BEM), unreferenced, as MNE keeps it.
    eeg_leadfield : array, shape (n_eeg, n_sources)
        Average-referenced EEG lead field, V/(A·m): the EEG is ``eeg_leadfield @ sources``.
    meg_info, meg_forward : mne.Info, mne.Forward | None
        306-channel MEG (None for EEG-only subjects).
    meg_leadfield : array, shape (306, n_sources) | None
        T/(A·m) (magnetometers), T/m/(A·m) (gradiometers).
    morph : scipy.sparse.csr_array, shape (n_sources, n_sources_fsaverage)
    vertices : list of 2 arrays
        Source-space vertex numbers ``[lh, rh]``.
    positions : array, shape (n_sources, 3)
        Source positions in the subject's MRI frame, m.
    radiality : array, shape (n_sources,)
        ``|cos|`` between each source normal and the radius of the inner-skull sphere.
    model : SourceModel
    tasks : tuple of str
    """

    name: str
    index: int
    paired: bool
    subject: object
    eeg_info: object
    eeg_forward: object
    eeg_leadfield: np.ndarray
    meg_info: object
    meg_forward: object
    meg_leadfield: np.ndarray
    morph: object
    vertices: list
    positions: np.ndarray
    radiality: np.ndarray
    model: SourceModel
    tasks: tuple


def _surface_area_cm2(src):
    """Area of the full surfaces of a source space, cm²."""
    total = 0.0
    for s in src:
        rr, tris = s["rr"], s["tris"]
        cross = np.cross(rr[tris[:, 1]] - rr[tris[:, 0]], rr[tris[:, 2]] - rr[tris[:, 0]])
        total += 0.5 * np.linalg.norm(cross, axis=1).sum()
    return total * 1e4


def _inner_skull_center(subject):
    """Centre (m, MRI frame) of the sphere fitted to the subject's inner skull."""
    import nibabel as nib

    from ...anatomy.surfaces import fit_sphere

    rr = nib.freesurfer.read_geometry(
        Path(subject.subjects_dir) / subject.name / "bem" / "inner_skull.surf")[0]
    return fit_sphere(np.asarray(rr, float) * 1e-3)[0]


def _average_reference_info(info):
    """A copy of an EEG info with an active average-reference projector."""
    import mne

    # public API only: reference a one-sample recording and keep its (now active) info
    raw = mne.io.RawArray(np.zeros((len(info["ch_names"]), 1)), info.copy(), verbose="error")
    raw.set_eeg_reference("average", projection=True, verbose="error")
    raw.apply_proj(verbose="error")
    return raw.info


def _check_same_sources(fwd, src, what):
    got = [s["vertno"] for s in fwd["src"]]
    if any(not np.array_equal(a, s["vertno"]) for a, s in zip(got, src)):
        raise RuntimeError(
            f"The {what} forward model dropped sources of the source space (outside the inner "
            "skull); the world needs every source in both modalities. Use "
            "anatomy='template' or a smaller deformation.")


@verbose
def make_world_subject(config, name, index, *, paired, tasks, verbose=None) -> WorldSubject:
    """Anatomy, sensors, forward models and source model of one world subject.

    Parameters
    ----------
    config : EEGMEGWorldConfig
    name : str
        Store name of the subject.
    index : int
        Anatomy index (>= 0).
    paired : bool
        EEG + MEG (True, cap ``config.montage``) or EEG only (cap
        ``config.eeg_only_montage``, by default the same).
    tasks : tuple of str
        Tasks the subject performs.
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    subject : WorldSubject
    """
    from ...anatomy import (
        fsaverage_source_positions,
        get_leadfield,
        get_source_space,
        make_forward,
        make_morph,
        make_simulated_subject,
        make_template_subject,
        source_normals,
        source_positions,
    )

    montage = config.montage if paired else (config.eeg_only_montage or config.montage)
    if config.anatomy == "template":
        subject = make_template_subject(meg=paired, eeg=montage, sfreq=config.sfreq)
    else:
        subject = make_simulated_subject(index, seed=config.anatomy_seed, meg=paired,
                                         eeg=montage, sfreq=config.sfreq)
    src = get_source_space(subject, config.spacing)
    # Two calls: make_forward(meg=True, eeg=True) merges the infos with an mne.io path that
    # mne 1.13 no longer exposes; MEG needs only the single shell anyway.
    fwd_eeg = make_forward(subject, spacing=config.spacing, meg=False, eeg=True)
    _check_same_sources(fwd_eeg, src, "EEG")
    lf_eeg = get_leadfield(fwd_eeg).astype(np.float32).astype(np.float64)
    lf_eeg -= lf_eeg.mean(axis=0, keepdims=True)  # average reference
    fwd_meg = lf_meg = meg_info = None
    if paired:
        fwd_meg = make_forward(subject, spacing=config.spacing, meg=True, eeg=False)
        _check_same_sources(fwd_meg, src, "MEG")
        lf_meg = get_leadfield(fwd_meg).astype(np.float32).astype(np.float64)
        meg_info = subject.meg_info
        if list(fwd_meg["info"]["ch_names"]) != list(meg_info["ch_names"]):
            raise RuntimeError("MEG forward channels differ from the subject's MEG info.")
    if list(fwd_eeg["info"]["ch_names"]) != list(subject.eeg_info["ch_names"]):
        raise RuntimeError("EEG forward channels differ from the subject's EEG info.")
    morph = make_morph(subject, spacing=config.spacing, src_to=src)
    pos, normals = source_positions(src), source_normals(src)
    hemi = np.repeat(["lh", "rh"], [s["nuse"] for s in src])
    cos = radiality(pos, normals, _inner_skull_center(subject))
    fs_pos, fs_hemi = fsaverage_source_positions(spacing=config.spacing, surface="white")
    model = make_source_model(
        config, [TASKS[t] for t in tasks], fs_pos=fs_pos, fs_hemi=fs_hemi,
        morph=None if subject.kind == "template" else morph, pos=pos, hemi=hemi, cos=cos,
        area_cm2=_surface_area_cm2(src))
    return WorldSubject(
        name=name, index=int(index), paired=bool(paired), subject=subject,
        eeg_info=_average_reference_info(subject.eeg_info), eeg_forward=fwd_eeg,
        eeg_leadfield=lf_eeg, meg_info=meg_info, meg_forward=fwd_meg, meg_leadfield=lf_meg,
        morph=morph, vertices=[s["vertno"] for s in src], positions=pos, radiality=cos,
        model=model, tasks=tuple(tasks))


def _task_seeds(config, sub, task, n_epochs):
    """Independent generators: design, one per trial, EEG noise, MEG noise."""
    ss = np.random.SeedSequence([config.seed, sub.index, TASK_NAMES.index(task), 1729])
    design, trials, noise_eeg, noise_meg = ss.spawn(4)
    return (np.random.default_rng(design),
            [np.random.default_rng(s) for s in trials.spawn(n_epochs)],
            np.random.default_rng(noise_eeg), np.random.default_rng(noise_meg))


def _design(task, config, rng):
    """Trial classes (balanced, shuffled) and event times in a virtual run, s."""
    labels = np.repeat([task.event_id[c] for c in task.classes], config.n_trials)
    labels = labels[rng.permutation(labels.size)].astype(np.int64)
    soa = rng.uniform(*config.soa, labels.size)
    events = -config.tmin + 1.0 + np.cumsum(soa) - soa[0]
    return labels, events


def _noisy(clean, cnr, rng, *, reference):
    """Sensor epochs with white noise at ``cnr`` (per channel, over all epochs and times).

    ``clean`` has shape (n_epochs, n_channels, n_times). With ``reference`` the noise is
    average-referenced too, drawn with the per-electrode s.d. of
    :func:`~neurofuse.physics.measurement.referenced_noise_sigma` so that the *referenced*
    noise has the requested CNR on every electrode (not only on average).
    """
    sigma = clean.std(axis=(0, 2))[:, None]  # (n_channels, 1)
    if reference and not math.isinf(cnr):
        sigma = referenced_noise_sigma(sigma)
    out = np.empty(clean.shape, np.float32)
    for i in range(len(clean)):
        out[i] = add_noise(rng, clean[i], cnr, sigma_signal=sigma)
        if reference:
            out[i] -= out[i].mean(axis=0, keepdims=True)
    return out


def _metadata(config, subjects):
    import dataclasses

    return {
        "kind": "neurofuse.simulation.eeg_meg",
        "world": config.to_json(),
        "bands": {k: list(v) for k, v in BANDS.items()},
        "tasks": {t: TASKS[t].to_json() for t in dict.fromkeys(config.tasks
                                                                 + config.eeg_only_tasks)},
        "regions": {k: dataclasses.asdict(v) for k, v in REGIONS.items()},
        "ongoing": [dataclasses.asdict(g) for g in ONGOING],
        "subjects": {s.name: {"paired": s.paired, "anatomy_index": s.index,
                              "tasks": list(s.tasks), "source_scale": s.model.scale,
                              "region_columns": [list(c) for c in s.model.columns]}
                     for s in subjects},
        "units": {"eeg": "V", "meg": "T (mag), T/m (grad)", "sources": "A·m"},
        "ground_truth": {
            "sources/<subject>/<task>": "(n_epochs, n_sources, n_times) float32, A·m",
            "sources/<subject>/positions": "(n_sources, 3) source positions, subject MRI, m",
            "sources/<subject>/radiality": "(n_sources,) |cos(normal, radius)|",
            "regions/<subject>": "(n_sources, n_columns) region profiles (region_columns)",
            "trials/<subject>/<task>-latency": "(n_epochs, n_components) peak latency, s "
                                               "(tasks with evoked components only)",
            "trials/<subject>/<task>-amplitude": "(n_epochs, n_components) signed peak "
                                                 "amplitude / moment_density",
        },
    }


def _write_task(writer, sub, task_name, config):
    task = TASKS[task_name]
    n_epochs = config.n_trials * len(task.classes)
    design_rng, trial_rngs, rng_eeg, rng_meg = _task_seeds(config, sub, task_name, n_epochs)
    labels, events = _design(task, config, design_rng)
    names = {v: k for k, v in task.event_id.items()}
    classes = [names[int(v)] for v in labels]
    n_times, n_src = config.n_times, sub.model.n_sources
    gt_src = None
    if config.save_sources:
        gt_src = writer.create_array(f"ground_truth/sources/{sub.name}/{task_name}.npy",
                                     (n_epochs, n_src, n_times), np.float32)
    clean_eeg = np.empty((n_epochs, sub.eeg_leadfield.shape[0], n_times))
    clean_meg = None if not sub.paired else np.empty((n_epochs, sub.meg_leadfield.shape[0],
                                                      n_times))
    latency = np.zeros((n_epochs, len(task.components)))
    amplitude = np.zeros_like(latency)
    for a in range(0, n_epochs, config.chunk_trials):
        b = min(a + config.chunk_trials, n_epochs)
        src, latency[a:b], amplitude[a:b] = simulate_trials(
            sub.model, task, classes[a:b], trial_rngs[a:b], config)
        if gt_src is not None:
            gt_src[a:b] = src
        src = src.astype(np.float64)  # exactly the saved float32 values
        clean_eeg[a:b] = sub.eeg_leadfield @ src  # (b - a, n_eeg, n_times)
        if sub.paired:
            clean_meg[a:b] = sub.meg_leadfield @ src
        logger.debug("%s %s: trials %d-%d of %d", sub.name, task_name, a, b, n_epochs)
    kwargs = dict(events=events, labels=labels, event_id=dict(task.event_id), tmin=config.tmin)
    writer.write_epochs(sub.name, "eeg", task_name,
                        _noisy(clean_eeg, config.cnr_eeg, rng_eeg, reference=True), **kwargs)
    if sub.paired:
        writer.write_epochs(sub.name, "meg", task_name,
                            _noisy(clean_meg, config.cnr_meg, rng_meg, reference=False),
                            **kwargs)
    if task.components:  # (the store's checks refuse empty arrays)
        writer.write_ground_truth(f"trials/{sub.name}/{task_name}-latency", latency)
        writer.write_ground_truth(f"trials/{sub.name}/{task_name}-amplitude", amplitude)


@verbose
def simulate_eeg_meg_world(out, config=None, *, overwrite=False, verbose=None) -> Path:
    """Simulate a paired EEG + MEG world (and EEG-only subjects) into a dataset store.

    Parameters
    ----------
    out : path-like
        Folder of the new store (nothing appears there until the world is complete).
    config : EEGMEGWorldConfig | None
        The world; ``None``: ``EEGMEGWorldConfig.from_preset('demo')``.
    overwrite : bool
        Replace an existing store at ``out``.
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    path : Path
        The store, readable with :func:`neurofuse.data.store.read_dataset`.

    Notes
    -----
    Store layout (``docs/dataset-format.md``): sampled at ``config.sfreq``, no stories and no
    features, ``tr=None``. Subjects ``sub-01``... have modalities ``eeg`` and ``meg``,
    EEG-only subjects ``sub-101``... only ``eeg``. Each subject has per modality its
    ``mne.Info`` (EEG: with an active average-reference projector), its lead field (EEG:
    average-referenced, so ``eeg = leadfield @ sources + noise`` exactly) and its MNE
    forward (EEG: unreferenced, as MNE keeps it), plus its morph and vertices. Epoch sets
    are named by task (``somatomotor``, ``faces``, ``motor_imagery``), shape
    (n_epochs, n_channels, n_times), with labels, ``event_id``, ``tmin`` and event times in
    a virtual run; a subject's EEG and MEG epochs of a task are the same trials in the same
    order. Ground truth: see ``metadata["ground_truth"]``; the configuration is
    ``metadata["world"]`` (:meth:`EEGMEGWorldConfig.from_json`).
    """
    from ...data.store import DatasetWriter

    config = EEGMEGWorldConfig.from_preset("demo") if config is None else config
    _check_type("config", config, EEGMEGWorldConfig,
                "EEGMEGWorldConfig (e.g. EEGMEGWorldConfig.from_preset('demo'))")
    paired, eeg_only = config.subject_names()
    subjects = []
    for i, name in enumerate(paired):
        logger.info("World subject %s (EEG + MEG): anatomy and forward models", name)
        subjects.append(make_world_subject(config, name, i + 1, paired=True,
                                           tasks=config.tasks))
    for i, name in enumerate(eeg_only):
        logger.info("World subject %s (EEG only): anatomy and forward model", name)
        subjects.append(make_world_subject(config, name, 101 + i, paired=False,
                                           tasks=config.eeg_only_tasks))
    with DatasetWriter(out, sfreq=config.sfreq, tr=None, feature_streams=None,
                       overwrite=overwrite, metadata=_metadata(config, subjects)) as writer:
        for sub in subjects:
            mods = ["eeg", "meg"] if sub.paired else ["eeg"]
            writer.add_subject(
                sub.name, modalities=mods, morph=sub.morph, vertices=sub.vertices,
                anatomy={**sub.subject.to_json(), "paired": sub.paired},
                cnr={"eeg": config.cnr_eeg, **({"meg": config.cnr_meg} if sub.paired else {})})
            writer.add_sensors(sub.name, "eeg", info=sub.eeg_info, leadfield=sub.eeg_leadfield,
                               forward=sub.eeg_forward, units="V",
                               signal="EEG, average reference")
            if sub.paired:
                writer.add_sensors(sub.name, "meg", info=sub.meg_info,
                                   leadfield=sub.meg_leadfield, forward=sub.meg_forward,
                                   units="T (mag), T/m (grad)", signal="MEG")
            writer.write_ground_truth(f"sources/{sub.name}/positions", sub.positions)
            writer.write_ground_truth(f"sources/{sub.name}/radiality", sub.radiality)
            writer.write_ground_truth(f"regions/{sub.name}",
                                      sub.model.profiles.astype(np.float32))
            for task in sub.tasks:
                logger.info("Simulating %s / %s", sub.name, task)
                _write_task(writer, sub, task, config)
    return Path(out)

"""Simulated ECoG of new people listening to a new story.

Paper §5 validates the source estimates on ECoG of people who were in no training set,
listening to a story that no model has seen. :func:`simulate_ecog` builds that test from the
*same* ground-truth world as a simulated MEG + fMRI study (:func:`~neurofuse.simulation.study.
simulate_study`): it reads the study's ground-truth encoder (``ground_truth/encoding``) and its
configuration, draws a new story with the study's :class:`~neurofuse.simulation.stimuli.
StimulusGenerator` (same vocabulary and phoneme inventory, a story seed no study story uses),
and records it on new simulated subjects:

1. **Anatomy.** ``n_subjects`` simulated FreeSurfer subjects
   (:func:`~neurofuse.anatomy.make_simulated_subject` with indices 101, 102, ... and a seed
   derived from the study seed and ``seed``: none of them is a study subject), deformed and
   registered like the study's subjects.
2. **Electrodes.** One implanted hemisphere per subject (left with probability 0.7) carrying
   the arrays of :data:`DEFAULT_LAYOUT` (an 8 x 8 perisylvian grid and four strips, 1 cm
   spacing), placed with :func:`~neurofuse.anatomy.make_ecog_electrodes` on the subject's own
   pial surface (1 mm above it). Each array's target (fsaverage/MNI mm) is moved to the
   subject through its spherical registration and jittered (6 mm s.d. per axis; rotation
   +-20 degrees; 0.5 mm electrode jitter).
3. **Signal.** Ground-truth fsaverage sources ``s`` (the study's encoder applied to the new
   story) are morphed to the subject (``M s``, MNE morph through ``sphere.reg``) and each
   electrode records a Gaussian-weighted mean of the subject's sources around it::

       ecog_e(t) = sum_j w_ej (M s)_j(t),   w_ej ∝ exp(-d_ej^2 / (2 sigma^2)),  sum_j w_ej = 1

   with ``d_ej`` the distance from the electrode to the pial-surface position of source
   vertex ``j`` (same hemisphere), ``sigma = spread_mm`` (5 mm by default) and the sum
   truncated at ``3 sigma``. Units: A·m (a weighted mean of dipole amplitudes).
4. **Noise.** White Gaussian noise with the same s.d. on every electrode,
   ``sigma_noise = source_amplitude / cnr``, where ``source_amplitude`` is the study's source
   scale (the 95th percentile over fsaverage sources of the source s.d.). So ``cnr`` is the
   contrast-to-noise ratio (sigma_signal / sigma_noise, paper footnote 3) of an electrode over
   the most responsive cortex, and electrodes over weakly responsive cortex have less, as in
   a real implant. The noiseless signals are kept as ground truth.

The result is an ECoG dataset (:mod:`neurofuse.data.ecog`, ``docs/ecog.md``), the same format
a real-data loader writes (e.g. :func:`neurofuse.data.prepare_podcast`). The format's names
(:func:`~neurofuse.data.ecog.read_ecog_dataset`, :func:`~neurofuse.data.ecog.write_ecog_dataset`,
:class:`~neurofuse.data.ecog.EcogDataset`, :class:`~neurofuse.data.ecog.EcogElectrodes`, ...)
are re-exported here for older imports.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from .._checks import _check_int, _check_positive, _check_type
from .._io import check_writable_dir
from .._logging import logger, progress_enabled, verbose
from ..anatomy.coordinates import _check_hemi_array, _read_surface, _unit, electrodes_to_fsaverage
from ..data.ecog import (
    _HEMIS,
    ECOG_FORMAT,
    ECOG_MANIFEST,
    ECOG_SCHEMA_VERSION,
    EcogDataset,
    EcogElectrodes,
    read_ecog_dataset,
    write_ecog_dataset,
)
from ..data.store import _check_name

__all__ = [
    "DEFAULT_LAYOUT",
    "ECOG_FORMAT",
    "ECOG_MANIFEST",
    "ECOG_SCHEMA_VERSION",
    "EcogDataset",
    "EcogElectrodes",
    "electrodes_to_fsaverage",
    "make_spread_weights",
    "read_ecog_dataset",
    "simulate_ecog",
    "write_ecog_dataset",
]


#: Arrays implanted on every simulated subject (in the implanted hemisphere). ``target_mm``
#: is a point of the fsaverage (≈ MNI305) surface in the *right* hemisphere (x is mirrored
#: for the left); ``angle`` rotates the layout about the surface normal (0: columns run
#: upwards; a strip's long axis is its columns).
DEFAULT_LAYOUT = (
    # perisylvian grid over the superior temporal gyrus / sulcus and auditory cortex
    {"prefix": "G", "kind": "grid", "shape": (8, 8), "target_mm": (58.0, -22.0, 6.0),
     "angle": 0.0},
    # inferior frontal gyrus
    {"prefix": "F", "kind": "strip", "shape": (1, 8), "target_mm": (50.0, 22.0, 12.0),
     "angle": 60.0},
    # inferior / anterior temporal lobe, along its length
    {"prefix": "T", "kind": "strip", "shape": (1, 6), "target_mm": (54.0, -12.0, -24.0),
     "angle": 90.0},
    # angular gyrus / inferior parietal lobule
    {"prefix": "P", "kind": "strip", "shape": (1, 8), "target_mm": (44.0, -62.0, 32.0),
     "angle": 0.0},
    # dorsal sensorimotor cortex: a control over weakly responsive cortex
    {"prefix": "D", "kind": "strip", "shape": (1, 6), "target_mm": (32.0, -22.0, 64.0),
     "angle": 90.0},
)
_TARGET_JITTER_MM = 6.0
_ANGLE_JITTER_DEG = 20.0
_ELECTRODE_JITTER_M = 0.0005
_P_LEFT = 0.7
_FIRST_INDEX = 101  # simulated-subject indices of ECoG subjects (study subjects: 1..n)
_SEED_KEY = 6  # SeedSequence key of ECoG draws (the study uses 1, 2, 3, 4, 11)


# ============================================================================ anatomy
def make_spread_weights(electrode_pos, electrode_hemi, source_pos, source_hemi, spread_mm=5.0):
    """Gaussian spatial spread of each electrode over the sources around it.

    ``w_ej ∝ exp(-d_ej^2 / (2 sigma^2))`` for sources ``j`` of the electrode's hemisphere with
    ``d_ej < 3 sigma``, normalised so that each row sums to 1 (a weighted mean).

    Parameters
    ----------
    electrode_pos : array, shape (n_electrodes, 3)
        Metres.
    electrode_hemi : array of str, shape (n_electrodes,)
    source_pos : array, shape (n_sources, 3)
        Positions of the sources the electrodes record (e.g. the pial-surface positions of
        the subject's source vertices), metres, same frame as ``electrode_pos``.
    source_hemi : array of str, shape (n_sources,)
    spread_mm : float
        sigma of the Gaussian, mm.

    Returns
    -------
    weights : scipy.sparse.csr_array, shape (n_electrodes, n_sources)
    """
    import scipy.sparse
    from scipy.spatial import cKDTree

    sigma = _check_positive("spread_mm", spread_mm) * 1e-3
    electrode_pos = np.asarray(electrode_pos, float)
    source_pos = np.asarray(source_pos, float)
    e_hemi = _check_hemi_array(electrode_hemi, len(electrode_pos))
    s_hemi = _check_hemi_array(source_hemi, len(source_pos))
    rows, cols, vals = [], [], []
    for h in _HEMIS:
        e_idx = np.flatnonzero(e_hemi == h)
        s_idx = np.flatnonzero(s_hemi == h)
        if not len(e_idx):
            continue
        if not len(s_idx):
            raise ValueError(f"Electrodes on '{h}' but no sources there.")
        tree = cKDTree(source_pos[s_idx])
        for e, near in zip(e_idx, tree.query_ball_point(electrode_pos[e_idx], 3 * sigma)):
            if not near:
                d, _ = tree.query(electrode_pos[e])
                raise ValueError(
                    f"Electrode {e} is {d * 1e3:.1f} mm from the nearest source of '{h}', farther "
                    f"than 3 x spread_mm = {3 * sigma * 1e3:.1f} mm: is it on the cortex, in "
                    "the same coordinate frame (metres) and hemisphere as the sources?")
            near = s_idx[np.asarray(near, int)]
            d2 = ((source_pos[near] - electrode_pos[e]) ** 2).sum(1)
            w = np.exp(-0.5 * d2 / sigma**2)
            rows.append(np.full(len(near), e))
            cols.append(near)
            vals.append(w / w.sum())
    mat = scipy.sparse.csr_array(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(electrode_pos), len(source_pos)))
    mat.sum_duplicates()
    return mat


def _subject_vertex_for_target(subject, template, target_m, hemi):
    """The subject's pial vertex registered to the fsaverage pial point nearest ``target_m``."""
    from scipy.spatial import cKDTree

    fs_pial, _ = _read_surface(template, "pial", hemi)
    fs_reg, _ = _read_surface(template, "sphere.reg", hemi)
    reg, _ = _read_surface(subject, "sphere.reg", hemi)
    _, v_fs = cKDTree(fs_pial).query(target_m)
    _, v = cKDTree(_unit(reg)).query(_unit(fs_reg[[v_fs]]))
    return int(v[0])


def _place_arrays(subject, template, layout, hemi, rng):
    """ElectrodeArrays of ``layout`` on the subject's pial surface of ``hemi``."""
    from ..anatomy import make_ecog_electrodes

    pial, tris = _read_surface(subject, "pial", hemi)
    sign = -1.0 if hemi == "lh" else 1.0
    arrays = []
    for spec in layout:
        target = np.asarray(spec["target_mm"], float) * [sign, 1.0, 1.0]
        target = (target + rng.normal(0.0, _TARGET_JITTER_MM, 3)) * 1e-3
        v = _subject_vertex_for_target(subject, template, target, hemi)
        angle = float(spec.get("angle", 0.0)) + rng.uniform(-_ANGLE_JITTER_DEG, _ANGLE_JITTER_DEG)
        arrays.append(make_ecog_electrodes(
            pial, tris, center=pial[v], kind=spec["kind"], shape=tuple(spec["shape"]),
            spacing=float(spec.get("spacing", 0.01)), angle=angle, prefix=spec["prefix"],
            jitter=_ELECTRODE_JITTER_M, seed=rng))
    return arrays


def _check_layout(layout):
    layout = DEFAULT_LAYOUT if layout is None else layout
    _check_type("layout", layout, (list, tuple))
    if not layout:
        raise ValueError("'layout' is empty: give at least one array.")
    prefixes = []
    for i, spec in enumerate(layout):
        _check_type(f"layout[{i}]", spec, dict)
        missing = {"prefix", "kind", "shape", "target_mm"} - set(spec)
        if missing:
            raise ValueError(f"layout[{i}] lacks {sorted(missing)}: each array needs 'prefix', "
                             "'kind', 'shape' and 'target_mm' (optionally 'angle', 'spacing').")
        prefixes.append(spec["prefix"])
    if len(set(prefixes)) != len(prefixes):
        raise ValueError(f"Array prefixes must be unique (they make electrode names), got "
                         f"{prefixes}.")
    return layout


# ============================================================================ simulation
def _study_world(study_dir):
    """(dataset, StudyConfig, SourceEncodingModel) of a simulated study."""
    from ..data.store import read_dataset
    from .encoding import SourceEncodingModel
    from .study import StudyConfig

    ds = read_dataset(study_dir)
    cfg = ds.metadata.get("config")
    try:
        encoding_dir = ds.ground_truth_dir("encoding")
    except ValueError:
        encoding_dir = None
    if not isinstance(cfg, dict) or encoding_dir is None:
        raise ValueError(
            f"'{ds.path}' is not a simulated study with a ground-truth encoder (no "
            "metadata['config'] or ground_truth/encoding): make one with neurofuse simulate study "
            "(simulate_study), or load real ECoG into the ECoG format instead.")
    config = StudyConfig.from_dict(cfg)
    encoder = SourceEncodingModel.load(encoding_dir)
    return ds, config, encoder


def _source_world(ds, encoder):
    """The study's drawn world (nonlinearities, spontaneous activity), or None by default."""
    from .encoding.source_world import SourceWorld

    if "world" not in ds.metadata:  # written by simulate_study for worlds other than linear15
        return None
    return SourceWorld.load(ds.ground_truth_dir("world"), encoder.src_pos, encoder.hemi)


def _derived_seed(*keys) -> int:
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


@verbose
def simulate_ecog(study_dir, out, *, n_subjects=3, story_minutes=30.0, cnr=1.0, spread_mm=5.0,
                  seed=0, layout=None, story_name="ecog-story", overwrite=False,
                  verbose=None) -> Path:
    """Simulate ECoG of new subjects listening to a new story, in a study's ground-truth world.

    See the module docstring for the model (anatomy, electrodes, spatial spread, noise).

    Parameters
    ----------
    study_dir : path-like
        A simulated MEG + fMRI study (:func:`~neurofuse.simulation.study.simulate_study`):
        its ground-truth encoder and configuration (stimulus generator, source space,
        anatomy variability) are reused, so the ECoG comes from the same world.
    out : path-like
        The ECoG dataset folder to create (written atomically).
    n_subjects : int
        Number of ECoG subjects (none of them in the study).
    story_minutes : float
        Length of the new story (the Podcast story: 30 min).
    cnr : float | 'inf'
        Contrast-to-noise ratio over the most responsive cortex (see the module docstring);
        ``'inf'`` is noiseless.
    spread_mm : float
        sigma of each electrode's Gaussian spatial spread over the cortex, mm.
    seed : int
        Seed of the ECoG draws (story, anatomy, electrode placement, noise), combined with the
        study seed; different seeds give different subjects and stories.
    layout : sequence of dict | None
        Arrays per subject (see :data:`DEFAULT_LAYOUT`, the default).
    story_name : str
        Name of the story in the dataset.
    overwrite : bool
        Replace an existing dataset at ``out`` (only once the new one is complete).
    verbose : bool | str | int | None

    Returns
    -------
    out : Path
        The ECoG dataset; open it with :func:`read_ecog_dataset`.
    """
    from tqdm.auto import tqdm

    from .. import __version__
    from ..anatomy import (
        get_source_space,
        make_morph,
        make_simulated_subject,
        make_template_subject,
    )
    from ..physics.measurement import add_noise, apply_gain, make_gain
    from .stimuli import StimulusGenerator

    t_start = time.perf_counter()
    n_subjects = _check_int("n_subjects", n_subjects, 1)
    story_minutes = _check_positive("story_minutes", story_minutes)
    cnr = _check_positive("cnr", cnr, allow_inf=True)
    spread_mm = _check_positive("spread_mm", spread_mm)
    seed = _check_int("seed", seed, 0)
    layout = _check_layout(layout)
    _check_name("story name", story_name)
    out = Path(out).expanduser()
    if out.exists() and not overwrite:
        raise FileExistsError(f"The output location '{out}' already exists. Choose a new folder "
                              "or pass overwrite=True (--overwrite) to replace it.")
    check_writable_dir(out, name="out")
    ds, config, encoder = _study_world(study_dir)
    world = _derived_seed(config.seed, _SEED_KEY, seed)

    # ----------------------------------------------------------- the new story
    gen = StimulusGenerator(dims=config.feature_dims, sfreq=config.sfreq, seed=config.seed)
    story = gen.make_story(story_minutes * 60.0, seed=_derived_seed(world, 1))
    if story.features.shape[1] != encoder.n_features:
        raise ValueError(f"The study's stimulus generator makes {story.features.shape[1]} "
                         f"features but its encoder expects {encoder.n_features}: the study "
                         "folder is inconsistent.")
    streams = {k: [v.start, v.stop] for k, v in gen.stream_slices.items()}

    # ----------------------------------------------------------- subjects and electrodes
    template = make_template_subject(meg=False)
    bar = {"disable": not progress_enabled(), "leave": False}
    gains, subjects = {}, {}
    for i in tqdm(range(n_subjects), desc="ECoG subjects (anatomy, electrodes)", **bar):
        name = f"E{i + 1:02d}"
        rng = np.random.default_rng(np.random.SeedSequence([world, 2, i]))
        sub = make_simulated_subject(
            _FIRST_INDEX + i, seed=_derived_seed(world, 3), deformation_mm=config.deformation_mm,
            registration_deg=config.registration_deg, meg=False, sfreq=config.sfreq)
        hemi = "lh" if rng.random() < _P_LEFT else "rh"
        arrays = _place_arrays(sub, template, layout, hemi, rng)
        pos = np.concatenate([a.pos for a in arrays])
        names = [n for a in arrays for n in a.names]
        group = [spec["prefix"] for a, spec in zip(arrays, layout) for _ in a.names]
        el_hemi = np.array([hemi] * len(pos))
        src = get_source_space(sub, config.spacing)
        src_hemi = np.concatenate([np.full(s["nuse"], h) for s, h in zip(src, _HEMIS)])
        src_pial = np.concatenate([_read_surface(sub, "pial", h)[0][s["vertno"]]
                                   for s, h in zip(src, _HEMIS)])
        weights = make_spread_weights(pos, el_hemi, src_pial, src_hemi, spread_mm)
        morph = make_morph(sub, spacing=config.spacing, src_to=src)
        if morph.shape[1] != encoder.n_sources:
            raise ValueError(f"The morph maps {morph.shape[1]} fsaverage sources but the study's "
                             f"encoder has {encoder.n_sources}.")
        gains[name] = make_gain(weights, morph, dtype=np.float32)  # sparse (n_electrodes, n_src)
        electrodes = EcogElectrodes(
            names=names, hemi=list(el_hemi), pos_mri=pos,
            pos_fsaverage=electrodes_to_fsaverage(sub, pos, el_hemi), group=group)
        subjects[name] = {"electrodes": electrodes, "units": "A·m",
                          "signal": "simulated source activity (broadband)",
                          "anatomy": {**sub.to_json(), "spread_mm": spread_mm}}
        logger.info("%s: %s, %d electrodes on %s", name, sub.name, len(names), hemi)

    # ----------------------------------------------------------- signals
    n_times = story.n_times
    clean = {name: np.empty((g.shape[0], n_times), np.float32) for name, g in gains.items()}
    source_world = _source_world(ds, encoder)  # None for the default (linear15) world
    if source_world is not None:
        draw = source_world.draw_story(np.random.default_rng(np.random.SeedSequence(
            [world, 5])), n_times)
    for a, b, block in tqdm(encoder.iter_transform(story.features), desc="ground truth", **bar):
        if source_world is not None:
            block = source_world.apply(block, a, b, draw)
        for name, g in gains.items():
            clean[name][:, a:b] = apply_gain(g, block)
    noise_sd = encoder.amplitude / cnr if math.isfinite(cnr) else 0.0
    ground_truth = {}
    for i, name in enumerate(subjects):
        rng = np.random.default_rng(np.random.SeedSequence([world, 4, i]))
        # sigma_noise = source_amplitude / cnr on every electrode (float32 draws).
        noisy = add_noise(rng, clean[name], cnr, sigma_signal=encoder.amplitude,
                          noise_dtype=np.float32)
        subjects[name]["ecog"] = {story_name: noisy}
        ground_truth[f"{name}/{story_name}-clean"] = clean[name]
        sd = clean[name].std(axis=1)
        logger.info("%s: electrode CNR median %.2f (range %.2f-%.2f)", name,
                    np.median(sd) / noise_sd if noise_sd else math.inf,
                    sd.min() / noise_sd if noise_sd else math.inf,
                    sd.max() / noise_sd if noise_sd else math.inf)
    metadata = {
        "generator": "neurofuse.simulation.simulate_ecog",
        "study": str(Path(ds.path).resolve()),
        "study_seed": config.seed,
        "params": {"n_subjects": n_subjects, "story_minutes": story_minutes,
                   "cnr": "inf" if math.isinf(cnr) else cnr, "spread_mm": spread_mm,
                   "seed": seed, "layout": [dict(s, shape=list(s["shape"]),
                                                 target_mm=list(s["target_mm"]))
                                            for s in layout]},
        "noise_sd": noise_sd,
        "source_amplitude": encoder.amplitude,
        "versions": {"neurofuse": __version__, "numpy": np.__version__},
    }
    out = write_ecog_dataset(out, sfreq=config.sfreq, feature_streams=streams,
                             stories={story_name: story.features}, subjects=subjects,
                             ground_truth=ground_truth, metadata=metadata, overwrite=overwrite)
    logger.info("Simulated ECoG of %d subjects (%.0f min) in %.1f s -> %s", n_subjects,
                story_minutes, time.perf_counter() - t_start, out)
    return out

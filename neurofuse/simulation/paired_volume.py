"""Paired MEG + volumetric fMRI subjects of a simulated study (system C's world).

A study with ``n_paired_subjects > 0`` (:class:`~neurofuse.simulation.study.StudyConfig`,
presets ``meg2fmri``, ``meg2fmri-demo``, ``meg2fmri-tiny``) records the same ground-truth
sources of the same stories with MEG (continuous, as every MEG subject) and with EPI volumes
(``fmri-volume``, continuous per story), for subjects after its MEG-only and fMRI-only ones.

Each paired subject:

* anatomy: its own simulated cortex (:func:`~neurofuse.anatomy.make_simulated_subject`:
  deformed surfaces, perturbed registration) gives the source positions and the fsaverage →
  subject morph ``M`` (the same as its MEG's);
* in the scanner: a seeded rigid head position (``head_shift_mm`` / ``head_rotation_deg`` of
  the study, an independent draw from the MEG helmet position), the MNI152 tissue templates
  and EPI baseline through the affine that best fits its cortex to the template's, and its
  source → voxel map ``V`` (:func:`~neurofuse.anatomy.volume.make_subject_volume`);
* volumes: :func:`~neurofuse.physics.bold_volume.measure_bold_volume` of the fsaverage
  sources through ``W = V M`` (n_voxels, n_sources_fsaverage).

Events: every story stores its ``word`` onsets and ``sentence`` onsets (the first word and
every word after a pause: the generator's pause-delimited phrases), in seconds from the
story's first sample (:meth:`neurofuse.data.store.Dataset.events`).

Ground truth, per subject: in ``ground_truth/fmri-volume/``, ``<subject>-map.npz`` (``W``,
CSR (n_voxels, n_sources_fsaverage), voxels in C order), ``<subject>-baseline.npy``,
``<subject>-gm.npy``, ``<subject>-mask.npy`` (grid shape) and ``<subject>.json`` (grid,
transforms, percent change, drift, CNR and the BOLD ``scale`` of every story); and per story
the noiseless % change of the voxels that receive sources (the non-empty rows of ``W``),
``ground_truth/bold_change/<subject>/<story>.npy`` (n_mapped, n_trs) float32, a few MB where
the story's sources take hundreds. :func:`true_bold_change` returns it as a volume;
:func:`recompute_bold_change` recomputes it from saved sources, the map and the scale.
"""

from __future__ import annotations

import json
import math

import numpy as np

from .._io import save_npy, write_json

__all__ = ["VolumeRecorder", "read_volume_truth", "recompute_bold_change", "story_events",
           "true_bold_change"]

GT_DIR = "fmri-volume"


def story_events(story) -> dict:
    """Word and sentence onsets of a :class:`~neurofuse.simulation.stimuli.Story`.

    Returns
    -------
    events : dict of str to array
        ``"word"``: every word onset; ``"sentence"``: the first word and each word that
        follows a pause. Seconds, float64, sorted.
    """
    on = np.asarray(story.word_onsets, np.float64)
    off = np.asarray(story.word_offsets, np.float64)
    starts = np.r_[True, on[1:] > off[:-1] + 1e-9] if on.size else np.zeros(0, bool)
    return {"word": on, "sentence": on[starts]}


class VolumeRecorder:
    """Records the ``fmri-volume`` modality of a study's paired subjects.

    Parameters
    ----------
    config : StudyConfig
    """

    def __init__(self, config):
        from ..anatomy.volume import make_volume_grid

        self.config = config
        self.grid = make_volume_grid(config.volume_shape, config.volume_voxel_size,
                                     center=config.volume_center)
        self.subjects = {}  # name -> {"volume": SubjectVolume, "map": csr, "scales": {}}

    def add_subject(self, name, subject, vertices, morph, rng):
        """Place a simulated subject in the scanner and build its source → voxel map.

        Parameters
        ----------
        name : str
            Subject name in the store.
        subject : neurofuse.anatomy.Subject
            Its simulated anatomy.
        vertices : list of 2 int arrays
            Its source-space vertices (those of ``morph``'s rows, e.g. its forward's).
        morph : scipy.sparse array, shape (n_sources_subject, n_sources_fsaverage)
        rng : numpy.random.Generator
            Draws the head position.
        """
        import scipy.sparse

        from ..anatomy import get_source_space, make_template_subject
        from ..anatomy.subjects import make_head_position
        from ..anatomy.volume import make_subject_volume

        cfg = self.config
        sub_src = get_source_space(subject, cfg.spacing)
        tmpl_src = get_source_space(make_template_subject(meg=False), cfg.spacing)
        pos = np.concatenate([s["rr"][v] for s, v in zip(sub_src, vertices)]) * 1e3
        tpos = np.concatenate([s["rr"][v] for s, v in zip(tmpl_src, vertices)]) * 1e3
        head = make_head_position(rng, shift_mm=cfg.head_shift_mm,
                                  rotation_deg=cfg.head_rotation_deg)
        head[:3, 3] *= 1e3  # m -> mm
        vol = make_subject_volume(self.grid, pos, template_pos=tpos, head_position=head,
                                  fwhm=cfg.volume_fwhm)
        smap = scipy.sparse.csr_array(vol.source_map @ scipy.sparse.csr_array(morph))
        smap.sum_duplicates()
        smap.eliminate_zeros()
        self.subjects[name] = {"volume": vol, "map": smap, "scales": {}}

    def record(self, writer, name, story, sources, n_repeats, rng):
        """Write the subject's volumes of one story into the store.

        ``sources``: (n_sources_fsaverage, n_times) at the study's ``sfreq``.
        """
        from ..data.store import expected_n_trs
        from ..physics.bold_volume import measure_bold_volume

        cfg, entry = self.config, self.subjects[name]
        n_trs = expected_n_trs(sources.shape[1], cfg.sfreq, cfg.tr)
        out = writer.create_array(f"subjects/{name}/fmri-volume/{story}.npy",
                                  (n_repeats, *self.grid.shape, n_trs))
        vol, info = measure_bold_volume(
            sources, cfg.sfreq, cfg.tr, entry["map"], entry["volume"].baseline,
            percent_change=cfg.volume_percent_change, cnr=cfg.volume_cnr,
            drift_percent=cfg.volume_drift_percent, drift_cutoff=cfg.volume_drift_cutoff,
            rng=rng, n_repeats=n_repeats, out=out)
        del vol
        entry["scales"][story] = info["scale"]
        writer.write_ground_truth(f"bold_change/{name}/{story}",
                                  info["change"].astype(np.float32))

    def write_ground_truth(self, folder):
        """Save every subject's map, images and parameters into ``folder``."""
        import scipy.sparse

        from ..anatomy.volume import EPI_INTENSITIES, default_fwhm
        from ..physics.bold_volume import SCALE_PERCENTILE

        cfg = self.config
        folder.mkdir(parents=True, exist_ok=True)
        for name, entry in self.subjects.items():
            vol = entry["volume"]
            with open(folder / f"{name}-map.npz", "wb") as fid:
                scipy.sparse.save_npz(fid, entry["map"])
            save_npy(folder / f"{name}-baseline.npy", vol.baseline.astype(np.float32))
            save_npy(folder / f"{name}-gm.npy", vol.tissues["gm"].astype(np.float32))
            save_npy(folder / f"{name}-mask.npy", vol.tissues["mask"])
            write_json(folder / f"{name}.json", {
                **vol.to_json(),
                "percent_change": cfg.volume_percent_change,
                "scale_percentile": SCALE_PERCENTILE,
                "scales": entry["scales"],
                "cnr": "inf" if math.isinf(cfg.volume_cnr) else cfg.volume_cnr,
                "drift_percent": cfg.volume_drift_percent,
                "drift_cutoff": cfg.volume_drift_cutoff,
                "fwhm": (default_fwhm(self.grid.voxel_size) if cfg.volume_fwhm is None
                         else cfg.volume_fwhm),
                "intensities": EPI_INTENSITIES,
            }, what="volume ground truth")


def read_volume_truth(dataset, subject) -> dict:
    """A paired subject's saved volume ground truth.

    Returns
    -------
    truth : dict
        ``"map"`` (CSR (n_voxels, n_sources_fsaverage)), ``"baseline"``, ``"gm"``, ``"mask"``
        (grid shape) and the parameters of ``<subject>.json`` (``scales`` per story,
        ``percent_change``, ``transform``, ``grid``...).
    """
    import scipy.sparse

    folder = dataset.ground_truth_dir(GT_DIR)
    if not (folder / f"{subject}.json").is_file():
        raise ValueError(f"Subject {subject!r} has no volume ground truth in '{folder}'; "
                         "only the paired MEG + fmri-volume subjects of a simulated study do.")
    out = json.loads((folder / f"{subject}.json").read_text())
    out["map"] = scipy.sparse.csr_array(scipy.sparse.load_npz(folder / f"{subject}-map.npz"))
    for key in ("baseline", "gm", "mask"):
        out[key] = np.load(folder / f"{subject}-{key}.npy", allow_pickle=False)
    return out


def _as_volume(truth, rows, change):
    shape = tuple(truth["grid"]["shape"])
    full = np.zeros((int(np.prod(shape)), change.shape[1]))
    full[rows] = change
    return full.reshape(*shape, change.shape[1])


def _mapped(truth):
    return np.flatnonzero(np.diff(truth["map"].indptr) > 0)


def true_bold_change(dataset, subject, story):
    """The noiseless BOLD % signal change of a paired subject's story (saved ground truth).

    What the simulation added to the baseline: its volumes are
    ``baseline · (1 + change / 100) + drift + noise``; see
    :mod:`neurofuse.physics.bold_volume`.

    Parameters
    ----------
    dataset : neurofuse.data.store.Dataset
        A study simulated with paired subjects.
    subject, story : str
        A paired subject and one of its stories.

    Returns
    -------
    change : array, shape (n_x, n_y, n_z, n_trs), float64
        In %; 0 in voxels that receive no source. Saved as float32.
    """
    truth = read_volume_truth(dataset, subject)
    if story not in truth["scales"]:
        raise ValueError(f"Subject {subject!r} has no volumes of story {story!r}.")
    change = np.asarray(dataset.ground_truth(f"bold_change/{subject}/{story}"), np.float64)
    return _as_volume(truth, _mapped(truth), change)


def recompute_bold_change(dataset, subject, story):
    """:func:`true_bold_change` recomputed from the saved sources, map and scale (float64).

    ``percent_change · (b - mean_t b) / scale`` with ``b = TR-mean(HRF * envelope(W s))``
    (:func:`~neurofuse.physics.bold_volume.bold_percent_change`), the very computation of the
    simulation, for a story whose sources were saved (``save_sources="all"``, or a test
    story with ``"test"``).

    Returns
    -------
    change : array, shape (n_x, n_y, n_z, n_trs), float64
    """
    from ..physics.bold_volume import bold_percent_change

    truth = read_volume_truth(dataset, subject)
    if story not in truth["scales"]:
        raise ValueError(f"Subject {subject!r} has no volumes of story {story!r}.")
    name = f"sources/{story}.npy"
    if name not in dataset.ground_truth_names:
        raise ValueError(f"The sources of story {story!r} were not saved, so its BOLD change "
                         "cannot be recomputed (true_bold_change reads the saved change); "
                         "simulate with save_sources='all' to keep them.")
    rows, change, _ = bold_percent_change(
        dataset.ground_truth(name), dataset.sfreq, dataset.tr, truth["map"],
        percent_change=truth["percent_change"], scale=truth["scales"][story])
    return _as_volume(truth, rows, change)

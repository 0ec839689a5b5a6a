"""Volumetric source spaces on a voxel grid and their EEG lead fields (MNE-Python, cached).

The EEG–fMRI simulator (system D) places one source per grey-matter voxel of a
:class:`~neurofuse.anatomy.volume.VolumeGrid` laid out in **fsaverage MRI coordinates**
(surface RAS of the embedded template = MNI305, mm), so the same voxel indexes the source,
the fMRI voxel and the lead-field column.

* :func:`make_volume_sources`: the voxels whose grey-matter probability (nilearn's MNI152
  template mapped to MNI305 with :data:`~neurofuse.anatomy.coordinates.MNI152_TO_MNI305`)
  reaches a threshold, with one dipole orientation per voxel.
* :func:`make_volume_forward`: an MNE *discrete* volume source space at those positions
  (``mne.setup_volume_source_space(pos={"rr", "nn"})``) and the fixed-orientation lead field
  from ``mne.make_forward_solution`` (three-layer BEM of the template, or a fitted sphere),
  cached like :func:`~neurofuse.anatomy.forward.make_forward`.

Orientation
-----------
The paper's sources carry one amplitude per voxel, so each voxel gets one fixed dipole
orientation: ``'normal'`` (default) takes the outward surface normal of the nearest
fsaverage oct6 cortical source (pyramidal cells are oriented normal to the cortex; a voxel
of a few mm holds cortex of one orientation to first order), ``'random'`` a seeded uniformly
random unit vector. The lead field column is MNE's free-orientation gain projected on that
orientation (``mne.convert_forward_solution(force_fixed=True)`` with the discrete source
space's normals), in V/(A·m).
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from .._checks import _check_option, _check_positive, _check_random_state
from .._io import atomic_path, hash_arrays
from .._logging import logger, verbose
from .coordinates import MNI152_TO_MNI305
from .forward import (
    CACHE_VERSION,
    _cache_file,
    _info_key,
    _mne_version,
    _sphere_model,
    _surface_key,
    get_bem_solution,
    get_source_space,
    source_normals,
    source_positions,
    to_fixed,
)
from .volume import make_tissue_maps

__all__ = ["VolumeSources", "make_volume_forward", "make_volume_sources"]


@dataclass(frozen=True, eq=False)
class VolumeSources:
    """One dipole per selected voxel of a grid in fsaverage MRI coordinates.

    Attributes
    ----------
    grid : VolumeGrid
        Voxel indices -> fsaverage MRI (MNI305) mm.
    voxels : array of int64, shape (n_sources,)
        Flat (C-order) index of each source's voxel in ``grid.shape``, increasing.
    pos : array, shape (n_sources, 3)
        Voxel centres, fsaverage MRI coordinates in **metres** (as MNE stores them).
    ori : array, shape (n_sources, 3)
        Unit dipole orientation per source (MRI frame).
    tissues : dict of str to array, shape grid.shape
        :func:`~neurofuse.anatomy.volume.make_tissue_maps` on the grid (``gm``, ``wm``,
        ``csf``, ``t1``, ``mask``).
    """

    grid: object
    voxels: np.ndarray
    pos: np.ndarray
    ori: np.ndarray
    tissues: dict

    @property
    def n_sources(self) -> int:
        """Number of sources."""
        return len(self.voxels)

    def subset(self, keep):
        """The sources at the positions ``keep`` (bool or int index array), same grid."""
        keep = np.asarray(keep)
        return VolumeSources(self.grid, self.voxels[keep], self.pos[keep], self.ori[keep],
                             self.tissues)


def make_volume_sources(grid, *, gm_threshold=0.35, orientation="normal", seed=0):
    """Grey-matter voxels of ``grid`` as sources with one orientation each.

    Parameters
    ----------
    grid : VolumeGrid
        A grid in fsaverage MRI (MNI305) mm, e.g. ``make_volume_grid((16, 19, 14), 10.0,
        center=(0, -18, 12))``.
    gm_threshold : float
        Minimum grey-matter probability (0-1] of a source voxel, after the template is
        smoothed to the voxel size (:func:`~neurofuse.anatomy.volume.make_tissue_maps`).
    orientation : 'normal' | 'random'
        Dipole orientation (see the module docstring).
    seed : int | numpy.random.Generator | None
        Random orientations (``'random'`` only).

    Returns
    -------
    sources : VolumeSources
    """
    _check_option("orientation", orientation, ["normal", "random"])
    gm_threshold = _check_positive("gm_threshold", gm_threshold)
    if gm_threshold > 1:
        raise ValueError(f"'gm_threshold' is a probability and must be <= 1, got {gm_threshold}.")
    tissues = make_tissue_maps(grid, MNI152_TO_MNI305)
    sel = (tissues["mask"] & (tissues["gm"] >= gm_threshold)).ravel()
    voxels = np.flatnonzero(sel).astype(np.int64)
    if not len(voxels):
        raise ValueError(
            f"No voxel of the {grid.shape} grid has a grey-matter probability >= "
            f"{gm_threshold}; lower 'gm_threshold' or centre the grid on the brain.")
    pos = grid.voxel_centers()[voxels] * 1e-3  # (n_sources, 3) m
    if orientation == "random":
        rng = _check_random_state(seed)
        ori = rng.standard_normal((len(voxels), 3))
    else:
        from scipy.spatial import cKDTree

        from .subjects import make_template_subject

        src = get_source_space(make_template_subject(meg=False), "oct6")
        _, nearest = cKDTree(source_positions(src)).query(pos)
        ori = source_normals(src)[nearest].astype(float)
    ori /= np.linalg.norm(ori, axis=1, keepdims=True)
    logger.info("%d grey-matter sources on the %s grid (%s orientation)", len(voxels),
                grid.shape, orientation)
    return VolumeSources(grid, voxels, pos, ori, tissues)


@verbose
def make_volume_forward(sources, info, *, bem="bem", mindist=0.0, reference="average",
                        verbose=None):
    """EEG lead field of volume sources on the template head (cached).

    Parameters
    ----------
    sources : VolumeSources
        From :func:`make_volume_sources`.
    info : mne.Info
        EEG channels in head coordinates (e.g. from
        :func:`~neurofuse.anatomy.sensors.make_eeg_info`), placed on the fsaverage head
        with the template's head -> MRI transform.
    bem : 'bem' | 'sphere'
        ``'bem'``: the template's three-layer BEM
        (:func:`~neurofuse.anatomy.forward.get_bem_solution` with ``kind='eeg'``; about a
        minute when not cached). ``'sphere'``: a three-shell sphere fitted to the template
        head (seconds; for tests and quick looks).
    mindist : float
        Drop sources closer than this to the inner skull (mm), as MNE does.
    reference : 'average' | None
        ``'average'``: subtract the mean over channels from every column (the data are then
        average-referenced, as MNE's inverse expects); ``None``: MNE's gain as computed.

    Returns
    -------
    leadfield : array, shape (n_channels, n_kept)
        V/(A·m); column ``j`` is the gain of ``sources.subset(kept)`` source ``j``.
    kept : array of int64, shape (n_kept,)
        Indices of the sources that lie inside the inner skull (farther than ``mindist``);
        MNE drops the others.
    fwd : mne.Forward
        The fixed-orientation forward (head coordinates, discrete source space), before the
        re-referencing.
    """
    import mne

    from .subjects import make_template_subject

    _check_option("bem", bem, ["bem", "sphere"])
    _check_option("reference", reference, ["average", None])
    subject = make_template_subject(meg=False)
    src = mne.setup_volume_source_space(
        subject.name, pos={"rr": sources.pos, "nn": sources.ori},
        subjects_dir=subject.subjects_dir, verbose="error")
    bem_files = [f"bem/{n}.surf" for n in ("inner_skull", "outer_skull", "outer_skin")]
    key = hash_arrays(
        "vol-fwd", CACHE_VERSION, _mne_version(), bem, float(mindist), sources.pos, sources.ori,
        _surface_key(subject, bem_files), np.asarray(subject.trans["trans"]), _info_key(info))
    fname = _cache_file("vol-fwd", key, "-fwd.fif")
    if fname.is_file():
        fwd = mne.read_forward_solution(fname, verbose="error")
    else:
        if bem == "bem":
            conductor = get_bem_solution(subject, kind="eeg")
        else:
            conductor = _sphere_model(subject, info, src, eeg=True)
        logger.info("Computing the EEG lead field of %d volume sources (%s)", sources.n_sources,
                    bem)
        fwd = mne.make_forward_solution(info, subject.trans, src, conductor, meg=False, eeg=True,
                                        mindist=mindist, verbose="error")
        with atomic_path(fname, what="forward solution") as tmp:
            mne.write_forward_solution(tmp, fwd, overwrite=True, verbose="error")
        fwd = mne.read_forward_solution(fname, verbose="error")  # cold == warm (float32)
    fwd = to_fixed(fwd)
    kept = _kept_sources(sources.pos, fwd["src"][0])
    gain = np.asarray(fwd["sol"]["data"], np.float64)
    if reference == "average":
        gain = gain - gain.mean(axis=0, keepdims=True)
    if len(kept) < sources.n_sources:
        logger.info("%d of %d volume sources lie outside the inner skull (or within %.1f mm "
                       "of it) and were dropped.", sources.n_sources - len(kept),
                    sources.n_sources, mindist)
    return gain, kept, fwd


def _kept_sources(pos, src):
    """Indices into ``pos`` of the sources MNE kept: a discrete source space's ``vertno``
    numbers the points it was given (``src["rr"]`` holds them all, in the forward's frame)."""
    if src["np"] != len(pos):
        raise RuntimeError(f"MNE returned a source space of {src['np']} points for {len(pos)} "
                           "positions; the discrete source space was not kept as given.")
    return np.asarray(src["vertno"], np.int64)

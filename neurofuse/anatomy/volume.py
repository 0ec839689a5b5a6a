"""Volumetric anatomy: a voxel grid in MNI152 space, tissue templates, an EPI-like baseline
image and the sparse map from cortical sources to voxels.

* :class:`VolumeGrid` / :func:`make_volume_grid`: a grid of ``shape`` voxels of
  ``voxel_size`` mm, axial slices along the third axis, with a NIfTI-style 4 × 4 affine
  (voxel indices → RAS mm, ``nibabel.affines.apply_affine`` convention). The default is
  SMN4Lang's native EPI grid: 106 × 106 × 72 voxels of 2 mm.
* :func:`make_tissue_maps`: nilearn's packaged MNI152 (2009) templates — T1, grey-matter
  and white-matter probabilities and the brain mask (``nilearn.datasets.load_mni152_*``,
  shipped inside nilearn, no download) — resampled onto a grid, optionally through a
  subject's 4 × 4 template → scanner transform (head position, size). CSF is what the brain
  mask holds besides GM and WM.
* :func:`make_epi_baseline`: the mean EPI (T2*-weighted) image: CSF > GM > WM, dark outside
  the brain (the templates are skull-stripped, as is a fat-suppressed EPI's near-absent
  scalp signal). Intensities are in :data:`EPI_INTENSITIES`.
* :func:`make_source_voxel_map`: cortical sources → voxels, a scipy CSR
  ``(n_voxels, n_sources)``: each brain voxel takes a Gaussian distance-weighted mean of the
  sources within ``truncate σ`` of its centre, scaled by its grey-matter probability.
* :func:`make_subject_volume`: everything above for one subject whose source positions are
  known (fsaverage-like MRI coordinates = MNI305 mm, e.g. a simulated subject's deformed
  cortex), placed in the scanner with a rigid head position.

Units: mm and MNI152 (RAS) coordinates throughout; fsaverage positions (MNI305) go to MNI152
with :func:`~neurofuse.anatomy.coordinates.mni305_to_mni152`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .._checks import _check_int, _check_positive
from .coordinates import MNI152_TO_MNI305

__all__ = ["EPI_INTENSITIES", "SMN4LANG_GRID", "SubjectVolume", "VolumeGrid",
           "make_epi_baseline", "make_source_voxel_map", "make_subject_volume",
           "make_tissue_maps", "make_volume_grid"]

#: Mean EPI intensity (arbitrary units) of pure tissue at 3 T, TE ≈ 30 ms (T2*-weighted:
#: CSF brightest, grey matter ~1.3 × white matter). A voxel's baseline is the
#: probability-weighted sum; outside the brain mask it is 0.
EPI_INTENSITIES = {"csf": 1000.0, "gm": 800.0, "wm": 600.0}

#: SMN4Lang's EPI grid (OpenNeuro ds004078): 106 × 106 × 72 voxels of 2 mm.
SMN4LANG_GRID = {"shape": (106, 106, 72), "voxel_size": 2.0}

#: Default grid centre (MNI152, mm): the middle of the brain mask's cerebrum, so a 144 mm
#: field of view along z keeps the cortex (the lowest cerebellum may fall outside).
DEFAULT_CENTER = (0.0, -17.0, 10.0)

_TISSUES = ("t1", "gm", "wm", "mask")


@dataclass(frozen=True)
class VolumeGrid:
    """A voxel grid: shape, voxel size and the voxel → RAS (mm) affine.

    Attributes
    ----------
    shape : tuple of 3 int
        ``(n_x, n_y, n_z)``; axial slices are ``[:, :, k]``.
    affine : array, shape (4, 4)
        Voxel indices ``(i, j, k, 1)`` → RAS mm, as ``nibabel``'s ``img.affine``.
    """

    shape: tuple
    affine: np.ndarray

    @property
    def n_voxels(self) -> int:
        """Number of voxels, ``n_x * n_y * n_z``."""
        return int(np.prod(self.shape))

    @property
    def voxel_size(self) -> tuple:
        """Voxel edge lengths in mm (the affine's column norms)."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))

    def voxel_centers(self) -> np.ndarray:
        """RAS (mm) centre of every voxel, in C order, shape (n_voxels, 3)."""
        ijk = np.indices(self.shape).reshape(3, -1).T  # (n_voxels, 3), C order
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def to_voxels(self, pos) -> np.ndarray:
        """Continuous voxel coordinates of RAS (mm) points, shape (n, 3)."""
        inv = np.linalg.inv(self.affine)
        pos = np.atleast_2d(np.asarray(pos, float))
        return pos @ inv[:3, :3].T + inv[:3, 3]

    def to_json(self) -> dict:
        return {"shape": list(self.shape), "affine": self.affine.tolist()}


def make_volume_grid(shape=(106, 106, 72), voxel_size=2.0, *, center=DEFAULT_CENTER):
    """A grid of ``shape`` voxels of ``voxel_size`` mm whose centre is at ``center``.

    Parameters
    ----------
    shape : tuple of 3 int
        ``(n_x, n_y, n_z)``, e.g. SMN4Lang's (106, 106, 72).
    voxel_size : float | tuple of 3 float
        Voxel edges in mm (isotropic for a single float).
    center : tuple of 3 float
        RAS (mm) position of the grid's centre, ``affine @ ((shape - 1) / 2)``.

    Returns
    -------
    grid : VolumeGrid
        Axes along +x (R), +y (A), +z (S): ``affine = [[vx, 0, 0, ox], [0, vy, 0, oy],
        [0, 0, vz, oz], [0, 0, 0, 1]]``.
    """
    if np.ndim(shape) != 1 or len(shape) != 3:
        raise ValueError(f"'shape' must be 3 ints (n_x, n_y, n_z), got {shape!r}.")
    shape = tuple(_check_int(f"shape[{i}]", s, 1) for i, s in enumerate(shape))
    size = np.broadcast_to(np.asarray(voxel_size, float), (3,))
    for i, v in enumerate(size):
        _check_positive(f"voxel_size[{i}]", float(v))
    center = np.asarray(center, float)
    if center.shape != (3,) or not np.isfinite(center).all():
        raise ValueError(f"'center' must be 3 finite numbers (mm), got {center!r}.")
    affine = np.diag([*size, 1.0])
    affine[:3, 3] = center - size * (np.asarray(shape) - 1) / 2.0
    return VolumeGrid(shape, affine)


# ---------------------------------------------------------------------------- tissues
@functools.lru_cache(maxsize=2)
def _load_templates(resolution):
    """nilearn's packaged MNI152 templates: ({name: array}, affine), read-only (cached)."""
    from nilearn import datasets

    loaders = {"t1": datasets.load_mni152_template, "gm": datasets.load_mni152_gm_template,
               "wm": datasets.load_mni152_wm_template, "mask": datasets.load_mni152_brain_mask}
    out, affine = {}, None
    for name, load in loaders.items():
        img = load(resolution=resolution)
        out[name] = np.clip(np.asarray(img.get_fdata(), np.float64), 0.0, 1.0)
        out[name].flags.writeable = False
        affine = np.asarray(img.affine, float)
    return out, affine


def make_tissue_maps(grid, transform=None):
    """The MNI152 tissue templates resampled onto ``grid``.

    A grid voxel at RAS ``x`` takes the template value at ``inv(transform) x``, linearly
    interpolated, after a Gaussian pre-filter of FWHM ``sqrt(voxel² - template_res²)`` per
    axis (so a coarse voxel averages the tissue it covers instead of point-sampling it).
    The 1 mm templates are used for grids with voxels under 2 mm, the 2 mm ones otherwise.

    Parameters
    ----------
    grid : VolumeGrid
    transform : array, shape (4, 4) | None
        Template (MNI152 mm) → grid RAS (mm), e.g. a subject's head position; None: identity.

    Returns
    -------
    tissues : dict of str to array, shape grid.shape
        ``"t1"`` (0-1), ``"gm"``, ``"wm"``, ``"csf"`` (probabilities; ``csf = clip(mask -
        gm - wm, 0, 1)``) and ``"mask"`` (bool: the brain mask > 0.5), float64.
    """
    from scipy.ndimage import gaussian_filter, map_coordinates

    transform = np.eye(4) if transform is None else np.asarray(transform, float)
    if transform.shape != (4, 4) or abs(np.linalg.det(transform[:3, :3])) < 1e-9:
        raise ValueError(f"'transform' must be an invertible 4 x 4 affine, got {transform!r}.")
    res = 1 if min(grid.voxel_size) < 2.0 else 2
    templates, t_affine = _load_templates(res)
    # grid voxel -> grid RAS -> template RAS -> template voxel
    vox = np.linalg.inv(t_affine) @ np.linalg.inv(transform) @ grid.affine
    ijk = np.indices(grid.shape).reshape(3, -1)
    coords = vox[:3, :3] @ ijk + vox[:3, 3:4]  # (3, n_voxels)
    fwhm = np.sqrt(np.maximum(np.square(grid.voxel_size) - res**2, 0.0))
    sigma = fwhm / math.sqrt(8 * math.log(2)) / res  # template voxels
    out = {}
    for name in _TISSUES:
        data = templates[name]
        if sigma.max() > 0:
            data = gaussian_filter(data, sigma, mode="constant")
        out[name] = map_coordinates(data, coords, order=1, mode="constant",
                                    cval=0.0).reshape(grid.shape)
    out["mask"] = out["mask"] > 0.5
    for name in ("gm", "wm"):
        out[name] = np.where(out["mask"], np.clip(out[name], 0.0, 1.0), 0.0)
    out["csf"] = np.where(out["mask"], np.clip(1.0 - out["gm"] - out["wm"], 0.0, 1.0), 0.0)
    return out


def make_epi_baseline(tissues, intensities=None):
    """The mean EPI image: ``Σ_tissue p_tissue · I_tissue`` inside the brain mask, 0 outside.

    Parameters
    ----------
    tissues : dict
        From :func:`make_tissue_maps` (``gm``, ``wm``, ``csf``, ``mask``).
    intensities : dict | None
        ``{"csf": ..., "gm": ..., "wm": ...}`` (a.u.); None: :data:`EPI_INTENSITIES`
        (CSF 1000 > GM 800 > WM 600).

    Returns
    -------
    baseline : array, shape grid.shape, float64
    """
    inten = dict(EPI_INTENSITIES if intensities is None else intensities)
    img = sum(tissues[k] * float(inten[k]) for k in ("csf", "gm", "wm"))
    return np.where(tissues["mask"], img, 0.0)


# ---------------------------------------------------------------------- source -> voxel
def default_fwhm(voxel_size, psf_fwhm=3.5) -> float:
    """Default kernel FWHM (mm): ``sqrt(mean voxel size² + psf²)``, the voxel's footprint
    combined with the BOLD point-spread function (~3.5 mm FWHM at 3 T)."""
    return float(math.sqrt(np.mean(voxel_size) ** 2 + psf_fwhm**2))


def make_source_voxel_map(grid, source_pos, gm, mask, *, fwhm=None, truncate=3.0):
    """Sparse map from cortical sources to voxels.

    ``W[v, j] = g_v · k_vj / Σ_j' k_vj'`` with ``k_vj = exp(-d_vj² / 2σ²)`` for the sources
    ``j`` within ``truncate σ`` of voxel ``v``'s centre (``d``: Euclidean distance, mm;
    ``σ = fwhm / √(8 ln 2)``) and ``g_v`` the voxel's grey-matter probability. So the rows of
    brain voxels with at least one source in reach sum to their grey-matter probability, every
    other row (outside the brain mask, no grey matter, or no source in reach — e.g.
    cerebellum and deep nuclei, which have no cortical sources) is empty.

    Parameters
    ----------
    grid : VolumeGrid
    source_pos : array, shape (n_sources, 3)
        Source positions in the grid's RAS space, **mm**.
    gm : array, shape grid.shape
        Grey-matter probability per voxel.
    mask : array of bool, shape grid.shape
        Brain mask: no weight outside it.
    fwhm : float | None
        Kernel FWHM in mm; None: :func:`default_fwhm` of the grid's voxel size.
    truncate : float
        Cut-off radius in units of σ.

    Returns
    -------
    source_map : scipy.sparse.csr_array, shape (n_voxels, n_sources), float64
        Rows in C order of ``grid.shape`` (``np.ravel_multi_index``).
    """
    import scipy.sparse
    from scipy.spatial import cKDTree

    source_pos = np.asarray(source_pos, float)
    if source_pos.ndim != 2 or source_pos.shape[1] != 3:
        raise ValueError(f"'source_pos' must have shape (n_sources, 3) in mm, got "
                         f"{source_pos.shape}.")
    gm, mask = np.asarray(gm, float), np.asarray(mask, bool)
    for name, arr in (("gm", gm), ("mask", mask)):
        if arr.shape != tuple(grid.shape):
            raise ValueError(f"'{name}' must have the grid's shape {tuple(grid.shape)}, got "
                             f"{arr.shape}.")
    fwhm = default_fwhm(grid.voxel_size) if fwhm is None else _check_positive("fwhm", fwhm)
    truncate = _check_positive("truncate", truncate)
    sigma = fwhm / math.sqrt(8 * math.log(2))
    n_src = len(source_pos)
    cand = np.flatnonzero((mask & (gm > 0)).ravel())  # voxels that may carry signal
    centers = grid.voxel_centers()[cand]
    pairs = cKDTree(centers).sparse_distance_matrix(cKDTree(source_pos), truncate * sigma,
                                                    output_type="ndarray")  # keeps d = 0
    rows, cols = pairs["i"].astype(np.int64), pairs["j"].astype(np.int64)
    k = np.exp(-0.5 * (pairs["v"] / sigma) ** 2)
    total = np.bincount(rows, weights=k, minlength=len(cand))
    scale = np.divide(gm.ravel()[cand], total, out=np.zeros(len(cand)), where=total > 0)
    full = scipy.sparse.csr_array((k * scale[rows], (cand[rows], cols)),
                                  shape=(grid.n_voxels, n_src))
    full.sum_duplicates()
    full.eliminate_zeros()
    return full


# ---------------------------------------------------------------------- subjects
@dataclass(frozen=True, eq=False)
class SubjectVolume:
    """One subject in the scanner: grid, tissue maps, baseline image and source map.

    Attributes
    ----------
    grid : VolumeGrid
    transform : array, shape (4, 4)
        MNI152 template (mm) → scanner RAS (mm): ``head_position @ deformation``.
    head_position : array, shape (4, 4)
        The rigid placement of the head in the scanner (mm).
    deformation : array, shape (4, 4)
        The affine (MNI152 mm → MNI152 mm) that best fits the subject's source positions to
        the template's (its size and shape); identity for the template.
    tissues : dict of str to array, shape grid.shape
        From :func:`make_tissue_maps` through ``transform``.
    baseline : array, shape grid.shape
        :func:`make_epi_baseline` of ``tissues``.
    source_map : scipy.sparse.csr_array, shape (n_voxels, n_sources)
        :func:`make_source_voxel_map` of the subject's own source positions (in the scanner).
    """

    grid: VolumeGrid
    transform: np.ndarray
    head_position: np.ndarray
    deformation: np.ndarray
    tissues: dict
    baseline: np.ndarray
    source_map: object

    def to_json(self) -> dict:
        """The transforms and the grid, JSON-serialisable."""
        return {"grid": self.grid.to_json(), "transform": self.transform.tolist(),
                "head_position": self.head_position.tolist(),
                "deformation": self.deformation.tolist()}


def _affine_fit(src, dst):
    """Least-squares 4 × 4 affine with ``dst ≈ A src`` (points (n, 3))."""
    design = np.c_[src, np.ones(len(src))]
    coef, *_ = np.linalg.lstsq(design, dst, rcond=None)  # (4, 3)
    out = np.eye(4)
    out[:3] = coef.T
    return out


def make_subject_volume(grid, source_pos, *, template_pos=None, head_position=None,
                        fwhm=None, truncate=3.0, intensities=None):
    """A subject's tissues, EPI baseline and source → voxel map on ``grid``.

    The subject's sources (fsaverage-like MRI coordinates ≈ MNI305, mm) go to MNI152 with
    the inverse of FreeSurfer's MNI152 → MNI305 affine, then into the scanner with
    ``head_position``; they keep their own (e.g. deformed) positions exactly. The tissue
    templates follow the same path through the affine that best maps ``template_pos`` onto
    ``source_pos`` (the subject's overall size and shape), so grey matter and sources
    coincide up to the non-affine part of the subject's deformation (a few mm).

    Parameters
    ----------
    grid : VolumeGrid
    source_pos : array, shape (n_sources, 3)
        The subject's source positions, MNI305 / fsaverage surface RAS, **mm**.
    template_pos : array, shape (n_sources, 3) | None
        The same sources on the template (fsaverage), mm; None: no deformation (identity).
    head_position : array, shape (4, 4) | None
        Rigid head placement in the scanner (mm); None: identity.
    fwhm, truncate : float
        Kernel of :func:`make_source_voxel_map`.
    intensities : dict | None
        Tissue intensities of :func:`make_epi_baseline`.

    Returns
    -------
    volume : SubjectVolume
    """
    to305 = np.asarray(MNI152_TO_MNI305, float)
    to152 = np.linalg.inv(to305)
    source_pos = np.asarray(source_pos, float)
    head = np.eye(4) if head_position is None else np.asarray(head_position, float)
    if head.shape != (4, 4):
        raise ValueError(f"'head_position' must be a 4 x 4 affine (mm), got shape {head.shape}.")
    deformation = np.eye(4)
    if template_pos is not None:
        template_pos = np.asarray(template_pos, float)
        if template_pos.shape != source_pos.shape:
            raise ValueError(f"'template_pos' must have the shape of 'source_pos' "
                             f"{source_pos.shape}, got {template_pos.shape}.")
        deformation = to152 @ _affine_fit(template_pos, source_pos) @ to305
    transform = head @ deformation
    tissues = make_tissue_maps(grid, transform)
    scanner = head @ to152
    pos = source_pos @ scanner[:3, :3].T + scanner[:3, 3]
    smap = make_source_voxel_map(grid, pos, tissues["gm"], tissues["mask"], fwhm=fwhm,
                                 truncate=truncate)
    return SubjectVolume(grid, transform, head, deformation, tissues,
                         make_epi_baseline(tissues, intensities), smap)

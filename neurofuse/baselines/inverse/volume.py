"""A fixed-orientation ``mne.Forward`` from a known lead field on discrete (volume) sources.

The classical inverses of :mod:`.classical` take an ``mne.Forward``. When the lead field is
*given* (the EEG–fMRI simulator's ground truth, paper eeg-fmri-deep-transcoding Fig. 5: MNE
"given the ground-truth leadfield matrix"), :func:`make_fixed_forward` wraps that matrix,
unchanged, into a fixed-orientation forward on an MNE *discrete* volume source space
(``mne.setup_volume_source_space(pos={"rr", "nn"})``: one dipole per position, vertices
``0 .. n_sources - 1``), so MNE-Python's own ``make_inverse_operator`` / ``apply_inverse_raw``
run on exactly the matrix that generated the data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..._checks import _check_finite, _check_ndim, _check_positive, _check_type
from ..._io import atomic_path
from ..._logging import logger

__all__ = ["estimate_to_nifti", "make_fixed_forward", "make_volume_stc"]


def make_fixed_forward(leadfield, pos, ori, info, *, mri_head_t=None):
    """Wrap a fixed-orientation lead field into an ``mne.Forward`` (discrete source space).

    Parameters
    ----------
    leadfield : array, shape (n_channels, n_sources)
        Gain, V/(A·m) for EEG, rows in the order of ``info["ch_names"]``.
    pos : array, shape (n_sources, 3)
        Source positions, m, in MRI coordinates.
    ori : array, shape (n_sources, 3)
        Dipole orientation of each column (normalised here).
    info : mne.Info
        The channels of ``leadfield`` (a copy is stored in the forward).
    mri_head_t : mne.transforms.Transform | None
        MRI -> head transform stored in the forward (only its bookkeeping uses it: the gain is
        taken as given); None stores the identity.

    Returns
    -------
    forward : mne.Forward
        ``source_ori`` fixed, ``sol["data"]`` equal to ``leadfield`` (float64), source space
        ``forward["src"]`` one discrete volume space with vertices ``arange(n_sources)``.
        It has no free-orientation solution, so depth weighting in
        :func:`~neurofuse.baselines.inverse.make_inverse` uses the fixed gain
        (``allow_fixed_depth``).
    """
    import mne
    from mne.forward import Forward
    from mne.io.constants import FIFF

    _check_type("info", info, mne.Info, "mne.Info")
    gain = _check_ndim("leadfield", np.asarray(leadfield, np.float64), 2,
                       "(n_channels, n_sources)")
    _check_finite("leadfield", gain)
    n_ch, n_src = gain.shape
    if n_ch != len(info["ch_names"]):
        raise ValueError(f"'leadfield' vs info channel mismatch: 'leadfield' has {n_ch} rows but "
                         f"info has {len(info['ch_names'])} channels. Pass one row per channel "
                         "of info, in its order.")
    pos = _check_ndim("pos", np.asarray(pos, np.float64), 2, "(n_sources, 3)")
    ori = _check_ndim("ori", np.asarray(ori, np.float64), 2, "(n_sources, 3)")
    for name, arr in (("pos", pos), ("ori", ori)):
        if arr.shape != (n_src, 3):
            raise ValueError(f"'{name}' must have shape (n_sources, 3) = ({n_src}, 3) to match "
                             f"the lead field's columns, got {arr.shape}.")
        _check_finite(name, arr)
    norm = np.linalg.norm(ori, axis=1, keepdims=True)
    if np.any(norm == 0):
        raise ValueError("'ori' has zero-length rows: every source needs a unit orientation.")
    ori = ori / norm
    src = mne.setup_volume_source_space(None, pos={"rr": pos, "nn": ori}, verbose="error")
    if mri_head_t is None:
        mri_head_t = mne.transforms.Transform("mri", "head", np.eye(4))
    ch_names = list(info["ch_names"])
    fwd = Forward(
        sol={"data": gain.copy(), "row_names": ch_names, "nrow": n_ch, "ncol": n_src,
             "col_names": []},
        source_ori=FIFF.FIFFV_MNE_FIXED_ORI, _orig_source_ori=FIFF.FIFFV_MNE_FIXED_ORI,
        _orig_sol=gain.copy(), sol_grad=None, coord_frame=FIFF.FIFFV_COORD_MRI,
        nsource=n_src, nchan=n_ch, info=info.copy(), src=src, source_rr=pos.copy(),
        source_nn=ori.copy(), surf_ori=True, mri_head_t=mri_head_t)
    logger.info("Fixed-orientation forward from a given lead field: %d channels, %d sources.",
                n_ch, n_src)
    return fwd


def make_volume_stc(estimate, sfreq, *, tmin=0.0, vertices=None, subject="fsaverage",
                    fname=None):
    """A source estimate on a discrete volume source space as ``mne.VolSourceEstimate``.

    Parameters
    ----------
    estimate : array, shape (n_sources, n_times)
    sfreq : float
        Hz.
    tmin : float
        Time of the first sample, s.
    vertices : array of int, shape (n_sources,) | None
        The source space's vertex numbers; None: ``arange(n_sources)``, those of the
        discrete source space of :func:`make_fixed_forward` (and of the estimates
        ``mne.minimum_norm.apply_inverse_raw`` returns with it).
    subject : str
    fname : path-like | None
        Write it (MNE's ``-vl.stc`` format, float32 on disk; the suffix is added when
        missing), atomically.

    Returns
    -------
    stc : mne.VolSourceEstimate
    """
    import mne

    est = _check_ndim("estimate", np.asarray(estimate), 2, "(n_sources, n_times)")
    sfreq = _check_positive("sfreq", sfreq)
    vertices = np.arange(est.shape[0]) if vertices is None else np.asarray(vertices, np.int64)
    if vertices.shape != (est.shape[0],):
        raise ValueError(f"'vertices' must have one entry per source ({est.shape[0]}), got "
                         f"shape {vertices.shape}.")
    stc = mne.VolSourceEstimate(est, [vertices], tmin, 1.0 / sfreq, subject=subject)
    if fname is not None:
        fname = Path(fname)
        if not fname.name.endswith(("-vl.stc", "-vol.stc")):
            fname = fname.with_name(fname.name + "-vl.stc")
        with atomic_path(fname, what="source estimate") as tmp:
            stc.save(tmp, ftype="stc", overwrite=True, verbose="error")
    return stc


def estimate_to_nifti(estimate, voxels, shape, affine, *, tr=1.0, fill=0.0, fname=None):
    """A source estimate on grid voxels as a 4-D NIfTI image (nibabel).

    Parameters
    ----------
    estimate : array, shape (n_sources, n_times)
    voxels : array of int, shape (n_sources,)
        Flat (C-order) index of each source's voxel in ``shape``.
    shape : tuple of 3 int
        The grid.
    affine : array, shape (4, 4)
        Voxel -> RAS mm (the grid's ``affine``; for the simulator, fsaverage MRI = MNI305).
    tr : float
        Time step of the fourth axis, s (``1 / sfreq`` for EEG-rate estimates).
    fill : float
        Value of the voxels without a source.
    fname : path-like | None
        Write it (``.nii`` or ``.nii.gz``), atomically.

    Returns
    -------
    img : nibabel.Nifti1Image
        float32, shape ``(*shape, n_times)``; units mm and s in the header.
    """
    import nibabel as nib

    est = _check_ndim("estimate", np.asarray(estimate), 2, "(n_sources, n_times)")
    shape = tuple(int(n) for n in shape)
    voxels = np.asarray(voxels, np.int64)
    if voxels.shape != (est.shape[0],):
        raise ValueError(f"'voxels' must have one entry per source ({est.shape[0]}), got shape "
                         f"{voxels.shape}.")
    if voxels.size and (voxels.min() < 0 or voxels.max() >= int(np.prod(shape))):
        raise ValueError(f"'voxels' must index the grid of shape {shape} (0 .. "
                         f"{int(np.prod(shape)) - 1}), got range {voxels.min()}..{voxels.max()}.")
    affine = np.asarray(affine, np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"'affine' must be a 4 x 4 matrix, got shape {affine.shape}.")
    data = np.full((int(np.prod(shape)), est.shape[1]), fill, np.float32)
    data[voxels] = est
    img = nib.Nifti1Image(data.reshape(*shape, est.shape[1]), affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header["pixdim"][4] = _check_positive("tr", tr)
    if fname is not None:
        with atomic_path(Path(fname), what="NIfTI image") as tmp:
            nib.save(img, tmp)
    return img

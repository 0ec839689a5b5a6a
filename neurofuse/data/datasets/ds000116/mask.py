"""The brain mask of a subject's BOLD, stored with the prepared EEG–fMRI runs.

Scores of recorded fMRI (e.g. the transcoder's EEG→fMRI r) must be computed inside the brain:
voxels of air, skull and scalp carry no BOLD signal, and r over them only dilutes (noise) or
inflates (shared drifts, ghosts, motion at the edges) the score. The mask is computed from the
BOLD itself with nilearn's :func:`~nilearn.masking.compute_epi_mask` on the subject's mean
volume (Nichols' lower-cut-off on the intensity histogram, the largest connected component,
a morphological opening).

Why this mask and not the MNI152 template: the runs of a BIDS study such as ds000116 are the
raw BOLD in the scanner's (subject's) space, not normalised to MNI; a template mask
(``compute_brain_mask``, the MNI152 grey matter) resampled onto that grid would be in the wrong
place without a registration, which the loader does not do. The EPI mask needs no
registration and follows the subject's own brain (and the field of view). It uses only the
mean intensity over time, which Pearson's r over time (mean removed per voxel) does not see:
computing it from all runs, held-out ones included, gives the model no information.

The mask is a ground-truth array of the store named :func:`mask_name` (``ground_truth/`` is the
store's slot for named extra arrays; this one is derived from the data, not simulated, as its
``metadata["eeg_fmri_bids"]["brain_mask"]`` entry says), written inside the store's atomic
write (:func:`write_brain_mask`) and read back with :func:`read_brain_mask`.
"""

from __future__ import annotations

import warnings

import numpy as np

from ...._logging import logger

__all__ = ["MASK_METHOD", "bold_brain_mask", "mask_name", "read_brain_mask",
           "write_brain_mask"]

#: How the mask is computed (recorded in the store's metadata).
MASK_METHOD = "nilearn.masking.compute_epi_mask(mean BOLD)"


def mask_name(subject) -> str:
    """The store's ground-truth name of a subject's brain mask (``brain_mask/<subject>.npy``)."""
    return f"brain_mask/{subject}.npy"


def bold_brain_mask(mean_bold, affine):
    """The brain voxels of a BOLD grid, from its mean volume (nilearn's EPI mask).

    Parameters
    ----------
    mean_bold : array, shape (n_x, n_y, n_z)
        The mean BOLD volume (over time, over runs).
    affine : array, shape (4, 4)
        Voxel indices → scanner RAS (mm).

    Returns
    -------
    mask : array of bool, shape (n_x, n_y, n_z)
        True inside the brain. If nilearn finds no brain with its default opening (2 voxels,
        too much for grids under ~10 voxels a side) the mask is computed again without the
        opening; if it still finds none (a flat image), every voxel is kept (logged).
    method : str
        What was done (for the metadata).
    """
    import nibabel as nib
    from nilearn.masking import compute_epi_mask

    mean_bold = np.asarray(mean_bold, np.float32)
    if mean_bold.ndim != 3:
        raise ValueError(f"'mean_bold' must be one volume (n_x, n_y, n_z), got shape "
                         f"{mean_bold.shape}.")
    img = nib.Nifti1Image(mean_bold, np.asarray(affine, float))
    for opening in (2, False):
        with warnings.catch_warnings():  # "Computed an empty mask": handled below
            warnings.simplefilter("ignore", UserWarning)
            mask = np.asarray(compute_epi_mask(img, opening=opening).dataobj).astype(bool)
        if mask.any():
            how = MASK_METHOD + ("" if opening else ", without opening (small grid)")
            return mask, how
    logger.warning("No brain found in the mean BOLD (flat image?): every voxel of the "
                   "%s grid is kept in the mask.", mean_bold.shape)
    return np.ones(mean_bold.shape, bool), "none: no brain found, every voxel kept"


def write_brain_mask(writer, subject, mask):
    """Write a subject's brain mask into a store being written (atomic with the store).

    Parameters
    ----------
    writer : neurofuse.data.store.DatasetWriter
        Open (inside its ``with`` block).
    subject : str
    mask : array of bool, shape (n_x, n_y, n_z)
    """
    writer.write_ground_truth(mask_name(subject), np.asarray(mask, bool))


def read_brain_mask(ds, subject):
    """A subject's stored brain mask, or None when the store has none.

    Parameters
    ----------
    ds : neurofuse.data.store.Dataset
    subject : str

    Returns
    -------
    mask : array of bool, shape (n_x, n_y, n_z) | None
    """
    name = mask_name(subject)
    if name not in ds.ground_truth_names:
        return None
    return np.asarray(ds.ground_truth(name), bool)

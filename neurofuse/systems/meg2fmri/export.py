"""Synthesized slices as NIfTI images in the scanner space of the volumes they came from.

A target slice is the axial slice ``z`` of a run's volumes (n_x, n_y), resized to (h, w)
bilinearly with half-pixel centres (:func:`~.slices.resize_bilinear`): output pixel ``i``
sits at input voxel coordinate ``(i + 0.5) · n_x / h - 0.5``. The affine of the slices is the
volume's affine composed with that map, so a viewer (nilearn, FSLeyes, MNE) overlays a
synthesized slice on the subject's volume where its target came from.

Whole volumes and sequences of volumes (``PairingConfig(target="volume" | "sequence")``)
are on the native grid, so their affine is the volumes' own (:func:`volumes_to_nifti`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["slice_affine", "slices_to_nifti", "volumes_to_nifti"]


def slice_affine(affine, volume_shape, image_shape, z):
    """The voxel → scanner affine of resized axial slices at slice ``z``.

    Parameters
    ----------
    affine : array, shape (4, 4)
        Voxel → scanner (mm) affine of the volumes.
    volume_shape : tuple of int
        (n_x, n_y, ...) of the volumes.
    image_shape : tuple of 2 int
        (h, w) of the resized slices.
    z : int
        The axial slice index.

    Returns
    -------
    affine : array, shape (4, 4)
        Maps (i, j, 0) of a (h, w, 1) image to scanner mm.
    """
    affine = np.asarray(affine, np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"'affine' must have shape (4, 4), got {affine.shape}.")
    n_x, n_y = (int(v) for v in tuple(volume_shape)[:2])
    h, w = (int(v) for v in image_shape)
    sx, sy = n_x / h, n_y / w
    to_volume = np.array([[sx, 0, 0, 0.5 * sx - 0.5],
                          [0, sy, 0, 0.5 * sy - 0.5],
                          [0, 0, 1, float(z)],
                          [0, 0, 0, 1]])
    return affine @ to_volume


def slices_to_nifti(images, affine, volume_shape, z):
    """A 4-D NIfTI image ``(h, w, 1, n_images)`` of slices cut at the same axial slice.

    Parameters
    ----------
    images : array, shape (n_images, h, w)
        Slices in voxel order (rows along x, columns along y).
    affine : array, shape (4, 4)
        The volumes' voxel → scanner affine.
    volume_shape : tuple of int
        (n_x, n_y, n_z) of the volumes.
    z : int
        Their axial slice.

    Returns
    -------
    img : nibabel.Nifti1Image
        float32, one volume per slice; the affine from :func:`slice_affine`.
    """
    import nibabel as nib

    images = np.asarray(images, np.float32)
    if images.ndim != 3:
        raise ValueError(f"'images' must have shape (n_images, h, w), got {images.shape}.")
    data = np.moveaxis(images, 0, -1)[:, :, np.newaxis, :]  # (h, w, 1, n_images)
    img = nib.Nifti1Image(data, slice_affine(affine, volume_shape, images.shape[1:], z))
    img.header.set_xyzt_units("mm", "sec")
    return img


def volumes_to_nifti(volumes, affine, *, tr=None):
    """A 4-D NIfTI image ``(n_x, n_y, n_z, n_volumes)`` of synthesized whole volumes.

    Parameters
    ----------
    volumes : array, shape (n_volumes, n_x, n_y, n_z)
        Volumes on the native grid: several events' volumes, or the frames of one event's
        sequence (``Y[i]`` of a ``target="sequence"`` set).
    affine : array, shape (4, 4)
        The grid's voxel → scanner affine (``Dataset.affine(subject, "fmri-volume")``).
    tr : float | None
        Seconds between consecutive volumes (a sequence's ``tr * frame_stride``), written as
        the fourth zoom; None leaves it at 1 (volumes of separate events).

    Returns
    -------
    img : nibabel.Nifti1Image
        float32, the grid's affine, one volume per entry of ``volumes``.
    """
    import nibabel as nib

    volumes = np.asarray(volumes, np.float32)
    if volumes.ndim != 4:
        raise ValueError(f"'volumes' must have shape (n_volumes, n_x, n_y, n_z), got "
                         f"{volumes.shape}.")
    affine = np.asarray(affine, np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"'affine' must have shape (4, 4), got {affine.shape}.")
    img = nib.Nifti1Image(np.moveaxis(volumes, 0, -1), affine)  # (n_x, n_y, n_z, n)
    if tr is not None:
        img.header.set_zooms(img.header.get_zooms()[:3] + (float(tr),))
    img.header.set_xyzt_units("mm", "sec")
    return img

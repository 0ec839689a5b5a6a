"""NIfTI export of synthesized slices: the affine puts each resized pixel where it came from."""

import nibabel as nib
import numpy as np
import pytest

from neurofuse.systems.meg2fmri.export import slice_affine, slices_to_nifti
from neurofuse.systems.meg2fmri.slices import resize_bilinear

AFFINE = np.array([[-2.0, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1]])


def test_no_resize_gives_the_volume_affine_at_the_slice():
    aff = slice_affine(AFFINE, (20, 24, 10), (20, 24), z=7)
    expected = AFFINE.copy()
    expected[:3, 3] = AFFINE[:3, :3] @ [0, 0, 7] + AFFINE[:3, 3]
    np.testing.assert_allclose(aff, expected)


def test_resized_pixels_map_to_the_scanner_position_of_what_they_sample():
    # A linear ramp along x and y survives bilinear resizing exactly away from the clamped
    # edges, so each resized pixel's value tells the input coordinate it sits at.
    n_x, n_y, h, w = 40, 30, 8, 6
    xs, ys = np.meshgrid(np.arange(n_x, dtype=float), np.arange(n_y, dtype=float),
                         indexing="ij")
    ramp_x = resize_bilinear(xs[np.newaxis], (h, w))[0]
    ramp_y = resize_bilinear(ys[np.newaxis], (h, w))[0]
    aff = slice_affine(AFFINE, (n_x, n_y, 5), (h, w), z=3)
    inner = (slice(1, -1), slice(1, -1))
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    world = aff @ np.stack([i[inner].ravel(), j[inner].ravel(), np.zeros(i[inner].size),
                            np.ones(i[inner].size)])
    expected = AFFINE @ np.stack([ramp_x[inner].ravel(), ramp_y[inner].ravel(),
                                  np.full(i[inner].size, 3.0), np.ones(i[inner].size)])
    np.testing.assert_allclose(world, expected, atol=1e-9)


def test_slices_to_nifti_round_trip(tmp_path):
    images = np.random.default_rng(0).random((5, 8, 6)).astype(np.float32)
    img = slices_to_nifti(images, AFFINE, (40, 30, 5), 2)
    img.to_filename(tmp_path / "s.nii.gz")
    back = nib.load(tmp_path / "s.nii.gz")
    assert back.shape == (8, 6, 1, 5)
    np.testing.assert_array_equal(np.asarray(back.dataobj)[:, :, 0, 3], images[3])
    np.testing.assert_allclose(back.affine, slice_affine(AFFINE, (40, 30, 5), (8, 6), 2))
    with pytest.raises(ValueError, match="'images' must have shape"):
        slices_to_nifti(images[0], AFFINE, (40, 30, 5), 2)
    with pytest.raises(ValueError, match="'affine' must have shape"):
        slice_affine(np.eye(3), (40, 30, 5), (8, 6), 2)

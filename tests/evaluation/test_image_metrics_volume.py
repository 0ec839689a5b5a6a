"""System C's image metrics on whole volumes and sequences of volumes, against scikit-image's
3-D SSIM and numpy/scipy."""

import numpy as np
import pytest
from scipy import ndimage, stats
from skimage.metrics import structural_similarity

from neurofuse.evaluation.images import activation_r, mse, scores, ssim


@pytest.fixture(scope="module")
def volumes():
    """Smooth random volumes (3 events, 2 frames, 12 × 10 × 9) and noisy predictions."""
    rng = np.random.default_rng(1)
    target = ndimage.gaussian_filter(rng.random((3, 2, 12, 10, 9)), (0, 0, 1.5, 1.5, 1.5))
    target[1, 1] *= 0.4  # another data range
    pred = target + 0.05 * rng.standard_normal(target.shape)
    return pred, target


def test_volume_ssim_equals_scikit_image_3d(volumes):
    pred, target = volumes[0][:, 0], volumes[1][:, 0]  # (3, 12, 10, 9)
    ref = [structural_similarity(t, p, data_range=t.max() - t.min())
           for p, t in zip(pred, target)]
    np.testing.assert_allclose(ssim(pred, target, per_image=True, image_ndim=3), ref)
    assert ssim(pred, target, image_ndim=3) == pytest.approx(np.mean(ref))
    # one volume is one image, not a batch of 2-D slices
    assert ssim(pred, target, image_ndim=3) != pytest.approx(
        ssim(pred.reshape(-1, 10, 9), target.reshape(-1, 10, 9)))
    np.testing.assert_allclose(mse(pred, target, per_image=True, image_ndim=3),
                               ((pred - target) ** 2).reshape(3, -1).mean(1))


def test_sequence_ssim_is_the_mean_over_frames_of_the_3d_ssim(volumes):
    pred, target = volumes
    ref = np.array([[structural_similarity(t, p, data_range=t.max() - t.min())
                     for p, t in zip(pe, te)] for pe, te in zip(pred, target)])
    np.testing.assert_allclose(ssim(pred, target, per_image=True, image_ndim=4),
                               ref.mean(axis=1))
    # a constant target frame is left out of its event's mean
    flat = target.copy()
    flat[0, 1] = 0.5
    np.testing.assert_allclose(ssim(pred, flat, per_image=True, image_ndim=4)[0], ref[0, 0])
    assert mse(pred, target, image_ndim=4) == pytest.approx(np.mean((pred - target) ** 2))


def test_sequence_activation_r_is_over_every_voxel_of_every_frame(volumes):
    pred, target = volumes
    mean = target.mean(axis=0)
    ref = [stats.pearsonr((p - mean).ravel(), (t - mean).ravel())[0]
           for p, t in zip(pred, target)]
    np.testing.assert_allclose(activation_r(pred, target, mean, per_image=True, image_ndim=4),
                               ref)
    row = scores(pred, target, mean, image_ndim=4)
    assert row["activation_r"] == pytest.approx(np.mean(ref))
    assert row["ssim"] == pytest.approx(ssim(pred, target, image_ndim=4))


def test_image_ndim_is_checked(volumes):
    pred, target = volumes
    with pytest.raises(ValueError, match=r"\(n_images, n_x, n_y, n_z\) \(image_ndim=3\)"):
        mse(pred, target, image_ndim=3)
    with pytest.raises(ValueError, match="image_ndim"):
        mse(pred, target, image_ndim=5)
    with pytest.raises(ValueError, match="at least 7 pixels along every axis"):
        ssim(pred[:, 0, :, :, :5], target[:, 0, :, :, :5], image_ndim=3)

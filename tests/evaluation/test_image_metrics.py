"""System C's image metrics against scikit-image, numpy and scipy on known images."""

import numpy as np
import pytest
from scipy import stats
from skimage import data as skdata
from skimage.metrics import mean_squared_error, structural_similarity
from skimage.transform import resize

from neurofuse.evaluation.images import activation_r, mse, scores, ssim


@pytest.fixture(scope="module")
def images():
    """Known images: scikit-image's camera, 32 × 32 in [0, 1], and distorted copies."""
    cam = resize(skdata.camera().astype(float) / 255, (32, 32), anti_aliasing=True)
    rng = np.random.default_rng(0)
    target = np.stack([cam, cam.T, 0.5 * cam + 0.2])
    pred = np.clip(target + 0.1 * rng.standard_normal(target.shape), 0, 1)
    pred[2] = np.flipud(pred[2])
    return pred, target


def test_mse_and_ssim_equal_scikit_image(images):
    pred, target = images
    ref_mse = [mean_squared_error(t, p) for p, t in zip(pred, target)]
    ref_ssim = [structural_similarity(t, p, data_range=t.max() - t.min())
                for p, t in zip(pred, target)]
    np.testing.assert_allclose(mse(pred, target, per_image=True), ref_mse)
    assert mse(pred, target) == pytest.approx(np.mean(ref_mse))
    np.testing.assert_allclose(ssim(pred, target, per_image=True), ref_ssim)
    assert ssim(pred, target) == pytest.approx(np.mean(ref_ssim))
    # the target's range, not a fixed 1: the third target spans only half of [0, 1]
    assert ssim(pred[2], target[2]) != pytest.approx(
        structural_similarity(target[2], pred[2], data_range=1.0))
    assert ssim(target, target) == pytest.approx(1.0) and mse(target, target) == 0


def test_activation_r_equals_scipy_pearsonr(images):
    pred, target = images
    mean_slice = target.mean(0)
    ref = [stats.pearsonr((p - mean_slice).ravel(), (t - mean_slice).ravel()).statistic
           for p, t in zip(pred, target)]
    np.testing.assert_allclose(activation_r(pred, target, mean_slice, per_image=True), ref)
    assert activation_r(pred, target, mean_slice) == pytest.approx(np.mean(ref))
    per_image_means = np.stack([mean_slice, mean_slice * 0.9, mean_slice + 0.1])
    ref2 = [stats.pearsonr((p - m).ravel(), (t - m).ravel()).statistic
            for p, t, m in zip(pred, target, per_image_means)]
    np.testing.assert_allclose(activation_r(pred, target, per_image_means, per_image=True), ref2)
    got = scores(pred, target, mean_slice)
    assert got == pytest.approx({"mse": mse(pred, target), "ssim": ssim(pred, target),
                                 "activation_r": np.mean(ref)})


def test_undefined_images_are_left_out_and_counted(images, catch_logs):
    pred, target = images
    mean_slice = target.mean(0)
    t2 = target.copy()
    t2[1] = 0.3  # a constant target: SSIM undefined (zero range)
    p2 = pred.copy()
    p2[0] = mean_slice  # a prediction with no activation: r undefined
    with catch_logs("warning") as log:
        s = ssim(p2, t2)
        r = activation_r(p2, t2, mean_slice)
    assert s == pytest.approx(np.mean([structural_similarity(t2[i], p2[i],
                                                             data_range=np.ptp(t2[i]))
                                       for i in (0, 2)]))
    assert np.isnan(ssim(p2, t2, per_image=True)[1])
    ref_r = stats.pearsonr((p2[2] - mean_slice).ravel(), (t2[2] - mean_slice).ravel()).statistic
    # image 1: target constant but the mean slice is not, so its activation varies: defined
    r1 = stats.pearsonr((p2[1] - mean_slice).ravel(), (t2[1] - mean_slice).ravel()).statistic
    assert r == pytest.approx(np.mean([r1, ref_r]))
    assert "SSIM is undefined for 1 of 3 images" in log.text
    assert "Activation r is undefined for 1 of 3 images" in log.text
    with pytest.raises(ValueError, match="same shape"):
        mse(pred, target[:2])
    with pytest.raises(ValueError, match="'mean_slice' must have shape"):
        activation_r(pred, target, mean_slice[:5])

"""Slices of a volumetric run: statistics, correlations, slice choice, gathering, resizing —
against numpy/scipy/scikit-image on nilearn's shipped real activation map."""

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage, stats
from skimage.transform import resize

from neurofuse.systems.meg2fmri.slices import (
    best_slice,
    bilinear_matrix,
    gather_slices,
    resize_bilinear,
    run_statistics,
    slice_correlations,
)


@pytest.fixture(scope="module")
def real_map():
    """nilearn's shipped real activation map (53, 63, 46), read offline."""
    from nilearn.datasets import load_sample_motor_activation_image

    return np.asarray(nib.load(load_sample_motor_activation_image()).get_fdata())


def _real_run(real_map, n_trs=12, seed=0):
    """A 4-D run from the real map: every voxel scaled by its own slow time course."""
    rng = np.random.default_rng(seed)
    gain = 1 + 0.3 * np.sin(np.arange(n_trs) / 2 + rng.uniform(0, 6, real_map.shape[2])[:, None])
    return (real_map[..., None] * gain + 0.05 * rng.standard_normal((*real_map.shape, n_trs)))


@pytest.mark.parametrize("out", [(32, 32), (20, 70)])
def test_resize_equals_scikit_image_and_scipy_zoom_on_a_real_slice(real_map, out):
    img = real_map[:, :, 23]  # (53, 63), an axial slice with activation
    ours = resize_bilinear(img, out)
    ref = resize(img, out, order=1, mode="edge", anti_aliasing=False)
    np.testing.assert_allclose(ours, ref, atol=1e-12 * np.abs(img).max())
    zoom = ndimage.zoom(img, np.divide(out, img.shape), order=1, mode="nearest", grid_mode=True)
    assert zoom.shape == out
    np.testing.assert_allclose(ours, zoom, atol=1e-12 * np.abs(img).max())
    # a batch is resized image by image
    batch = real_map[:, :, 20:23].transpose(2, 0, 1)
    np.testing.assert_allclose(resize_bilinear(batch, out),
                               [resize(b, out, order=1, mode="edge", anti_aliasing=False)
                                for b in batch], atol=1e-12 * np.abs(img).max())


def test_resize_equals_torch_bilinear_half_pixel():
    torch = pytest.importorskip("torch")
    img = np.random.default_rng(3).standard_normal((106, 106))
    ref = torch.nn.functional.interpolate(torch.from_numpy(img)[None, None], size=(32, 32),
                                          mode="bilinear", align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(resize_bilinear(img, (32, 32)), ref, atol=1e-12)


def test_bilinear_matrix_is_interpolation():
    w = bilinear_matrix(106, 32)
    np.testing.assert_allclose(w.sum(1), 1)
    assert (w >= 0).all() and ((w > 0).sum(1) <= 2).all()
    # a linear ramp is reproduced at the half-pixel-centre coordinates
    np.testing.assert_allclose(w @ np.arange(106.0), (np.arange(32) + 0.5) * 106 / 32 - 0.5)
    np.testing.assert_allclose(bilinear_matrix(5, 5), np.eye(5))


def test_run_statistics_and_gather_equal_numpy_on_a_memmap(real_map, tmp_path):
    run = _real_run(real_map).astype(np.float32)
    np.save(tmp_path / "run.npy", run)
    mm = np.load(tmp_path / "run.npy", mmap_mode="r")
    plane = np.prod(run.shape[1:]) * 8
    st = run_statistics(mm, block_bytes=5 * plane)  # 11 blocks of x planes
    assert st.vmin == run.min() and st.vmax == run.max()
    np.testing.assert_allclose(st.slice_means, run.astype(np.float64).mean(axis=(0, 1)),
                               rtol=1e-10)
    z, t = np.array([23, 0, 45, 23]), np.array([0, 11, 5, 7])
    got = gather_slices(mm, z, t, block_bytes=7 * plane)
    np.testing.assert_array_equal(got, [run[:, :, zi, ti] for zi, ti in zip(z, t)])
    with pytest.raises(ValueError, match="'t_index' must be in"):
        gather_slices(mm, [0], [12])
    bad = run.copy()
    bad[3, 4, 5, 6] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        run_statistics(bad)


def test_chosen_slice_maximises_the_documented_correlation(real_map):
    """Brute force with scipy: r of the z-scored slice mean series with the profile over the
    common length; the chosen slice has the highest mean r over events."""
    rng = np.random.default_rng(1)
    run = _real_run(real_map, n_trs=40)
    means = run.mean(axis=(0, 1))  # (n_z, n_trs)
    starts = np.array([0, 5, 17, 24])
    n_volumes, n_samples = 16, 10  # common length 10
    profiles = rng.standard_normal((len(starts), n_samples))
    r = slice_correlations(run_statistics(run).slice_means, starts, profiles, n_volumes)
    assert r.shape == (len(starts), run.shape[2])
    ref = np.full(r.shape, np.nan)
    for e, k in enumerate(starts):
        for z in range(run.shape[2]):
            series = stats.zscore(means[z, k:k + n_volumes])
            if np.ptp(means[z, k:k + n_samples]) > 0:
                ref[e, z] = stats.pearsonr(series[:n_samples], profiles[e]).statistic
    np.testing.assert_allclose(r, ref, atol=1e-9)
    assert np.isnan(r).sum() == np.isnan(ref).sum()
    brute = max(range(run.shape[2]), key=lambda z: np.nanmean(ref[:, z])
                if np.isfinite(ref[:, z]).any() else -np.inf)
    assert best_slice(r) == brute
    for e in range(len(starts)):  # per event (the paper's choice)
        assert best_slice(r[e]) == int(np.nanargmax(ref[e]))


def test_best_slice_leaves_out_nan_and_refuses_all_nan():
    r = np.array([[np.nan, 0.2, 0.5], [np.nan, 0.4, -0.5]])
    assert best_slice(r) == 1  # slice 2 averages 0, slice 0 has no finite r
    assert best_slice([np.nan, -0.3, -0.1]) == 2  # signed: the highest r wins
    with pytest.raises(ValueError, match="No slice has a finite correlation"):
        best_slice(np.full((2, 3), np.nan))


def test_pair_run_targets_on_a_real_volume_equal_scikit_image(real_map):
    """The paper's target: the run min-max normalised, the chosen slice at window index
    ``time_index``, resized bilinearly to 32 × 32 (scikit-image as the reference)."""
    from neurofuse.systems.meg2fmri.pairing import PairingConfig, pair_run

    run = _real_run(real_map, n_trs=12)
    meg = np.random.default_rng(2).standard_normal((5, 100))
    cfg = PairingConfig(n_samples=8, n_volumes=6, time_index=3, slice_selection=23)
    out = pair_run(meg, 10.0, run, 1.0, [0.0, 2.5, 6.0], cfg)
    norm = (run - run.min()) / (run.max() - run.min())
    assert out.volume.tolist() == [0, 2, 6] and out.Y.shape == (3, 32, 32)
    for y, k in zip(out.Y, out.volume):
        ref = resize(norm[:, :, 23, k + 3], (32, 32), order=1, mode="edge", anti_aliasing=False)
        np.testing.assert_allclose(y, ref, atol=1e-6)
    assert 0 <= out.Y.min() and out.Y.max() <= 1
    per_image = pair_run(meg, 10.0, run, 1.0, [0.0], PairingConfig(
        **{**cfg.to_dict(), "image_norm": "image"}))
    assert per_image.Y.min() == 0 and per_image.Y.max() == 1

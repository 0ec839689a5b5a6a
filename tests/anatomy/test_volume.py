"""neurofuse.anatomy.volume: grid affines (vs nibabel / nilearn), templates resampled exactly on
their own grid, EPI contrast, the source -> voxel kernel, subjects that differ."""

import math

import nibabel as nib
import numpy as np
import pytest
from nilearn import datasets

from neurofuse.anatomy.coordinates import mni152_to_mni305, mni305_to_mni152
from neurofuse.anatomy.volume import (
    EPI_INTENSITIES,
    make_epi_baseline,
    make_source_voxel_map,
    make_subject_volume,
    make_tissue_maps,
    make_volume_grid,
)


def test_mni305_to_mni152_inverts_the_documented_transform():
    pts = np.array([[0.0, 0.0, 0.0], [-40.0, -20.0, 50.0], [60.0, 10.0, -30.0]])
    np.testing.assert_allclose(mni152_to_mni305(mni305_to_mni152(pts)), pts, atol=1e-10)
    np.testing.assert_allclose(mni305_to_mni152(mni152_to_mni305(pts)), pts, atol=1e-10)


def test_affine_maps_known_mni_coordinates_to_the_right_voxel():
    grid = make_volume_grid((106, 106, 72), 2.0, center=(0.0, -17.0, 10.0))
    assert grid.voxel_size == (2.0, 2.0, 2.0) and grid.n_voxels == 106 * 106 * 72
    # The centre of the grid (between voxels 52 and 53 in x, y; 35 and 36 in z).
    np.testing.assert_allclose(nib.affines.apply_affine(grid.affine, [52.5, 52.5, 35.5]),
                               [0.0, -17.0, 10.0])
    # MNI (0, 0, 0) (the anterior commissure): x = -105 + 2 i, y = -122 + 2 j, z = -61 + 2 k.
    np.testing.assert_allclose(grid.to_voxels([[0.0, 0.0, 0.0]]), [[52.5, 61.0, 30.5]])
    from nilearn.image import coord_transform

    ijk = coord_transform(0.0, 0.0, 0.0, np.linalg.inv(grid.affine))
    np.testing.assert_allclose(ijk, [52.5, 61.0, 30.5])
    # voxel_centers is C order, as np.ravel_multi_index.
    flat = np.ravel_multi_index((3, 7, 11), grid.shape)
    np.testing.assert_allclose(grid.voxel_centers()[flat],
                               nib.affines.apply_affine(grid.affine, [3, 7, 11]))


def test_grid_of_the_template_has_the_template_affine_and_resamples_it_exactly():
    img = datasets.load_mni152_gm_template(resolution=2)
    shape = img.shape
    center = nib.affines.apply_affine(img.affine, (np.asarray(shape) - 1) / 2)
    grid = make_volume_grid(shape, 2.0, center=center)
    np.testing.assert_allclose(grid.affine, img.affine)
    tissues = make_tissue_maps(grid)  # same grid, no pre-filter: the template itself
    mask = datasets.load_mni152_brain_mask(resolution=2).get_fdata() > 0.5
    np.testing.assert_array_equal(tissues["mask"], mask)
    np.testing.assert_allclose(tissues["gm"], np.where(mask, np.clip(img.get_fdata(), 0, 1), 0),
                               atol=1e-12)


@pytest.fixture(scope="module")
def coarse():
    grid = make_volume_grid((32, 38, 30), 6.0, center=(0.0, -17.0, 10.0))
    return grid, make_tissue_maps(grid)


def test_epi_baseline_contrast_csf_gm_wm_dark_outside(coarse):
    _, t = coarse
    base = make_epi_baseline(t)
    assert np.all(base[~t["mask"]] == 0)
    pure = {k: base[t[k] > 0.6].mean() for k in ("csf", "gm", "wm")}
    assert pure["csf"] > pure["gm"] > pure["wm"] > 0
    # A voxel's value is the probability-weighted sum of the documented intensities.
    v = np.argwhere(t["mask"])[100]
    expected = sum(t[k][tuple(v)] * EPI_INTENSITIES[k] for k in ("csf", "gm", "wm"))
    assert math.isclose(base[tuple(v)], expected)


def test_source_voxel_kernel_is_the_documented_gaussian():
    grid = make_volume_grid((5, 5, 5), 4.0, center=(0.0, 0.0, 0.0))
    gm = np.zeros(grid.shape)
    gm[2, 2, 2], gm[1, 2, 2], gm[0, 0, 0] = 0.8, 0.5, 1.0
    mask = np.ones(grid.shape, bool)
    mask[1, 2, 2] = False  # grey matter outside the mask gets nothing
    src = np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 5.0], [40.0, 0.0, 0.0]])
    fwhm, truncate = 6.0, 2.0
    W = make_source_voxel_map(grid, src, gm, mask, fwhm=fwhm, truncate=truncate)
    assert W.shape == (125, 4)
    sigma = fwhm / math.sqrt(8 * math.log(2))  # radius 2 sigma = 5.1 mm: sources 0, 1, 2
    d = np.array([0.0, 3.0, 5.0])
    k = np.exp(-0.5 * (d / sigma) ** 2)
    centre = np.ravel_multi_index((2, 2, 2), grid.shape)
    np.testing.assert_allclose(W[[centre]].toarray()[0], np.r_[0.8 * k / k.sum(), 0.0])
    # Only that voxel has weights: (1, 2, 2) is outside the mask, (0, 0, 0) has no source
    # in reach, every other voxel has no grey matter.
    rows = np.flatnonzero(np.diff(W.indptr))
    np.testing.assert_array_equal(rows, [centre])


def test_map_has_no_weight_outside_the_mask_and_rows_sum_to_grey_matter(coarse):
    from neurofuse.anatomy import fsaverage_source_positions

    grid, t = coarse
    pos, _ = fsaverage_source_positions(surface="white")
    W = make_source_voxel_map(grid, mni305_to_mni152(pos * 1e3), t["gm"], t["mask"])
    sums = np.asarray(W.sum(axis=1)).ravel()
    mapped = sums > 0
    assert not np.any(mapped & ~t["mask"].ravel())
    np.testing.assert_allclose(sums[mapped], t["gm"].ravel()[mapped], rtol=1e-12)
    assert W.min() >= 0
    # The cortex is covered: most voxels that are mostly grey matter receive sources.
    assert mapped[t["gm"].ravel() > 0.5].mean() > 0.8


def test_subjects_differ_and_a_one_voxel_shift_moves_the_images_one_voxel(coarse):
    from neurofuse.anatomy import fsaverage_source_positions

    grid, _ = coarse
    pos = fsaverage_source_positions(surface="white")[0] * 1e3
    shift = np.eye(4)
    shift[:3, 3] = [6.0, 0.0, 0.0]  # one voxel along +x
    a = make_subject_volume(grid, pos)
    b = make_subject_volume(grid, pos, head_position=shift)
    np.testing.assert_allclose(b.baseline[1:], a.baseline[:-1], atol=1e-9)
    # The map moves with the head: voxel (i + 1) of b is voxel i of a.
    n = grid.shape[1] * grid.shape[2]
    diff = b.source_map[n:] - a.source_map[:-n]
    assert a.source_map.nnz > 1000 and (abs(diff).max() if diff.nnz else 0.0) < 1e-12
    # A deformed cortex (scaled 5 %) carries the tissues along with it.
    scaled = pos * 1.05
    c = make_subject_volume(grid, scaled, template_pos=pos)
    np.testing.assert_allclose(np.diag(c.deformation)[:3], 1.05, atol=1e-3)
    assert (c.source_map != a.source_map).nnz > 0
    assert c.tissues["mask"].sum() > a.tissues["mask"].sum()

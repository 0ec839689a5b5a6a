"""Coordinate transforms (neurofuse.anatomy.coordinates) against references and round trips."""

import numpy as np
import pytest

from neurofuse.anatomy.coordinates import (
    MNI152_TO_MNI305,
    fsaverage5_to_oct6,
    fsaverage5_vertices,
    mni152_to_mni305,
)


def test_mni152_to_mni305_equals_mne_apply_trans_and_inverts():
    from mne.transforms import Transform, apply_trans

    rng = np.random.default_rng(0)
    pts = rng.uniform(-80, 80, (50, 3))
    got = mni152_to_mni305(pts)
    # MNE-Python applies the same 4 x 4 affine (as an mne.Transform)
    ref = apply_trans(Transform("unknown", "unknown", MNI152_TO_MNI305), pts)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    # FreeSurfer wiki "CoordinateSystems" 8b: (10, -20, 35) -> (9.3131, -21.5849, 33.8345)
    np.testing.assert_allclose(mni152_to_mni305([10, -20, 35])[0], [9.3131, -21.5849, 33.8345],
                               atol=2e-3)
    # round trip through the inverse affine
    back = apply_trans(np.linalg.inv(MNI152_TO_MNI305), got)
    np.testing.assert_allclose(back, pts, atol=1e-9)
    # a near-identity: the two MNI spaces differ by a few mm, not by a unit or an axis swap
    assert np.abs(got - pts).max() < 5


def test_fsaverage5_vertices_round_trip_on_the_oct6_source_space():
    from neurofuse.anatomy import get_source_space, make_template_subject
    from neurofuse.anatomy.template import read_template_surface

    src = get_source_space(make_template_subject(meg=False), "oct6")
    pos = np.concatenate([read_template_surface("white", h)[0][s["vertno"]] * 1e-3
                          for h, s in zip(("lh", "rh"), src)])
    hemi = np.repeat(["lh", "rh"], [s["nuse"] for s in src])
    got = fsaverage5_vertices(pos, hemi)
    for g, s in zip(got, src):
        np.testing.assert_array_equal(g, s["vertno"])
    with pytest.raises(ValueError, match="not vertices"):
        fsaverage5_vertices(pos + 1e-3, hemi)
    with pytest.raises(ValueError, match="ordered lh then rh"):
        fsaverage5_vertices(pos[::-1], hemi[::-1])
    with pytest.raises(ValueError, match="'hemi'"):
        fsaverage5_vertices(pos, hemi[:-1])


def test_fsaverage5_to_oct6_keeps_source_vertices_and_averages():
    from neurofuse.anatomy import get_source_space, make_template_subject

    mat = fsaverage5_to_oct6()
    assert mat.shape == (8196, 20484)
    np.testing.assert_allclose(np.asarray(mat.sum(1)).ravel(), 1.0, rtol=1e-6)
    src = get_source_space(make_template_subject(meg=False), "oct6")
    # A source's own vertex belongs to it: data equal to 1 at one source's vertex only reach it.
    lh = src[0]["vertno"]
    x = np.zeros(20484)
    x[lh[7]] = 1.0
    y = mat @ x
    assert y.argmax() == 7 and y[7] > 0

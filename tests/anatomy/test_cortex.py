"""Gaussian smoothing over the fsaverage source space, against a brute-force computation."""

import math

import numpy as np
import pytest

from neurofuse.anatomy import fsaverage_source_positions, source_smoother


@pytest.fixture(scope="module")
def vertices():
    # every 40th fsaverage5 vertex of each hemisphere (~256 per hemisphere, ~2.5 cm apart)
    return [np.arange(0, 10242, 40), np.arange(3, 10242, 40)]


def test_smoother_equals_dense_gaussian(vertices):
    fwhm, truncate = 40.0, 2.0
    K = source_smoother(vertices, fwhm, truncate=truncate).toarray()
    pos, hemi = fsaverage_source_positions(vertices, surface="white")
    sigma = fwhm / math.sqrt(8 * math.log(2)) * 1e-3
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    ref = np.exp(-0.5 * (d / sigma) ** 2) * (d <= truncate * sigma) * (hemi[:, None] == hemi[None])
    ref /= ref.sum(1, keepdims=True)
    np.testing.assert_allclose(K, ref, rtol=1e-10, atol=1e-14)
    # a weighted local mean: rows sum to 1, nothing crosses the midline, self-weight largest
    np.testing.assert_allclose(K.sum(1), 1.0)
    assert not K[hemi == "lh"][:, hemi == "rh"].any()
    assert np.all(K.argmax(1) == np.arange(len(K)))
    # some neighbours are within reach at this width (the test is not about the identity)
    assert (np.count_nonzero(K, axis=1) > 1).mean() > 0.9


def test_smoother_narrow_is_identity(vertices):
    K = source_smoother(vertices, 0.1)  # sources are cm apart: nobody within 3 sigma
    np.testing.assert_array_equal(K.toarray(), np.eye(K.shape[0]))


def test_smoother_bad_input(vertices):
    with pytest.raises(ValueError, match="fwhm"):
        source_smoother(vertices, 0.0)
    with pytest.raises(ValueError, match="fsaverage5 mesh"):
        source_smoother([np.array([0, 20000]), np.array([1])], 5.0)

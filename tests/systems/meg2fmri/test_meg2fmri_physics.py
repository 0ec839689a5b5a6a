"""The physics baseline's pieces: event images cut like the targets, one least-squares scale."""

import numpy as np
import pytest
from skimage.transform import resize

from neurofuse.systems.meg2fmri.physics import PhysicsSlices, event_images


def test_event_images_cut_and_resize_like_the_targets():
    rng = np.random.default_rng(0)
    vol = rng.standard_normal((20, 16, 6, 30))
    z, v = np.array([1, 4, 4]), np.array([0, 5, 12])
    out = event_images(vol, z, v, time_index=3, image_shape=(10, 8))
    for k in range(3):
        ref = resize(vol[:, :, z[k], v[k] + 3], (10, 8), order=1, mode="edge",
                     anti_aliasing=False)
        np.testing.assert_allclose(out[k], ref, atol=1e-12)


def test_physics_slices_recovers_a_known_scale():
    rng = np.random.default_rng(1)
    mean = rng.random((6, 5))
    change = rng.standard_normal((40, 6, 5))
    Y = mean + 0.37 * change + 0.01 * rng.standard_normal(change.shape)
    model = PhysicsSlices(mean).fit(change, Y)
    assert model.scale_ == pytest.approx(0.37, abs=0.005)
    np.testing.assert_allclose(model.predict(change[:2]), mean + model.scale_ * change[:2],
                               rtol=1e-6)
    # the least-squares scale: no other scale fits better
    err = [np.sum((Y - mean - a * change) ** 2) for a in (model.scale_ * 0.99,
                                                           model.scale_ * 1.01)]
    assert min(err) > np.sum((Y - mean - model.scale_ * change) ** 2)


def test_physics_slices_checks_shapes():
    model = PhysicsSlices(np.zeros((4, 4)))
    with pytest.raises(RuntimeError, match="not fitted"):
        model.predict(np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match=r"'change' must have shape \(n_events, 4, 4\)"):
        model.fit(np.zeros((3, 4, 5)), np.zeros((3, 4, 4)))
    with pytest.raises(ValueError, match="same n_events"):
        model.fit(np.zeros((3, 4, 4)), np.zeros((2, 4, 4)))

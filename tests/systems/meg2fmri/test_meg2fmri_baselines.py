"""System C's baselines: the mean slice, ridge to pixels (against scikit-learn) and the shuffle."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from neurofuse.systems.meg2fmri.baselines import RidgeSlices, mean_slice, shuffle_rows


def _problem(rng, n=120, p=10, shape=(8, 8), noise=0.1):
    X = rng.standard_normal((n, p))
    W = rng.standard_normal((p, shape[0] * shape[1]))
    Y = (X @ W + noise * rng.standard_normal((n, W.shape[1]))).reshape(n, *shape)
    return X, Y


def test_mean_slice_is_the_pixel_mean():
    Y = np.random.default_rng(0).random((5, 4, 3))
    np.testing.assert_allclose(mean_slice(Y), Y.mean(0), rtol=1e-6)
    with pytest.raises(ValueError, match="'Y' must have shape"):
        mean_slice(Y[0])


def test_ridge_slices_equals_sklearn_at_the_chosen_alpha():
    rng = np.random.default_rng(1)
    X, Y = _problem(rng)
    groups = np.repeat(np.arange(4), 30)
    model = RidgeSlices(alphas=np.logspace(-2, 4, 7)).fit(X, Y, groups)
    pred = model.predict(X[:7])
    flat = Y.reshape(len(Y), -1)
    for pixel in (0, 17, 63):
        ref = make_pipeline(StandardScaler(), Ridge(alpha=model.best_alphas_[pixel]))
        ref.fit(X, flat[:, pixel])
        np.testing.assert_allclose(pred.reshape(7, -1)[:, pixel], ref.predict(X[:7]),
                                   rtol=1e-4, atol=1e-4)


def test_ridge_slices_recovers_a_linear_map_better_than_the_mean():
    rng = np.random.default_rng(2)
    X, Y = _problem(rng, n=200, noise=0.5)
    groups = np.repeat(np.arange(5), 40)
    train, test = slice(0, 160), slice(160, None)
    model = RidgeSlices().fit(X[train], Y[train], groups[train])
    err = np.mean((model.predict(X[test]) - Y[test]) ** 2)
    err_mean = np.mean((mean_slice(Y[train]) - Y[test]) ** 2)
    assert err < 0.2 * err_mean


def test_ridge_slices_checks_its_input():
    model = RidgeSlices()
    with pytest.raises(RuntimeError, match="not fitted"):
        model.predict(np.zeros((2, 3)))
    rng = np.random.default_rng(3)
    X, Y = _problem(rng, n=40)
    model.fit(X, Y, np.repeat([0, 1], 20))
    with pytest.raises(ValueError, match="10 features"):
        model.predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="'Y' must have shape"):
        RidgeSlices().fit(X, Y[:-1], np.repeat([0, 1], 20))


@pytest.mark.parametrize("n", [2, 3, 10, 101])
def test_shuffle_rows_moves_every_row(n):
    for seed in range(20):
        order = shuffle_rows(n, seed)
        assert sorted(order) == list(range(n))
        assert np.all(order != np.arange(n))


def test_shuffle_rows_is_random_and_checks_n():
    orders = {tuple(shuffle_rows(6, seed)) for seed in range(30)}
    assert len(orders) > 10
    with pytest.raises(ValueError, match="'n' must be an int >= 2"):
        shuffle_rows(1, 0)

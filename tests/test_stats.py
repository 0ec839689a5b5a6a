"""neurofuse.stats against scipy and scikit-learn: Pearson r, z-scores, PCA."""

import numpy as np
import pytest
from scipy import stats

from neurofuse.stats import pca, pearson_r, zscore


def test_pearson_r_matches_scipy_per_target_and_along_axis_0():
    rng = np.random.default_rng(0)
    true = rng.standard_normal((7, 500))
    pred = 0.5 * true + rng.standard_normal((7, 500)) * np.arange(1, 8)[:, None]
    ref = [stats.pearsonr(p, t).statistic for p, t in zip(pred, true)]
    np.testing.assert_allclose(pearson_r(pred, true), ref, rtol=1e-12, atol=1e-15)
    # axis=0 is the same numbers on the transposed arrays; 1-d inputs give a 0-d array.
    np.testing.assert_allclose(pearson_r(pred.T, true.T, axis=0), ref, rtol=1e-12, atol=1e-15)
    assert float(pearson_r(pred[2], true[2])) == pytest.approx(ref[2], rel=1e-12)
    # Chunking does not change the numbers; 3-d inputs keep their leading axes.
    np.testing.assert_array_equal(pearson_r(pred, true, chunk=3), pearson_r(pred, true))
    r3 = pearson_r(pred.reshape(7, 5, 100), true.reshape(7, 5, 100), axis=-1)
    assert r3.shape == (7, 5)


def test_pearson_r_constant_is_nan_and_shapes_checked():
    a = np.vstack([np.ones(10), np.arange(10.0)])
    r = pearson_r(a, np.vstack([np.arange(10.0), np.arange(10.0)]))
    assert np.isnan(r[0]) and r[1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same shape"):
        pearson_r(np.zeros((2, 3)), np.zeros((3, 2)))


def test_metrics_reexports_the_same_function():
    from neurofuse.evaluation import metrics

    assert metrics.pearson_r is pearson_r


def test_zscore_matches_scipy_and_constant_rows_are_zero():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 300)) * [[1.0], [10.0], [1e-3], [2.0]] + 5.0
    x[3] = 7.0  # constant row
    z = zscore(x, axis=-1)
    np.testing.assert_allclose(z[:3], stats.zscore(x[:3], axis=-1), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(z[3], 0.0)
    np.testing.assert_allclose(zscore(x.T, axis=0), z.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(zscore(x[:3], axis=None), stats.zscore(x[:3], axis=None),
                               rtol=1e-12, atol=1e-12)
    # The mean of z-score products is Pearson r (0 for a constant row).
    y = x + rng.standard_normal(x.shape)
    r = (zscore(x) * zscore(y)).mean(-1)
    np.testing.assert_allclose(r[:3], pearson_r(x[:3], y[:3]), rtol=1e-12)
    assert r[3] == 0.0


def test_pca_matches_sklearn_up_to_sign_array_and_streamed():
    from sklearn.decomposition import PCA as SkPCA

    rng = np.random.default_rng(2)
    x = rng.standard_normal((600, 12)) @ rng.standard_normal((12, 12)) + rng.normal(0, 3, 12)
    sk = SkPCA(n_components=5).fit(x)
    res = pca(x, 5)
    np.testing.assert_allclose(res.mean, sk.mean_, rtol=1e-12)
    # Same axes up to sign; eigenvalues are sklearn's explained variance (ddof=1).
    signs = np.sign(np.sum(res.components * sk.components_.T, axis=0))
    np.testing.assert_allclose(res.components * signs, sk.components_.T, atol=1e-8)
    np.testing.assert_allclose(res.explained_variance, sk.explained_variance_, rtol=1e-10)
    np.testing.assert_allclose(res.explained_variance / res.total_variance,
                               sk.explained_variance_ratio_, rtol=1e-10)
    # Streamed from blocks: population covariance (ddof=0), same axes.
    streamed = pca(iter([x[:100], x[100:450], x[450:]]), 5)
    np.testing.assert_allclose(streamed.mean, res.mean, rtol=1e-12)
    np.testing.assert_allclose(np.abs(np.sum(streamed.components * res.components, 0)), 1.0,
                               atol=1e-10)
    n = len(x)
    np.testing.assert_allclose(streamed.explained_variance, res.explained_variance * (n - 1) / n,
                               rtol=1e-10)
    # The projection of the top axis has the top variance.
    proj = (x - res.mean) @ res.components
    np.testing.assert_allclose(proj.var(0, ddof=1), res.explained_variance, rtol=1e-10)


def test_pca_errors():
    with pytest.raises(ValueError, match="n_components"):
        pca(np.zeros((10, 3)), 4)
    with pytest.raises(ValueError, match="no samples"):
        pca(iter([]), 1)
    with pytest.raises(ValueError, match="same n_features"):
        pca(iter([np.zeros((3, 2)), np.zeros((3, 4))]), 1)

"""``benchmarks/bench_eeg2meg_probe.py``: the patch probe is scikit-learn's ridge on the
standardised patch features, and its rows are the patches of the EEG and the MEG."""

import numpy as np
import pytest

sklearn_linear = pytest.importorskip("sklearn.linear_model")


@pytest.fixture(scope="module")
def probe(benchmark_script):
    return benchmark_script("bench_eeg2meg_probe")


def test_feature_rows_are_one_patch_of_every_channel(probe):
    feat = np.random.default_rng(2).standard_normal((3, 4, 5, 6))  # (n, C, P, F)
    rows = probe._rows(feat)
    assert rows.shape == (15, 24)
    for e, q in ((0, 0), (1, 2), (2, 4)):
        np.testing.assert_array_equal(rows[e * 5 + q], feat[e, :, q, :].ravel())


def test_patch_rows_round_trip(probe):
    meg = np.random.default_rng(0).standard_normal((3, 4, 20))
    rows = probe._patch_rows(meg, 5)
    assert rows.shape == (15, 16)
    # row (epoch 1, patch 2) holds every channel's samples 8..11
    np.testing.assert_array_equal(rows[1 * 5 + 2].reshape(4, 4), meg[1, :, 8:12])
    np.testing.assert_array_equal(probe._from_patch_rows(rows, 3, 4, 5), meg)


def test_patch_probe_is_sklearn_ridge(probe):
    rng = np.random.default_rng(1)
    n, c, p, f, c_meg, size = 12, 3, 4, 5, 2, 6
    feat = rng.standard_normal((n, c, p, f)) * rng.uniform(0.5, 3, f) + 1.0
    meg = rng.standard_normal((n, c_meg, p * size))
    new = rng.standard_normal((4, c, p, f))
    fitted = probe.PatchProbe(feat, meg)
    x = probe._rows(feat)
    mu, sd = x.mean(0), x.std(0) + 1e-8
    y = probe._patch_rows(meg, p)
    for penalty in (10.0, 1e3):
        ref = sklearn_linear.Ridge(alpha=penalty * len(x) / 1000).fit((x - mu) / sd, y)
        want = probe._from_patch_rows(ref.predict((probe._rows(new) - mu) / sd), 4, c_meg, p)
        np.testing.assert_allclose(fitted.predict(new, penalty, c_meg), want, rtol=1e-6,
                                   atol=1e-9)

"""Metrics against hand computations and numpy's corrcoef."""

import numpy as np
import pytest

from neurofuse.anatomy import make_meg_info
from neurofuse.evaluation.metrics import (
    pearson_r,
    spatial_r,
    summarize,
    temporal_lobe_channels,
    temporal_r,
    top_quartile,
)


def test_pearson_matches_corrcoef_and_hand_value():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 5, 40))
    r = pearson_r(a, b)
    ref = [np.corrcoef(a[i], b[i])[0, 1] for i in range(5)]
    np.testing.assert_allclose(r, ref, rtol=1e-12)
    # by hand: x = [1, 2, 3], y = [1, 3, 2] -> r = 0.5
    assert pearson_r(np.array([[1.0, 2, 3]]), np.array([[1.0, 3, 2]]))[0] == pytest.approx(0.5)
    # chunking does not matter; constant target -> NaN
    np.testing.assert_allclose(pearson_r(a, b, chunk=2), r)
    assert np.isnan(pearson_r(np.ones((1, 4)), np.arange(4.0)[None]))[0]
    with pytest.raises(ValueError, match="same shape"):
        pearson_r(a, b[:, :10])


def test_temporal_and_spatial_r():
    rng = np.random.default_rng(1)
    truth = rng.standard_normal((30, 200))
    est = truth + 0.5 * rng.standard_normal((30, 200))
    t = temporal_r(est, truth)
    s = spatial_r(est, truth)
    assert t.shape == (30,) and s.shape == (200,)
    np.testing.assert_allclose(t[3], np.corrcoef(est[3], truth[3])[0, 1])
    np.testing.assert_allclose(s[7], np.corrcoef(est[:, 7], truth[:, 7])[0, 1])
    # analytic: noise sd 0.5 on unit-variance signal -> E[r] = 1 / sqrt(1.25)
    assert t.mean() == pytest.approx(1 / np.sqrt(1.25), abs=0.03)


def test_temporal_lobe_channels():
    info = make_meg_info()
    picked = temporal_lobe_channels(info)
    assert len(picked) == 78 and "MEG0111" in picked
    import mne

    # other names and no sensor positions: refused (once silently "selected" nothing or
    # unrelated channels); other layouts: tests/evaluation/test_temporal_channels.py
    with pytest.raises(ValueError, match="dev_head_t"):
        temporal_lobe_channels(mne.create_info(["a", "b"], 50.0, "mag"))


def test_top_quartile_and_summary():
    v = np.arange(1.0, 9.0)  # 1..8
    mask = top_quartile(v)
    assert mask.sum() == 2 and set(v[mask]) == {7.0, 8.0}
    s = summarize([1.0, 2.0, 3.0, np.nan])
    assert s == {"mean": 2.0, "sd": 1.0, "n": 3}

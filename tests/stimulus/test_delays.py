"""Tests for FIR delays and TR resampling (neurofuse.stimulus.delays)."""

import itertools

import numpy as np
import pytest

from neurofuse.stimulus.delays import (
    _delayed_rows,
    delays_from_seconds,
    make_delayed,
    make_delayed_stories,
    resample_to_tr,
)


def _loop_delayed(features, delays):
    """Reference: out[t, d * F + f] = features[t - delays[d], f] if t >= delays[d] else 0."""
    n_times, n_feat = features.shape
    out = np.zeros((n_times, n_feat * len(delays)))
    for d, delay in enumerate(delays):
        for t in range(n_times):
            if t - delay >= 0:
                out[t, d * n_feat:(d + 1) * n_feat] = features[t - delay]
    return out


def test_make_delayed_matches_loop_and_zero_edges():
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((23, 3))
    delays = [0, 1, 4, 30]  # 30 > n_times: an all-zero block
    out = make_delayed(feats, delays)
    assert out.shape == (23, 12)
    np.testing.assert_array_equal(out, _loop_delayed(feats, delays))
    np.testing.assert_array_equal(out[:, :3], feats)  # delay 0 is the features themselves
    assert np.all(out[:4, 6:9] == 0)  # first 4 samples of the delay-4 block are zero...
    np.testing.assert_array_equal(out[4:, 6:9], feats[:-4])  # ...and no wrap-around
    assert np.all(out[:, 9:] == 0)
    assert out.dtype == np.float64
    assert make_delayed(feats.astype(np.float32), delays).dtype == np.float32


def test_delayed_rows_chunks_equal_full_design():
    rng = np.random.default_rng(1)
    feats = rng.standard_normal((50, 2)).astype(np.float32)
    delays = np.array([0, 3, 7])
    full = make_delayed(feats, delays)
    chunks = [_delayed_rows(feats, delays, a, min(a + 6, 50)) for a in range(0, 50, 6)]
    np.testing.assert_array_equal(np.concatenate(chunks), full)


def test_make_delayed_stories_no_wraparound_across_stories():
    rng = np.random.default_rng(2)
    s1 = rng.standard_normal((10, 2)) + 5.0  # nonzero everywhere, in particular at its end
    s2 = rng.standard_normal((8, 2)) + 5.0
    delays = [0, 2, 5]
    out = make_delayed_stories([s1, s2], delays)
    assert out.shape == (18, 6)
    np.testing.assert_array_equal(out[:10], make_delayed(s1, delays))
    np.testing.assert_array_equal(out[10:], make_delayed(s2, delays))
    # The second story's first samples of the delayed blocks are zero although story 1
    # had data just before: a plain delay of the concatenation would leak it.
    assert np.all(out[10:12, 2:4] == 0) and np.all(out[10:15, 4:6] == 0)
    leaky = make_delayed(np.concatenate([s1, s2]), delays)
    assert np.all(leaky[10:12, 2:4] != 0)


def test_delays_from_seconds():
    np.testing.assert_array_equal(delays_from_seconds(np.arange(0, 0.601, 0.02), 50.0),
                                  np.arange(31))
    np.testing.assert_array_equal(delays_from_seconds((2, 4, 6, 8), 0.5), [1, 2, 3, 4])
    assert delays_from_seconds(0.1, 50).dtype == np.int64
    with pytest.raises(ValueError, match="whole numbers of samples.*0.03 s = 1.5 samples"):
        delays_from_seconds([0, 0.03], 50.0)
    with pytest.raises(ValueError, match="'seconds' must be >= 0"):
        delays_from_seconds([-0.02, 0.0], 50.0)
    with pytest.raises(ValueError, match="'sfreq' must be > 0"):
        delays_from_seconds([0.0], 0.0)


def test_delay_errors():
    feats = np.zeros((5, 2))
    with pytest.raises(ValueError, match="'delays' must be >= 0"):
        make_delayed(feats, [0, -1])
    with pytest.raises(TypeError, match="delays_from_seconds"):
        make_delayed(feats, [0, 0.5])
    with pytest.raises(ValueError, match="must not repeat"):
        make_delayed(feats, [1, 1])
    with pytest.raises(ValueError, match=r"'features' must have shape \(n_times, n_features\)"):
        make_delayed(np.zeros(5), [0])
    with pytest.raises(TypeError, match="list of per-story arrays"):
        make_delayed_stories(feats, [0])
    with pytest.raises(ValueError, match="same n_features"):
        make_delayed_stories([feats, np.zeros((5, 3))], [0])


def test_resample_to_tr_matches_manual_means():
    rng = np.random.default_rng(3)
    feats = rng.standard_normal((1030, 4))  # 10.3 TRs of 100 samples: the last is dropped
    out = resample_to_tr(feats, 50.0, 2.0)
    manual = np.stack([feats[k * 100:(k + 1) * 100].mean(0) for k in range(10)])
    assert out.shape == (10, 4)
    np.testing.assert_allclose(out, manual, rtol=1e-12)
    # A TR that is not a whole number of samples: window k holds samples i/sfreq in
    # [k * tr, (k + 1) * tr) -> 3, 2, 3, 2... samples at sfreq=2, tr=1.25.
    out = resample_to_tr(feats[:10], 2.0, 1.25)
    bounds = [0, 3, 5, 8, 10]
    manual = np.stack([feats[a:b].mean(0) for a, b in itertools.pairwise(bounds)])
    np.testing.assert_allclose(out, manual, rtol=1e-12)
    with pytest.raises(ValueError, match="fewer than one TR"):
        resample_to_tr(feats[:50], 50.0, 2.0)

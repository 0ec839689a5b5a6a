"""Tests for neurofuse.simulation.encoding against simulated ground truth and references."""

from pathlib import Path

import numpy as np
import pytest
from scipy import signal
from scipy.spatial import cKDTree

from neurofuse.simulation.encoding import (
    REGIONS,
    STREAM_TUNING,
    SourceEncodingModel,
    make_encoding_model,
    response_kernel,
)
from neurofuse.simulation.stimuli import StimulusGenerator

SFREQ = 50.0


def _fsaverage5_white(n_per_hemi):
    """Real fsaverage5 white-surface vertices (m). The first 642 vertices of an
    icosahedral mesh form ico3 (~7 mm apart on the white surface, coarser than oct6)."""
    nib = pytest.importorskip("nibabel")
    import nilearn

    folder = Path(nilearn.__file__).parent / "datasets" / "data" / "fsaverage5"
    pos = [
        nib.load(folder / f"white_{h}.gii.gz").darrays[0].data[:n_per_hemi]
        for h in ("left", "right")
    ]
    hemi = np.repeat([0, 1], n_per_hemi)
    return np.concatenate(pos).astype(float) * 1e-3, hemi


@pytest.fixture(scope="module")
def gen():
    return StimulusGenerator(n_vocabulary=500)


@pytest.fixture(scope="module")
def calib(gen):
    return np.concatenate([gen.make_story(60.0, seed=s).features for s in (1, 2)])


@pytest.fixture(scope="module")
def surf():
    return _fsaverage5_white(642)


@pytest.fixture(scope="module")
def model(surf, calib, gen):
    pos, hemi = surf
    return make_encoding_model(pos, calib, stream_slices=gen.stream_slices, seed=0, hemi=hemi)


@pytest.fixture(scope="module")
def test_story(gen):
    return gen.make_story(30.0, seed=77)


def _reference_transform(model, features):
    """Naive float64 reference: full-length scipy.signal.lfilter, then A @ U.T."""
    x = features.astype(float) - model.feature_mean
    out = np.zeros((model.n_sources, x.shape[0]))
    for s in model.stream_names:
        filt = signal.lfilter(model.kernels[s], [1.0], x[:, model.stream_slices[s]], axis=0)
        out += model.weights(s) @ filt.T
    return out


def test_kernel_peaks_at_lag_and_is_causal():
    for lag in (0.05, 0.1, 0.35, 0.8):
        h = response_kernel(lag, SFREQ)
        assert h[0] == 0.0
        assert abs(np.argmax(h) - lag * SFREQ) <= 1.0
        assert h.min() < 0  # biphasic
        # At a fine sampling rate the peak is exactly at the lag.
        hf = response_kernel(lag, 10000.0)
        assert abs(np.argmax(hf) / 10000.0 - lag) <= 2e-4


def test_transform_matches_reference(model, test_story):
    feats = test_story.features
    src = model.transform(feats)
    assert src.shape == (model.n_sources, feats.shape[0]) and src.dtype == np.float32
    ref = _reference_transform(model, feats)
    np.testing.assert_allclose(src, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


def test_iter_transform_equals_transform_exactly(model, test_story):
    feats = test_story.features
    full = model.transform(feats)
    for chunk in (100, 256, 997, 10**6):
        blocks = list(model.iter_transform(feats, chunk))
        assert blocks[0][0] == 0 and blocks[-1][1] == feats.shape[0]
        assert all(b[1] - b[0] == min(chunk, feats.shape[0] - b[0]) for b in blocks)
        np.testing.assert_array_equal(np.concatenate([b[2] for b in blocks], axis=1), full)
    np.testing.assert_array_equal(model.transform(feats, chunk_size=333), full)


def test_transform_is_causal_and_deterministic(model, test_story):
    feats = test_story.features
    src = model.transform(feats)
    np.testing.assert_array_equal(model.transform(feats), src)
    t = 700  # not on a block boundary
    changed = feats.copy()
    changed[t:] = np.random.default_rng(0).standard_normal(changed[t:].shape)
    src2 = model.transform(changed)
    np.testing.assert_array_equal(src2[:, :t], src[:, :t])
    assert np.abs(src2[:, t + 20 :] - src[:, t + 20 :]).max() > 0.1 * src.std()


@pytest.mark.parametrize("lags", [None, {"spectrogram": 0.08, "phoneme": 0.2, "word": 0.5}])
def test_lags_recovered_by_cross_correlation(calib, gen, lags):
    pos, hemi = _fsaverage5_white(162)  # ico2: enough sources near every region
    m = make_encoding_model(
        pos, calib, stream_slices=gen.stream_slices, seed=3, stream_lags=lags, hemi=hemi
    )
    expected = {"spectrogram": 0.05, "phoneme": 0.1, "word": 0.35} if lags is None else lags
    # White-noise features (with the calibration mean and s.d. of each column): the
    # cross-correlation between a source and a stream's projected features is then that
    # stream's kernel (the other streams add independent noise).
    rng = np.random.default_rng(1)
    x = calib.mean(axis=0) + calib.std(axis=0) * rng.standard_normal((10000, m.n_features))
    x = x.astype(np.float32)
    sources = m.transform(x)
    share = {}
    for s in m.stream_names:
        w = m.weights(s) * calib[:, m.stream_slices[s]].std(axis=0)
        share[s] = np.linalg.norm(w, axis=1) ** 2 * np.sum(m.kernels[s] ** 2)
    total = sum(share.values())
    for s in m.stream_names:
        i = int(np.argmax(share[s] / total))  # the source most tuned to stream s
        src = sources[i].astype(float)
        p = (x[:, m.stream_slices[s]] - m.feature_mean[m.stream_slices[s]]) @ m.weights(s)[i]
        n_lag = 60
        xc = [np.corrcoef(src[k:], p[: p.size - k])[0, 1] for k in range(n_lag)]
        assert abs(np.argmax(xc) - expected[s] * SFREQ) <= 1.0, (s, np.argmax(xc))
    # The hierarchy: spectrogram earliest, words latest.
    peaks = {s: np.argmax(m.kernels[s]) for s in m.stream_names}
    assert peaks["spectrogram"] < peaks["phoneme"] < peaks["word"]


def test_weights_drawn_from_feature_covariance(surf, calib, gen):
    pos, hemi = surf
    sl = {s: gen.stream_slices[s] for s in ("spectrogram", "phoneme")}
    m = make_encoding_model(
        pos[::10], calib, stream_slices=sl, seed=5, n_components=30, hemi=hemi[::10]
    )
    for s in ("spectrogram", "phoneme"):
        x = calib[:, gen.stream_slices[s]].astype(float)
        evals, evecs = np.linalg.eigh(np.cov(x.T))
        keep = evals > 1e-6 * evals.max()
        proj_var = np.mean((m.mixing[s] @ evecs[:, keep]) ** 2, axis=0)
        # Variance of the weight vectors along each principal axis follows the eigenvalue.
        r = np.corrcoef(np.log(proj_var), np.log(evals[keep]))[0, 1]
        assert r > 0.9, (s, r)


def test_spatial_smoothness(model, surf):
    pos, _ = surf
    _, nn = cKDTree(pos).query(pos, k=2)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, pos.shape[0], (2, 20000))
    far = np.linalg.norm(pos[a] - pos[b], axis=1) > 0.06
    for s in model.stream_names:
        w = model.weights(s)
        w = w - w.mean(axis=1, keepdims=True)
        w /= np.linalg.norm(w, axis=1, keepdims=True)
        r_nn = np.sum(w * w[nn[:, 1]], axis=1)  # neighbours ~7 mm apart
        assert np.median(r_nn) > 0.8, s
        r_far = np.sum(w[a[far]] * w[b[far]], axis=1)
        assert abs(r_far.mean()) < 0.05, s
    # Not one tuning per region: sources within 20 mm of the left IFG do not share a
    # single weight vector.
    centre = np.array(REGIONS["ifg"][0]) * [-1e-3, 1e-3, 1e-3]
    near = np.linalg.norm(pos - centre, axis=1) < 0.02
    assert near.sum() >= 5
    sv = np.linalg.svd(model.weights("word")[near], compute_uv=False)
    assert sv[0] ** 2 / np.sum(sv**2) < 0.9


def test_region_specific_tuning(model, surf):
    pos, _ = surf
    for s in model.stream_names:
        norm = np.linalg.norm(model.weights(s), axis=1)
        peak = pos[np.argmax(norm)]
        centres = [
            np.array(REGIONS[r][0]) * [sign * 1e-3, 1e-3, 1e-3]
            for r in STREAM_TUNING[s]
            for sign in (-1, 1)
        ]
        assert min(np.linalg.norm(peak - c) for c in centres) < 0.03, s
    spec = np.linalg.norm(model.weights("spectrogram"), axis=1)
    word = np.linalg.norm(model.weights("word"), axis=1)
    prof = model.region_map()
    aud = prof["auditory-lh"] > 0.5
    ifg = prof["ifg-lh"] > 0.5
    assert (spec[aud] / word[aud]).mean() > 5 * (spec[ifg] / word[ifg]).mean()
    # Words are left-lateralised.
    assert word[model.hemi == 0].mean() > word[model.hemi == 1].mean()
    assert set(prof) == {f"{r}-{h}" for r in REGIONS for h in ("lh", "rh")} | {"background"}
    assert np.all(prof["stg-lh"][model.hemi == 1] == 0)


def test_amplitude(model, calib):
    std = model.transform(calib).std(axis=1)
    np.testing.assert_allclose(np.percentile(std, 95), 1e-9, rtol=1e-3)


def test_save_load_roundtrip(model, test_story, tmp_path):
    model.save(tmp_path / "gt")
    loaded = SourceEncodingModel.load(tmp_path / "gt")
    for s in model.stream_names:
        np.testing.assert_array_equal(loaded.weights(s), model.weights(s))
        np.testing.assert_array_equal(loaded.kernels[s], model.kernels[s])
        assert loaded.stream_slices[s] == model.stream_slices[s]
        assert loaded.lags[s] == model.lags[s]
    np.testing.assert_array_equal(
        loaded.transform(test_story.features), model.transform(test_story.features)
    )
    assert loaded.region_map().keys() == model.region_map().keys()
    with pytest.raises(FileExistsError):
        model.save(tmp_path / "gt")
    model.save(tmp_path / "gt", overwrite=True)
    with pytest.raises(FileNotFoundError, match="model.json"):
        SourceEncodingModel.load(tmp_path / "nothing")


def test_errors(surf, calib, gen):
    pos, hemi = surf
    sl = gen.stream_slices
    with pytest.raises(ValueError, match="metres"):
        make_encoding_model(pos * 1e3, calib, stream_slices=sl)
    with pytest.raises(ValueError, match="n_sources, 3"):
        make_encoding_model(pos[:, :2], calib, stream_slices=sl)
    with pytest.raises(ValueError, match="stream name"):
        make_encoding_model(pos, calib, stream_slices={"audio": slice(0, 4)})
    with pytest.raises(ValueError, match="overlaps"):
        make_encoding_model(
            pos, calib, stream_slices={"word": slice(0, 10), "phoneme": slice(5, 20)}
        )
    with pytest.raises(ValueError, match="stream_lags"):
        make_encoding_model(pos, calib, stream_slices=sl, stream_lags={"word": 0.001})
    with pytest.raises(ValueError, match="'hemi'"):
        make_encoding_model(pos, calib, stream_slices=sl, hemi=np.full(len(pos), 2))
    with pytest.raises(ValueError, match="NaN"):
        bad = calib.copy()
        bad[3, 3] = np.nan
        make_encoding_model(pos, bad, stream_slices=sl)
    m = make_encoding_model(pos[:50], calib[:2000], stream_slices=sl)  # hemi from x sign
    assert set(np.unique(m.hemi)) <= {0, 1}
    with pytest.raises(ValueError, match="852 feature columns"):
        m.transform(calib[:100, :800])
    with pytest.raises(ValueError, match="chunk_size"):
        next(m.iter_transform(calib[:100], 0))
    with pytest.raises(ValueError, match="'stream'"):
        m.weights("audio")

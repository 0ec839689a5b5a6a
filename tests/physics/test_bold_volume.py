"""neurofuse.physics.bold_volume: the BOLD change equals an independent envelope -> HRF -> TR
computation (scipy), percent change as requested, drift below its cut-off (scipy DCT), CNR
realised within sampling error, exact noiseless volumes."""

import math

import numpy as np
import pytest
import scipy.fft
import scipy.signal
import scipy.sparse

from neurofuse.physics.bold_volume import (
    SCALE_PERCENTILE,
    bold_percent_change,
    make_drift,
    measure_bold_volume,
)
from neurofuse.physics.hrf import spm_hrf

SFREQ, TR = 50.0, 1.0


def _problem(seed=0, n_src=40, shape=(6, 5, 4), n_trs=300):
    rng = np.random.default_rng(seed)
    n_vox = int(np.prod(shape))
    dense = rng.random((n_vox, n_src)) * (rng.random((n_vox, n_src)) < 0.15)
    dense[: n_vox // 3] = 0  # a third of the voxels receive no source
    W = scipy.sparse.csr_array(dense)
    s = rng.standard_normal((n_src, int(n_trs * TR * SFREQ)))
    baseline = rng.uniform(500, 1000, shape)
    return W, s, baseline


def _reference_bold(W, s):
    """Envelope (scipy Hilbert) -> causal HRF convolution -> TR means, all in float64."""
    x = W.toarray() @ s
    env = np.abs(scipy.signal.hilbert(x, axis=1))
    hrf = spm_hrf(SFREQ)
    conv = np.array([np.convolve(e, hrf)[: x.shape[1]] for e in env])
    n = int(TR * SFREQ)
    return conv[:, : conv.shape[1] // n * n].reshape(len(x), -1, n).mean(axis=2)


def test_percent_change_is_the_scaled_centred_reference_bold():
    W, s, _ = _problem()
    rows, change, scale = bold_percent_change(s, SFREQ, TR, W, percent_change=2.0)
    np.testing.assert_array_equal(rows, np.flatnonzero(np.diff(W.indptr)))
    ref = _reference_bold(W, s)[rows]
    ref -= ref.mean(axis=1, keepdims=True)
    assert math.isclose(scale, np.percentile(ref.std(axis=1), SCALE_PERCENTILE), rel_tol=1e-6)
    np.testing.assert_allclose(change, 2.0 * ref / scale, rtol=1e-6, atol=1e-9)
    # As requested: the 99th percentile of the voxel s.d. is the percent change.
    assert math.isclose(np.percentile(change.std(axis=1), SCALE_PERCENTILE), 2.0, rel_tol=1e-9)
    # A given scale is used as is.
    _, again, same = bold_percent_change(s, SFREQ, TR, W, percent_change=2.0, scale=2 * scale)
    assert same == 2 * scale
    np.testing.assert_allclose(again, change / 2)


def test_drift_has_no_energy_above_its_cutoff_and_unit_sd():
    rng = np.random.default_rng(3)
    n_trs, tr, cutoff = 400, 2.0, 1 / 128
    drift = make_drift(rng, 2000, n_trs, tr, cutoff=cutoff)
    n_basis = math.floor(2 * n_trs * tr * cutoff)  # 12: frequencies k / (2 N TR) <= cutoff
    assert n_basis == 12
    coef = scipy.fft.dct(drift, type=2, norm="ortho", axis=1)
    assert np.abs(coef[:, n_basis + 1:]).max() < 1e-10 * np.abs(coef).max()
    assert np.abs(coef[:, 0]).max() < 1e-10 * np.abs(coef).max()  # zero mean
    assert abs(drift.std(axis=1).mean() - 1.0) < 0.05
    # The highest frequency kept is at most the cut-off.
    assert n_basis / (2 * n_trs * tr) <= cutoff
    # A run too short for any drift frequency below the cut-off has none.
    assert not make_drift(rng, 3, 30, 1.0, cutoff=cutoff).any()


def test_noiseless_volumes_are_baseline_times_change_exactly():
    W, s, baseline = _problem()
    vol, info = measure_bold_volume(s.astype(np.float32), SFREQ, TR, W, baseline,
                                    percent_change=1.0, cnr=math.inf, drift_percent=0.0)
    assert vol.shape == (*baseline.shape, 300) and vol.dtype == np.float32
    ref = _reference_bold(W, s)
    ref -= ref.mean(axis=1, keepdims=True)
    change = np.zeros_like(ref)
    rows = info["rows"]
    change[rows] = ref[rows] / info["scale"]
    expected = baseline.reshape(-1, 1) * (1 + change / 100)
    np.testing.assert_allclose(vol.reshape(-1, 300), expected, rtol=2e-6)


def test_measured_cnr_matches_the_requested_one():
    W, s, baseline = _problem(n_trs=600)
    cnr = 0.5
    vol, info = measure_bold_volume(s, SFREQ, TR, W, baseline, percent_change=1.0, cnr=cnr,
                                    drift_percent=0.0, rng=np.random.default_rng(5),
                                    n_repeats=2, voxels_per_chunk=7)
    clean = baseline.reshape(-1, 1).copy() * np.ones((1, 600))
    rows = info["rows"]
    clean[rows] *= 1 + info["change"] / 100
    for r in range(2):
        noise = vol[r].reshape(-1, 600) - clean
        measured = clean[rows].std(axis=1) / noise[rows].std(axis=1)
        # The s.d. of a 600-sample s.d. estimate is ~3 %; over 80 voxels the mean is ~0.3 %.
        assert abs(measured.mean() / cnr - 1) < 0.03
        assert np.all(np.abs(measured / cnr - 1) < 0.2)
        floor = noise[np.setdiff1d(np.arange(len(clean)), rows)].std(axis=1)
        np.testing.assert_allclose(floor, info["sigma_noise_floor"], rtol=0.2)
    # Repeats are independent acquisitions.
    assert np.abs(vol[0] - vol[1]).mean() > 0


def test_drift_is_added_in_percent_of_the_baseline():
    W, s, baseline = _problem()
    kw = dict(percent_change=1.0, cnr=math.inf)
    clean, _ = measure_bold_volume(s, SFREQ, TR, W, baseline, drift_percent=0.0, **kw)
    drifted, _ = measure_bold_volume(s, SFREQ, TR, W, baseline, drift_percent=2.0,
                                     drift_cutoff=0.02, rng=np.random.default_rng(1), **kw)
    rel = (drifted.astype(float) - clean) / baseline[..., None] * 100  # in % of baseline
    expected = 2.0 * make_drift(np.random.default_rng(1), baseline.size, 300, TR, cutoff=0.02)
    np.testing.assert_allclose(rel.reshape(-1, 300), expected, atol=1e-3)


def test_input_errors_name_the_parameter():
    W, s, baseline = _problem()
    with pytest.raises(ValueError, match="'rng'"):
        measure_bold_volume(s, SFREQ, TR, W, baseline, cnr=1.0)
    with pytest.raises(ValueError, match="'baseline'"):
        measure_bold_volume(s, SFREQ, TR, W, baseline[:2], cnr=math.inf, drift_percent=0)
    with pytest.raises(ValueError, match="'source_map'"):
        bold_percent_change(s, SFREQ, TR, scipy.sparse.csr_array(W.shape))

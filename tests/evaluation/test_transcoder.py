"""Scoring system D (paper §2, Fig. 4-5): truths rebuilt as the simulator made them, per-kind
source r on hand-built estimates, intervals against scipy, rows, and the result writers."""

import json
import math

import mne
import nibabel as nib
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import stats

from neurofuse.evaluation.transcoder import (
    SOURCE_KINDS,
    evaluate_transcoder,
    fisher_interval,
    score_run,
    summarize_scores,
    true_signals,
    write_source_estimate,
)
from neurofuse.simulation.eeg_fmri import make_config, simulate_dataset

KEYS = {"scenario", "method", "fmri_r", "eeg_r", "source_r", "source_kind"}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("dscore")
    return {name: simulate_dataset(root / name, make_config(name, "tiny", bem="sphere"), 3,
                                   n_test=2)
            for name in ("noise_free", "snr10")}


def test_true_signals_are_the_simulated_ones(datasets):
    ds = datasets["noise_free"]
    truth = true_signals(ds, 1)
    run = ds.read_run(1)
    eeg = np.asarray(run["eeg"], np.float64)
    assert_allclose(truth["eeg"], eeg, rtol=1e-5, atol=1e-6 * np.abs(eeg).max())
    fmri = np.asarray(run["fmri"], np.float64).reshape(-1, ds.config.n_trs)
    fmri = fmri[ds.truth("source_voxels")]
    assert_allclose(truth["fmri"], fmri, rtol=1e-5, atol=1e-6 * np.abs(fmri).max())
    assert_allclose(truth["sources"], ds.sources(1))
    # with noise: the residual is the saved sensor noise
    ds = datasets["snr10"]
    resid = np.asarray(ds.read_run(1)["eeg"], np.float64) - true_signals(ds, 1)["eeg"]
    sd = json.loads((ds.path / "runs" / "run-001" / "run.json").read_text())["eeg_noise_sd"]
    assert_allclose(resid.std(axis=1).mean(), sd, rtol=0.05)


def test_source_r_per_kind_hand_built(datasets):
    ds = datasets["noise_free"]
    truth = true_signals(ds, 1)
    kinds = ds.source_kind()
    assert set(kinds) == set(SOURCE_KINDS)
    X = truth["sources"]
    sign = np.where(kinds == "oscillatory", 1.0, -1.0)[:, None]
    rng = np.random.default_rng(0)
    # oscillatory sources exact (any positive gain), sparse ones sign-flipped
    est = sign * X * rng.uniform(0.5, 2.0, (len(X), 1))
    # fMRI pathway: sparse exact, oscillatory replaced by an independent signal of the same
    # power plus the truth: r = 1 / sqrt(2) up to sampling
    other = rng.standard_normal(X.shape) * X.std(axis=1, keepdims=True)
    est_f = np.where(kinds[:, None] == "sparse", X, X + other)
    scores = score_run(ds, 1, sources={"eeg": est, "fmri": est_f}, fmri=truth["fmri"] * 3.0,
                       eeg=truth["eeg"] - 1.0, truth=truth)
    assert_allclose(scores["fmri_r"], 1.0)
    assert_allclose(scores["eeg_r"], 1.0)
    assert_allclose(scores["source_r"]["eeg"]["oscillatory"], 1.0)
    assert_allclose(scores["source_r"]["eeg"]["sparse"], -1.0)
    assert_allclose(scores["source_r"]["fmri"]["sparse"], 1.0)
    assert_allclose(scores["source_r"]["fmri"]["oscillatory"], 1 / math.sqrt(2), atol=0.03)
    # the ERP truth: X itself correlates less with X * d than with X
    lat = score_run(ds, 1, sources=X, truth=truth)["source_r"]["eeg"]
    erp = score_run(ds, 1, sources=X, truth=truth, source_truth="erp")["source_r"]["eeg"]
    assert lat["sparse"] == pytest.approx(1.0) and erp["sparse"] < 0.9
    # a predicted fMRI on the grid is read at the source voxels
    grid = np.zeros((ds.config.n_trs, np.prod(ds.manifest["grid"]["shape"])))
    grid[:, ds.truth("source_voxels")] = truth["fmri"].T
    grid = grid.T.reshape(*ds.manifest["grid"]["shape"], -1)
    assert_allclose(score_run(ds, 1, fmri=grid, truth=truth)["fmri_r"], 1.0)
    with pytest.raises(ValueError, match="n_sources, n_trs"):
        score_run(ds, 1, fmri=truth["fmri"][:3], truth=truth)


def test_fisher_interval_matches_scipy():
    r = np.array([0.31, 0.45, 0.38, 0.52, 0.29])
    z = np.arctanh(r)
    lo, hi = stats.t.interval(0.95, len(z) - 1, loc=z.mean(), scale=stats.sem(z))
    assert_allclose(fisher_interval(r), (np.tanh(lo), np.tanh(hi)))
    assert fisher_interval([0.4]) == (None, None)
    assert fisher_interval([0.4, float("nan"), None]) == (None, None)


def test_summarize_rows():
    scores = [{"fmri_r": 0.5, "eeg_r": None, "source_r": {"eeg": {"oscillatory": 0.2,
                                                                   "sparse": 0.1}}},
              {"fmri_r": 0.7, "eeg_r": None, "source_r": {"eeg": {"oscillatory": 0.4,
                                                                   "sparse": 0.3}}}]
    rows = summarize_scores(scores, scenario="snr10", method="transcoder")
    assert [r["source_kind"] for r in rows] == ["oscillatory", "sparse"]
    assert all(KEYS <= set(r) for r in rows)
    assert rows[0]["fmri_r"] == pytest.approx(0.6) and rows[0]["eeg_r"] is None
    assert rows[1]["source_r"] == pytest.approx(0.2)
    assert rows[0]["fmri_r_ci"] == list(fisher_interval([0.5, 0.7]))
    none = summarize_scores([{"fmri_r": 0.5, "eeg_r": 0.1, "source_r": {}}], scenario="s",
                            method="m")
    assert len(none) == 1 and none[0]["source_r"] is None and none[0]["fmri_r_ci"] == [None,
                                                                                      None]


def test_evaluate_transcoder_rows(datasets):
    ds = datasets["snr10"]

    def oracle(ds_, run):  # a perfect transcoder: the truth itself
        t = true_signals(ds_, run)
        return {"fmri": t["fmri"], "eeg": t["eeg"],
                "sources": {"eeg": t["sources"], "fmri": t["sources"]}}

    rows = evaluate_transcoder(ds, transcoder=oracle, methods=("MNE", "physics"))
    assert {r["method"] for r in rows} == {"transcoder", "MNE", "physics"}
    assert all(KEYS <= set(r) and r["scenario"] == "snr10" and r["n_runs"] == 2 for r in rows)
    top = [r for r in rows if r["method"] == "transcoder"]
    assert len(top) == 4  # 2 pathways x 2 kinds
    for r in top:
        assert r["fmri_r"] == pytest.approx(1.0) and r["source_r"] == pytest.approx(1.0)
    mne_rows = [r for r in rows if r["method"] == "MNE"]
    assert {(r["source_from"], r["source_kind"]) for r in mne_rows} == {
        ("eeg", "oscillatory"), ("eeg", "sparse")}
    assert all(r["fmri_r"] is None and -1 < r["source_r"] < 1 for r in mne_rows)
    phys = [r for r in rows if r["method"] == "physics"]
    assert all(-1 < r["fmri_r"] < 1 and -1 < r["eeg_r"] < 1 for r in phys)
    json.dumps(rows)  # serialisable
    # against the observed run: r below 1 by the noise
    obs = evaluate_transcoder(ds, transcoder=oracle, methods=(), against="observed")
    assert all(0.9 < r["fmri_r"] < 1 and 0.9 < r["eeg_r"] < 1 for r in obs)


def test_writers_round_trip(datasets, tmp_path):
    ds = datasets["noise_free"]
    est = np.random.default_rng(3).standard_normal((ds.manifest["n_sources"], 30))
    stc = write_source_estimate(est, ds, tmp_path / "est", tmin=0.5)
    assert isinstance(stc, mne.VolSourceEstimate)
    back = mne.read_source_estimate(tmp_path / "est-vl.stc")
    assert_array_equal(back.vertices[0], np.arange(len(est)))
    assert_allclose(back.data, est, rtol=1e-6)
    assert back.tmin == pytest.approx(0.5) and back.tstep == pytest.approx(1 / ds.config.sfreq)
    write_source_estimate(est, ds, tmp_path / "est.nii.gz", kind="nifti")
    img = nib.load(tmp_path / "est.nii.gz")
    grid = ds.manifest["grid"]
    assert img.shape == (*grid["shape"], 30)
    assert_allclose(img.affine, np.asarray(grid["affine"]))
    assert img.header.get_zooms()[3] == pytest.approx(1 / ds.config.sfreq)
    data = np.asarray(img.dataobj).reshape(-1, 30)
    assert_allclose(data[ds.truth("source_voxels")], est, rtol=1e-6)
    others = np.setdiff1d(np.arange(len(data)), ds.truth("source_voxels"))
    assert not np.any(data[others])

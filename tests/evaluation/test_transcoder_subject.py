"""Scoring the subject-level transcoder on held-out runs: applied to whole runs in blocks
exactly as in one pass, invariant to the recordings' scale, scored as scipy's Pearson r
against the true sources, through ``evaluate_transcoder_folder`` and the CLI."""

import json
import shutil

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr

from neurofuse.cli import main
from neurofuse.evaluation.transcoder import true_signals
from neurofuse.evaluation.transcoder_pipeline import _data_for, evaluate_transcoder_folder
from neurofuse.evaluation.transcoder_subject import SUBJECT_METHOD, subject_predictor
from neurofuse.simulation.eeg_fmri import make_config, simulate_dataset
from neurofuse.systems.transcoder import fit, fit_subject, load_model, subject_sources


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Tiny data set (2 train, 1 test run), a 1-epoch group model and subject model."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("dsub")
    ds = simulate_dataset(root / "d", make_config("noise_free", "tiny", bem="sphere"), 3,
                          n_test=1)
    fit(ds, root / "group", config={"preset": "tiny", "train": {"epochs": 1}})
    fit_subject(ds, root / "group" / "model", root / "subject",
                config={"preset": "tiny", "train": {"epochs": 1}})
    return ds, root


def test_subject_sources_blocks_and_scale(fitted):
    ds, root = fitted
    model, meta = load_model(root / "subject" / "model", return_meta=True)
    assert meta["data"]["group_model"] == str((root / "group" / "model").resolve())
    gmodel, gmeta = load_model(root / "group" / "model", return_meta=True)
    data = _data_for(gmodel, gmeta, ds)
    raw = ds.read_run("run-002")
    e1, f1 = subject_sources(model, gmodel, data, raw["eeg"], raw["fmri"], block=10 ** 6)
    assert e1.shape == f1.shape == (*ds.config.grid_shape, ds.config.n_times)
    # in blocks (>= 3 of time steps and of voxels) as in one pass, whatever the recordings'
    # units (scaled as in training)
    block = min(int(np.prod(ds.config.grid_shape)), ds.config.n_times) // 3
    e2, f2 = subject_sources(model, gmodel, data, 1e3 * raw["eeg"], 7.0 * raw["fmri"],
                             block=block)
    np.testing.assert_allclose(e2, e1, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(f2, f1, rtol=1e-3, atol=1e-4)
    assert np.ptp(e1) > 0 and np.ptp(f1) > 0


def test_evaluate_a_subject_model(fitted, tmp_path):
    ds, root = fitted
    res = evaluate_transcoder_folder(ds, tmp_path / "ev", model=root / "subject" / "model",
                                     methods=(), source_truth="latent")
    assert res["level"] == "subject" and res["learned"] is None
    assert (tmp_path / "ev" / "report.html").is_file()
    rows = [r for r in res["rows"] if r["method"] == SUBJECT_METHOD]
    assert {(r["source_from"], r["source_kind"]) for r in rows} == {
        (p, k) for p in ("eeg", "fmri") for k in ("oscillatory", "sparse")}
    assert all(r["fmri_r"] is None and r["eeg_r"] is None for r in rows)
    assert {r["method"] for r in res["rows"]} == {SUBJECT_METHOD}
    # the scores are scipy's Pearson r of the predicted sources, mean per source kind
    model, meta = load_model(root / "subject" / "model", return_meta=True)
    pred = subject_predictor(model, meta, ds)(ds, "run-002")["sources"]
    truth, kinds = true_signals(ds, "run-002")["sources"], ds.source_kind()
    for r in rows:
        est = pred[r["source_from"]]
        ref = np.mean([pearsonr(est[i], truth[i])[0] for i in np.flatnonzero(
            kinds == r["source_kind"]) if np.ptp(est[i]) > 0 and np.ptp(truth[i]) > 0])
        assert r["source_r"] == pytest.approx(ref, abs=1e-5)


def test_cli_evaluate_subject_model_and_group(fitted, tmp_path, capsys):
    ds, root = fitted
    copy = tmp_path / "subject-model"
    shutil.copytree(root / "subject" / "model", copy)
    meta = json.loads((copy / "model.json").read_text())
    del meta["data"]["group_model"]  # a folder from before the group was recorded
    (copy / "model.json").write_text(json.dumps(meta))
    args = ["transcoder", "evaluate", "--data", str(ds.path), "--model", str(copy),
            "--methods", "physics", "--source-truth", "latent", "-q"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 1
    assert "'group' is needed" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "b"), "--group",
                 str(root / "group" / "model")]) == 0
    assert SUBJECT_METHOD in capsys.readouterr().out
    res = json.loads((tmp_path / "b" / "results.json").read_text())
    assert res["group_model"] == str(root / "group" / "model")
    assert {r["method"] for r in res["rows"]} == {SUBJECT_METHOD, "physics"}  # side by side

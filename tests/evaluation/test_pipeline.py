"""The demo pipeline end to end on the tiny study: results, report, resume; and its parts; and
scoring a model fitted elsewhere like a freshly trained one."""

import json
import math
import re
import shutil

import numpy as np
import pytest
import scipy.sparse
import torch

from neurofuse.evaluation.demo import run_demo, summary_line
from neurofuse.evaluation.pipeline import SCORED_MODEL, evaluate_study, pick_timecourse_sources
from neurofuse.evaluation.prediction import heldout_r
from neurofuse.evaluation.recovery import _Accumulator, recovery_rows
from neurofuse.viz import REPORT_SECTIONS

FIT = {"preset": "tiny", "train": {"max_epochs": 2, "meg_first_epochs": 1}}
ECOG = {"n_subjects": 1, "story_minutes": 1.0, "cnr": 1.0,
        "layout": ({"prefix": "G", "kind": "grid", "shape": (3, 4),
                    "target_mm": (58.0, -22.0, 6.0)},),
        "validation": {"fractions": (0.0, 0.5, 1.0), "delays_s": (0.0, 0.1, 0.2),
                       "n_permutations": 200, "n_trials": 200, "segment_seconds": 15.0}}
METHODS = {"neurofuse", "fMNE", "MNE", "dSPM", "sLORETA", "eLORETA", "neurofuse+fMNE",
           "neurofuse+MNE"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    res = run_demo(out, study="tiny", fit_config=FIT, ecog=ECOG)
    return out, res


def test_results_json(demo):
    out, res = demo
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"source_recovery", "prediction", "ecog"}
    zs = results["ecog"]["zero_shot"]
    assert zs["n_electrodes"] > 0 and 0 <= zs["n_significant"] <= zs["n_electrodes"]
    assert {r["method"] for r in results["ecog"]["trained"]} == {"neurofuse", "ridge"}
    rec = results["source_recovery"]
    assert {r["method"] for r in rec} == METHODS
    for r in rec:
        assert set(r) >= {"method", "meg_cnr", "fmri_cnr", "temporal_r", "spatial_r"}
        assert -1 <= r["temporal_r"] <= 1 and -1 <= r["spatial_r"] <= 1
        assert r["meg_cnr"] == 1.0 and r["fmri_cnr"] == 0.3  # the tiny study's CNRs
    pred = results["prediction"]
    # one row per subject x modality x method: S01 MEG, S02 fMRI, neurofuse and ridge each
    assert sorted((r["subject"], r["modality"], r["method"]) for r in pred) == [
        ("S01", "meg", "neurofuse"), ("S01", "meg", "ridge"),
        ("S02", "fmri", "neurofuse"), ("S02", "fmri", "ridge")]
    for r in pred:
        assert set(r) >= {"subject", "modality", "method", "r_mean", "r_sd"}
        assert math.isfinite(r["r_mean"]) and r["r_sd"] >= 0
    # the MEG ridge ceiling learns the tiny study well (its CNR is 1)
    ridge_meg = next(r for r in pred if r["modality"] == "meg" and r["method"] == "ridge")
    assert ridge_meg["r_mean"] > 0.3
    assert res["summary"] == summary_line(results)


def test_report_has_every_section(demo):
    out, _ = demo
    text = (out / "report.html").read_text()
    for section in REPORT_SECTIONS:
        if section == "Synthesized slices":  # system C's (tests/evaluation/test_meg2fmri.py)
            continue
        assert re.search(rf">\s*{re.escape(section)}\s*<", text), section
    # maps for ours and fMNE, topomaps, time courses and training curves are figures
    for title in ("Temporal r of source recovery, neurofuse", "Temporal r of source recovery, fMNE",
                  "MEG prediction r, S01, neurofuse", "fMRI prediction r, S02, neurofuse",
                  "Ground truth vs estimates", "Joint model training", "Zero-shot r per electrode",
                  "Trained prediction vs training data"):
        assert title in text, title
    assert text.count("data:image/png;base64") >= 8


def test_demo_resumes_without_recomputing(demo):
    out, res = demo
    stamps = {p: p.stat().st_mtime_ns for p in (out / "fit" / "done.json", out / "recovery.npz",
                                                out / "ridge" / "scores.npz",
                                                out / "ecog" / "results.json",
                                                out / "ecog-data" / "neurofuse-dataset.json")}
    again = run_demo(out, study="tiny", fit_config=FIT, ecog=ECOG)
    assert again["source_recovery"] == res["source_recovery"]
    assert again["prediction"] == res["prediction"]
    assert again["ecog"] == res["ecog"]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_accumulator_against_numpy():
    rng = np.random.default_rng(0)
    truth = rng.standard_normal((20, 300))
    est = truth + rng.standard_normal((20, 300))
    acc = _Accumulator()
    acc.add("a", truth, truth)
    t_map, t, s = acc.result("a")
    np.testing.assert_allclose(t_map, 1.0)
    assert t == pytest.approx(1.0) and s == pytest.approx(1.0)
    acc.add("b", est, truth)
    flat = est.copy()
    flat[3] = 1.0  # a constant estimate: NaN r, skipped in the mean
    acc.add("b", flat, truth)
    t_map, t, s = acc.result("b")
    ref = np.array([np.corrcoef(est[i], truth[i])[0, 1] for i in range(20)])
    ref2 = np.array([np.corrcoef(flat[i], truth[i])[0, 1] if i != 3 else np.nan
                     for i in range(20)])
    expect = np.nanmean([ref, ref2], axis=0)
    np.testing.assert_allclose(t_map, expect, rtol=1e-10)
    sp = lambda e: np.mean([np.corrcoef(e[:, k], truth[:, k])[0, 1] for k in range(300)])
    assert s == pytest.approx((sp(est) + sp(flat)) / 2, rel=1e-10)


def test_recovery_rows_write_inf_as_string():
    rows = recovery_rows({"neurofuse": {"temporal_r": 0.5, "spatial_r": 0.25}},
                         meg_cnr=math.inf, fmri_cnr=0.3)
    assert rows == [{"method": "neurofuse", "meg_cnr": "inf", "fmri_cnr": 0.3,
                     "temporal_r": 0.5, "spatial_r": 0.25}]
    json.dumps(rows, allow_nan=False)


def test_heldout_r_concatenates_stories():
    rng = np.random.default_rng(1)
    preds = [rng.standard_normal((4, 50)), rng.standard_normal((4, 31))]
    recs = [rng.standard_normal((4, 50)), rng.standard_normal((4, 30))]  # BOLD-style: 1 shorter
    r = heldout_r(preds, recs)
    p = np.concatenate([preds[0], preds[1][:, :30]], 1)
    y = np.concatenate(recs, 1)
    np.testing.assert_allclose(r, [np.corrcoef(p[i], y[i])[0, 1] for i in range(4)], rtol=1e-10)
    with pytest.raises(ValueError, match="same length"):
        heldout_r(preds, recs[:1])


def test_pick_timecourse_sources():
    var = np.ones(2000)
    var[[10, 1500, 30, 700]] = [9, 8, 7, 6]
    truth = np.random.default_rng(0).standard_normal((2000, 100)) * np.sqrt(var)[:, None]
    picked = pick_timecourse_sources(truth, n=3)
    assert picked[0] < 1000 <= picked[1]  # one per hemisphere first
    assert len(set(picked)) == 3
    assert all(abs(int(a) - int(b)) >= 500 for i, a in enumerate(picked) for b in picked[i + 1:])
    # hemispheres of unequal size: the first pick is the best of the first n_lh rows
    picked = pick_timecourse_sources(truth, n=2, n_lh=5)
    assert picked[0] < 5 and picked[1] == 10


# ------------------------------------------------------------- scoring a model fitted elsewhere


def _same_rows(rows, expected):
    assert len(rows) == len(expected)
    for row, exp in zip(rows, expected):
        assert set(row) == set(exp)
        for k, v in exp.items():
            assert row[k] == (pytest.approx(v, rel=1e-6, abs=1e-9) if isinstance(v, float)
                              else v), k


def test_evaluate_a_fitted_model_like_a_fresh_one(demo, tmp_path):
    """The demo's model, fitted in its own folder, scored from a new folder: the pipeline
    scores it exactly as when it trained it (the demo's results.json); nothing is trained."""
    demo_out, _ = demo
    expected = json.loads((demo_out / "results.json").read_text())
    out = tmp_path / "scored"
    # the ridge ceilings do not depend on the model: reuse them; the joint model's scores,
    # source recovery included, are computed afresh (no inverses: they take minutes)
    shutil.copytree(demo_out / "ridge", out / "ridge")
    ev = evaluate_study(demo_out / "data", out, model=demo_out / "fit", methods=())
    _same_rows(ev.prediction, expected["prediction"])
    _same_rows(ev.source_recovery, [r for r in expected["source_recovery"]
                                    if r["method"] == "neurofuse"])
    assert not (out / "fit").exists()  # nothing was trained
    assert ev.model_dir == (demo_out / "fit" / "model").resolve()
    assert ev.history == demo_out / "fit" / "history.csv"
    scored = json.loads((out / SCORED_MODEL).read_text())
    assert scored["source"] == str(ev.model_dir)
    assert scored["sha256"] == json.loads((demo_out / SCORED_MODEL).read_text())["sha256"]
    # this folder now holds that model's scores: training another one there is refused
    # before any training
    with pytest.raises(ValueError, match="would mix the scores of two models.*--model"):
        evaluate_study(demo_out / "data", out, fit_config=FIT, methods=())
    assert not (out / "fit").exists()


def _demo_model(demo_out):
    from neurofuse.systems.joint.model import JointModel

    return JointModel.load(demo_out / "fit" / "model")


def test_evaluate_refuses_to_mix_models(demo):
    """The demo's folder holds the scores of the model trained there: another model's are
    refused (and nothing is written); the same model, given by its folder, resumes."""
    demo_out, _ = demo
    record = (demo_out / SCORED_MODEL).read_text()
    assert json.loads(record)["source"] == "fit"
    other = _demo_model(demo_out)
    with torch.no_grad():
        other.encoder.source_layer.bias.add_(1e-3)  # same shapes, other weights
    with pytest.raises(ValueError, match=r"joint model trained there .*model='.*fit'"):
        evaluate_study(demo_out / "data", demo_out, model=other)
    assert (demo_out / SCORED_MODEL).read_text() == record
    with pytest.raises(ValueError, match="either 'model'.*or 'fit_config'"):
        evaluate_study(demo_out / "data", demo_out, model=other, fit_config=FIT)
    # the model trained there, given by its folder: the same model, its cached scores reused
    stamp = (demo_out / "recovery.npz").stat().st_mtime_ns
    ev = evaluate_study(demo_out / "data", demo_out, model=demo_out / "fit" / "model")
    assert (demo_out / "recovery.npz").stat().st_mtime_ns == stamp
    assert ev.results() == {k: v for k, v in json.loads(
        (demo_out / "results.json").read_text()).items() if k != "ecog"}
    assert (demo_out / SCORED_MODEL).read_text() == record


@pytest.mark.parametrize("change, match", [
    ("d_stim", r"feature width \(d_stim\) is 93 in the model but 92"),
    ("meg_head", r"MEG subject 'S01' of the dataset has no MEG head"),
    ("fmri_sources", r"'S02''s fMRI source count is \d+ in the model but \d+"),
    ("sfreq", r"sampling rate \(Hz\) is 100.0 in the model but 50"),
], ids=["d_stim", "meg_head", "fmri_sources", "sfreq"])
def test_evaluate_refuses_a_model_that_does_not_fit(demo, tmp_path, change, match):
    from neurofuse.systems.joint.encoder import StimulusEncoder
    from neurofuse.systems.joint.heads import FMRIHead

    demo_out, _ = demo
    model = _demo_model(demo_out)
    if change == "d_stim":
        cfg = model.encoder.config.to_dict()
        assert cfg["d_stim"] == 92  # the tiny study's features: 32 + 44 + 16
        model.encoder = StimulusEncoder(**{**cfg, "d_stim": 93})
    elif change == "meg_head":
        del model.meg_heads["S01"]
    elif change == "fmri_sources":
        head = model.fmri_heads["S02"]
        model.fmri_heads["S02"] = FMRIHead(scipy.sparse.csr_array(
            (head.n_sources + 1, model.n_sources)), sfreq=model.sfreq, tr=model.tr)
    else:
        model.sfreq = 100.0
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=f"passed as 'model' does not fit.*{match}.*"
                                         "neurofuse joint fit"):
        evaluate_study(demo_out / "data", out, model=model)
    assert not out.exists()  # refused before any work
    if change == "d_stim":  # a model folder (as --model passes it) is checked the same way
        model.save(tmp_path / "bad")
        with pytest.raises(ValueError, match=match):
            evaluate_study(demo_out / "data", out, model=tmp_path / "bad")

"""System B end to end on a tiny world: pretraining, fit, baselines, scores, report, CLI."""

import json

import mne
import numpy as np
import pytest

from neurofuse.cli import main
from neurofuse.evaluation.eeg2meg_pipeline import evaluate_eeg2meg, summary_line
from neurofuse.simulation.eeg_meg import EEGMEGWorldConfig, simulate_eeg_meg_world

PRETRAIN = {"pretrain_world": {"preset": "tiny", "n_subjects": 0, "n_eeg_only_subjects": 1,
                               "anatomy": "template", "save_sources": False},
            "pretrain": {"encoder_config": "tiny", "config": {"epochs": 1, "batch_size": 64}}}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("b") / "world"
    return simulate_eeg_meg_world(out, EEGMEGWorldConfig.from_preset(
        "tiny", n_subjects=4, anatomy="template", n_trials=6))


@pytest.mark.slow
def test_evaluate_end_to_end(world, tmp_path):
    out = tmp_path / "eval"
    res = evaluate_eeg2meg(world, out, fit_config={"preset": "tiny", "train": {"epochs": 1}},
                           methods=("generator", "physics", "ridge"), n_runs=2, n_splits=3,
                           pretrain=PRETRAIN)
    # the benchmark's schema, every method and band
    bands = {"delta", "theta", "alpha", "beta", "gamma"}
    for m in ("generator", "physics", "ridge"):
        rows = [r for r in res["signal"] if r["method"] == m]
        assert {r["band"] for r in rows} == bands
        assert all(set(r) >= {"method", "band", "pearson", "rmse", "nmi", "ssim"} for r in rows)
    methods = {r["method"] for r in res["decoding"]}
    assert methods == {"eeg_only", "real_meg", "generator", "physics", "ridge"}
    assert {r["task"] for r in res["decoding"]} == {"somatomotor", "faces"}
    for r in res["decoding"] + res["decoding_by_subject"]:
        assert r["chance"] == pytest.approx(0.5 if r["task"] == "somatomotor" else 1 / 3)
        assert 0 <= r["p_value"] <= 1 and r["n_correct"] <= r["n_trials"]
    assert {r["task"] for r in res["cross_dataset"]} == {"motor_imagery"}
    assert {r["method"] for r in res["cross_dataset"]} == {"eeg_only", "generator"}
    assert {r["method"] for r in res["source_imaging"]} >= {"eeg_only", "real_meg", "generator"}
    # the held-out subject never entered the fit; the pretraining EEG is another world
    model = json.loads((out / "fits" / "generator" / "model" / "model.json").read_text())
    assert model["data"]["subjects"]["test"] == ["sub-04"]
    assert "sub-04" not in model["data"]["subjects"]["train"] + model["data"]["subjects"]["val"]
    assert model["encoder"]["origin"] == "pretrained"
    assert (out / "report.html").stat().st_size > 10_000
    # the paper's Table I and F1 beside ours, in the results and the report
    gen = next(r for r in res["paper"] if r["method"] == "generator")
    mine = next(r for r in res["decoding"] if (r["method"], r["task"]) == ("generator", "faces"))
    assert (gen["paper_accuracy_somatomotor"], gen["f1_faces"]) == (0.7086, mine["f1"])
    assert "Beside the paper" in (out / "report.html").read_text()
    assert "generator r" in summary_line(res)
    # a rerun reuses every finished step
    again = evaluate_eeg2meg(world, out, fit_config={"preset": "tiny", "train": {"epochs": 1}},
                             methods=("generator", "physics", "ridge"), n_runs=2, n_splits=3,
                             pretrain=PRETRAIN)
    assert again["signal"] == res["signal"]
    # but not under other settings: refused before any work, naming what differs
    with pytest.raises(ValueError, match=r"'generator' generator .*differing: train\.lr\)"):
        evaluate_eeg2meg(world, out, fit_config={"preset": "tiny",
                                                 "train": {"epochs": 1, "lr": 0.5}},
                         methods=("generator",), pretrain=PRETRAIN)
    with pytest.raises(ValueError, match=r"pretrained encoder .*differing: train\.lr\)"):
        evaluate_eeg2meg(world, out, methods=("generator",), pretrain={
            **PRETRAIN, "pretrain": {**PRETRAIN["pretrain"],
                                     "config": {"epochs": 1, "batch_size": 64, "lr": 0.5}}})

    # the CLI writes MEG epochs with the real 306-channel info
    fif = tmp_path / "syn-epo.fif"
    assert main(["eeg2meg", "synthesize", str(out / "fits" / "generator" / "model"),
                 "--eeg", str(world), "--subject", "sub-04", "--task", "faces",
                 "--out", str(fif)]) in (0, None)
    syn = mne.read_epochs(fif, verbose="error")
    assert len(mne.pick_types(syn.info, meg=True)) == 306 and np.isfinite(syn.get_data()).all()


def test_decoding_rows_pool_subjects_with_mean_sd_and_a_binomial_test():
    from scipy.stats import binomtest

    from neurofuse.evaluation.eeg2meg.decoding import compare_decoding
    from neurofuse.evaluation.eeg2meg_pipeline import _decoding_rows, _mean_rows

    rng = np.random.default_rng(0)
    y = np.arange(30) % 2
    eeg, meg = rng.standard_normal((30, 4, 100)), rng.standard_normal((30, 6, 100))
    eeg[y == 1, :2, 40:60] += 1.0
    rows = _decoding_rows(eeg, y, 250.0, {"ridge": meg}, meg, 2, 5)
    assert [r["method"] for r in rows] == ["eeg_only", "real_meg", "ridge"]
    ref = compare_decoding(eeg, y, 250.0, synthetic_meg=meg, real_meg=meg, n_runs=2,
                           n_splits=5)  # the same folds
    assert rows[0] == {"method": "eeg_only", **ref["eeg"].summary()}
    assert rows[2] == {"method": "ridge", **ref["eeg+synthetic_meg"].summary()}
    # two subjects: mean and s.d. (ddof 1) across them, pooled binomial of their trials
    by_sub = [{**r, "task": "somatomotor"} for r in rows[:1]] + [
        {**rows[0], "task": "somatomotor", "accuracy": 0.6, "n_correct": 18}]
    (merged,) = _mean_rows(by_sub)
    accs = [by_sub[0]["accuracy"], 0.6]
    assert merged["accuracy"] == pytest.approx(np.mean(accs))
    assert merged["accuracy_sd"] == pytest.approx(np.std(accs, ddof=1))
    assert merged["n_subjects"] == 2 and merged["n_trials"] == 60
    k = by_sub[0]["n_correct"] + 18
    assert merged["n_correct"] == k
    assert merged["p_value"] == pytest.approx(binomtest(k, 60, 0.5,
                                                        alternative="greater").pvalue)


def test_cli_errors(world, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["eeg2meg", "fit", "tiny", "--data", str(world), "--out", str(tmp_path / "f")])
    rc = main(["eeg2meg", "fit", "tiny", "--data", str(world), "--encoder", "tiny",
               "--out", str(tmp_path / "f")])
    assert rc not in (0, None)
    assert "pretrained encoder" in capsys.readouterr().err


def test_a_store_without_forwards_or_true_sources_is_refused_before_any_work(tmp_path, capsys):
    """Real recordings have no forward and no true sources: the physics transfer and source
    imaging are refused up front, naming what is missing and the way out."""
    from test_eeg2meg_data import _store

    store, _ = _store(tmp_path)
    out = tmp_path / "eval"
    with pytest.raises(ValueError, match=r"physics transfer needs: eeg forward of sub-03, meg "
                                         r"forward of sub-03, eeg forward of sub-04.*"
                                         r"--no-source-imaging"):
        evaluate_eeg2meg(store, out, fit_config={"preset": "tiny"}, methods=("physics",))
    with pytest.raises(ValueError, match=r"source imaging needs: .*forward of sub-04, true "
                                         r"sources of sub-04/faces"):
        evaluate_eeg2meg(store, out, fit_config={"preset": "tiny"}, methods=("ridge",))
    assert not (out / "fits").exists() and not (out / "results.json").exists()
    rc = main(["eeg2meg", "evaluate", "--data", str(store), "--out", str(out), "--fit", "tiny",
               "--methods", "physics", "--no-source-imaging", "-q"])
    err = capsys.readouterr().err
    assert rc not in (0, None) and "physics transfer" in err and "source imaging" not in err

"""The command-line interface: each command on small inputs, exit codes and messages."""

import json

import pytest

from neurofuse.cli import main


def test_anatomy_json(capsys):
    assert main(["anatomy", "--json", "-q"]) == 0
    desc = json.loads(capsys.readouterr().out)
    assert desc["n_sources"] == 8196 and desc["n_sources_per_hemi"] == [4098, 4098]
    assert desc["n_meg_channels"] == 306 and desc["n_magnetometers"] == 102
    assert desc["n_eeg_channels"] > 0
    assert desc["leadfield_shape"] == [306, 8196]


def test_simulate_then_info(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["simulate", "study", "tiny", "--out", str(out), "--meg-cnr", "inf", "-q"]) == 0
    text = capsys.readouterr().out
    assert "S01" in text and "meg CNR inf" in text
    assert main(["data", "info", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary["subjects"]) == {"S01", "S02"}
    assert summary["subjects"]["S01"]["cnr"]["meg"] == "inf"
    assert summary["subjects"]["S02"]["cnr"]["fmri"] == 0.3
    assert {s["split"] for s in summary["stories"].values()} == {"train", "val", "test"}
    # A second run into the same folder is refused with a clear message, not overwritten.
    assert main(["simulate", "study", "tiny", "--out", str(out), "-q"]) == 1
    assert "--overwrite" in capsys.readouterr().err


def test_bad_arguments(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"n_trian": 3}')
    assert main(["simulate", "study", str(bad), "--out", str(tmp_path / "x"), "-q"]) == 1
    assert "did you mean 'n_train'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["simulate", "study", "tiny", "--out", str(tmp_path / "y"), "--meg-cnr", "-1"])
    assert main(["data", "info", str(tmp_path)]) == 1
    assert "dataset" in capsys.readouterr().err.lower()


def test_fit_predict_resume(tiny_study, tmp_path, capsys):
    import mne
    import numpy as np

    from neurofuse.data.store import read_dataset

    run = tmp_path / "run"
    assert main(["joint", "fit", "tiny", "--data", str(tiny_study), "--out", str(run),
                 "--epochs", "2", "-q"]) == 0
    assert "Trained 2 epochs" in capsys.readouterr().out
    assert (run / "model" / "model.safetensors").is_file() and (run / "history.csv").is_file()
    # A second fit into the same folder must not silently restart it.
    assert main(["joint", "fit", "tiny", "--data", str(tiny_study), "--out", str(run), "-q"]) == 1
    assert "--resume" in capsys.readouterr().err
    assert main(["joint", "fit", "tiny", "--data", str(tiny_study), "--out", str(run),
                 "--epochs", "3", "--resume", "-q"]) == 0
    assert "Trained 3 epochs" in capsys.readouterr().out
    # Resuming with another learning rate is refused, naming it, unless told to override.
    changed = tmp_path / "fit.json"
    changed.write_text('{"preset": "tiny", "train": {"lr": 0.123}}')
    assert main(["joint", "fit", str(changed), "--data", str(tiny_study), "--out", str(run),
                 "--epochs", "4", "--resume", "-q"]) == 1
    assert "now" in (err := capsys.readouterr().err) and "lr:" in err and "0.123" in err
    assert main(["joint", "fit", str(changed), "--data", str(tiny_study), "--out", str(run),
                 "--epochs", "4", "--resume", "override", "-q"]) == 0
    assert "Trained 4 epochs" in capsys.readouterr().out

    ds = read_dataset(tiny_study)
    stim = tmp_path / "stim.npy"
    np.save(stim, np.array(ds.features("story-04")))
    out = tmp_path / "pred"
    assert main(["joint", "predict", str(run / "model"), "--stimulus", str(stim), "--out", str(out),
                 "--sfreq", "50", "-q"]) == 0
    stc = mne.read_source_estimate(out / "sources")
    assert stc.data.shape == (8196, ds.n_times("story-04"))
    raw = mne.io.read_raw_fif(out / "S01_pred-raw.fif", verbose="error")
    assert raw.ch_names == ds.info("S01")["ch_names"]
    assert np.load(out / "S02_bold.npy").shape == (8196, ds.n_times("story-04") // 100)
    # wrong sampling rate is refused with the model's rate in the message
    assert main(["joint", "predict", str(run / "model"), "--stimulus", str(stim), "--out",
                 str(tmp_path / "p2"), "--sfreq", "100", "-q"]) == 1
    assert "expected 50 Hz" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["joint", "fit", "tiny", "--data", str(tiny_study)])  # --out is required


def test_fit_config_errors(tiny_study, tmp_path, capsys):
    cfg = tmp_path / "fit.toml"
    cfg.write_text('preset = "tiny"\n[train]\nlearning_rate = 0.1\n')
    assert main(["joint", "fit", str(cfg), "--data", str(tiny_study), "--out",
                 str(tmp_path / "r"), "-q"]) == 1
    assert "Unknown training setting" in capsys.readouterr().err
    cfg.write_text('[encoder]\nd_modle = 8\n')
    assert main(["joint", "fit", str(cfg), "--data", str(tiny_study), "--out",
                 str(tmp_path / "r"), "-q"]) == 1
    assert "d_modle" in capsys.readouterr().err


def test_simulate_ecog_and_ecog_commands(tiny_study, tmp_path, capsys):
    """`neurofuse simulate ecog`, then `neurofuse joint ecog` with the study's true encoder."""
    import json

    from neurofuse.cli import main

    data = tmp_path / "ecog-data"
    assert main(["simulate", "ecog", "--study", str(tiny_study), "--out", str(data),
                 "--n-subjects", "1", "--story-minutes", "1", "-q"]) == 0
    out = tmp_path / "ecog"
    rc = main(["joint", "ecog", "--model", str(tiny_study / "ground_truth" / "encoding"),
               "--data", str(data), "--out", str(out), "--segment-seconds", "15",
               "--n-permutations", "200", "--n-trials", "200", "-q"])
    assert rc == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    text = capsys.readouterr().out
    zs = results["zero_shot"]
    assert f"{zs['n_significant']} of {zs['n_electrodes']} electrodes" in text
    # the ground truth predicts its own world
    assert zs["n_significant"] > zs["n_electrodes"] // 2
    assert main(["joint", "ecog", "--model", str(tiny_study / "ground_truth" / "encoding"),
                 "--data", str(data), "--out", str(out), "-q"]) == 1  # exists: refused
    assert "overwrite" in capsys.readouterr().err.lower()


@pytest.mark.slow
def test_joint_evaluate(tiny_study, tmp_path, capsys):
    """`neurofuse joint evaluate`: ridge, the joint model, an inverse, scores and report."""
    fit = tmp_path / "fit.json"
    fit.write_text(json.dumps({"preset": "tiny", "train": {"max_epochs": 1,
                                                           "meg_first_epochs": 1}}))
    out = tmp_path / "eval"
    rc = main(["joint", "evaluate", "--data", str(tiny_study), "--out", str(out), "--fit",
               str(fit), "--methods", "MNE", "--no-fmri-denoise", "-q"])
    assert rc == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in results["source_recovery"]] == ["neurofuse", "MNE",
                                                                 "neurofuse+MNE"]
    assert {(r["subject"], r["modality"], r["method"]) for r in results["prediction"]} == {
        (s, m, method) for s, m in (("S01", "meg"), ("S02", "fmri"))
        for method in ("neurofuse", "ridge")}
    done = json.loads((out / "fit" / "done.json").read_text())
    assert done["denoised_fmri"] == "none" and done["train"]["max_epochs"] == 1
    assert (out / "report.html").stat().st_size > 10_000
    assert "neurofuse temporal r" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # only the library's inverses
        main(["joint", "evaluate", "--data", str(tiny_study), "--out", str(out), "--methods",
              "LCMV"])


def test_a_diverged_training_is_an_explained_error_and_a_bug_keeps_its_traceback():
    from neurofuse.cli.main import _explained
    from neurofuse.training import TrainingDivergedError

    diverged = TrainingDivergedError("Training stopped: the loss is nan at epoch 1, batch 1.")
    assert _explained(diverged) is diverged  # printed as one line, exit 1
    assert _explained(ZeroDivisionError("a bug")) is None  # re-raised with its traceback

"""Seed refits chosen by validation loss, and ``benchmarks/bench_variants.py``."""

import csv
import json

import pytest

from neurofuse.evaluation.variants import kept_validation_loss, seed_variants


def _fit(folder, val, alphas, alpha_fmri=1.0):
    folder.mkdir(parents=True)
    (folder / "done.json").write_text(json.dumps({"train": {"alpha_fmri": alpha_fmri,
                                                            "max_epochs": 7},
                                                  "encoder": {"d_model": 16}}))
    with open(folder / "history.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["epoch", "alpha_fmri", "val_total"])
        w.writeheader()
        for e, (v, a) in enumerate(zip(val, alphas), 1):
            w.writerow({"epoch": e, "alpha_fmri": a, "val_total": v})
    return folder


def test_kept_validation_loss_is_the_last_phase_minimum(tmp_path):
    # the MEG-first epochs' loss has no fMRI term: lower, and not comparable
    fit = _fit(tmp_path / "a", [0.6, 0.5, 1.4, 1.3, 1.35], [0, 0, 1, 1, 1])
    assert kept_validation_loss(fit) == 1.3
    meg_only = _fit(tmp_path / "b", [0.6, 0.5, 0.55], [0, 0, 0], alpha_fmri=0.0)
    assert kept_validation_loss(meg_only) == 0.5
    # a fit that ended in its MEG-first phase (or had no fMRI subjects) kept a model there
    assert kept_validation_loss(_fit(tmp_path / "c", [0.6, 0.55], [0, 0])) == 0.55
    # an improvement by less than the loop's min_delta (1e-6) is not kept
    assert kept_validation_loss(_fit(tmp_path / "d", [1.3, 1.3 - 1e-7], [1, 1])) == 1.3
    with pytest.raises(FileNotFoundError, match="finished joint-model fit"):
        kept_validation_loss(tmp_path / "none")
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "done.json").write_text("{}")
    (tmp_path / "e" / "history.csv").write_text("epoch,alpha_fmri,train_total\n1,0,0.5\n")
    with pytest.raises(ValueError, match="'fit_dir'.*no val_total column"):
        kept_validation_loss(tmp_path / "e")


def test_seed_variants():
    assert seed_variants([1, 2]) == {"seed1": {"train": {"seed": 1}},
                                     "seed2": {"train": {"seed": 2}}}
    for bad in (-1, True, 1.5):
        with pytest.raises(ValueError, match="'seeds' must hold ints >= 0"):
            seed_variants([bad])


@pytest.fixture
def bench_variants(benchmark_script):
    return benchmark_script("bench_variants")


def test_script_trains_the_variants_and_chooses_among_seeds(bench_variants, tmp_path, capsys,
                                                           monkeypatch):
    import neurofuse.data.store as store
    import neurofuse.evaluation.selection as selection
    import neurofuse.evaluation.variants as variants
    from neurofuse.systems.joint.model import JointModel

    ev = tmp_path / "point"
    with pytest.raises(SystemExit):
        bench_variants.main(["--evaluation", str(ev), "--seeds", "1"])
    assert "has no data, ridge, fit" in capsys.readouterr().err
    _fit(ev / "fit", [0.5, 1.3], [0, 1])
    for name in ("data", "ridge"):
        (ev / name).mkdir()
    (ev / "point.json").write_text(json.dumps({"source_recovery": [{"method": "fMNE"}],
                                               "prediction": [{"r_mean": 0.7,
                                                               "targets": "sensors"}]}))
    with pytest.raises(SystemExit):
        bench_variants.main(["--evaluation", str(ev)])
    assert "nothing to do" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_variants.main(["--evaluation", str(ev), "--override", "x={bad"])
    assert "--override: 'x={bad' is not NAME=JSON" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_variants.main(["--evaluation", str(ev), "--override", 'x={"trian": {}}'])
    assert "unknown section" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a field TrainConfig does not have: said before training
        bench_variants.main(["--evaluation", str(ev), "--override", 'x={"train": {"lrr": 1}}'])
    assert "--override/--fit" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_variants.main(["--evaluation", str(ev), "--seeds", "1", "--override",
                             'seed1={"train": {"lr": 0.01}}'])
    assert "'seed1' is given twice" in capsys.readouterr().err
    seen = {}

    def fake(ds, out, wanted, **kwargs):  # what evaluate_variants leaves behind
        seen.update(wanted=wanted, out=out, **kwargs)
        for name, val in (("seed1", 1.2), ("seed2", 1.4), ("meg-only", 0.4), ("mine", 1.0)):
            _fit(out / "variants" / name / "fit", [0.4, val], [0, 1])
        return [{"method": "neurofuse[seed1]"}], [{"method": "neurofuse[seed1]",
                                                   "targets": "sensors"}]

    monkeypatch.setattr(variants, "evaluate_variants", fake)
    monkeypatch.setattr(store, "read_dataset", lambda path: path)
    # validation prediction per fit: the main model's and each variant's, by its folder
    monkeypatch.setattr(JointModel, "load", classmethod(lambda cls, path: path))
    val_r = {"fit": 0.30, "meg-only": 0.35, "mine": 0.20, "seed1": 0.31, "seed2": 0.33}

    def fake_val(ds, model):
        name = model.parent.name if model.parent.name != "fit" else model.parent.parent.name
        score = val_r["fit" if name == ev.name else name]
        return {"by_modality": {"meg": score, "fmri": score}, "score": score}

    monkeypatch.setattr(selection, "validation_prediction", fake_val)
    bench_variants.main(["--evaluation", str(ev), "--seeds", "1", "2", "--variants", "meg-only",
                         "--override", 'mine={"train": {"lr": 0.01}}'])
    out = json.loads(capsys.readouterr().out)
    assert list(seen["wanted"]) == ["meg-only", "mine", "seed1", "seed2"]
    assert seen["wanted"]["mine"] == {"train": {"lr": 0.01}}
    # the variants change the main fit's own set-up, read from its record
    assert seen["fit_config"] == {"train": {"alpha_fmri": 1.0, "max_epochs": 7},
                                  "encoder": {"d_model": 16}}
    assert out["validation"] == {"neurofuse": 1.3, "seed1": 1.2, "seed2": 1.4}
    assert out["chosen"] == "seed1"  # the lowest validation loss, not a test score
    # every set-up compared on what it predicts of the validation stories
    assert {k: v["score"] for k, v in out["validation_prediction"].items()} == {
        "neurofuse": 0.30, "meg-only": 0.35, "mine": 0.20, "seed1": 0.31, "seed2": 0.33}
    assert out["chosen_by_prediction"] == "meg-only"
    assert out["main"]["file"] == "point.json" and "targets" not in out["main"]["prediction"][0]
    assert "targets" not in out["prediction"][0]


def test_main_rows_of_a_benchmark_condition(bench_variants, tmp_path):
    """A benchmark's condition has no results file of its own: its rows come from the
    benchmark's, that condition's only and without the variants scored there."""
    cond = tmp_path / "bench" / "conditions" / "meg-1_fmri-inf"
    cond.mkdir(parents=True)
    assert bench_variants._main_rows(cond) is None
    rows = [{"method": m, "meg_cnr": meg, "fmri_cnr": fmri, "temporal_r": t}
            for m, meg, fmri, t in (("neurofuse", 1.0, "inf", 0.36),
                                    ("neurofuse[meg-only]", 1.0, "inf", 0.39),
                                    ("fMNE", 1.0, "inf", 0.13), ("fMNE", 1.0, 0.3, 0.12),
                                    ("fMNE", "inf", "inf", 0.3))]
    pred = [{"method": "ridge", "meg_cnr": 1.0, "fmri_cnr": "inf", "targets": "sensors"},
            {"method": "ridge", "meg_cnr": 1.0, "fmri_cnr": 0.3, "targets": "sensors"}]
    (tmp_path / "bench" / "results.json").write_text(json.dumps(
        {"source_recovery": rows, "prediction": pred}))
    main = bench_variants._main_rows(cond)
    assert main["file"] == "../../results.json"
    assert [(r["method"], r["temporal_r"]) for r in main["source_recovery"]] == [
        ("neurofuse", 0.36), ("fMNE", 0.13)]
    assert main["prediction"] == [{"method": "ridge", "meg_cnr": 1.0, "fmri_cnr": "inf"}]

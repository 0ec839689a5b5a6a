"""`neurofuse benchmark simulation` on the tiny study: one noise condition per CNR pair."""

import json
import math

from neurofuse.evaluation.benchmark import condition_name

FIT = {"preset": "tiny", "train": {"max_epochs": 1, "meg_first_epochs": 1}}


def test_condition_names():
    assert condition_name(math.inf, 0.3) == "meg-inf_fmri-0.3"
    assert condition_name(1.0, math.inf) == "meg-1_fmri-inf"


def test_simulation_benchmark_grid(tmp_path, capsys):
    from neurofuse.cli import main

    out = tmp_path / "bench"
    fit = tmp_path / "fit.json"
    fit.write_text(json.dumps(FIT))
    rc = main(["benchmark", "simulation", "--out", str(out), "--study", "tiny", "--fit", str(fit),
               "--meg-cnr", "inf", "0.5", "--fmri-cnr", "0.3", "--methods", "fMNE", "MNE",
               "--smooth-fwhm", "15", "-q"])
    assert rc == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert {(r["meg_cnr"], r["fmri_cnr"]) for r in results["source_recovery"]} == {
        (0.5, 0.3), ("inf", 0.3)}
    for cond in ("meg-inf_fmri-0.3", "meg-0.5_fmri-0.3"):
        meta = json.loads((out / "conditions" / cond / "data" / "neurofuse-dataset.json")
                          .read_text())
        assert {tuple(sorted(s["cnr"].items())) for s in meta["subjects"].values()} <= {
            (("meg", "inf" if "inf" in cond else 0.5),), (("fmri", 0.3),)}
    methods = {r["method"] for r in results["source_recovery"]}
    # the fair baselines: each inverse also smoothed (the tiny fit's layer is plain: 15 mm asked)
    # and MNE / fMNE with the model's prediction as prior mean, smoothed on the update too
    assert methods == {"neurofuse", "fMNE", "MNE", "fMNE+smooth", "MNE+smooth",
                       "neurofuse+fMNE", "neurofuse+MNE", "neurofuse+fMNE+smooth",
                       "neurofuse+MNE+smooth"}
    assert all({"meg_cnr", "fmri_cnr"} <= set(r) for r in results["prediction"])
    # noiseless MEG: the classical inverses recover at least as well as at CNR 0.5
    rec = {(r["method"], r["meg_cnr"]): r["temporal_r"] for r in results["source_recovery"]}
    assert rec[("MNE", "inf")] >= rec[("MNE", 0.5)]
    assert (out / "report.html").stat().st_size > 10_000
    assert "temporal r" in capsys.readouterr().out

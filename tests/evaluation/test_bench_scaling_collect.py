"""``benchmarks/bench_scaling.py --collect``: an interrupted grid reported for what it holds."""

import json

import pytest



@pytest.fixture
def bench_scaling(benchmark_script):
    return benchmark_script("bench_scaling")


def test_collect_reports_the_finished_points_and_computes_nothing(bench_scaling, tmp_path,
                                                                  capsys, monkeypatch):
    import neurofuse.evaluation.scaling as scaling

    def no_work(*args, **kwargs):
        raise AssertionError("--collect computed")

    monkeypatch.setattr(scaling, "run_scaling_benchmark", no_work)
    with pytest.raises(SystemExit):  # nothing finished yet: said, with the path
        bench_scaling.main(["--work", str(tmp_path), "--collect"])
    assert "no point of the 'cpu' grid has finished" in capsys.readouterr().err
    row = {"n_meg_subjects": 1, "n_fmri_subjects": 1, "n_train": 2, "train_minutes": 3.9,
           "method": "neurofuse", "temporal_r": 0.1, "spatial_r": 0.2, "meg_cnr": 1.0}
    results = {"grid": {"scale": "cpu", "n_train": [2, 4, 8], "subjects": [[1, 1], [2, 2]]},
               "source_recovery": [row, {**row, "method": "fMNE"}, {**row, "n_train": 4}],
               "prediction": [{"n_train": 2, "method": "neurofuse", "r_mean": 0.5,
                               "targets": "sensors"}]}
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "results.json").write_text(json.dumps(results))
    bench_scaling.main(["--work", str(tmp_path), "--collect"])
    out = json.loads(capsys.readouterr().out)
    assert (out["points_done"], out["points_planned"]) == (2, 6)
    assert out["seconds"] is None
    assert set(out["projected_minutes"]) == {"demo", "cpu"}
    assert [r["method"] for r in out["rows"]] == ["neurofuse", "fMNE", "neurofuse"]
    assert "meg_cnr" not in out["rows"][0] and "targets" not in out["prediction"][0]


def test_world_grid_options_reach_the_benchmark(bench_scaling, tmp_path, capsys, monkeypatch):
    """``--world nonlinear --n-train 6 12 --subjects 2x2``: the scale's study in that world."""
    import neurofuse.evaluation.scaling as scaling

    seen = {}

    def fake(out, **kwargs):
        seen.update(kwargs, out=out)
        return {"grid": {"scale": kwargs["scale"], "study": kwargs["study"],
                         "n_train": kwargs["n_train"], "subjects": kwargs["subjects"]},
                "source_recovery": [], "prediction": []}

    monkeypatch.setattr(scaling, "run_scaling_benchmark", fake)
    bench_scaling.main(["--work", str(tmp_path), "--world", "nonlinear", "--n-train", "6", "12",
                        "--subjects", "2x2", "--no-report"])
    assert seen["out"] == tmp_path / "cpu"
    assert seen["study"] == {**scaling.SCALES["cpu"]["study"], "world": "nonlinear"}
    assert (seen["n_train"], seen["subjects"]) == ([6, 12], [(2, 2)])
    assert seen["fit_config"] is None  # the scale's own set-up unless --fit names one
    out = json.loads(capsys.readouterr().out)
    assert (out["points_done"], out["points_planned"]) == (0, 2)
    assert out["projected_minutes"] is None  # the projection is of the scales' own grids
    with pytest.raises(SystemExit):  # a world and a whole study are two answers to one question
        bench_scaling.main(["--work", str(tmp_path), "--world", "nonlinear", "--study", "demo"])
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_scaling.main(["--work", str(tmp_path), "--subjects", "2"])
    assert "expected MEGxFMRI subject counts" in capsys.readouterr().err
    bench_scaling.main(["--work", str(tmp_path), "--fit", "demo-alpha1", "--n-train", "6",
                        "--subjects", "2x2", "--no-report"])
    assert seen["fit_config"] == "demo-alpha1"
    capsys.readouterr()
    with pytest.raises(SystemExit):  # a recorded grid is read as run
        bench_scaling.main(["--work", str(tmp_path), "--collect", "--fit", "demo-alpha1"])
    assert "--fit belong to the run" in capsys.readouterr().err

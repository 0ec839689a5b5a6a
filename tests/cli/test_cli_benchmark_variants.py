"""``neurofuse joint benchmark simulation --variants`` and ``benchmarks/bench_worlds.py
--variants``: the options reach the library as typed (the library replaced by a recorder)."""

import json
import math

import pytest

from neurofuse.cli import main



def _record(monkeypatch, result=None):
    import neurofuse.evaluation.benchmark as benchmark

    calls = []

    def record(*args, **kwargs):
        calls.append((args, kwargs))
        if result is None:
            raise KeyboardInterrupt  # stops the command right after the call, exit code 130
        return result

    monkeypatch.setattr(benchmark, "run_simulation_benchmark", record)
    return calls


def test_benchmark_passes_the_variants(monkeypatch):
    calls = _record(monkeypatch)
    assert main(["joint", "benchmark", "simulation", "--out", "O", "-q"]) == 130
    assert calls[-1] == (("O",), {})  # the library's default: no variant
    assert main(["joint", "benchmark", "simulation", "--out", "O", "--variants", "in-sample",
                 "cross-fitted", "mixture", "--variant-conditions", "1,0.3", "inf,inf",
                 "-q"]) == 130
    assert calls[-1] == (("O",), {"variants": ["in-sample", "cross-fitted", "mixture"],
                                  "variant_conditions": [(1.0, 0.3), (math.inf, math.inf)]})


@pytest.mark.parametrize("args, message", [
    (["--variants", "bogus"], "invalid choice: 'bogus'"),
    (["--variant-conditions", "1"], "expected MEG,FMRI CNRs"),
    (["--variant-conditions", "1,0"], "expected MEG,FMRI CNRs"),
])
def test_benchmark_refuses_bad_variants(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["joint", "benchmark", "simulation", "--out", "O", *args, "-q"])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_benchmark_prints_long_method_names(monkeypatch, capsys):
    rows = [{"method": m, "meg_cnr": 1.0, "fmri_cnr": 0.3, "temporal_r": 0.5, "spatial_r": 0.25}
            for m in ("neurofuse", "neurofuse[cross-fitted]")]
    _record(monkeypatch, {"source_recovery": rows, "prediction": []})
    assert main(["joint", "benchmark", "simulation", "--out", "O", "--variants",
                 "cross-fitted", "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split() == ["neurofuse[cross-fitted]", "1", "0.3", "0.500", "0.250"]
    assert lines[1].index("0.500") == lines[2].index("0.500")  # columns aligned


@pytest.fixture
def bench_worlds(benchmark_script):
    return benchmark_script("bench_worlds")


def test_bench_worlds_variants_and_collect(bench_worlds, monkeypatch, tmp_path, capsys):
    row = {"method": "neurofuse[mixture]", "meg_cnr": 1.0, "fmri_cnr": 0.3,
           "temporal_r": 0.5, "spatial_r": 0.25}
    result = {"source_recovery": [row], "prediction": [],
              "variants": {"mixture": {"encoder": {"source_prior": "mixture"}}}}
    calls = _record(monkeypatch, result)
    bench_worlds.main(["--work", str(tmp_path), "--worlds", "short5"])
    assert calls[-1][1]["variants"] == ["mixture"]  # the default: the adaptive prior
    out = json.loads(capsys.readouterr().out)
    assert out["rows"] == [{"world": "short5", "method": "neurofuse[mixture]",
                            "temporal_r": 0.5, "spatial_r": 0.25}]
    assert out["variants"] == result["variants"]
    assert calls[-1][1]["fit_config"] == "demo" and out["fit"] == "demo"
    bench_worlds.main(["--work", str(tmp_path), "--worlds", "short5", "--variants",
                       "--fit", "demo-alpha1"])
    assert calls[-1][1]["variants"] is None  # --variants alone: none
    # another set-up (the worlds measured before stop 27) is trained and recorded as such
    assert calls[-1][1]["fit_config"] == "demo-alpha1"
    assert json.loads(capsys.readouterr().out)["fit"] == "demo-alpha1"
    # --collect computes nothing and reads the finished worlds' results.json as they are
    (tmp_path / "long20").mkdir()
    (tmp_path / "long20" / "results.json").write_text(json.dumps(result))
    n = len(calls)
    bench_worlds.main(["--work", str(tmp_path), "--worlds", "short5", "long20", "--collect"])
    assert len(calls) == n
    out = json.loads(capsys.readouterr().out)
    assert [r["world"] for r in out["rows"]] == ["long20"]
    assert out["variants"] == result["variants"] and out["seconds"] == {}
    # the label "fit" must be true of the collected worlds: their fits' records are checked
    from neurofuse.evaluation.fit_reuse import _wanted_fit

    train, encoder = _wanted_fit("demo-alpha1", None)
    done = tmp_path / "long20" / "conditions" / "meg-1_fmri-0.3" / "fit" / "done.json"
    done.parent.mkdir(parents=True)
    done.write_text(json.dumps({"train": train.to_dict(), "encoder": encoder}))
    with pytest.raises(SystemExit):
        bench_worlds.main(["--work", str(tmp_path), "--worlds", "long20", "--collect"])
    assert "not fitted with --fit 'demo'" in capsys.readouterr().err
    (tmp_path / "long20" / "results.json").write_text(json.dumps(
        {**result, "validation": [{"meg_cnr": 1.0, "fmri_cnr": 0.3, "chosen": "neurofuse"}]}))
    bench_worlds.main(["--work", str(tmp_path), "--worlds", "long20", "--collect", "--fit",
                       "demo-alpha1"])
    out = json.loads(capsys.readouterr().out)
    assert out["fit"] == "demo-alpha1"
    assert out["validation"] == [{"world": "long20", "meg_cnr": 1.0, "fmri_cnr": 0.3,
                                  "chosen": "neurofuse"}]
    with pytest.raises(SystemExit):
        bench_worlds.main(["--work", str(tmp_path), "--variants", "bogus"])
    # the trained source priors are gathered from the models' model.json
    prior = {"prior": "mixture", "widths": [0.0, 15.0], "weights": [0.25, 0.75],
             "mean_fwhm": 11.25, "argmax_fwhm": 15.0}
    model = tmp_path / "long20" / "conditions" / "meg-1_fmri-0.3" / "variants" / "mixture"
    (model / "fit" / "model").mkdir(parents=True)
    (model / "fit" / "model" / "model.json").write_text(json.dumps({"source_prior": prior}))
    bench_worlds.main(["--work", str(tmp_path), "--worlds", "long20", "--collect",
                       "--fit", "demo-alpha1"])
    # a fit still training (its best model so far saved, no done.json) is left out
    assert json.loads(capsys.readouterr().out)["source_priors"] == {"long20": {}}
    (model / "fit" / "done.json").write_text("{}")
    bench_worlds.main(["--work", str(tmp_path), "--worlds", "long20", "--collect",
                       "--fit", "demo-alpha1"])
    assert json.loads(capsys.readouterr().out)["source_priors"] == {
        "long20": {"neurofuse[mixture]": prior}}


def bench_worlds_study():
    from neurofuse.evaluation.pipeline import DEMO_STUDY

    return DEMO_STUDY


def test_bench_worlds_merge_replaces_only_the_worlds_run_now(bench_worlds, tmp_path, capsys):
    def run(world, r):
        return {"world": world, "method": "neurofuse", "temporal_r": r, "spatial_r": r}

    earlier = {"benchmark": "worlds", "study": {"preset": "demo"}, "fit": "demo",
               "meg_cnr": 1.0, "fmri_cnr": 0.3, "variants": {"a": {}},
               "rows": [run("short5", 0.1), run("nonlinear", 0.2), run("hrf_vary", 0.3)],
               "prediction": [{"world": "nonlinear", "r_mean": 0.6},
                              {"world": "short5", "r_mean": 0.5}],
               "source_priors": {"short5": {"x": 1}, "nonlinear": {"x": 2}, "hrf_vary": {}},
               "seconds": {"short5": 5.0, "nonlinear": 7.0}}
    now = {**earlier, "variants": {"b": {}}, "rows": [run("nonlinear", 0.9),
                                                       run("spontaneous", 0.8)],
           "prediction": [{"world": "nonlinear", "r_mean": 0.7}],
           "source_priors": {"nonlinear": {"x": 3}, "spontaneous": {"x": 4}},
           "seconds": {"nonlinear": 9.0, "spontaneous": 8.0}, "machine": {"m": 1}}
    out = bench_worlds.merge_worlds(earlier, now, source="old.json")
    assert [(r["world"], r["temporal_r"]) for r in out["rows"]] == [
        ("short5", 0.1), ("nonlinear", 0.9), ("hrf_vary", 0.3), ("spontaneous", 0.8)]
    assert out["prediction"] == [{"world": "short5", "r_mean": 0.5},
                                 {"world": "nonlinear", "r_mean": 0.7}]
    assert out["merged"] == [{"from": "old.json", "worlds_replaced": ["nonlinear",
                                                                      "spontaneous"],
                              "earlier_machine": None}]
    assert out["machine"] == {"m": 1}
    assert out["source_priors"] == {"short5": {"x": 1}, "nonlinear": {"x": 3},
                                    "hrf_vary": {}, "spontaneous": {"x": 4}}
    assert out["seconds"] == {"short5": 5.0, "nonlinear": 9.0, "spontaneous": 8.0}
    assert out["variants"] == {"a": {}, "b": {}}
    with pytest.raises(ValueError, match="fmri_cnr 0.3, this run 1.0"):
        bench_worlds.merge_worlds(earlier, {**now, "fmri_cnr": 1.0})
    # a variant defined otherwise now would relabel the kept worlds' rows
    with pytest.raises(ValueError, match=r"variant\(s\) \['a'\] are defined otherwise"):
        bench_worlds.merge_worlds(earlier, {**now, "variants": {"a": {"x": 1}}})
    # the set-up is checked before anything is computed
    mismatch = tmp_path / "other-cnr.json"
    mismatch.write_text(json.dumps({**earlier, "study": bench_worlds_study(), "fmri_cnr": 1.0}))
    with pytest.raises(SystemExit):
        bench_worlds.main(["--work", str(tmp_path / "never"), "--merge", str(mismatch)])
    assert "fmri_cnr 1.0, this run 0.3" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()
    # a file of another benchmark is refused by name
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"benchmark": "simulation"}))
    with pytest.raises(SystemExit):
        bench_worlds.main(["--work", str(tmp_path), "--merge", str(other)])
    assert "'benchmark' is 'simulation', expected 'worlds'" in capsys.readouterr().err

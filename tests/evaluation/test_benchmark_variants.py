"""Joint-model variants in the simulation benchmark: scored beside the main model on the same
condition, without changing anything of the main model's (issue 15, items 1 and 3)."""

import hashlib
import json

import pytest

from neurofuse.evaluation.benchmark import condition_name, run_simulation_benchmark
from neurofuse.evaluation.variants import (
    JOINT_VARIANTS,
    evaluate_variants,
    resolve_variants,
    variant_fit_config,
    variant_method,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FIT = {"preset": "tiny", "train": {"max_epochs": 2, "meg_first_epochs": 1}}
GRID = {"study": "tiny", "fit_config": FIT, "meg_cnrs": [1.0], "fmri_cnrs": [0.3],
        "methods": ("MNE",), "smooth_fwhm": 15.0, "report": False, "verbose": "warning"}
COND = condition_name(1.0, 0.3)


def _digests(folder):
    """SHA-256 of every file the main evaluation keeps (the variants' folder left out)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and "variants" not in p.relative_to(folder).parts}


@pytest.fixture(scope="module")
def benchmarked(tmp_path_factory):
    """The tiny benchmark run without variants, then again with two of them, then again."""
    out = tmp_path_factory.mktemp("variants") / "bench"
    plain = run_simulation_benchmark(out, **GRID)
    before = _digests(out / "conditions" / COND)
    with_variants = run_simulation_benchmark(out, variants=["in-sample", "mixture"], **GRID)
    return out, plain, before, with_variants


def test_presets_change_only_their_override():
    demo = variant_fit_config("demo", {})
    for name, override in JOINT_VARIANTS.items():
        config = variant_fit_config("demo", override)
        for section in ("train", "encoder"):
            changed = {k for k in {*config[section], *demo[section]}
                       if config[section].get(k) != demo[section].get(k)}
            assert changed <= set(override.get(section, {})), (name, section, changed)
    assert variant_fit_config("demo", JOINT_VARIANTS["in-sample"])["train"]["fmri_denoise"] \
        == "in-sample"
    assert variant_fit_config("demo", JOINT_VARIANTS["cross-fitted"])["train"][
        "fmri_denoise"] == "cross-fitted"
    from neurofuse.systems.joint.encoder import MIXTURE_WIDTHS, EncoderConfig

    mixture = variant_fit_config("demo", JOINT_VARIANTS["mixture"])["encoder"]
    cfg = EncoderConfig.from_dict(mixture)
    assert cfg.source_prior == "mixture" and cfg.source_fwhm is None
    assert cfg.source_widths == MIXTURE_WIDTHS
    assert variant_method("mixture") == "neurofuse[mixture]"


def test_unknown_variant_is_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match=r"'variants' parameter.*in-sample.*cross-fitted.*"
                                         r"mixture.*got 'bogus'"):
        run_simulation_benchmark(tmp_path / "b", variants=["in-sample", "bogus"], **GRID)
    assert not (tmp_path / "b" / "conditions").exists()
    with pytest.raises(ValueError, match="unknown section"):
        resolve_variants({"x": {"trian": {}}})
    with pytest.raises(ValueError, match="cannot be named 'neurofuse'"):
        resolve_variants({"neurofuse": {"train": {"lr": 1e-3}}})
    with pytest.raises(TypeError, match=r"'variants\['x'\]\['train'\]' must be a dict"):
        resolve_variants({"x": {"train": "x"}})
    with pytest.raises(ValueError, match="folder and method names"):
        resolve_variants({"a/b": {"train": {"lr": 1e-3}}})
    with pytest.raises(ValueError, match="'variant_conditions' holds .*not a condition"):
        run_simulation_benchmark(tmp_path / "c", variants="mixture",
                                 variant_conditions=[(0.5, 0.3)], **GRID)
    with pytest.raises(ValueError, match="lrr"):
        run_simulation_benchmark(tmp_path / "d", variants={"typo": {"train": {"lrr": 1e-3}}},
                                 **GRID)
    assert not (tmp_path / "d" / "conditions").exists()
    assert resolve_variants(None) == {}
    assert resolve_variants("mixture") == {"mixture": JOINT_VARIANTS["mixture"]}


@pytest.mark.slow  # the module's benchmark: three tiny fits, ~2 min
def test_variant_rows_beside_the_main_ones(benchmarked):
    out, plain, before, res = benchmarked
    methods = [r["method"] for r in res["source_recovery"]]
    assert methods == ["neurofuse", "neurofuse[in-sample]", "neurofuse[mixture]",
                       *[r["method"] for r in plain["source_recovery"][1:]]]
    # only the joint model's own rows per variant: no inverse with a variant's prior mean or
    # smoothed at its width
    assert not [m for m in methods if "[" in m and m not in (
        "neurofuse[in-sample]", "neurofuse[mixture]")]
    assert res["variants"] == {"in-sample": JOINT_VARIANTS["in-sample"],
                               "mixture": JOINT_VARIANTS["mixture"]}
    # the main rows, data, ridge ceilings, model and inverses are untouched by the variants
    main = [r for r in res["source_recovery"] if "[" not in r["method"]]
    assert main == plain["source_recovery"]
    assert [r for r in res["prediction"] if "[" not in r["method"]] == plain["prediction"]
    assert _digests(out / "conditions" / COND) == before
    pairs = {(r["subject"], r["modality"]) for r in plain["prediction"]
             if r["method"] == "neurofuse"}
    for name in ("in-sample", "mixture"):
        assert {(r["subject"], r["modality"]) for r in res["prediction"]
                if r["method"] == variant_method(name)} == pairs
        assert all({"meg_cnr", "fmri_cnr"} <= set(r) for r in res["prediction"])
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(res))


@pytest.mark.slow  # the module's benchmark: three tiny fits, ~2 min
def test_variant_fits_use_their_override_and_are_scored(benchmarked):
    from neurofuse.data.store import read_dataset
    from neurofuse.evaluation.prediction import prediction_table
    from neurofuse.evaluation.recovery import source_recovery
    from neurofuse.systems.joint.model import JointModel

    out, _, _, res = benchmarked
    cond = out / "conditions" / COND
    main = json.loads((cond / "fit" / "config.json").read_text())
    insample = json.loads((cond / "variants" / "in-sample" / "fit" / "config.json").read_text())
    assert main["train"]["fmri_denoise"] == "none"
    assert insample["train"]["fmri_denoise"] == "in-sample"
    assert {k: v for k, v in insample["train"].items() if k != "fmri_denoise"} == \
        {k: v for k, v in main["train"].items() if k != "fmri_denoise"}
    mixture = json.loads((cond / "variants" / "mixture" / "fit" / "config.json").read_text())
    assert mixture["train"]["fmri_denoise"] == "none"
    assert mixture["model"]["encoder"]["source_prior"] == "mixture"
    assert "source_prior" not in main["model"]["encoder"]  # the fixed prior's description
    # each variant's rows are its own model's scores (reference: scored directly)
    ds = read_dataset(cond / "data")
    rec = {r["method"]: r for r in res["source_recovery"]}
    pred = {(r["subject"], r["modality"], r["method"]): r for r in res["prediction"]}
    for name in ("in-sample", "mixture"):
        model = JointModel.load(cond / "variants" / name / "fit" / "model")
        scores, _ = source_recovery(ds, model=model, methods=())
        assert rec[variant_method(name)]["temporal_r"] == pytest.approx(
            scores["neurofuse"]["temporal_r"], abs=1e-6)
        assert rec[variant_method(name)]["spatial_r"] == pytest.approx(
            scores["neurofuse"]["spatial_r"], abs=1e-6)
        for row in prediction_table(ds, model=model)[0]:
            assert pred[(row["subject"], row["modality"], variant_method(name))]["r_mean"] \
                == pytest.approx(row["r_mean"], abs=1e-6)
    assert rec[variant_method("mixture")] != rec["neurofuse"]
    # the validation choice: each fit's validation prediction (reference: scored directly on
    # the validation stories), the highest chosen
    from neurofuse.evaluation.selection import validation_prediction

    (choice,) = res["validation"]
    assert (choice["meg_cnr"], choice["fmri_cnr"]) == (1.0, 0.3)
    assert list(choice["scores"]) == ["neurofuse", "in-sample", "mixture"]
    for name, fit_dir in (("neurofuse", cond / "fit"),
                          ("in-sample", cond / "variants" / "in-sample" / "fit"),
                          ("mixture", cond / "variants" / "mixture" / "fit")):
        direct = validation_prediction(ds, JointModel.load(fit_dir / "model"))
        assert choice["scores"][name]["score"] == pytest.approx(direct["score"], abs=1e-6)
    # the mixture's weights were fitted on the validation stories: scored, never chosen
    assert choice["trained_on_validation"] == ["mixture"]
    assert choice["chosen"] == max(("neurofuse", "in-sample"),
                                   key=lambda n: choice["scores"][n]["score"])


@pytest.mark.slow  # the module's benchmark: three tiny fits, ~2 min
def test_rerun_reuses_the_variant_fits(benchmarked, monkeypatch):
    import neurofuse.systems.joint.trainer as trainer

    out, _, _, res = benchmarked
    cond = out / "conditions" / COND

    def no_fit(*args, **kwargs):
        raise AssertionError("a finished fit was trained again")

    monkeypatch.setattr(trainer, "fit", no_fit)
    weights = cond / "variants" / "mixture" / "fit" / "model"
    mtimes = {p: p.stat().st_mtime_ns for p in weights.iterdir()}
    again = run_simulation_benchmark(out, variants=["in-sample", "mixture"],
                                     **{**GRID, "report": True})
    assert again == res
    assert {p: p.stat().st_mtime_ns for p in weights.iterdir()} == mtimes
    page = (out / "report.html").read_text()
    assert page.count("neurofuse[mixture]") >= 2  # the summary and the results table


def test_recovery_bars_show_the_variants():
    from neurofuse.viz import plot_recovery_bars

    names = ["neurofuse", "neurofuse[in-sample]", "neurofuse[mixture]", "MNE", "MNE+smooth"]
    rows = [{"method": m, "meg_cnr": 1.0, "fmri_cnr": 0.3, "temporal_r": 0.1 * i,
             "spatial_r": 0.1} for i, m in enumerate(names)]
    fig = plot_recovery_bars(rows)
    bars = {p.get_label(): p.patches[0] for p in fig.axes[0].containers}
    assert list(bars) == names
    colour = {m: tuple(bars[m].get_facecolor()) for m in bars}
    assert len({colour[m] for m in names[:4]}) == 4  # each variant a colour of its own
    assert not any(bars[m].get_hatch() for m in names[:3])
    assert [b.get_height() for b in (bars[m] for m in names)] == pytest.approx(
        [0.1 * i for i in range(len(names))])


@pytest.mark.slow  # the module's benchmark: three tiny fits, ~2 min
def test_a_variant_trained_otherwise_is_refused(benchmarked):
    from neurofuse.data.store import read_dataset

    out, _, _, _ = benchmarked
    cond = out / "conditions" / COND
    other = {"in-sample": {"train": {"fmri_denoise": "in-sample", "lr": 5e-4}}}
    with pytest.raises(ValueError, match=r"'in-sample'.*other settings \(differing: train.lr\)"):
        evaluate_variants(read_dataset(cond / "data"), cond, other, fit_config=FIT)

"""The data-scaling benchmark: one world, the same test stories at every grid point."""

import json
import math

import numpy as np
import pytest

from neurofuse.data.store import read_dataset
from neurofuse.evaluation import scaling
from neurofuse.evaluation.pipeline import StudyEvaluation
from neurofuse.evaluation.scaling import (
    SCALES,
    check_grid,
    point_name,
    projected_minutes,
    run_scaling_benchmark,
    subset_store,
)

#: The tiny scale's study, with 3 training stories and 2 MEG + 2 fMRI subjects.
GRID = {"n_train": (1, 3), "subjects": ((1, 1), (2, 2))}


@pytest.fixture(scope="module")
def full_study(tmp_path_factory):
    """The study of the largest point of GRID (read-only)."""
    config = scaling._full_config(SCALES["tiny"]["study"], *check_grid(**GRID), None)
    return scaling._full_study(tmp_path_factory.mktemp("scaling") / "study", config, None)


def _test_arrays(ds, story):
    out = {"features": np.asarray(ds.features(story)),
           "truth": np.asarray(ds.ground_truth(f"sources/{story}"))}
    for s in ds.subjects:
        for mod in ds.modalities(s):
            out[f"{s}/{mod}"] = np.asarray(ds.data(s, mod, story))
    return out


def test_point_names():
    assert point_name(2, 4, 8) == "meg-2_fmri-4_train-8"


@pytest.mark.parametrize("n_train, subjects, error, message", [
    ([], [(1, 1)], ValueError, "'n_train' is empty"),
    ([0, 2], [(1, 1)], ValueError, "'n_train' must be an int >= 1, got 0"),
    ([2, 2], [(1, 1)], ValueError, "'n_train' repeats a value"),
    ([1.5], [(1, 1)], TypeError, "'n_train' must be an int"),
    (4, [(1, 1)], TypeError, "'n_train' must be a sequence"),
    ([2], [], ValueError, "'subjects' is empty"),
    ([2], [(0, 1)], ValueError, "'n_meg_subjects' must be an int >= 1, got 0"),
    ([2], [(1, 0)], ValueError, "'n_fmri_subjects' must be an int >= 1, got 0"),
    ([2], [(1, 1, 1)], ValueError, "(n_meg_subjects, n_fmri_subjects) pairs"),
    ([2], ["2x2"], ValueError, "(n_meg_subjects, n_fmri_subjects) pairs"),
    ([2], [(1, 1), (1, 1)], ValueError, "'subjects' repeats a pair"),
])
def test_bad_grid_is_refused_before_any_work(tmp_path, n_train, subjects, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_scaling_benchmark(tmp_path / "out", scale="tiny", n_train=n_train,
                              subjects=subjects)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="'scale'"):
        run_scaling_benchmark(tmp_path / "out", scale="huge")


def test_grid_is_sorted():
    assert check_grid([4, 2], [(2, 2), (1, 1)]) == ((2, 4), ((2, 2), (1, 1)))


def test_test_stories_do_not_change_with_the_training_data(full_study, tmp_path):
    """Every point's test stories are the same recordings; simulated apart they would not be."""
    small = read_dataset(subset_store(full_study, tmp_path / "small", n_train=1,
                                      n_meg_subjects=1, n_fmri_subjects=1))
    large = read_dataset(subset_store(full_study, tmp_path / "large", n_train=3,
                                      n_meg_subjects=2, n_fmri_subjects=2))
    full = read_dataset(full_study)
    assert small.splits["train"] == full.splits["train"][:1]
    assert large.splits["train"] == full.splits["train"]
    for split in ("val", "test"):
        assert small.splits[split] == large.splits[split] == full.splits[split]
    assert small.subjects == ["S01", "S03"]  # the first MEG and the first fMRI subject
    assert large.subjects == full.subjects
    assert small.metadata["subset"]["subjects"] == ["S01", "S03"]
    (story,) = full.splits["test"]
    a, b = _test_arrays(small, story), _test_arrays(large, story)
    for key, value in a.items():
        np.testing.assert_array_equal(value, b[key])
    # the store holds only what it lists: the dropped training stories are not readable
    with pytest.raises(ValueError, match="story"):
        small.features(full.splits["train"][1])
    assert small.n_times(small.splits["train"][0]) == full.n_times(full.splits["train"][0])

    # Why subsets: a study simulated with fewer training stories has other test stories
    from neurofuse.simulation.study import StudyConfig, simulate_study

    config = StudyConfig.from_dict({**full.metadata["config"], "n_train": 1})
    alone = read_dataset(simulate_study(config, tmp_path / "alone"))
    (alone_story,) = alone.splits["test"]
    assert not np.allclose(np.asarray(alone.features(alone_story)),
                           np.asarray(full.features(story))[:alone.n_times(alone_story)])


def test_subset_refuses_more_than_the_study_has(full_study, tmp_path):
    with pytest.raises(ValueError, match="'n_train' is 4 but the study .* has only 3 training"):
        subset_store(full_study, tmp_path / "x", n_train=4, n_meg_subjects=1, n_fmri_subjects=1)
    with pytest.raises(ValueError, match="'n_fmri_subjects' is 3 .* only 2 fMRI"):
        subset_store(full_study, tmp_path / "x", n_train=1, n_meg_subjects=1, n_fmri_subjects=3)
    assert not (tmp_path / "x").exists()


def test_subset_links_survive_a_symlinked_output_folder(full_study, tmp_path):
    """Links are relative to the store's real folder, not to the path it was given by."""
    real = tmp_path / "deep" / "er" / "folder"
    real.mkdir(parents=True)
    (tmp_path / "alias").symlink_to(real)
    subset_store(full_study, tmp_path / "alias" / "sub", n_train=1, n_meg_subjects=1,
                 n_fmri_subjects=1)
    ds = read_dataset(real / "sub")
    story = ds.splits["test"][0]
    np.testing.assert_array_equal(ds.meg("S01", story),
                                  read_dataset(full_study).meg("S01", story))


def test_inverses_score_the_same_whatever_the_training_data(full_study, tmp_path):
    """The classical inverses use no training data: same subjects, same scores."""
    from neurofuse.evaluation.recovery import source_recovery

    scores = []
    for n in (1, 3):
        ds = read_dataset(subset_store(full_study, tmp_path / f"n{n}", n_train=n,
                                       n_meg_subjects=1, n_fmri_subjects=1))
        scores.append(source_recovery(ds, methods=("fMNE", "MNE"), smooth_fwhm=15.0,
                                      work_dir=tmp_path / f"inv{n}")[0])
    assert set(scores[0]) == {"fMNE", "MNE", "fMNE+smooth", "MNE+smooth"}
    for method, sc in scores[0].items():
        assert sc["temporal_r"] == scores[1][method]["temporal_r"], method
        assert sc["spatial_r"] == scores[1][method]["spatial_r"], method
        assert math.isfinite(sc["temporal_r"]) and sc["temporal_r"] > 0


def _fake_evaluate(calls):
    """An evaluate_study stand-in: scores that grow with the training minutes."""

    def evaluate(ds, out, **kwargs):
        calls.append((ds, out, kwargs))
        minutes = sum(ds.n_times(s) for s in ds.splits["train"]) / ds.sfreq / 60
        rec = [{"method": m, "meg_cnr": 1.0, "fmri_cnr": 0.3, "temporal_r": r, "spatial_r": r}
               for m, r in (("neurofuse", minutes / 10), ("MNE", 0.1))]
        pred = [{"subject": s, "modality": ds.modalities(s)[0], "method": m, "r_mean": 0.2,
                 "r_sd": 0.1} for s in ds.subjects for m in ("neurofuse", "ridge")]
        return StudyEvaluation(rec, pred, {}, {}, {}, np.zeros(0, int), {})

    return evaluate


def test_resume_skips_finished_points(full_study, tmp_path, monkeypatch):
    out = tmp_path / "bench"
    (out / "study").parent.mkdir()
    (out / "study").symlink_to(full_study)  # the grid's study, already simulated
    calls = []
    monkeypatch.setattr(scaling, "evaluate_study", _fake_evaluate(calls))
    res = run_scaling_benchmark(out, scale="tiny", **GRID, fit_config="F", methods=["MNE"])
    assert len(calls) == 4
    assert {c[1].name for c in calls} == {point_name(m, f, n) for m, f in GRID["subjects"]
                                          for n in GRID["n_train"]}
    assert all(c[2]["fit_config"] == "F" and c[2]["methods"] == ["MNE"] for c in calls)
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(res))
    row = res["source_recovery"][0]
    assert list(row)[:4] == ["n_meg_subjects", "n_fmri_subjects", "n_train", "train_minutes"]
    assert {"method", "temporal_r", "spatial_r"} <= set(row)
    minutes = {r["n_train"]: r["train_minutes"] for r in res["source_recovery"]}
    full = read_dataset(full_study)
    assert minutes[3] == pytest.approx(sum(full.n_times(s) for s in full.splits["train"])
                                       / full.sfreq / 60, abs=1e-3)
    assert 0 < minutes[1] < minutes[3]
    assert {r["subject"] for r in res["prediction"] if r["n_meg_subjects"] == 1} == {"S01",
                                                                                   "S03"}
    assert (out / "report.html").stat().st_size > 10_000

    calls.clear()
    same = dict(fit_config="F", methods=["MNE"], report=False)
    again = run_scaling_benchmark(out, scale="tiny", **GRID, **same)
    assert calls == [] and again == res
    (out / "points" / point_name(2, 2, 3) / "point.json").unlink()
    again = run_scaling_benchmark(out, scale="tiny", **GRID, **same)
    assert [c[1].name for c in calls] == [point_name(2, 2, 3)] and again == res

    # a finished point is not reused under other settings (it would mix set-ups in a curve)
    calls.clear()
    for other in ({"methods": ["MNE", "dSPM"]}, {"fit_config": "G"}, {"smooth_fwhm": None}):
        with pytest.raises(ValueError, match="scored with other settings"):
            run_scaling_benchmark(out, scale="tiny", **GRID, **{**same, **other})
    assert calls == []
    # a point.json from before the settings were recorded is reused (with a warning)
    for done in (out / "points").glob("*/point.json"):
        old = json.loads(done.read_text())
        del old["settings"]
        done.write_text(json.dumps(old))
    again = run_scaling_benchmark(out, scale="tiny", **GRID, **{**same, "fit_config": "G"})
    assert calls == [] and again["source_recovery"] == res["source_recovery"]

    with pytest.raises(ValueError, match="holds another study"):
        run_scaling_benchmark(out, scale="tiny", **GRID, seed=1, report=False)

    # A preset of the same name that changed (its fit trained otherwise) is not reused either
    from neurofuse.systems.joint.trainer import load_fit_config

    train, encoder = load_fit_config("tiny")
    fit_dir = out / "points" / point_name(1, 1, 1) / "fit"
    fit_dir.mkdir(parents=True)
    (fit_dir / "done.json").write_text(json.dumps(
        {"train": {**train.to_dict(), "lr": train.lr * 2}, "encoder": encoder}))
    tiny = {**same, "fit_config": "tiny"}
    for done in (out / "points").glob("*/point.json"):  # scored with the preset "tiny"
        old = json.loads(done.read_text())
        old["settings"] = {**old.get("settings", {}), "fit": "tiny", "methods": ["MNE"],
                           "smooth_fwhm": "model"}
        done.write_text(json.dumps(old))
    with pytest.raises(ValueError, match=r"grid point .*other settings \(differing: train\.lr"
                                         r"\).*Remove that point's folder"):
        run_scaling_benchmark(out, scale="tiny", **GRID, **tiny)
    assert calls == []
    # ... while a fit with the asked settings is reused under another name for them (a
    # preset since renamed, a config file): its settings are compared, not the name
    for point in (out / "points").iterdir():
        (point / "fit").mkdir(exist_ok=True)
        (point / "fit" / "done.json").write_text(json.dumps({"train": train.to_dict(),
                                                             "encoder": encoder}))
    again = run_scaling_benchmark(out, scale="tiny", **GRID,
                                  **{**same, "fit_config": {"preset": "tiny"}})
    assert calls == [] and again["source_recovery"] == res["source_recovery"]


def test_projected_minutes():
    # one point of the demo's size costs what the demo's benchmark measured
    one = projected_minutes("demo", n_train=[6], subjects=[(2, 2)], story_duration=120.0)
    assert one == pytest.approx(sum(scaling.DEMO_POINT_MINUTES.values()))
    # doubling the data doubles the training share
    two = projected_minutes("demo", n_train=[12], subjects=[(2, 2)], story_duration=120.0)
    assert two - one == pytest.approx(scaling.DEMO_POINT_MINUTES["train"])
    assert 45 <= projected_minutes("cpu") <= 75  # "about an hour on 2 cores"


def test_plot_scaling_curves():
    from neurofuse.viz import plot_scaling_curves

    rec, pred = [], []
    for group in ((1, 1), (2, 2)):
        for minutes in (4.0, 8.0):
            keys = {"n_meg_subjects": group[0], "n_fmri_subjects": group[1],
                    "train_minutes": minutes}
            rec += [{**keys, "method": m, "temporal_r": 0.1, "spatial_r": 0.2}
                    for m in ("neurofuse", "MNE", "MNE+smooth", "neurofuse+MNE")]
            pred += [{**keys, "subject": s, "modality": mod, "method": m, "r_mean": r}
                     for s, mod in (("S01", "meg"), ("S02", "meg"), ("S03", "fmri"))
                     for m, r in (("neurofuse", 0.2 if s == "S01" else 0.4), ("ridge", 0.5))]
    fig = plot_scaling_curves({"source_recovery": rec, "prediction": pred})
    axes = [ax for ax in fig.axes if ax.get_title() or ax.get_xlabel() or ax.get_ylabel()]
    assert len(axes) == 2 * 4  # rows: subject sets; columns: temporal, spatial, MEG, fMRI r
    first = fig.axes[0]
    lines = {line.get_label(): line for line in first.get_lines()}
    assert list(lines)[:4] == ["neurofuse", "MNE", "MNE+smooth", "neurofuse+MNE"]
    # a smoothed inverse: its inverse's colour, dashed; the model as prior mean of MNE is a
    # method of its own (not "neurofuse smoothed"): its own colour, solid
    assert lines["MNE+smooth"].get_color() == lines["MNE"].get_color()
    assert lines["MNE+smooth"].get_linestyle() == "--"
    assert lines["neurofuse+MNE"].get_linestyle() == "-"
    assert lines["neurofuse+MNE"].get_color() not in (lines["neurofuse"].get_color(),
                                                      lines["MNE"].get_color())
    meg = fig.axes[2]  # held-out MEG r of the first group: the mean over its MEG subjects
    line = [ln for ln in meg.get_lines() if ln.get_label() == "neurofuse"][0]
    np.testing.assert_allclose(line.get_ydata(), [0.3, 0.3])
    np.testing.assert_allclose(line.get_xdata(), [4.0, 8.0])
    with pytest.raises(ValueError, match="lacks the keys"):
        plot_scaling_curves({"source_recovery": [{"method": "MNE"}]})
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_scaling_curves({"source_recovery": []})


@pytest.mark.slow
def test_tiny_scale_end_to_end(tmp_path, capsys):
    """The command on the tiny scale (one-epoch fit): inverses flat, the model scored."""
    from neurofuse.cli import main

    fit = tmp_path / "fit.json"
    fit.write_text(json.dumps({"preset": "tiny", "train": {"max_epochs": 1,
                                                           "meg_first_epochs": 1}}))
    out = tmp_path / "bench"
    rc = main(["joint", "benchmark", "scaling", "--out", str(out), "--scale", "tiny",
               "--n-train", "2", "3", "--subjects", "1x1", "--fit", str(fit),
               "--methods", "MNE", "-q"])
    assert rc == 0, capsys.readouterr().err
    res = json.loads((out / "results.json").read_text())
    by = {}
    for r in res["source_recovery"]:
        by.setdefault(r["method"], {})[r["n_train"]] = (r["temporal_r"], r["spatial_r"])
    # MNE, and MNE with the model's prediction as prior mean (it changes with the model)
    assert set(by) == {"neurofuse", "MNE", "neurofuse+MNE"} and set(by["MNE"]) == {2, 3}
    assert by["MNE"][2] == by["MNE"][3]
    assert {(r["modality"], r["method"]) for r in res["prediction"]} == {
        ("meg", "neurofuse"), ("meg", "ridge"), ("fmri", "neurofuse"), ("fmri", "ridge")}
    assert (out / "report.html").stat().st_size > 10_000
    assert "train min" in capsys.readouterr().out

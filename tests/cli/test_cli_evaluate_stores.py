"""``neurofuse joint evaluate`` on stores other than the demo's (issue 15, item 7): a store
without ground truth or CNRs (recorded data: source recovery skipped, ridge ceilings and
prediction scores still run) and a MEG-only store on another source space (fMNE left out,
the smoothed inverses on that store's own vertices). The stores are written with the store
writer from the tiny simulated study."""

import json
import math

import numpy as np
import pytest

from neurofuse.cli import main
from neurofuse.data.store import DatasetWriter, read_dataset

FIT = {"preset": "tiny", "train": {"max_epochs": 2, "meg_first_epochs": 1}}


def rewrite_store(ds, path, *, subjects=None, truth=True, cnr=True):
    """Copy ``ds`` with :class:`DatasetWriter`: some subjects, with or without ground-truth
    sources and CNRs, and no simulation metadata but the template's vertices."""
    subjects = list(ds.subjects if subjects is None else subjects)
    split_of = {st: k for k, v in ds.splits.items() for st in v}
    with DatasetWriter(path, sfreq=ds.sfreq, tr=ds.tr, feature_streams=ds.feature_streams,
                       metadata={"template": ds.metadata["template"]}) as wr:
        for sub in subjects:
            meg = "meg" in ds.modalities(sub)
            wr.add_subject(sub, modalities=ds.modalities(sub),
                           info=ds.info(sub) if meg else None,
                           leadfield=np.asarray(ds.leadfield(sub)) if meg else None,
                           forward=ds.forward(sub) if meg else None, morph=ds.morph(sub),
                           vertices=ds.vertices(sub), cnr=ds.cnr(sub) if cnr else None)
        for story in ds.stories:
            wr.add_story(story, split=split_of[story], n_times=ds.n_times(story))
            wr.write_features(story, np.asarray(ds.features(story)))
            for sub in subjects:
                for modality in ds.modalities(sub):
                    if ds.has(sub, modality, story):
                        wr.write(sub, modality, story, np.asarray(ds.data(sub, modality, story)))
        for name in ds.ground_truth_names if truth else ():
            if name.startswith("sources/"):
                wr.write_ground_truth(name[:-len(".npy")],
                                      np.asarray(ds.ground_truth(name[:-len(".npy")])))
    return read_dataset(path)


@pytest.fixture(scope="module")
def fit_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fit") / "fit.json"
    path.write_text(json.dumps(FIT))
    return path


def _pairs(rows):
    return sorted((r["subject"], r["modality"], r["method"]) for r in rows)


@pytest.mark.slow  # ridge ceilings and a 2-epoch fit (~30 s on 2 idle cores)
def test_evaluate_a_store_without_ground_truth(tiny_study, fit_file, tmp_path, catch_logs,
                                               capsys):
    store = rewrite_store(read_dataset(tiny_study), tmp_path / "recorded", truth=False,
                          cnr=False)
    assert store.ground_truth_names == [] and store.cnr("S01") == {}
    out = tmp_path / "out"
    with catch_logs("info") as log:
        assert main(["joint", "evaluate", "--data", str(store.path), "--out", str(out),
                     "--fit", str(fit_file)]) == 0
    assert "Source recovery skipped" in log.text and "no ground-truth sources" in log.text
    results = json.loads((out / "results.json").read_text())
    assert results["source_recovery"] == []
    assert _pairs(results["prediction"]) == [
        ("S01", "meg", "neurofuse"), ("S01", "meg", "ridge"),
        ("S02", "fmri", "neurofuse"), ("S02", "fmri", "ridge")]
    assert all(math.isfinite(r["r_mean"]) for r in results["prediction"])
    ridge_meg = next(r for r in results["prediction"]
                     if r["modality"] == "meg" and r["method"] == "ridge")
    assert ridge_meg["r_mean"] > 0.3  # the tiny study's MEG (CNR 1) is learnable
    assert not (out / "recovery.npz").exists()
    printed = capsys.readouterr().out
    assert "neurofuse joint evaluate: MEG r neurofuse" in printed
    report = (out / "report.html").read_text()
    assert "Source recovery vs ground truth" not in report
    assert "source recovery was not scored" in report
    assert "The dataset recorded" in report  # not called a simulation


@pytest.mark.slow  # an oct5 tiny study, ridge, a 2-epoch fit, 4 inverses (~40 s idle)
def test_evaluate_a_meg_only_store_on_other_vertices(fit_file, tmp_path, catch_logs):
    from neurofuse.simulation.study import simulate_study
    from neurofuse.systems.joint.model import JointModel

    sim = read_dataset(simulate_study({"preset": "tiny", "spacing": "oct5"}, tmp_path / "sim"))
    store = rewrite_store(sim, tmp_path / "meg-only", subjects=["S01"])
    vertices = store.metadata["template"]["vertices"]
    assert sum(len(v) for v in vertices) == 2052  # oct5, not the tiny study's oct6
    out = tmp_path / "out"
    with catch_logs("info") as log:
        assert main(["joint", "evaluate", "--data", str(store.path), "--out", str(out),
                     "--fit", str(fit_file), "--smooth-fwhm", "10"]) == 0
    assert "fMNE left out" in log.text
    results = json.loads((out / "results.json").read_text())
    inverses = ["MNE", "dSPM", "sLORETA", "eLORETA"]
    # no fMRI: no fMNE, so the model's prior mean enters MNE only
    assert [r["method"] for r in results["source_recovery"]] == [
        "neurofuse", *inverses, "neurofuse+MNE",
        *(f"{m}+smooth" for m in [*inverses, "neurofuse+MNE"])]
    for r in results["source_recovery"]:
        assert -1 <= r["temporal_r"] <= 1 and r["meg_cnr"] == 1.0 and r["fmri_cnr"] is None
    assert _pairs(results["prediction"]) == [("S01", "meg", "neurofuse"), ("S01", "meg", "ridge")]
    model = JointModel.load(out / "fit" / "model")
    assert model.n_sources == 2052
    assert [list(v) for v in model.vertices] == [list(v) for v in vertices]
    assert (out / "report.html").is_file()


@pytest.mark.slow  # ridge of one subject and one inverse (~15 s idle)
def test_evaluate_a_model_on_a_subset_of_its_subjects(tiny_study, tmp_path):
    """A model fitted on MEG and fMRI subjects, scored on a store with only its MEG subject:
    the subjects the store lacks are not scored (nor asked for)."""
    from neurofuse.systems.joint.model import JointModel

    full = read_dataset(tiny_study)
    model = JointModel.from_dataset(full, encoder_kwargs=dict(d_model=8, n_layers=1, n_heads=2,
                                                              d_ff=16, window=10))
    model.save(tmp_path / "model")
    assert set(model.fmri_heads) == {"S02"}
    store = rewrite_store(full, tmp_path / "meg-only", subjects=["S01"])
    out = tmp_path / "out"
    assert main(["joint", "evaluate", "--data", str(store.path), "--out", str(out),
                 "--model", str(tmp_path / "model"), "--methods", "MNE", "-q"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert _pairs(results["prediction"]) == [("S01", "meg", "neurofuse"), ("S01", "meg", "ridge")]
    assert [r["method"] for r in results["source_recovery"]] == ["neurofuse", "MNE",
                                                                 "neurofuse+MNE"]
    assert not (out / "fit").exists()

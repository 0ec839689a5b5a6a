"""Choosing among fitted joint models by their validation prediction, never the test's."""

import numpy as np
import pytest

from neurofuse.evaluation.selection import (
    choose_by_validation,
    trained_on_validation,
    validation_choice,
    validation_prediction,
)


class _NoTest:
    """A store whose test stories' recordings cannot be read: scoring them raises."""

    def __init__(self, ds):
        self._ds = ds

    def __getattr__(self, name):
        return getattr(self._ds, name)

    def _guard(self, story):
        if story in self._ds.splits["test"]:
            raise AssertionError(f"read the test story {story!r}")

    def meg(self, subject, story, **kwargs):
        self._guard(story)
        return self._ds.meg(subject, story, **kwargs)

    def fmri(self, subject, story, **kwargs):
        self._guard(story)
        return self._ds.fmri(subject, story, **kwargs)


@pytest.fixture(scope="module")
def store_and_model(tiny_study):
    import torch

    from neurofuse.data.store import read_dataset
    from neurofuse.systems.joint.model import JointModel

    ds = read_dataset(tiny_study)
    torch.manual_seed(0)
    model = JointModel.from_dataset(ds, encoder_kwargs={"d_model": 8, "n_layers": 1,
                                                        "n_heads": 1, "d_ff": 16})
    return ds, model.eval()


def test_scores_the_validation_stories_as_the_prediction_table(store_and_model):
    from neurofuse.evaluation.prediction import prediction_table

    ds, model = store_and_model
    got = validation_prediction(_NoTest(ds), model)  # never reads a test recording
    assert got["stories"] == ds.splits["val"]
    ref, _ = prediction_table(ds, model=model, stories=ds.splits["val"])
    assert [(r["subject"], r["modality"]) for r in got["rows"]] == \
        [(r["subject"], r["modality"]) for r in ref]
    for mine, theirs in zip(got["rows"], ref):
        assert mine["r_mean"] == pytest.approx(theirs["r_mean"])
        assert "targets" not in mine
    by = {m: np.mean([r["r_mean"] for r in ref if r["modality"] == m]) for m in ("meg", "fmri")}
    assert got["by_modality"] == pytest.approx(by)
    assert got["score"] == pytest.approx((by["meg"] + by["fmri"]) / 2)
    # the test stories differ: scoring them gives other numbers (the guard above mattered)
    test_rows, _ = prediction_table(ds, model=model)
    assert [r["r_mean"] for r in test_rows] != [r["r_mean"] for r in got["rows"]]


def test_refuses_test_stories_and_stores_without_validation(store_and_model):
    ds, model = store_and_model
    with pytest.raises(ValueError, match="'stories' must not hold test stories"):
        validation_prediction(ds, model, stories=[*ds.splits["val"], *ds.splits["test"]])

    class _NoVal(_NoTest):
        splits = {"train": ["story-01"], "test": ["story-04"]}

    with pytest.raises(ValueError, match="split 'val'"):
        validation_prediction(_NoVal(ds), model)


def _scores(score, modalities=("meg", "fmri")):
    return {"by_modality": {m: score for m in modalities}, "score": score}


def test_chooses_the_highest_score_first_on_ties():
    assert choose_by_validation({"a": _scores(0.2), "b": _scores(0.3), "c": _scores(0.1)}) == "b"
    assert choose_by_validation({"b": _scores(0.3), "a": _scores(0.3)}) == "b"
    with pytest.raises(ValueError, match="same modalities"):
        choose_by_validation({"a": _scores(0.2), "b": _scores(0.3, ("meg",))})
    with pytest.raises(ValueError, match="nothing to choose"):
        choose_by_validation({})


def test_a_score_that_is_not_a_number_is_refused():
    with pytest.raises(ValueError, match="must be finite"):  # NaN would rank by its position
        choose_by_validation({"a": _scores(float("nan")), "b": _scores(0.3)})


def _done(folder, train=None, encoder=None):
    import json

    (folder / "model").mkdir(parents=True)
    (folder / "done.json").write_text(json.dumps({"train": train or {},
                                                  "encoder": encoder or {}}))
    return folder


def test_fits_trained_on_validation_are_scored_not_chosen(tmp_path, monkeypatch):
    import neurofuse.evaluation.selection as selection
    from neurofuse.systems.joint.model import JointModel

    fits = {"neurofuse": _done(tmp_path / "main", {"alpha_fmri": 1.0}),
            "alpha0.1": _done(tmp_path / "a", {"alpha_fmri": 0.1}),
            "mixture": _done(tmp_path / "m", encoder={"source_prior": "mixture"}),
            "auto": _done(tmp_path / "d", {"fmri_denoise": "auto"}),
            "mixture-train": _done(tmp_path / "t", encoder={
                "source_prior": "mixture", "source_mixture_loss": "training"})}
    assert [trained_on_validation(f) for f in fits.values()] == [False, False, True, True,
                                                                 False]
    score = {"main": 0.5, "a": 0.6, "m": 0.9, "d": 0.8, "t": 0.55}
    monkeypatch.setattr(JointModel, "load", classmethod(lambda cls, path: path.parent.name))
    monkeypatch.setattr(selection, "validation_prediction",
                        lambda ds, model: _scores(score[model]))
    choice = validation_choice(None, fits)
    # the in-sample fits score highest here, and are not chosen
    assert choice["chosen"] == "alpha0.1"
    assert choice["trained_on_validation"] == ["mixture", "auto"]
    assert choice["scores"]["mixture"]["score"] == 0.9
    with pytest.raises(ValueError, match="none can be chosen"):
        validation_choice(None, {"mixture": fits["mixture"]})
    with pytest.raises(FileNotFoundError, match="finished fit with done.json"):
        trained_on_validation(tmp_path / "none")


def test_each_subject_is_scored_on_the_validation_stories_it_has(store_and_model):
    """A store where one subject lacks a validation recording (real stores do): that subject
    is scored on the others, not refused."""
    ds, model = store_and_model

    class _Missing(_NoTest):
        splits = {**ds.splits, "val": [*ds.splits["val"], "story-02"]}

        def has(self, subject, modality, story):
            if subject == "S02" and story == "story-02":
                return False
            return self._ds.has(subject, modality, story)

    from neurofuse.evaluation.prediction import prediction_table

    got = validation_prediction(_Missing(ds), model)
    ref_s01, _ = prediction_table(ds, model=model, stories=["story-03", "story-02"])
    ref_s02, _ = prediction_table(ds, model=model, stories=["story-03"])
    want = {("S01", "meg"): [r for r in ref_s01 if r["subject"] == "S01"][0]["r_mean"],
            ("S02", "fmri"): [r for r in ref_s02 if r["subject"] == "S02"][0]["r_mean"]}
    assert {(r["subject"], r["modality"]): r["r_mean"] for r in got["rows"]} == \
        pytest.approx(want)
    # stories named explicitly must be recorded for every subject scored, as in the test tables
    with pytest.raises(ValueError, match="'S02' has no fmri for story 'story-02'"):
        validation_prediction(_Missing(ds), model, stories=_Missing.splits["val"])

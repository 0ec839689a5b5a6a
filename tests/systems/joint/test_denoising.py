"""The joint model's training fMRI targets: TrainConfig.fmri_denoise, in fit()."""

import csv
import json

import numpy as np
import pytest

from neurofuse.baselines.ridge import denoise_fmri
from neurofuse.systems.joint.trainer import TrainConfig, fit

ENCODER = dict(d_model=8, n_layers=2, n_heads=2, d_ff=16, window=10)
TRAIN = dict(piece_seconds=40.0, loss_seconds=20.0, batch_size=4, lr=1e-2, max_epochs=3,
             meg_first_epochs=1)


@pytest.fixture(scope="module")
def store3(store_factory):
    """Three 100-s training stories (cross-fitting needs 3), a val and a test story."""
    return store_factory(train_durations=(100.0, 100.0, 100.0), seed=3)


def _losses(history):
    return [(r["train_total"], r.get("val_total")) for r in history]


def test_config_aliases_and_errors():
    assert TrainConfig(fmri_denoise=True).fmri_denoise == "in-sample"
    assert TrainConfig(fmri_denoise=False).fmri_denoise == "none"
    with pytest.raises(ValueError, match="TrainConfig.fmri_denoise"):
        TrainConfig(fmri_denoise="out-of-fold")
    with pytest.raises(ValueError, match="fmri_denoise_folds"):
        TrainConfig(fmri_denoise_folds=1)


def test_fit_trains_on_the_cross_fitted_targets(store3, tmp_path):
    targets = denoise_fmri(store3, "cross-fitted")
    assert set(targets) == {"F1"} and set(targets["F1"]) == set(store3.splits["train"])
    by_config = fit(store3, tmp_path / "a", encoder_kwargs=ENCODER,
                    train_config=dict(TRAIN, fmri_denoise="cross-fitted"))
    # kept for a resumed run, equal to the denoiser's output
    with np.load(tmp_path / "a" / "fmri-denoise" / "cross-fitted.npz") as z:
        for story, arr in targets["F1"].items():
            np.testing.assert_array_equal(z[f"F1|{story}"], arr)
    explicit = fit(store3, tmp_path / "b", encoder_kwargs=ENCODER, train_config=TRAIN,
                   denoised_fmri=targets)
    raw = fit(store3, tmp_path / "c", encoder_kwargs=ENCODER, train_config=TRAIN)
    assert _losses(by_config) == _losses(explicit)
    # the fMRI phase (epochs 2-3) trains on other targets than the raw run
    assert _losses(by_config)[1:] != _losses(raw)[1:]
    assert _losses(by_config)[0] == _losses(raw)[0]  # MEG-first epoch: no fMRI term


def test_auto_picks_the_lowest_pilot_validation_loss(store3, tmp_path):
    out = tmp_path / "auto"
    fit(store3, out, encoder_kwargs=ENCODER,
        train_config=dict(TRAIN, fmri_denoise="auto", fmri_denoise_pilot_epochs=1))
    choice = json.loads((out / "fmri-denoise.json").read_text())
    scores = choice["pilot_val_total"]
    assert set(scores) == {"none", "in-sample", "cross-fitted"}
    for method, score in scores.items():
        with open(out / "fmri-denoise" / method / "history.csv") as f:
            rows = [r for r in csv.DictReader(f) if float(r["alpha_fmri"]) > 0]
        assert len(rows) == 1  # pilot: 1 MEG-first + 1 fMRI-phase epoch
        assert score == pytest.approx(min(float(r["val_total"]) for r in rows))
    assert choice["choice"] == min(scores, key=scores.get)
    # the pilots start from one shared MEG-first run, exactly as a straight run would
    straight = fit(store3, tmp_path / "straight", encoder_kwargs=ENCODER,
                   train_config=dict(TRAIN, max_epochs=2, patience=10**6))
    assert scores["none"] == min(r["val_total"] for r in straight if r["alpha_fmri"])


def test_auto_under_a_cosine_schedule_runs_each_pilot_through(store3, tmp_path):
    """The cosine schedule's period is max_epochs: a pilot cannot resume the shared
    MEG-first run (trained with another period), so each pilot runs straight through, as
    the same pilot settings would train in one go."""
    out = tmp_path / "auto"
    fit(store3, out, encoder_kwargs=ENCODER,
        train_config=dict(TRAIN, fmri_denoise="auto", fmri_denoise_pilot_epochs=1,
                          scheduler="cosine"))
    scores = json.loads((out / "fmri-denoise.json").read_text())["pilot_val_total"]
    assert not (out / "fmri-denoise" / "meg-first").exists()
    straight = fit(store3, tmp_path / "straight", encoder_kwargs=ENCODER,
                   train_config=dict(TRAIN, max_epochs=2, patience=10**6, scheduler="cosine"))
    assert scores["none"] == min(r["val_total"] for r in straight if r["alpha_fmri"])


class _NoVal:
    """The store with its validation story moved to the test split."""

    def __init__(self, ds):
        self._ds = ds
        self.splits = {k: v for k, v in ds.splits.items() if k != "val"}

    def __getattr__(self, name):
        return getattr(self._ds, name)


def test_auto_needs_validation_stories(store3, tmp_path):
    with pytest.raises(ValueError, match="validation stories"):
        fit(_NoVal(store3), tmp_path / "x", encoder_kwargs=ENCODER,
            train_config=dict(TRAIN, fmri_denoise="auto"))

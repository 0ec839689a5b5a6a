"""A finished joint-model fit is reused only under the settings it was trained with."""

import dataclasses
import json

import pytest

from neurofuse.evaluation.fit_reuse import _check_done_fit
from neurofuse.evaluation.pipeline import _fit_step
from neurofuse.systems.joint.trainer import load_fit_config


def _done(tmp_path, **train_changes):
    train, encoder = load_fit_config("tiny")
    fit_dir = tmp_path / "fit"
    fit_dir.mkdir()
    (fit_dir / "done.json").write_text(json.dumps(
        {"train": {**train.to_dict(), **train_changes}, "encoder": encoder,
         "denoised_fmri": train.fmri_denoise}))
    return fit_dir / "done.json"


def test_a_fit_under_other_settings_is_refused_before_anything_loads(tmp_path):
    _done(tmp_path, lr=0.5)
    with pytest.raises(ValueError, match=r"other settings \(differing: train\.lr\)"):
        _fit_step(None, tmp_path, fit_config="tiny", fmri_denoise=None, in_sample={},
                  device=None)


def test_the_same_settings_pass_and_unrecorded_ones_are_not_compared(tmp_path):
    done = _done(tmp_path)
    train, encoder = load_fit_config("tiny")
    _check_done_fit(done, {"train": train.to_dict(), "encoder": encoder})
    prev = json.loads(done.read_text())
    del prev["train"]["block_size"]  # a folder written before that setting existed
    done.write_text(json.dumps(prev))
    _check_done_fit(done, {"train": {**train.to_dict(), "block_size": 7}, "encoder": encoder})
    with pytest.raises(ValueError, match="encoder.d_model"):
        _check_done_fit(done, {"train": train.to_dict(),
                               "encoder": {**encoder, "d_model": encoder["d_model"] + 1}})


@pytest.mark.parametrize("before, now, epochs, same", [
    (0, 0, 5, True),
    (None, 20, 25, True),    # a fit from before min_epochs that ran past the new minimum
    (None, 20, 14, False),   # stopped at 14: the new minimum would have trained on
    (0, 20, None, False),    # no history to tell
    (30, 20, 40, False),     # an earlier minimum may have stopped it sooner
    (20, 20, 3, True),
    (20, 30, 40, True),
])
def test_a_later_min_epochs_reuses_only_fits_that_ran_past_it(tmp_path, before, now, epochs,
                                                             same):
    train, encoder = load_fit_config("tiny")
    train = dataclasses.replace(train, max_epochs=50)  # none of these ran all its epochs
    done = _done(tmp_path, max_epochs=50, **({} if before is None else {"min_epochs": before}))
    if before is None:
        prev = json.loads(done.read_text())
        prev["train"].pop("min_epochs", None)
        done.write_text(json.dumps(prev))
    if epochs is not None:
        (done.parent / "history.csv").write_text(
            "epoch,val_total\n" + "".join(f"{e + 1},1.0\n" for e in range(epochs)))
    want = {"train": {**train.to_dict(), "min_epochs": now}, "encoder": encoder}
    if same:
        _check_done_fit(done, want)
    else:
        with pytest.raises(ValueError, match=r"differing: train\.min_epochs\)"):
            _check_done_fit(done, want)


def test_min_epochs_at_its_default_keeps_old_fingerprints():
    from neurofuse.systems.joint.trainer import TrainConfig

    assert "min_epochs" not in TrainConfig().to_dict()
    assert TrainConfig(min_epochs=30).to_dict()["min_epochs"] == 30
    assert TrainConfig(min_epochs=30).loop_config().min_epochs == 30
    with pytest.raises(ValueError, match="TrainConfig.min_epochs"):
        TrainConfig(min_epochs=-1)


@pytest.mark.parametrize("epochs, same", [(3, True), (2, False)])
def test_a_fit_that_ran_all_its_epochs_is_reused_under_any_later_minimum(tmp_path, epochs,
                                                                          same):
    """The tiny preset trains 3 epochs: a minimum past them changes nothing in a fit that ran
    all 3 (it never stopped early), but one that stopped after 2 would have trained on."""
    train, encoder = load_fit_config("tiny")
    done = _done(tmp_path)
    (done.parent / "history.csv").write_text(
        "epoch,val_total\n" + "".join(f"{e + 1},1.0\n" for e in range(epochs)))
    want = {"train": {**train.to_dict(), "min_epochs": train.max_epochs + 10},
            "encoder": encoder}
    if same:
        _check_done_fit(done, want)
    else:
        # the message says what was trained and what is asked
        with pytest.raises(ValueError, match=r"train\.min_epochs: 0 there \(stopped after "
                                             r"2 epochs\), 13 now"):
            _check_done_fit(done, want)


def test_evaluate_study_refuses_a_finished_fit_before_any_work(tiny_study, tmp_path,
                                                               monkeypatch):
    """A folder whose finished fit was trained otherwise (e.g. under an earlier preset that
    stopped before today's min_epochs) is refused before the ridge ceilings run."""
    from neurofuse.evaluation import pipeline

    def no_work(*args, **kwargs):
        raise AssertionError("the ridge ceilings ran before the fit was checked")

    monkeypatch.setattr(pipeline, "_ridge_step", no_work)
    _done(tmp_path, lr=0.5)
    with pytest.raises(ValueError, match=r"other settings \(differing: train\.lr\)"):
        pipeline.evaluate_study(tiny_study, tmp_path, fit_config="tiny")

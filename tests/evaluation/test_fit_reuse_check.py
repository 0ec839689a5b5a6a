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
    # the message names the presets that keep the demo's earlier set-ups, taken from the
    # preset table (a fit made before the demo preset changed is reused under one of them)
    from neurofuse.systems.joint.trainer import FIT_PRESETS

    earlier = [name for name in FIT_PRESETS if name.startswith("demo-")]
    assert "demo-alpha1" in earlier
    with pytest.raises(ValueError, match="earlier `demo` preset") as err:
        _fit_step(None, tmp_path, fit_config="tiny", fmri_denoise=None, in_sample={},
                  device=None)
    assert all(f"'{name}'" in str(err.value) for name in earlier)


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


def _history(done, monitor, *, meg_first=1):
    """A history.csv of ``monitor`` (validation loss per epoch) under the tiny preset's
    curriculum: ``meg_first`` MEG-first epochs (alpha_fmri 0), then the fMRI phase."""
    (done.parent / "history.csv").write_text("epoch,alpha_fmri,val_total\n" + "".join(
        f"{e + 1},{0.0 if e < meg_first else 1.0},{m}\n" for e, m in enumerate(monitor)))


def _curve(best_at, n):
    """Validation loss falling until epoch ``best_at`` (1-based), then flat, for ``n``
    epochs; the MEG-first epoch is far lower (no fMRI term), as in a real joint fit."""
    return [0.1] + [2.0 - 0.01 * min(e, best_at) for e in range(2, n + 1)]


# The tiny preset's patience is 10: a fit whose loss stops falling at epoch b stops at
# b + 10, or at its min_epochs if that is later.
@pytest.mark.parametrize("before, now, best_at, ran, same", [
    (0, 0, 5, 15, True),
    (None, 12, 5, 15, True),   # from before min_epochs (0): the new minimum changes nothing
    (None, 20, 5, 15, False),  # stopped at 15: a minimum of 20 would have trained on
    (30, 20, 15, 30, False),   # held to 30 by its minimum: 20 would have stopped it at 25
    (30, 20, 25, 35, True),    # ran past both minimums: the same run
    (30, 35, 15, 30, False),   # the record ends before the new minimum
    (20, 30, 25, 35, True),
])
def test_a_changed_min_epochs_reuses_only_the_run_it_would_train(tmp_path, before, now,
                                                                  best_at, ran, same):
    train, encoder = load_fit_config("tiny")
    train = dataclasses.replace(train, max_epochs=50)  # none of these ran all its epochs
    assert train.patience == 10 and train.meg_first_epochs == 1
    done = _done(tmp_path, max_epochs=50, **({} if before is None else {"min_epochs": before}))
    if before is None:
        prev = json.loads(done.read_text())
        prev["train"].pop("min_epochs", None)
        done.write_text(json.dumps(prev))
    # the record is that of a real run: the loop's own rule stopped it there
    from neurofuse.training.loop import replay_early_stopping

    monitor = _curve(best_at, ran)
    phases = [0.0] + [1.0] * (ran - 1)
    assert replay_early_stopping(
        monitor, config={"max_epochs": 50, "patience": 10, "min_epochs": before or 0},
        phases=phases, may_stop=[p == 1.0 for p in phases])["epochs"] == ran
    _history(done, monitor)
    want = {"train": {**train.to_dict(), "min_epochs": now}, "encoder": encoder}
    if same:
        _check_done_fit(done, want)
    else:
        with pytest.raises(ValueError, match=r"differing: train\.min_epochs\)"):
            _check_done_fit(done, want)


def test_the_replay_follows_the_curriculum_and_patience_too(tmp_path):
    """The MEG-first epoch's far lower loss starts a phase of its own (else the replay would
    stop at epoch 11), and a changed patience is replayed like the minimum."""
    train, encoder = load_fit_config("tiny")
    train = dataclasses.replace(train, max_epochs=50)
    done = _done(tmp_path, max_epochs=50)
    _history(done, _curve(5, 15))  # stopped at 15 under patience 10
    _check_done_fit(done, {"train": {**train.to_dict(), "min_epochs": 15}, "encoder": encoder})
    # patience 12 would have trained on; patience 8 would have stopped at 13
    for patience in (12, 8):
        with pytest.raises(ValueError, match=r"differing: train\.patience\)"):
            _check_done_fit(done, {"train": {**train.to_dict(), "patience": patience},
                                   "encoder": encoder})
    # the epoch bound is replayed too: 15 stays the stop under any bound from 15 on
    _check_done_fit(done, {"train": {**train.to_dict(), "max_epochs": 80}, "encoder": encoder})
    with pytest.raises(ValueError, match=r"differing: train\.max_epochs\)"):
        _check_done_fit(done, {"train": {**train.to_dict(), "max_epochs": 12},
                               "encoder": encoder})


@pytest.mark.parametrize("fmri", [True, False])
def test_the_replay_stops_in_the_meg_first_epochs_only_without_fmri(tmp_path, fmri):
    """Six MEG-first epochs whose loss plateaus from the first: a fit with fMRI subjects may
    not stop there (it ran on into the fMRI phase, best at 9, stopped at 12 under patience
    3); one without fMRI stopped at 4. Each is reused under a minimum it ran past."""
    train, encoder = load_fit_config("tiny")
    train = dataclasses.replace(train, max_epochs=50, meg_first_epochs=6, patience=3)
    done = _done(tmp_path, max_epochs=50, meg_first_epochs=6, patience=3)
    (done.parent / "model").mkdir()
    (done.parent / "model" / "model.json").write_text(json.dumps(
        {"fmri_subjects": {"F1": {}} if fmri else {}}))
    meg = [0.5] * 6  # flat: patience runs out at epoch 4
    monitor = meg + [2.0 - 0.01 * min(e, 2) for e in range(6)] if fmri else meg[:4]
    _history(done, monitor, meg_first=6)
    _check_done_fit(done, {"train": {**train.to_dict(), "min_epochs": 4 if fmri else 3},
                           "encoder": encoder})
    with pytest.raises(ValueError, match=r"differing: train\.min_epochs\)"):
        _check_done_fit(done, {"train": {**train.to_dict(), "min_epochs": len(monitor) + 1},
                               "encoder": encoder})


def test_a_cosine_schedule_makes_the_epoch_bound_part_of_the_model(tmp_path):
    """Under a cosine learning rate the epoch bound is its period: another bound trains
    another model, whatever the history shows; the loop refuses to resume with one too."""
    from neurofuse.systems.joint.task import JointTask

    train, encoder = load_fit_config("tiny")
    train = dataclasses.replace(train, max_epochs=50, scheduler="cosine")
    done = _done(tmp_path, max_epochs=50, scheduler="cosine")
    _history(done, _curve(5, 15))
    _check_done_fit(done, {"train": {**train.to_dict(), "min_epochs": 15}, "encoder": encoder})
    with pytest.raises(ValueError, match=r"train\.max_epochs: 50 there, 80 now"):
        _check_done_fit(done, {"train": {**train.to_dict(), "max_epochs": 80},
                               "encoder": encoder})
    task = JointTask.__new__(JointTask)
    task.cfg = train
    assert "max_epochs" not in task.resume_may_change
    task.cfg = dataclasses.replace(train, scheduler="constant")
    assert "max_epochs" in task.resume_may_change


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
        with pytest.raises(ValueError, match=r"train\.min_epochs: 0 there, 13 now \(it "
                                             r"trained 2 epochs, which the settings now "
                                             r"would not stop at\)"):
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

"""A finished fit of Systems B, C and D is reused only under the settings it was trained with
(the record its folder keeps, or for a folder written before that record, the training
loop's ``config.json``), whatever the preset's name; settings that do not change the trained
model (the device, epochs or patience a finished run would not have reached) are not
compared. The fits are stubbed: each test checks the decision, not the training."""

import json

import pytest

from neurofuse.evaluation import transcoder_pipeline as tp


# ---------------------------------------------------------------- System D: the transcoder
@pytest.fixture
def transcoder_stub(monkeypatch):
    """A stand-in for the transcoder's ``fit``: writes what the loop writes (the model's
    ``model.json``, ``config.json`` and a ``history.csv`` with a falling validation loss)."""
    from neurofuse.systems import transcoder

    calls = []

    def fit(ds, out, *, config, resume=False):
        train, model, data = transcoder.load_fit_config(config)
        calls.append(train.to_dict())
        (out / "model").mkdir(parents=True)
        (out / "model" / "model.json").write_text("{}")
        (out / "config.json").write_text(json.dumps(
            {"train": train.to_dict(), "model": {**model, "n_channels": 8,
                                                 "volume_shape": [2, 2, 2]},
             "data": {"level": "group", "settings": data.to_dict()}}))
        (out / "history.csv").write_text("epoch,train_loss,val_loss\n" + "".join(
            f"{e + 1},1.0,{1.0 / (e + 1)}\n" for e in range(train.epochs)))
        return []

    monkeypatch.setattr(transcoder, "fit", fit)
    return calls


def test_transcoder_fit_reused_only_under_its_settings(tmp_path, transcoder_stub,
                                                       monkeypatch):
    from neurofuse.systems.transcoder import trainer

    model = tp._fit_or_load(None, tmp_path, None, "tiny", None)
    assert len(transcoder_stub) == 1 and (tmp_path / "fit" / "done.json").is_file()
    # the same set-up, on another device: reused, not trained again
    assert tp._fit_or_load(None, tmp_path, None, "tiny", "cpu") == model
    assert len(transcoder_stub) == 1
    with pytest.raises(ValueError, match=r"(?s)transcoder in .*other settings \(differing: "
                                         r"train\.lr\); train\.lr: 0\.003 there, 0\.5 now.*"
                                         r"Remove '.*fit'"):
        tp._fit_or_load(None, tmp_path, None, {"preset": "tiny", "train": {"lr": 0.5}}, None)
    # a preset of the same name whose content changed (here: a model size)
    tiny = trainer.FIT_PRESETS["tiny"]
    monkeypatch.setitem(trainer.FIT_PRESETS, "tiny",
                        {**tiny, "model": {**tiny["model"], "fmri_kernel": 5}})
    with pytest.raises(ValueError, match=r"differing: model\.fmri_kernel\)"):
        tp._fit_or_load(None, tmp_path, None, "tiny", None)
    assert len(transcoder_stub) == 1  # refused before any training


def test_transcoder_fit_epochs_compared_by_what_the_run_did(tmp_path, transcoder_stub):
    """A run that ran all its 2 epochs is the one 2 epochs train, not the one 3 would; one
    that early stopping ended is the one any later maximum trains."""
    tp._fit_or_load(None, tmp_path, None, "tiny", None)
    with pytest.raises(ValueError, match=r"differing: train\.epochs\); train\.epochs: 2 "
                                         r"there, 3 now \(it trained 2 epochs"):
        tp._fit_or_load(None, tmp_path, None, {"preset": "tiny", "train": {"epochs": 3}},
                        None)
    # a run early stopping ended after 3 of its 10 epochs (no improvement in its 3rd)
    done = json.loads((tmp_path / "fit" / "done.json").read_text())
    done["train"].update(epochs=10, patience=1)
    (tmp_path / "fit" / "done.json").write_text(json.dumps(done))
    (tmp_path / "fit" / "history.csv").write_text(
        "epoch,train_loss,val_loss\n1,1,1.0\n2,1,0.5\n3,1,0.7\n")
    tp._fit_or_load(None, tmp_path, None,
                    {"preset": "tiny", "train": {"epochs": 50, "patience": 1}}, None)
    with pytest.raises(ValueError, match=r"differing: train\.patience\)"):
        tp._fit_or_load(None, tmp_path, None,
                        {"preset": "tiny", "train": {"epochs": 10, "patience": 2}}, None)
    assert len(transcoder_stub) == 1


def test_transcoder_fit_from_before_the_record_compared_on_its_config(tmp_path,
                                                                     transcoder_stub):
    tp._fit_or_load(None, tmp_path, None, "tiny", None)
    (tmp_path / "fit" / "done.json").unlink()  # a folder written before done.json
    tp._fit_or_load(None, tmp_path, None, "tiny", None)
    assert not (tmp_path / "fit" / "done.json").exists()  # reused, left as it was
    with pytest.raises(ValueError, match=r"differing: data\.n_val\)"):
        tp._fit_or_load(None, tmp_path, None, {"preset": "tiny", "data": {"n_val": 2}}, None)
    assert len(transcoder_stub) == 1

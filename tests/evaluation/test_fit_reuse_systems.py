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


def test_transcoder_real_tiny_fit_from_before_the_record(tmp_path):
    """What the loop really writes (``config.json``) is what an old folder is compared on:
    a real ``tiny`` fit (seconds), its ``done.json`` removed."""
    from neurofuse.simulation.eeg_fmri import make_config, simulate_dataset

    ds = simulate_dataset(tmp_path / "d", make_config("noise_free", "tiny", bem="sphere"), 3,
                          n_test=1)
    model = tp._fit_or_load(ds, tmp_path / "ev", None, "tiny", None)
    stamp = (model / "model.json").stat().st_mtime_ns
    (tmp_path / "ev" / "fit" / "done.json").unlink()
    assert tp._fit_or_load(ds, tmp_path / "ev", None, "tiny", "cpu") == model
    assert (model / "model.json").stat().st_mtime_ns == stamp  # reused, not retrained
    with pytest.raises(ValueError, match=r"differing: model\.fmri_kernel\); "
                                         r"model\.fmri_kernel: 3 there, 5 now"):
        tp._fit_or_load(ds, tmp_path / "ev", None,
                        {"preset": "tiny", "model": {"fmri_kernel": 5}}, None)


# ---------------------------------------------------------------- System B: EEG -> MEG
@pytest.fixture
def eeg2meg_stub(monkeypatch):
    """A stand-in for the generator's ``fit``: what the loop writes, one history row per
    epoch."""
    from neurofuse.systems.eeg2meg import trainer

    calls = []

    def fit(world, out, *, encoder, config, resume=False):
        train, model, data = trainer.load_fit_config(config)
        calls.append(train.to_dict())
        (out / "model").mkdir(parents=True, exist_ok=True)  # a resumed run
        (out / "model" / "model.json").write_text("{}")
        (out / "config.json").write_text(json.dumps(
            {"train": train.to_dict(),
             "model": {"generator": {**model, "n_eeg": 4}, "encoder": {"origin": "scratch"}},
             "data": {"config": data.to_dict()}}))
        # val_loss falls every epoch, val_rec only in the first
        history = [{"epoch": e + 1, "train_loss": 1.0, "val_loss": 1.0 / (e + 1),
                    "val_rec": 2.0 if e == 0 else 2.5} for e in range(train.epochs)]
        (out / "history.csv").write_text("epoch,train_loss,val_loss,val_rec\n" + "".join(
            f"{h['epoch']},1.0,{h['val_loss']},{h['val_rec']}\n" for h in history))
        return history

    monkeypatch.setattr(trainer, "fit", fit)
    return calls


def test_eeg2meg_fit_reused_only_under_its_settings(tmp_path, eeg2meg_stub):
    from neurofuse.evaluation import eeg2meg_pipeline as ep

    def step(config, method="no_sfm", encoder="small"):
        return ep._fit_step(None, tmp_path, method, encoder=encoder, fit_config=config,
                            resume=True)

    model = step("tiny")
    assert step({"preset": "tiny", "train": {"device": "cpu"},
                 "model": {"posterior_samples": 5}}) == model  # same weights: reused
    assert len(eeg2meg_stub) == 1
    with pytest.raises(ValueError, match=r"'no_sfm' generator .*other settings \(differing: "
                                         r"train\.lr\); train\.lr: 0\.001 there, 0\.01 now"):
        step({"preset": "tiny", "train": {"lr": 1e-2}})
    with pytest.raises(ValueError, match=r"differing: encoder\); encoder: 'small' there, "
                                         r"'base' now"):
        step("tiny", encoder="base")
    # a refusal names the presets that keep the demo's earlier set-ups (stops 30 and 34)
    with pytest.raises(ValueError, match=r"earlier `demo` preset .*\('demo-reflect', "
                                         r"'demo-cb128'\)"):
        step({"preset": "tiny", "model": {"codebook_size": 8}})
    # the ablation is part of the set-up: another method's fit differs in it
    assert ep._fit_record("tiny", "no_sfm", "small", tmp_path)[1]["model"]["sfm"] is False
    assert ep._fit_record("tiny", "no_bsc", "small", tmp_path)[1]["model"]["sfm"] is True
    # the folder's own pretrained encoder is named wherever the folder is
    own = tmp_path / "pretrain" / "encoder" / "model"
    assert ep._encoder_key(own, tmp_path) == ep._encoder_key(str(own), tmp_path) \
        == "pretrain/encoder/model"
    # before any work: the whole evaluation refuses before reading the data set
    with pytest.raises(ValueError, match=r"differing: train\.lr\)"):
        ep.evaluate_eeg2meg(tmp_path / "no-such-world", tmp_path, encoder="small",
                            methods=("no_sfm",), fit_config={"preset": "tiny",
                                                             "train": {"lr": 1e-2}})
    # a record written before a model field existed (stop 33's band_pad) holds the value
    # every older run had: reused under it, refused under another
    done = tmp_path / "fits" / "no_sfm" / "done.json"
    record = json.loads(done.read_text())
    assert record["model"].pop("band_pad") == "reflect_limited"
    done.write_text(json.dumps(record))
    assert step({"preset": "tiny", "model": {"band_pad": "reflect_limited"}}) == model
    with pytest.raises(ValueError, match=r"model\.band_pad: 'reflect_limited' there, "
                                         r"'constant' now"):
        step({"preset": "tiny", "model": {"band_pad": "constant"}})
    # so is one written before train.monitor (stop 34): it monitored Eq. 9's total
    record = json.loads(done.read_text())
    assert record["train"].pop("monitor") == "val_loss"
    done.write_text(json.dumps(record))
    old = {"preset": "tiny", "model": {"band_pad": "reflect_limited"}}
    assert step(old) == model
    with pytest.raises(ValueError, match=r"train\.monitor: 'val_loss' there, 'val_rec' now"):
        step({**old, "train": {"monitor": "val_rec"}})
    # a fit monitoring L_rec records it, and longer training is replayed on it
    rec = {"preset": "tiny", "train": {"monitor": "val_rec"}}
    step(rec, method="no_bsc")
    record = json.loads((tmp_path / "fits" / "no_bsc" / "done.json").read_text())
    assert record["monitored"] == [2.0, 2.5] and record["val_loss"] == [1.0, 0.5]
    with pytest.raises(ValueError, match=r"train\.epochs: 2 there, 3 now \(it trained 2 "
                                         r"epochs, which the settings now would not stop at"):
        step({**rec, "train": {**rec["train"], "epochs": 3}}, method="no_bsc")
    # with patience 1, L_rec (not the falling total) stops it after its 2 epochs: reused
    assert step({**rec, "train": {**rec["train"], "epochs": 3, "patience": 1}},
                method="no_bsc") == tmp_path / "fits" / "no_bsc" / "model"
    # a folder written before the record: compared on the loop's config.json
    done.write_text(json.dumps({"epochs": 2, "val_loss": [1.0, 0.5]}))
    assert step("tiny", encoder="base") == model  # the encoder it was given is not recorded
    with pytest.raises(ValueError, match=r"differing: model\.latent_dim\)"):
        step({"preset": "tiny", "model": {"latent_dim": 8}})
    assert len(eeg2meg_stub) == 2  # the first and the no_bsc fit


def test_eeg2meg_fit_not_reused_on_another_pretraining(tmp_path, eeg2meg_stub):
    """A fit records its pretrained encoder's weight checksum: a pretraining redone at the
    same path (other weights) makes its fits refuse, a scratch encoder's fit does not care,
    and a record written before the checksum is not compared on it."""
    from neurofuse.evaluation import eeg2meg_pipeline as ep

    encoder = tmp_path / "pretrain" / "encoder" / "model"
    encoder.mkdir(parents=True)

    def weights(checksum):
        (encoder / "model.json").write_text(json.dumps(
            {"checksums": {"model.safetensors": checksum}}))

    def step(method):
        return ep._fit_step(None, tmp_path, method, encoder=encoder, fit_config="tiny",
                            resume=True)

    weights("aaaa")
    model = step("generator")
    scratch = step("no_pretrained")
    done = json.loads((tmp_path / "fits" / "generator" / "done.json").read_text())
    assert done["encoder_weights"] == "aaaa"
    assert "encoder_weights" not in json.loads(
        (tmp_path / "fits" / "no_pretrained" / "done.json").read_text())
    assert step("generator") == model and len(eeg2meg_stub) == 2  # same weights: reused
    weights("bbbb")  # pretrained again, other weights
    with pytest.raises(ValueError, match=r"'generator' generator .*differing: "
                                         r"encoder_weights\); encoder_weights: 'aaaa' there, "
                                         r"'bbbb' now") as err:
        step("generator")
    assert "earlier `demo` preset" not in str(err.value)  # no preset would make it reusable
    assert step("no_pretrained") == scratch and len(eeg2meg_stub) == 2
    # before any work, while the folder's pretraining is not finished (no done.json), its
    # changing weights are not compared: the check after pretraining is
    ep._check_finished(tmp_path, ep.DEMO, ("generator",), encoder=None, fit_config="tiny",
                       seed=0)
    # an interrupted fit begun on the earlier weights is not resumed on the new ones
    fits = tmp_path / "fits" / "generator"
    (fits / "done.json").unlink()
    (fits / "checkpoints").mkdir()
    with pytest.raises(ValueError, match=r"begun on another pretrained encoder \(weights "
                                         r"aaaa there, bbbb now"):
        step("generator")
    weights("aaaa")
    assert step("generator") == model and len(eeg2meg_stub) == 3  # resumed on its own
    done = json.loads((fits / "done.json").read_text())
    # the loop folder names the same weights as its model/ folder
    assert ep._encoder_weights(encoder.parent) == ep._encoder_weights(encoder) == "aaaa"
    assert ep._encoder_weights("small") is None
    # a record from before stop 31 has no checksum: not compared on it
    (tmp_path / "fits" / "generator" / "done.json").write_text(json.dumps(
        {k: v for k, v in done.items() if k != "encoder_weights"}))
    weights("cccc")
    assert step("generator") == model and len(eeg2meg_stub) == 3


def test_eeg2meg_pretraining_reused_only_under_its_settings(tmp_path):
    from neurofuse.evaluation import eeg2meg_pipeline as ep

    spec = {**ep.DEMO, "pretrain": {"encoder_config": "small", "config": {"epochs": 2}}}
    folder = tmp_path / "pretrain"
    (folder / "encoder" / "model").mkdir(parents=True)
    (folder / "encoder" / "model" / "model.json").write_text("{}")
    (folder / "encoder" / "history.csv").write_text("epoch,train_loss\n1,1.0\n2,0.5\n")
    record = ep._pretrain_record(spec, 0)
    (folder / "done.json").write_text(json.dumps({"n_epochs": 10, **record}))
    ep._check_pretrain(tmp_path, spec, 0)
    with pytest.raises(ValueError, match=r"pretrained encoder .*differing: world\.seed\); "
                                         r"world\.seed: 1000 there, 1001 now.*Remove '.*"
                                         r"pretrain' \(and '.*fits'"):
        ep._check_pretrain(tmp_path, spec, 1)
    # a folder written before the record: its loop's config.json (the world is not there)
    (folder / "done.json").write_text(json.dumps({"n_epochs": 10, "store": "x"}))
    (folder / "encoder" / "config.json").write_text(json.dumps(
        {"train": record["train"], "encoder": record["encoder"], "data": {}}))
    ep._check_pretrain(tmp_path, spec, 1)
    with pytest.raises(ValueError, match=r"differing: train\.epochs\); train\.epochs: 2 "
                                         r"there, 3 now"):
        ep._check_pretrain(tmp_path, {**spec, "pretrain": {"config": {"epochs": 3}}}, 0)


# ---------------------------------------------------------------- System C: MEG -> fMRI
def test_meg2fmri_fit_reused_only_under_its_settings(tmp_path, monkeypatch):
    from neurofuse.evaluation import meg2fmri as em
    from neurofuse.systems.meg2fmri import trainer

    settings = {"data": "d", "held_out": ["s3"], "event": "word", "pairing": {}, "seed": 0}
    em._check_settings(tmp_path, settings, "tiny")
    recorded = json.loads((tmp_path / "settings.json").read_text())
    assert recorded["fit_config"] == "tiny" and recorded["fit"]["train"]["epochs"] == 3
    em._check_settings(tmp_path, settings, {"preset": "tiny", "train": {"device": "cpu"}})
    with pytest.raises(ValueError, match=r"cGAN .*differing: train\.lr\); train\.lr: 0\.001 "
                                         r"there, 0\.5 now"):
        em._check_settings(tmp_path, settings, {"preset": "tiny", "train": {"lr": 0.5}})
    # a preset of the same name whose content changed
    tiny = trainer.FIT_PRESETS["tiny"]
    monkeypatch.setitem(trainer.FIT_PRESETS, "tiny",
                        {**tiny, "model": {**tiny["model"], "g_channels": [8, 4]}})
    with pytest.raises(ValueError, match=r"differing: model\.g_channels\)"):
        em._check_settings(tmp_path, settings, "tiny")
    monkeypatch.setitem(trainer.FIT_PRESETS, "tiny", tiny)
    # a folder from before the record: its fit_config name only, and the cGAN's config.json
    del recorded["fit"]
    recorded["fit_config"] = "an-old-name"
    (tmp_path / "settings.json").write_text(json.dumps(recorded))
    em._check_settings(tmp_path, settings, {"preset": "tiny", "train": {"lr": 0.5}})  # no fit
    (tmp_path / "cgan").mkdir()
    train, model = trainer.load_fit_config("tiny")
    (tmp_path / "cgan" / "config.json").write_text(json.dumps(
        {"train": train.to_dict(), "model": {**model, "n_features": 7}, "data": {}}))
    em._check_settings(tmp_path, settings, "tiny")
    with pytest.raises(ValueError, match=r"differing: train\.lr\)"):
        em._check_settings(tmp_path, settings, {"preset": "tiny", "train": {"lr": 0.5}})

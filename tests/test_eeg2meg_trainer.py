"""System B's trainer, model folder and synthesis: the frozen encoder, exact resume, units."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from neurofuse.data.store import read_dataset
from neurofuse.nn.labram import LaBraM, LaBraMConfig
from neurofuse.nn.labram_checkpoint import LaBraMCheckpointError
from neurofuse.systems.eeg2meg.config import GeneratorConfig
from neurofuse.systems.eeg2meg.data import PairedEpochs
from neurofuse.systems.eeg2meg.model import load_generator, synthesize
from neurofuse.systems.eeg2meg.pretrain import (import_labram_checkpoint, load_encoder,
                                                pretrain_encoder)
from neurofuse.systems.eeg2meg.task import GeneratorTask
from neurofuse.systems.eeg2meg.trainer import TrainConfig, fit, load_fit_config

from test_eeg2meg_data import _store
from test_labram_checkpoint import SIZES, _model, _official_pretraining_state

SCRATCH = {"preset": "tiny", "model": {"encoder": "scratch"}}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_fit_scratch_resume_is_exact(tmp_path):
    path, _ = _store(tmp_path)
    # the dead-code restart on (a threshold that restarts codes every batch): its moving use
    # and its random choices must also continue exactly
    model = {**SCRATCH["model"], "dead_code_threshold": 5.0}
    cfg = {**SCRATCH, "model": model, "train": {"epochs": 2}}
    full = fit(path, tmp_path / "full", encoder={"preset": "tiny"}, config=cfg)
    assert len(full) == 2 and "val_loss" in full[-1] and np.isfinite(full[-1]["val_loss"])
    fit(path, tmp_path / "half", encoder={"preset": "tiny"},
        config={**cfg, "train": {"epochs": 1}})
    # resumed with another generation-only setting (how many samples generation averages):
    # the checkpoint still matches, and the weights are those of the uninterrupted run
    fit(path, tmp_path / "half", encoder={"preset": "tiny"}, resume=True,
        config={**cfg, "model": {**model, "posterior_samples": 3}})
    a, b = _weights(tmp_path / "full" / "model"), _weights(tmp_path / "half" / "model")
    assert a.keys() == b.keys() and "quantizer.usage" in a
    assert torch.isfinite(a["quantizer.usage"]).all()
    assert (a["quantizer.usage"] == 5.0).any()  # codes restarted in the last batch
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    # the encoder trained with the generator (scratch): it is in the optimised weights
    meta = json.loads((tmp_path / "full" / "model" / "model.json").read_text())
    assert meta["encoder"]["origin"] == "scratch"
    assert meta["data"]["subjects"]["test"] == ["sub-04"]


def test_monitor_val_rec_keeps_the_best_reconstruction_and_old_checkpoints_stay_safe(tmp_path):
    """``TrainConfig.monitor='val_rec'``: early stopping and the kept model follow L_rec
    alone; a checkpoint written before the setting (it monitored the total) resumes under
    the total and is refused under L_rec."""
    path, _ = _store(tmp_path)
    cfg = {**SCRATCH, "train": {"epochs": 3, "monitor": "val_rec"}}
    hist = fit(path, tmp_path / "rec", encoder={"preset": "tiny"}, config=cfg)
    state = json.loads((tmp_path / "rec" / "checkpoints" / "epoch-0003" / "state.json")
                       .read_text())
    assert state["config"]["monitor"] == "val_rec"
    assert state["trainer"]["best_val"] == min(h["val_rec"] for h in hist)
    # the same run as one monitoring the total, up to the last epoch (only the choice differs)
    total = fit(path, tmp_path / "total", encoder={"preset": "tiny"},
                config={**SCRATCH, "train": {"epochs": 3}})
    assert [h["val_loss"] for h in total] == [h["val_loss"] for h in hist]
    # a checkpoint from before the setting: read as monitoring the total (and from before
    # stop 30's and 33's model settings: read as holding the value every such run had)
    ckpt = tmp_path / "total" / "checkpoints" / "epoch-0003" / "state.json"
    old = json.loads(ckpt.read_text())
    assert old["config"].pop("monitor") == "val_loss"
    generator = old["model_config"]["generator"]
    assert (generator.pop("band_pad"), generator.pop("dead_code_threshold")) \
        == ("reflect_limited", 0.0)
    ckpt.write_text(json.dumps(old))
    with pytest.raises(ValueError, match=r"monitor: 'val_loss' in the checkpoint, 'val_rec' "
                                         r"now"):
        fit(path, tmp_path / "total", encoder={"preset": "tiny"}, resume=True,
            config={**SCRATCH, "train": {"epochs": 4, "monitor": "val_rec"}})
    assert len(fit(path, tmp_path / "total", encoder={"preset": "tiny"}, resume=True,
                   config={**SCRATCH, "train": {"epochs": 4}})) == 4
    # a checkpoint of another model names what differs (the demo's padding, stop 34)
    with pytest.raises(ValueError, match=r"Incompatible checkpoint.*generator\.band_pad: "
                                         r"'reflect_limited' in the checkpoint, 'constant' now"):
        fit(path, tmp_path / "total", encoder={"preset": "tiny"}, resume=True,
            config={**SCRATCH, "train": {"epochs": 5},
                    "model": {**SCRATCH["model"], "band_pad": "constant"}})
    with pytest.raises(ValueError, match=r"'TrainConfig\.monitor'.*got 'val_vq'"):
        load_fit_config({**SCRATCH, "train": {"monitor": "val_vq"}})
    # the progress bar shows what early stopping follows
    for monitor, shown in (("val_rec", ("val_rec",)), ("val_loss", ())):
        task = GeneratorTask(None, TrainConfig(monitor=monitor), build_model=None,
                             describe={}, save=None)
        assert task.progress_keys == ("train_loss", "val_loss", *shown)


def test_pretrained_encoder_stays_frozen_and_synthesis_is_physical(tmp_path):
    path, truth = _store(tmp_path)
    ds = read_dataset(path)
    eeg_only = np.asarray(ds.epochs("sub-09", "eeg", "imagery"), dtype=np.float32)
    enc = pretrain_encoder([eeg_only], tmp_path / "enc", encoder_config="tiny",
                           config={"epochs": 1, "batch_size": 4, "val_fraction": 0.0})
    fit(path, tmp_path / "fit", encoder=enc, config={"preset": "tiny"})
    # what a checkpoint must match: the model's settings, but not how it generates
    described = json.loads((tmp_path / "fit" / "config.json").read_text())["model"]
    assert {"codebook_size", "dead_code_threshold", "band_pad"} <= set(described["generator"])
    assert "posterior_samples" not in described["generator"]
    before = _weights(enc)
    after = _weights(tmp_path / "fit" / "model")
    for k, v in before.items():  # the generator keeps the pretrained encoder bit for bit
        torch.testing.assert_close(after[f"encoder.{k}"], v, rtol=0, atol=0)
    # the frozen encoder's cached tokens (the default) train the same model as running it
    fit(path, tmp_path / "nocache", encoder=enc,
        config={"preset": "tiny", "train": {"cache_encoder": False}})
    again = _weights(tmp_path / "nocache" / "model")
    for k in after:
        torch.testing.assert_close(again[k], after[k], rtol=1e-4, atol=1e-5)
    model, meta = load_generator(tmp_path / "fit", return_meta=True)
    assert meta["encoder"]["origin"] == "pretrained"
    assert all(not p.requires_grad for p in model.encoder.parameters())
    eeg = truth["sub-04"][0]
    meg = synthesize(tmp_path / "fit" / "model", eeg)
    assert meg.shape == truth["sub-04"][1].shape and np.isfinite(meg).all()
    # standardised outputs mapped back: magnetometer (channel 2) ~1e-13, gradiometers ~1e-11
    pe = PairedEpochs(path)
    np.testing.assert_allclose(meta["data"]["meg_scale"][1], pe.meg_scale[1], rtol=1e-6)
    assert np.abs(meg[:, 2]).mean() < 1e-11 < np.abs(meg[:, 0]).mean() * 100
    epochs = synthesize(tmp_path / "fit" / "model", ds.to_mne_epochs("sub-04", "eeg", "faces"),
                        as_epochs=True)
    assert epochs.ch_names == list(ds.info("sub-04", "meg")["ch_names"])
    np.testing.assert_allclose(epochs.get_data(), meg, rtol=1e-3, atol=1e-17)  # float32 store
    # the averaged samples draw from one stream for the whole call: the same epoch twice,
    # in two batches, gets two different noise draws (a generator per batch would repeat
    # them); one DDIM run from the prior's mean (n_samples=0) draws nothing
    twice = np.stack([eeg[0], eeg[0]])
    split = synthesize(tmp_path / "fit" / "model", twice, batch_size=1)
    assert model.config.posterior_samples > 0
    assert not np.allclose(split[0], split[1], rtol=1e-3, atol=0)  # tesla: no absolute tol
    ddim = synthesize(tmp_path / "fit" / "model", twice, batch_size=1, n_samples=0)
    np.testing.assert_array_equal(ddim[0], ddim[1])


def _changed(a, b):
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


def test_a_local_labram_checkpoint_becomes_the_frozen_encoder(tmp_path):
    """A user's checkpoint in the original repository's layout, imported as an encoder folder
    (library and command line alike), is the generator's frozen encoder bit for bit."""
    from neurofuse._io import hash_file
    from neurofuse.cli import main

    path, _ = _store(tmp_path)
    source = _model(0)
    ckpt = tmp_path / "labram.pth"
    torch.save({"model": _official_pretraining_state(source)}, ckpt)
    # what weights do not store (conv_groups: GroupNorm's; LaBraM's 4 is assumed otherwise)
    sizes = {k: getattr(source.config, k) for k in ("patch_size", "conv_stride", "conv_groups")}
    enc = import_labram_checkpoint(ckpt, tmp_path / "enc", **sizes)
    encoder, meta = load_encoder(enc, return_meta=True)
    assert meta["pretraining"] == {"source": "checkpoint", "file": "labram.pth",
                                   "sha256": hash_file(ckpt), "layout": "labram"}
    assert encoder.config == source.config
    for k, v in source.state_dict().items():
        torch.testing.assert_close(encoder.state_dict()[k], v, rtol=0, atol=0, msg=k)
    assert main(["eeg2meg", "import-encoder", str(ckpt), "--out", str(tmp_path / "cli"),
                 "--patch-size", str(sizes["patch_size"]), "--conv-stride",
                 str(sizes["conv_stride"]), "--conv-groups", str(sizes["conv_groups"]),
                 "-q"]) == 0
    cli, lib = _weights(tmp_path / "cli" / "model"), _weights(enc)
    assert cli.keys() == lib.keys() and all(torch.equal(cli[k], lib[k]) for k in lib)
    with pytest.raises(FileExistsError, match=r"already exists.*--overwrite"):
        import_labram_checkpoint(tmp_path / "no-such.pth", tmp_path / "cli")
    # without q/k norms the heads are not in the weights: the command line passes them
    plain = LaBraM(LaBraMConfig.from_dict({**SIZES, "qk_norm": False}))
    save_file(plain.state_dict(), str(tmp_path / "plain.safetensors"))
    with pytest.raises(LaBraMCheckpointError, match="--n-heads"):
        import_labram_checkpoint(tmp_path / "plain.safetensors", tmp_path / "plain", **sizes)
    assert main(["eeg2meg", "import-encoder", str(tmp_path / "plain.safetensors"), "--out",
                 str(tmp_path / "plain"), "--n-heads", str(plain.config.n_heads),
                 *[f"--{k.replace('_', '-')}={v}" for k, v in sizes.items()], "-q"]) == 0
    assert load_encoder(tmp_path / "plain").config == plain.config
    fit(path, tmp_path / "fit", encoder=enc, config={"preset": "tiny"})
    after = _weights(tmp_path / "fit" / "model")
    for k, v in source.state_dict().items():
        torch.testing.assert_close(after[f"encoder.{k}"], v, rtol=0, atol=0, msg=k)
    # epochs that are not a whole number of the checkpoint's patches: an error naming
    # patch_size before any training
    (tmp_path / "odd").mkdir()
    odd, _ = _store(tmp_path / "odd", n_times=80)
    with pytest.raises(ValueError, match=r"multiple of the encoder's patch_size \(50\)"):
        fit(odd, tmp_path / "fit80", encoder=enc, config={"preset": "tiny"})
    assert not (tmp_path / "fit80" / "model").exists()


def test_earlier_demo_presets_differ_from_demo_only_where_the_demo_changed():
    """The stop 22-29 (demo-cb128) and stop 30-33 (demo-reflect) demo set-ups stay
    reproducible: they differ from ``demo`` in what changed since, nothing else (stop 34: the
    band loss's padding and what early stopping monitors)."""
    demo, old = load_fit_config("demo"), load_fit_config("demo-cb128")
    assert dataclasses.replace(demo[0], epochs=16, patience=None, monitor="val_loss") == old[0]
    assert demo[2] == old[2]
    assert (demo[0].epochs, demo[0].patience, old[0].epochs, old[0].patience) == (40, 5, 16, None)
    assert _changed(demo[1], old[1]) == {"codebook_size", "dead_code_threshold", "band_pad"}
    assert (old[1]["codebook_size"], old[1]["dead_code_threshold"]) == (128, 0.0)
    reflect = load_fit_config("demo-reflect")
    assert dataclasses.replace(demo[0], monitor="val_loss") == reflect[0]
    assert reflect[2] == demo[2]
    assert _changed(demo[1], reflect[1]) == {"band_pad"}
    # the earlier presets monitor the total, as every fit before stop 34 did (TrainConfig's
    # default, the value a checkpoint without the field is read with), the demo and the
    # paper L_rec
    assert old[0].monitor == reflect[0].monitor == TrainConfig().monitor == "val_loss"
    assert demo[0].monitor == load_fit_config("paper")[0].monitor == "val_rec"
    # the earlier presets pad as every fit before stop 34 did (GeneratorConfig's default, the
    # value a checkpoint without the field is read with), the demo and the paper with zeros
    assert old[1]["band_pad"] == reflect[1]["band_pad"] == GeneratorConfig().band_pad \
        == "reflect_limited"
    assert demo[1]["band_pad"] == load_fit_config("paper")[1]["band_pad"] == "constant"


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="must not set"):
        load_fit_config({"preset": "tiny", "model": {"n_meg": 3}})
    path, _ = _store(tmp_path)
    with pytest.raises(ValueError, match="pretrained encoder"):
        fit(path, tmp_path / "x", encoder={"preset": "tiny"}, config={"preset": "tiny"})
    with pytest.raises(ValueError, match="shape"):
        synthesize_path = tmp_path / "f"
        fit(path, synthesize_path, encoder={"preset": "tiny"},
            config={**SCRATCH, "train": {"epochs": 1}})
        synthesize(synthesize_path, np.zeros((2, 3, 50)))


def test_a_folder_saved_before_the_aligned_condition_loads_as_cross_attention_only(tmp_path):
    """Model folders written before ``aligned_dim`` existed lack the field in ``model.json``;
    their denoiser had no time-aligned path, so they must load with ``aligned_dim = 0`` (the
    dataclass default, 8, would ask for weights the file does not hold)."""
    import mne

    from neurofuse.systems.eeg2meg.config import GeneratorConfig
    from neurofuse.systems.eeg2meg.model import save_generator
    from neurofuse.systems.eeg2meg.trainer import build_generator

    _, model_kwargs, _ = load_fit_config({**SCRATCH, "model": {**SCRATCH["model"],
                                                                "aligned_dim": 0}})
    sizes = {"n_eeg": 3, "n_meg": 2, "n_times": 100, "sfreq": 100.0}
    cfg = GeneratorConfig.from_dict({**model_kwargs, **sizes})
    assert GeneratorConfig.aligned_dim > 0 == cfg.aligned_dim  # the old layout is not the default
    torch.manual_seed(0)
    model, enc_info = build_generator(cfg, {"preset": "tiny"})
    model.eval()
    assert not hasattr(model.denoiser, "unpatchify")
    info = mne.create_info(["MEG0111", "MEG0112"], sizes["sfreq"], ["mag", "grad"])
    data = {"eeg_names": ["a", "b", "c"], "meg_names": list(info["ch_names"])}
    folder = save_generator(tmp_path / "model", model, encoder_info=enc_info, data=data,
                            meg_info=info)
    meta_file = folder / "model.json"
    meta = json.loads(meta_file.read_text())
    # as the folder was written before these fields existed
    for field in ("aligned_dim", "posterior_samples", "posterior_steps"):
        del meta["generator"][field]
    meta_file.write_text(json.dumps(meta))

    torch.manual_seed(1)  # other initial weights: everything must come from the folder
    loaded = load_generator(folder)
    assert loaded.config.aligned_dim == 0 and loaded.denoiser.aligned_dim == 0
    assert not hasattr(loaded.denoiser, "unpatchify")
    # ... and it generates as such folders did: one DDIM run from z_T = 0, not the new
    # default mean of posterior samples
    assert GeneratorConfig.posterior_samples > 0 == loaded.config.posterior_samples
    eeg = torch.randn(2, 3, 100, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(loaded.generate(eeg), model.generate(eeg, n_samples=0),
                                   rtol=0, atol=0)

    # a folder that names its aligned_dim keeps it (the fallback is only for a missing field)
    torch.manual_seed(0)
    aligned, _ = build_generator(cfg.replace(aligned_dim=2), {"preset": "tiny"})
    folder = save_generator(tmp_path / "aligned", aligned, encoder_info=enc_info, data=data,
                            meg_info=info)
    again = load_generator(folder)
    assert again.config.aligned_dim == 2 and again.denoiser.unpatchify.out_features == 2 * 50


@pytest.mark.gpu
def test_fit_resume_and_synthesis_on_gpu(tmp_path):
    """Issue 12: trains and generates on a GPU, resumes there as on the CPU, and the weights
    it saves generate on the CPU what they generate on the GPU."""
    path, truth = _store(tmp_path)
    cfg = {**SCRATCH, "train": {"epochs": 2, "device": "cuda"}}
    fit(path, tmp_path / "full", encoder={"preset": "tiny"}, config=cfg)
    fit(path, tmp_path / "half", encoder={"preset": "tiny"},
        config={**cfg, "train": {"epochs": 1, "device": "cuda"}})
    fit(path, tmp_path / "half", encoder={"preset": "tiny"}, resume=True, config=cfg)
    a, b = _weights(tmp_path / "full" / "model"), _weights(tmp_path / "half" / "model")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    eeg = truth["sub-04"][0][:4]
    on_gpu = synthesize(tmp_path / "full" / "model", eeg, device="cuda", n_samples=0)
    on_cpu = synthesize(tmp_path / "full" / "model", eeg, device="cpu", n_samples=0)
    assert np.isfinite(on_gpu).all()
    scale = np.abs(on_cpu).max()
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=0, atol=1e-4 * scale)

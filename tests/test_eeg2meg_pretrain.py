"""System B's self-supervised encoder pretraining (masked patch modelling) in the shared loop."""

import numpy as np
import pytest
import torch

from neurofuse.nn.labram import LaBraM, LaBraMConfig, electrode_indices
from neurofuse.systems.eeg2meg.pretrain import (MaskedPatchModel, PretrainConfig,
                                                load_encoder, masked_patch_loss,
                                                patch_targets, pretrain_encoder,
                                                random_patch_mask)
from neurofuse.training.checkpoint import load_checkpoint

ENC = {"preset": "tiny"}  # 50-sample patches, 28 features, 1 block


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _eeg(n_epochs=12, n_channels=3, n_times=200, seed=0):
    """Oscillations (a frequency per epoch and channel) in noise, in volts."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_times) / 250.0
    f = rng.uniform(4, 30, (n_epochs, n_channels, 1))
    phase = rng.uniform(0, 2 * np.pi, (n_epochs, n_channels, 1))
    x = np.sin(2 * np.pi * f * t + phase) + 0.3 * rng.standard_normal((n_epochs, n_channels,
                                                                        n_times))
    return 1e-5 * x


def _cfg(**changes):
    return {"epochs": 3, "batch_size": 8, "lr": 2e-3, "val_fraction": 0.25, **changes}


def _standardised(x):
    return (x - x.mean()) / (x.std(ddof=1) + 1e-8)


def test_mask_draw():
    mask = random_patch_mask(50, 8, 0.5, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (50, 8) and (mask.sum(1) == 4).all()
    assert len({tuple(r) for r in mask.int().tolist()}) > 10  # positions vary
    assert (random_patch_mask(5, 3, 0.01).sum(1) == 1).all()  # at least one patch


def test_targets_and_masked_loss_by_hand():
    """Fourier targets and the masked-only loss against a numpy computation."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 150))
    pred = rng.standard_normal((4, 3, 2 * 26))
    mask = np.zeros((4, 3), bool)
    mask[0, 1] = mask[1, 0] = mask[1, 2] = mask[3, 0] = True

    spec = np.fft.rfft(x.reshape(4, 3, 50), axis=-1)
    amp = np.stack([_standardised(a) for a in np.abs(spec)])
    phase = np.stack([_standardised(p) for p in np.angle(spec)])
    expected_t = np.concatenate([amp, phase], axis=-1)
    got_t = patch_targets(torch.as_tensor(x), 50, "fourier")
    np.testing.assert_allclose(got_t.numpy(), expected_t, rtol=1e-4, atol=1e-4)

    err = (pred - expected_t)[mask]  # (4 masked patches, 52)
    expected = (err[:, :26] ** 2).mean() + (err[:, 26:] ** 2).mean()
    got = masked_patch_loss(torch.as_tensor(pred, dtype=torch.float32), got_t,
                            torch.as_tensor(mask), "fourier")
    assert float(got) == pytest.approx(expected, rel=1e-4)
    # predictions of unmasked patches do not count
    pred2 = pred.copy()
    pred2[~mask] += 100.0
    got2 = masked_patch_loss(torch.as_tensor(pred2, dtype=torch.float32), got_t,
                             torch.as_tensor(mask), "fourier")
    assert float(got2) == pytest.approx(float(got), rel=1e-6)

    wave = patch_targets(torch.as_tensor(x), 50, "waveform")
    np.testing.assert_array_equal(wave.numpy(), x.reshape(4, 3, 50).astype(np.float32))
    pw = rng.standard_normal((4, 3, 50))
    got_w = masked_patch_loss(torch.as_tensor(pw, dtype=torch.float32), wave,
                              torch.as_tensor(mask), "waveform")
    expected_w = ((pw - x.reshape(4, 3, 50))[mask] ** 2).mean()
    assert float(got_w) == pytest.approx(expected_w, rel=1e-4)


def test_model_predicts_masked_patches_from_context():
    torch.manual_seed(0)
    model = MaskedPatchModel(LaBraM(ENC).config, "fourier").eval()
    x = torch.randn(5, 200)
    mask = random_patch_mask(5, 4, 0.5)
    pred = model(x, mask)
    assert pred.shape == (5, 4, 52)
    # a masked patch's prediction does not see its own samples
    y = x.clone().view(5, 4, 50)
    y[mask] = torch.randn(int(mask.sum()), 50)
    torch.testing.assert_close(model(y.view(5, 200), mask), pred)


def test_pretraining_loss_decreases(tmp_path):
    eeg = _eeg(n_epochs=24)
    hist = []
    path = pretrain_encoder(eeg, tmp_path / "run", encoder_config=ENC,
                            config=_cfg(epochs=8, lr=3e-3, val_fraction=0.0),
                            epoch_callback=lambda e, row: hist.append(row["train_loss"]))
    assert path == tmp_path / "run" / "model"
    # standardised amplitude and phase halves: predicting zeros costs ~2; the amplitudes of
    # the oscillations are learnable from the unmasked patches, the phases hardly
    assert hist[-1] < 0.85 * hist[0] and hist[0] < 2.2, hist
    encoder, meta = load_encoder(tmp_path / "run", return_meta=True)
    assert isinstance(encoder, LaBraM) and not encoder.training
    assert not any(p.requires_grad for p in encoder.parameters())
    assert meta["pretraining"]["n_train_sequences"] == 24 * 3
    assert meta["pretraining"]["n_times"] == 200


def test_exact_resume(tmp_path):
    """2 epochs + a resumed 3rd give the weights of 3 uninterrupted epochs, bit for bit."""
    eeg = [_eeg(8, 3, 200, seed=1), _eeg(6, 2, 200, seed=2)]  # channel counts may differ
    pretrain_encoder(eeg, tmp_path / "full", encoder_config=ENC, config=_cfg(epochs=3))
    pretrain_encoder(eeg, tmp_path / "cut", encoder_config=ENC, config=_cfg(epochs=2))
    pretrain_encoder(eeg, tmp_path / "cut", encoder_config=ENC, config=_cfg(epochs=3),
                     resume=True)
    full, meta_full = load_checkpoint(tmp_path / "full" / "checkpoints")
    cut, meta_cut = load_checkpoint(tmp_path / "cut" / "checkpoints")
    keys = [k for k in full if k.startswith("model.")]
    assert keys and keys == [k for k in cut if k.startswith("model.")]
    for k in keys:
        assert torch.equal(full[k], cut[k]), k
    assert meta_full["trainer"]["epoch"] == meta_cut["trainer"]["epoch"] == 3
    rows = [meta["trainer"]["history"] for meta in (meta_full, meta_cut)]
    assert [r["val_loss"] for r in rows[0]] == [r["val_loss"] for r in rows[1]]
    # another data set is refused on resume
    with pytest.raises(ValueError, match="other training settings or data"):
        pretrain_encoder(_eeg(8, 3, 200, seed=9), tmp_path / "cut", encoder_config=ENC,
                         config=_cfg(epochs=4), resume=True)


def test_frozen_encoder_does_not_change():
    """A frozen encoder under a trained head: AdamW (with weight decay) over every parameter
    changes the head, never the encoder."""
    torch.manual_seed(0)
    from neurofuse.nn.labram import freeze

    encoder = freeze(LaBraM(ENC))
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    head = torch.nn.Linear(28, 2)
    head_before = head.weight.detach().clone()
    opt = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=1e-2,
                            weight_decay=0.1)
    for _ in range(3):
        loss = head(encoder(torch.randn(2, 3, 100))).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for k, v in encoder.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not torch.equal(head.weight, head_before)


def test_input_errors(tmp_path):
    with pytest.raises(ValueError, match="patch_size"):
        pretrain_encoder(_eeg(4, 2, 210), tmp_path / "a", encoder_config=ENC, config=_cfg())
    with pytest.raises(ValueError, match="different lengths"):
        pretrain_encoder([_eeg(4, 2, 200), _eeg(4, 2, 150)], tmp_path / "b",
                         encoder_config=ENC, config=_cfg())
    with pytest.raises(ValueError, match=r"\(n_epochs, n_channels, n_times\)"):
        pretrain_encoder(np.zeros((2, 200)), tmp_path / "c", encoder_config=ENC)
    bad = _eeg(4, 2, 200)
    bad[1, 0, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pretrain_encoder(bad, tmp_path / "d", encoder_config=ENC)
    with pytest.raises(ValueError, match="mask_ratio"):
        PretrainConfig(mask_ratio=1.5)
    with pytest.raises(ValueError, match="target"):
        PretrainConfig(target="codebook")
    with pytest.raises(FileNotFoundError, match="pretrain_encoder"):
        load_encoder(tmp_path)


def test_electrode_embedding_trained_with_channel_names(tmp_path):
    """With channel names the electrode rows of those channels are trained (and only them);
    without, the electrode embedding is left as initialised."""
    enc = {"preset": "tiny", "n_electrodes": 128}
    eeg = [_eeg(6, 3, 200, seed=1), _eeg(6, 2, 200, seed=2)]
    names = [["Cz", "C3", "C4"], ["O1", "O2"]]
    torch.manual_seed(0)  # the loop seeds torch with config.seed = 0 before building
    initial = LaBraM(LaBraMConfig.from_dict(enc)).pos_embed.detach().clone()
    pretrain_encoder(eeg, tmp_path / "named", encoder_config=enc, config=_cfg(epochs=2),
                     ch_names=names)
    pretrain_encoder(eeg, tmp_path / "anon", encoder_config=enc, config=_cfg(epochs=2))
    named = load_checkpoint(tmp_path / "named" / "checkpoints")[0]["model.encoder.pos_embed"]
    anon = load_checkpoint(tmp_path / "anon" / "checkpoints")[0]["model.encoder.pos_embed"]
    assert torch.equal(anon, initial)
    used = [1 + r for r in electrode_indices(sum(names, []))]
    changed = (named - initial).abs().amax(-1)[0] > 0
    assert changed[used].all() and changed[0]  # the channels' rows and the cls row
    assert changed.sum() == len(used) + 1
    meta = load_encoder(tmp_path / "named", return_meta=True)[1]
    assert meta["pretraining"]["electrodes"] is True
    with pytest.raises(ValueError, match="holds 2 names but the array has 3 channels"):
        pretrain_encoder(eeg, tmp_path / "bad", encoder_config=enc, config=_cfg(),
                         ch_names=[["Cz", "C3"], ["O1", "O2"]])
    with pytest.raises(ValueError, match="no electrode embedding"):
        pretrain_encoder(eeg, tmp_path / "bad2", encoder_config=ENC, config=_cfg(),
                         ch_names=names)

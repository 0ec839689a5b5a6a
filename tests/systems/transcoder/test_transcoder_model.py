"""The transcoder's four networks and its model folder (system D, paper §4.3.2)."""

import json

import pytest
import torch
from numpy.testing import assert_allclose

from neurofuse._io import DamagedFileError
from neurofuse.systems.transcoder import FIT_PRESETS, Transcoder, TranscoderConfig, load_model
from neurofuse.systems.transcoder.nets import (EEGDecoder, EEGEncoder, FMRIDecoder,
                                               FMRIEncoder, ResidualLayer)



def _config(preset, volume_shape, **kw):
    return TranscoderConfig(n_channels=64, volume_shape=volume_shape,
                            **{**FIT_PRESETS[preset]["model"], **kw})


def _check_shapes(model, n_trs, batch=1):
    cfg = model.config
    X, Y, Z = cfg.volume_shape
    T = n_trs * cfg.steps_per_tr
    eeg = torch.randn(batch, cfg.n_channels, T, device=next(model.parameters()).device)
    fmri = torch.randn(batch, X, Y, Z, n_trs, device=eeg.device)
    assert model.eeg_decoder(eeg).shape == (batch, X, Y, Z, T)
    assert model.fmri_decoder(fmri).shape == (batch, X, Y, Z, T)
    src = torch.randn(batch, X, Y, Z, T, device=eeg.device)
    assert model.eeg_encoder(src).shape == (batch, cfg.n_channels, T)
    assert model.fmri_encoder(src).shape == (batch, X, Y, Z, n_trs)
    out = model(eeg, fmri)
    for key in ("eeg2fmri", "fmri_cycle"):
        assert out[key].shape == fmri.shape
    for key in ("fmri2eeg", "eeg_cycle"):
        assert out[key].shape == eeg.shape
    for key in ("eeg_sources", "fmri_sources"):
        assert out[key].shape == (batch, X, Y, Z, T)


@pytest.mark.parametrize("preset, volume_shape", [
    ("tiny", (10, 12, 9)),       # the simulator's tiny grid (16 mm)
    ("demo", (14, 17, 12)),      # its demo grid (12 mm): odd sizes are padded and cropped
    ("tiny", (5, 3, 1)),         # a grid smaller than the coarse block's up-sampling
])
def test_shapes_tiny_and_demo(preset, volume_shape):
    torch.manual_seed(0)
    _check_shapes(Transcoder(_config(preset, volume_shape)), n_trs=3, batch=2)


def test_shapes_paper_on_meta_device():
    """The paper's sizes on a ten-minute run (300 TRs, 1500 steps): shapes only, no memory."""
    cfg = _config("paper", (16, 16, 12))  # the paper grid (3 x 3 x 4 mm) pooled to 12 mm
    assert cfg.n_layers == 5 and cfg.block == "batchnorm"
    with torch.device("meta"):
        model = Transcoder(cfg)
        _check_shapes(model, n_trs=300)
    # Five layers each: 5 (transposed) convolutions or linear maps per network.
    for net in (model.eeg_decoder, model.eeg_encoder, model.fmri_decoder, model.fmri_encoder):
        convs = [m for m in net.modules() if isinstance(m, (
            torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv3d, torch.nn.ConvTranspose1d,
            torch.nn.ConvTranspose3d)) and not isinstance(m, ResidualLayer)]
        assert len(convs) == 5
    assert not any(isinstance(m, ResidualLayer) for m in model.modules())


def test_subject_level_block_is_residual():
    cfg = _config("tiny", (6, 6, 6), block="residual")
    model = Transcoder(cfg)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    res = [m for m in model.modules() if isinstance(m, ResidualLayer)]
    assert len(res) == 4 * (cfg.n_layers - 1)  # one after every hidden layer
    x = torch.randn(3, 4, 7)
    assert torch.equal(res[-1](x), x)          # zero-initialised: the identity at first
    _check_shapes(model, n_trs=2)


def test_eeg_networks_are_spatial_and_fmri_networks_temporal():
    """The paper's separation: EEG networks act on each time step alone, fMRI networks on
    each voxel alone (eval mode: batch norm uses its running statistics)."""
    torch.manual_seed(0)
    model = Transcoder(_config("tiny", (6, 7, 5))).eval()
    eeg = torch.randn(1, 64, 15)
    eeg2 = eeg.clone()
    eeg2[..., 7] += 1.0
    d = (model.eeg_decoder(eeg2) - model.eeg_decoder(eeg)).abs().amax((0, 1, 2, 3))
    assert d[7] > 0 and torch.all(d[torch.arange(15) != 7] == 0)
    src = torch.randn(1, 6, 7, 5, 15)
    src2 = src.clone()
    src2[..., 4] += 1.0
    d = (model.eeg_encoder(src2) - model.eeg_encoder(src)).abs().amax((0, 1))
    assert d[4] > 0 and torch.all(d[torch.arange(15) != 4] == 0)
    fmri = torch.randn(1, 6, 7, 5, 3)
    fmri2 = fmri.clone()
    fmri2[0, 2, 3, 1] += 1.0
    d = (model.fmri_decoder(fmri2) - model.fmri_decoder(fmri)).abs().amax(-1)[0]
    assert d[2, 3, 1] > 0 and (d > 0).sum() == 1
    src3 = src.clone()
    src3[0, 1, 1, 1] += 1.0
    d = (model.fmri_encoder(src3) - model.fmri_encoder(src)).abs().amax(-1)[0]
    assert d[1, 1, 1] > 0 and (d > 0).sum() == 1


def test_fmri_decoder_upsamples_by_steps_per_tr():
    """A constant input gives a constant output away from the edges: every up-sampled step
    gets the same number of taps (no checkerboard), for several up-sampling factors."""
    for steps in (1, 2, 5, 6):
        cfg = _config("tiny", (2, 2, 2), steps_per_tr=steps, n_layers=2,
                      eeg_channels=[4], fmri_channels=[1], eeg_upsamplings=1)
        net = FMRIDecoder(cfg).eval()
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, (torch.nn.ConvTranspose1d,)):
                    m.weight.fill_(1.0)
                    m.bias.zero_()
        x = torch.ones(1, 2, 2, 2, 12)
        with torch.no_grad():
            y = net(x)[0, 0, 0, 0]
        assert y.shape == (12 * steps,)
        inner = y[3 * steps:-3 * steps]
        assert_allclose(inner.numpy(), inner[0].item(), rtol=1e-6)


def test_save_and_load_roundtrip(tmp_path):
    torch.manual_seed(1)
    model = Transcoder(_config("tiny", (6, 7, 5))).eval()
    path = model.save(tmp_path / "model", extra={"data": {"note": 1}})
    loaded, meta = load_model(path, return_meta=True)
    assert meta["data"] == {"note": 1} and meta["config"] == model.config.to_dict()
    eeg, fmri = torch.randn(1, 64, 10), torch.randn(1, 6, 7, 5, 2)
    with torch.no_grad():
        a, b = model(eeg, fmri), loaded(eeg, fmri)
    for key in a:
        assert torch.equal(a[key], b[key])
    with open(path / "model.safetensors", "r+b") as fid:  # damage one byte of the weights
        fid.seek(-3, 2)
        byte = fid.read(1)
        fid.seek(-3, 2)
        fid.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(DamagedFileError, match="damaged"):
        load_model(path)
    (path / "model.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a 'neurofuse.transcoder'"):
        load_model(path)
    with pytest.raises(FileNotFoundError, match="no model.json"):
        load_model(tmp_path)


@pytest.mark.parametrize("changes, match", [
    (dict(fmri_kernel=4), "must be odd"),
    (dict(eeg_upsamplings=5), "eeg_upsamplings"),
    (dict(eeg_channels=[8, 8]), "must hold 4 values"),
    (dict(block="layernorm"), "'TranscoderConfig.block'"),
    (dict(volume_shape=(4, 4)), "must hold 3 values"),
    (dict(n_layers=1), "n_layers"),
    (dict(steps_per_tr=0), "steps_per_tr"),
])
def test_bad_configs(changes, match):
    with pytest.raises(ValueError, match=match):
        TranscoderConfig(**{"n_channels": 64, "volume_shape": (6, 6, 6), **changes})
    with pytest.raises(ValueError, match="did you mean 'n_layers'"):
        TranscoderConfig.from_dict({"n_layer": 5})
    with pytest.raises(TypeError, match="TranscoderConfig"):
        EEGDecoder({"n_channels": 64})


def test_bad_inputs():
    model = Transcoder(_config("tiny", (6, 7, 5)))
    with pytest.raises(ValueError, match=r"axis 1 = 64"):
        model.eeg_decoder(torch.randn(1, 32, 10))
    with pytest.raises(ValueError, match=r"\(batch, n_x, n_y, n_z, n_trs\)"):
        model.fmri_decoder(torch.randn(1, 6, 7, 5))
    with pytest.raises(ValueError, match="multiple of steps_per_tr"):
        FMRIEncoder(model.config)(torch.randn(1, 6, 7, 5, 11))
    with pytest.raises(ValueError, match="axis 2 = 7"):
        EEGEncoder(model.config)(torch.randn(1, 6, 8, 5, 10))
    with pytest.raises(ValueError, match="same time"):
        model(torch.randn(1, 64, 10), torch.randn(1, 6, 7, 5, 3))
    with pytest.raises(ValueError, match="'cycle'"):
        model(torch.randn(1, 64, 10), torch.randn(1, 6, 7, 5, 2), cycle="both")

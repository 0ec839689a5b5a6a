"""The MEG2fMRI cGAN's networks (paper §3.3): shapes and parameter counts against the analytic
counts of the documented layers, what the discriminator's first convolution sees, the output
range, and the safetensors model folder."""

import pickle

import numpy as np
import pytest
import torch

from neurofuse.systems.meg2fmri.model import (CganConfig, Discriminator, Generator,
                                              MEG2fMRICGAN, load_model, synthesize)


def _linear(n_in, n_out):
    return n_in * n_out + n_out


def _conv(c_in, c_out, k=4):
    return c_in * c_out * k * k + c_out


@pytest.mark.parametrize("n_features", [328, 306])
def test_paper_sizes_and_parameter_counts(n_features):
    """Generator 328 -> 512 -> 1024 -> 1024 -> 32*32; discriminator: a linear MEG projection
    to 32*32, Conv(2->64), Conv(64->128) + BatchNorm(128), Conv(128->1), kernels 4."""
    cfg = CganConfig(n_features=n_features)
    gen, disc = Generator(cfg), Discriminator(cfg)
    n_gen = (_linear(n_features, 512) + _linear(512, 1024) + _linear(1024, 1024)
             + _linear(1024, 32 * 32))
    n_disc = (_linear(n_features, 32 * 32) + _conv(2, 64) + _conv(64, 128) + 2 * 128
              + _conv(128, 1))
    assert sum(p.numel() for p in gen.parameters()) == n_gen
    assert sum(p.numel() for p in disc.parameters()) == n_disc
    model = MEG2fMRICGAN(cfg)
    assert sum(p.numel() for p in model.parameters()) == n_gen + n_disc
    # BatchNorm's running statistics are buffers, not parameters.
    assert {k for k, _ in disc.named_buffers()} == {"net.3.running_mean", "net.3.running_var",
                                                    "net.3.num_batches_tracked"}
    meg, img = torch.randn(5, n_features), torch.rand(5, 32, 32)
    assert gen(meg).shape == (5, 32, 32)
    # Padding 1 (Pix2Pix): 32 -> (32 + 2 - 4) // 2 + 1 = 16 -> 8 -> (8 + 2 - 4) // 1 + 1 = 7.
    assert disc(meg, img).shape == (5, 7, 7)
    assert cfg.patch_shape == (7, 7)
    feature_maps = []
    hooks = [disc.net[i].register_forward_hook(lambda m, i, o: feature_maps.append(o.shape))
             for i in (0, 2, 5)]
    disc(meg, img)
    for h in hooks:
        h.remove()
    assert feature_maps == [(5, 64, 16, 16), (5, 128, 8, 8), (5, 1, 7, 7)]


def test_patch_shape_follows_the_convolution_arithmetic():
    """Another image and padding: the documented patch map still equals the network's."""
    cfg = CganConfig(n_features=7, hidden=(8,), image_shape=(40, 24), d_channels=(4, 8),
                     padding=0)
    out = Discriminator(cfg)(torch.randn(2, 7), torch.rand(2, 40, 24))
    # padding 0: 40 -> 19 -> 8 -> 5 and 24 -> 11 -> 4 -> 1
    assert out.shape == (2, 5, 1) == (2, *cfg.patch_shape)
    with pytest.raises(ValueError, match="too small"):
        CganConfig(n_features=7, image_shape=(8, 8), padding=0)


def test_discriminator_first_convolution_sees_meg_map_and_image():
    cfg = CganConfig(n_features=11, hidden=(16,), d_channels=(8, 16))
    disc = Discriminator(cfg).eval()
    assert disc.net[0].weight.shape == (8, 2, 4, 4)
    seen = []
    disc.net[0].register_forward_hook(lambda m, inputs, o: seen.append(inputs[0].detach()))
    meg, img = torch.randn(3, 11), torch.rand(3, 32, 32)
    logits = disc(meg, img)
    (x,) = seen
    assert x.shape == (3, 2, 32, 32)
    expected_map = (meg @ disc.project.weight.T + disc.project.bias).reshape(3, 32, 32)
    torch.testing.assert_close(x[:, 0], expected_map)
    assert torch.equal(x[:, 1], img)
    # The logits depend on both inputs.
    assert not torch.allclose(disc(meg, img.flip(0)), logits)
    assert not torch.allclose(disc(meg.flip(0), img), logits)


def test_output_range():
    """Default: the generator's tanh is mapped to [0, 1] as (tanh + 1) / 2; 'authors': the raw
    tanh in [-1, 1] (the authors' code)."""
    torch.manual_seed(0)
    unit = Generator(CganConfig(n_features=6, hidden=(16,)))
    authors = Generator(CganConfig(n_features=6, hidden=(16,), output_range="authors"))
    authors.load_state_dict(unit.state_dict())
    meg = 10 * torch.randn(64, 6)
    raw = torch.tanh(unit.net[:-1](meg)).reshape(64, 32, 32)
    torch.testing.assert_close(authors(meg), raw)
    torch.testing.assert_close(unit(meg), (raw + 1) / 2)
    assert unit(meg).min() >= 0 and unit(meg).max() <= 1
    assert authors(meg).min() < 0  # the authors' output leaves the targets' range
    with pytest.raises(ValueError, match="output_range.*'unit', 'authors'.*'zero_one'"):
        CganConfig(output_range="zero_one")


def test_steps_route_gradients():
    """The discriminator's pass gives no gradient to the generator; the generator's does."""
    model = MEG2fMRICGAN(CganConfig(n_features=5, hidden=(8,), d_channels=(4, 8)))
    meg, real = torch.randn(4, 5), torch.rand(4, 32, 32)
    real_logits, fake_logits = model(meg, real, step="discriminator")
    (real_logits.sum() + fake_logits.sum()).backward()
    assert all(p.grad is None for p in model.generator.parameters())
    assert all(p.grad is not None for p in model.discriminator.parameters())
    model.zero_grad(set_to_none=True)
    fake, logits = model(meg, step="generator")
    logits.sum().backward()
    assert all(p.grad is not None for p in model.generator.parameters())
    with pytest.raises(ValueError, match="step"):
        model(meg, step="both")


def test_model_folder_is_safetensors_and_json(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    cfg = CganConfig(n_features=9, hidden=(16, 32), d_channels=(4, 8), output_range="authors")
    model = MEG2fMRICGAN(cfg)
    model.discriminator.net[3].running_mean.uniform_()  # a buffer that is not at its default
    model.save(tmp_path / "m")
    tensors = load_file(str(tmp_path / "m" / "model.safetensors"))
    state = model.state_dict()
    assert sorted(tensors) == sorted(state)
    for k, v in state.items():
        assert torch.equal(tensors[k], v), k

    def no_pickle(*args, **kwargs):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(torch, "load", no_pickle)
    loaded = load_model(tmp_path / "m")
    assert loaded.config == cfg and not loaded.training
    X = np.random.default_rng(0).standard_normal((7, 9)).astype(np.float32)
    out = synthesize(loaded, X)
    assert out.dtype == np.float32 and out.shape == (7, 32, 32)
    with torch.no_grad():
        np.testing.assert_array_equal(out, model.eval()(torch.as_tensor(X)).numpy())
    np.testing.assert_array_equal(synthesize(tmp_path / "m", X), out)  # from the folder
    # In batches: the same up to float32 summation order.
    np.testing.assert_allclose(synthesize(loaded, X, batch_size=3), out, rtol=0, atol=1e-6)
    with pytest.raises(FileExistsError):
        model.save(tmp_path / "m")
    with pytest.raises(ValueError, match="'X' has 8 features.*trained on 9"):
        synthesize(loaded, X[:, :8])
    with pytest.raises(FileNotFoundError, match="model.json"):
        load_model(tmp_path)
    # a flipped bit in the weights fails the checksum model.json recorded
    from neurofuse._io import DamagedFileError

    weights = tmp_path / "m" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(DamagedFileError, match="model weights"):
        load_model(tmp_path / "m")


def test_synthesize_restores_training_mode():
    model = MEG2fMRICGAN(CganConfig(n_features=4, hidden=(8,), d_channels=(4, 8))).train()
    synthesize(model, np.zeros((2, 4), np.float32))
    assert model.training


def test_config_round_trip_and_errors():
    cfg = CganConfig(n_features=306, hidden=(64, 128))
    assert CganConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="hiden.*did you mean 'hidden'"):
        CganConfig.from_dict({"hiden": [4]})
    with pytest.raises(ValueError, match="d_channels"):
        CganConfig(d_channels=(64, 128, 256))

"""The 3-D MEG2fMRI cGAN (whole volumes, sequences of volumes): output grids of any size, the
settings, the model folder, and exact resume through the shared training loop."""

import numpy as np
import pytest
import torch

import neurofuse.training.loop as loop_module
from neurofuse.systems.meg2fmri.model import CganConfig, MEG2fMRICGAN, load_model, synthesize
from neurofuse.systems.meg2fmri.task import read_snapshots
from neurofuse.systems.meg2fmri.trainer import fit
from neurofuse.systems.meg2fmri.volume_nets import crop_centre, upsampled_shape
from neurofuse.training import load_checkpoint

SMALL = dict(hidden=(16, 32), d_channels=(4, 8), g_channels=(8, 4))


@pytest.mark.parametrize("grid, n_frames", [((13, 11, 9), None), ((11, 10, 13), 2),
                                            ((16, 16, 8), None), ((17, 10, 12), 3)])
def test_generator_output_matches_any_grid(grid, n_frames):
    cfg = CganConfig(n_features=5, image_shape=grid, n_frames=n_frames, **SMALL)
    model = MEG2fMRICGAN(cfg).eval()
    meg = torch.randn(3, 5)
    out = model(meg).detach()
    assert tuple(out.shape) == (3, *cfg.output_shape)
    assert cfg.output_shape == (grid if n_frames is None else (n_frames, *grid))
    assert float(out.min()) >= 0 and float(out.max()) <= 1  # (tanh + 1) / 2
    real_logits, fake_logits = model(meg, out, step="discriminator")
    assert tuple(fake_logits.shape) == (3, *cfg.patch_shape) == tuple(real_logits.shape)
    # the generator's grid before the crop: the next multiple of 2 ** len(g_channels)
    base, full = upsampled_shape(grid, 2)
    assert all(f % 4 == 0 and f - 4 < n <= f for f, n in zip(full, grid))
    assert model.generator.base == base


def test_crop_is_centred():
    x = torch.arange(2 * 8 * 6 * 4, dtype=torch.float32).reshape(2, 8, 6, 4)
    torch.testing.assert_close(crop_centre(x, (5, 6, 1)), x[:, 1:6, :, 1:2])
    torch.testing.assert_close(crop_centre(x, (8, 6, 4)), x)
    with pytest.raises(ValueError, match="Cannot crop"):
        crop_centre(x, (9, 6, 4))


def test_discriminator_is_conditioned_on_the_meg():
    cfg = CganConfig(n_features=5, image_shape=(11, 10, 10), **SMALL)
    disc = MEG2fMRICGAN(cfg).discriminator.eval()
    image = torch.rand(2, 11, 10, 10)
    meg = torch.randn(2, 5)
    assert not torch.allclose(disc(meg, image), disc(meg + 1, image))
    # the MEG map is the projection up-sampled to the grid: one coarse voxel per 4 voxels
    assert disc.coarse == (3, 3, 3) and disc.project.out_features == 27
    full = MEG2fMRICGAN(CganConfig(n_features=5, image_shape=(11, 10, 10), project_stride=1,
                                   **SMALL)).discriminator
    assert full.project.out_features == 11 * 10 * 10  # the paper's full-resolution map


def test_settings_and_model_folder(tmp_path):
    flat = CganConfig(n_features=5)
    assert "g_channels" not in flat.to_dict()  # 2-D model.json as it was
    cfg = CganConfig(n_features=5, image_shape=(11, 10, 10), n_frames=2, **SMALL)
    assert CganConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="n_frames' needs a 3-D image_shape"):
        CganConfig(n_features=5, n_frames=2)
    with pytest.raises(ValueError, match=r"\(n_x, n_y, n_z\)"):
        CganConfig(n_features=5, image_shape=(4, 4, 4, 4))
    model = MEG2fMRICGAN(cfg)
    model.save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    X = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_allclose(synthesize(back, X), synthesize(model, X), atol=1e-6)
    assert synthesize(back, X[:0]).shape == (0, 2, 11, 10, 10)


def _volume_problem(n, grid=(11, 10, 10), n_features=6, seed=0):
    """Volumes ``minmax(anatomy + 0.3 * X @ W)``: a smooth brain plus one blob per feature."""
    rng = np.random.default_rng(seed)
    coords = np.stack(np.meshgrid(*[np.arange(g) for g in grid], indexing="ij"), -1)
    centre = (np.array(grid) - 1) / 2
    anatomy = np.exp(-((coords - centre) ** 2).sum(-1) / (2 * 3.0 ** 2))
    blobs = np.stack([np.exp(-((coords - rng.uniform(1, np.array(grid) - 1)) ** 2).sum(-1) / 4)
                      for _ in range(n_features)])
    X = rng.standard_normal((n, n_features)).astype(np.float32)
    Z = anatomy + 0.3 * np.tensordot(X, blobs, 1)
    Y = (Z - Z.min()) / np.ptp(Z)
    return X, Y.astype(np.float32)


@pytest.mark.parametrize("frames", [None, 2])
def test_interrupted_3d_fit_resumes_exactly(tmp_path, monkeypatch, frames):
    X, Y = _volume_problem(28)
    if frames:  # a sequence: the volume and a shifted copy
        Y = np.stack([Y, np.roll(Y, 1, axis=1)], axis=1)
    kwargs = dict(X_val=X[20:], Y_val=Y[20:], snapshot_inputs=X[20:22],
                  config={"preset": "tiny", "train": {"epochs": 3}})
    straight = fit(X[:20], Y[:20], tmp_path / "straight", **kwargs)
    save = loop_module.save_checkpoint

    class Crash(Exception):
        pass

    def crashing_save(ckpt_dir, **kw):
        if kw["trainer_state"]["epoch"] == 2:
            raise Crash
        return save(ckpt_dir, **kw)

    monkeypatch.setattr(loop_module, "save_checkpoint", crashing_save)
    with pytest.raises(Crash):
        fit(X[:20], Y[:20], tmp_path / "resumed", **kwargs)
    monkeypatch.setattr(loop_module, "save_checkpoint", save)
    resumed = fit(X[:20], Y[:20], tmp_path / "resumed", resume=True, **kwargs)
    a, meta_a = load_checkpoint(tmp_path / "straight" / "checkpoints")
    b, meta_b = load_checkpoint(tmp_path / "resumed" / "checkpoints")
    assert sorted(a) == sorted(b) and any(".up." in k for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert meta_a["optimizers"] == meta_b["optimizers"]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in straight] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in resumed]
    epochs, images = read_snapshots(tmp_path / "resumed")
    assert list(epochs) == [1, 2, 3] and images.shape == (3, 2, *Y.shape[1:])
    np.testing.assert_array_equal(images, read_snapshots(tmp_path / "straight")[1])
    model = load_model(tmp_path / "straight" / "model")
    assert model.config.n_frames == frames and model.config.image_shape == (11, 10, 10)

"""The subject level (paper §4.3.3): its residual transcoder, the group model applied at full
resolution, interpolation, epoch averaging and chunking."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from neurofuse.systems.transcoder import FIT_PRESETS, Transcoder, TranscoderConfig, transcoder_loss
from neurofuse.systems.transcoder.nets import ResidualLayer
from neurofuse.systems.transcoder.subject import (SubjectConfig, SubjectTranscoder, chunk_starts,
                                                  epoch_average, group_sources,
                                                  upsample_sources)



def test_subject_transcoder_shapes_and_separation():
    torch.manual_seed(0)
    model = SubjectTranscoder(SubjectConfig(channels=(4, 4, 4, 4)))
    assert sum(isinstance(m, ResidualLayer) for m in model.modules()) == 16
    eeg, fmri = torch.randn(2, 6, 5, 4, 12), torch.randn(2, 6, 5, 4, 12)
    out = model(eeg, fmri)
    assert all(v.shape == eeg.shape for v in out.values()) and len(out) == 6
    model.eval()
    with torch.no_grad():
        x2 = eeg.clone()
        x2[..., 3] += 1
        d = (model.eeg_decoder(x2) - model.eeg_decoder(eeg)).abs().amax((0, 1, 2, 3))
        assert d[3] > 0 and (d > 0).sum() == 1          # spatial: one time step only
        x2 = fmri.clone()
        x2[:, 2, 1, 0] += 1
        d = (model.fmri_decoder(x2) - model.fmri_decoder(fmri)).abs().amax((0, 4))
        assert d[2, 1, 0] > 0 and (d > 0).sum() == 1    # temporal: one voxel only
    with pytest.raises(ValueError, match="same shape"):
        model(eeg, fmri[..., :6])
    with pytest.raises(ValueError, match="n_layers - 1 = 4"):
        SubjectConfig(channels=(4, 4))
    with pytest.raises(ValueError, match="must be odd"):
        SubjectConfig(spatial_kernel=2)


def test_subject_transcoder_trains():
    """A few Adam steps on one chunk lower the four-term loss."""
    torch.manual_seed(0)
    model = SubjectTranscoder(SubjectConfig(channels=(4, 4, 4, 4)))
    t = torch.linspace(0, 6.28, 20)
    eeg = torch.sin(3 * t).expand(1, 5, 4, 3, 20) * torch.rand(1, 5, 4, 3, 1)
    fmri = torch.sin(t).expand(1, 5, 4, 3, 20) * torch.rand(1, 5, 4, 3, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss, _ = transcoder_loss(model(eeg, fmri), eeg, fmri)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0]


def test_group_sources_at_the_group_resolution_equal_the_decoders():
    torch.manual_seed(0)
    cfg = TranscoderConfig(n_channels=8, volume_shape=(4, 5, 3), **FIT_PRESETS["tiny"]["model"])
    model = Transcoder(cfg).eval()
    rng = np.random.default_rng(0)
    eeg, fmri = rng.standard_normal((8, 40)), rng.standard_normal((4, 5, 3, 8))
    s_eeg, s_fmri = group_sources(model, eeg, fmri, block=7)  # blocks do not change anything
    with torch.no_grad():
        ref_e = model.eeg_decoder(torch.as_tensor(eeg, dtype=torch.float32)[None])[0]
        ref_f = model.fmri_decoder(torch.as_tensor(fmri, dtype=torch.float32)[None])[0]
    assert_allclose(s_eeg, ref_e.numpy(), rtol=1e-5, atol=1e-6)
    assert_allclose(s_fmri, ref_f.numpy(), rtol=1e-5, atol=1e-6)
    # at full resolution: EEG at any rate, fMRI on any grid
    s_eeg, s_fmri = group_sources(model, rng.standard_normal((8, 333)),
                                  rng.standard_normal((9, 11, 7, 8)))
    assert s_eeg.shape == (4, 5, 3, 333) and s_fmri.shape == (9, 11, 7, 40)


def test_upsample_sources_is_exact_for_linear_fields():
    """Linear interpolation reproduces a linear function between the block centres."""
    pool, d = (3, 2, 4), 5
    gx, gy, gz, n_times = 4, 5, 3, 60
    # block centres of group voxel i: i * p + (p - 1) / 2 in fine-voxel units
    cx = np.arange(gx) * 3 + 1.0
    eeg_src = np.broadcast_to((2.0 * cx)[:, None, None, None], (gx, gy, gz, n_times))
    steps = np.arange(12) * d + (d - 1) / 2
    fmri_src = np.broadcast_to((0.5 * steps)[None, None, None], (10, 9, 11, 12))
    e, f = upsample_sources(eeg_src, fmri_src, pool=pool, grid_shape=(10, 9, 11),
                            samples_per_step=d)
    assert e.shape == (10, 9, 11, n_times) and f.shape == (10, 9, 11, n_times)
    x = np.arange(10)
    inner = (x >= cx[0]) & (x <= cx[-1])
    assert_allclose(e[inner, 4, 5, 7], 2.0 * x[inner], rtol=1e-5)
    t = np.arange(n_times)
    inner = (t >= steps[0]) & (t <= steps[-1])
    assert_allclose(f[3, 3, 3, inner], 0.5 * t[inner], rtol=1e-5)


def test_epoch_average_and_chunks():
    rng = np.random.default_rng(3)
    src = rng.standard_normal((2, 3, 100))
    avg, n = epoch_average(src, [0.1, 0.45, 0.9], sfreq=100.0, duration=0.2)
    assert n == 2                                    # the epoch at 0.9 s runs past the end
    assert_allclose(avg, (src[..., 10:30] + src[..., 45:65]) / 2, rtol=1e-6)
    with pytest.raises(ValueError, match="No epoch"):
        epoch_average(src, [0.95], sfreq=100.0, duration=0.2)
    for length, size, step in ((64, 16, 8), (35, 16, 8), (10, 16, 8), (17, 16, 16)):
        starts = chunk_starts(length, size, step)
        covered = np.zeros(length, bool)
        for s in starts:
            covered[s:s + size] = True
            assert 0 <= s and s + min(size, length) <= length
        assert covered.all()


def test_subject_setups_and_model_folder(tmp_path):
    from neurofuse.systems.transcoder import SUBJECT_PRESETS, SubjectDataConfig, load_model
    from neurofuse.training.presets import read_fit_config

    tiny = read_fit_config("tiny", SUBJECT_PRESETS, ("train", "model", "data"))
    assert SubjectConfig.from_dict(tiny["model"]).channels == (4, 4, 4, 4)
    with pytest.raises(ValueError, match="did you mean 'chunk_size'"):
        SubjectDataConfig.from_dict({"chunk_sizes": 8})
    with pytest.raises(ValueError, match="> 0"):
        SubjectDataConfig(epoch_duration=0.0)
    torch.manual_seed(0)
    model = SubjectTranscoder(SubjectConfig(channels=(4, 4, 4, 4))).eval()
    loaded = load_model(model.save(tmp_path / "m"))
    assert isinstance(loaded, SubjectTranscoder)
    x = torch.randn(1, 4, 4, 4, 9)
    with torch.no_grad():
        assert torch.equal(model(x, x)["eeg2fmri"], loaded(x, x)["eeg2fmri"])

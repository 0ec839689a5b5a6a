"""Training the transcoder on a tiny simulated EEG–fMRI data set: the group-level reduction
(against scikit-image's block reduction), the loss going down, exact resume, the test runs
never read, and clear errors for bad set-ups."""

import json

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from skimage.measure import block_reduce

from neurofuse.simulation.eeg_fmri import EEGfMRIDataset, make_config, simulate_dataset
from neurofuse.systems.transcoder import (DataConfig, TrainConfig, TranscoderData, fit,
                                          fit_subject, load_fit_config, load_model,
                                          transcode)
from neurofuse.systems.transcoder.subject import SubjectTranscoder
from neurofuse.systems.transcoder.data import downsample_eeg, normalize, pool_volume
from neurofuse.training.checkpoint import load_checkpoint

TINY = {"preset": "tiny", "train": {"epochs": 4}, "data": {"n_val": 1}}



@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Four 20-s runs (10 TRs) of the tiny grid: 2 train, 1 validation, 1 test."""
    cfg = make_config("snr10", "tiny", bem="sphere", duration=20.0)
    return simulate_dataset(tmp_path_factory.mktemp("d") / "ds", cfg, 4)


@pytest.fixture(scope="module")
def full_run(dataset, tmp_path_factory):
    """A complete tiny fit, recording every run the data set is asked for."""
    out = tmp_path_factory.mktemp("fit") / "full"
    read = []
    original = EEGfMRIDataset.read_run

    def spy(self, run, **kw):
        read.append(run)
        return original(self, run, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(EEGfMRIDataset, "read_run", spy)
        history = fit(dataset, out, config=TINY)
    return out, history, read


def test_downsample_eeg_is_a_block_mean():
    rng = np.random.default_rng(0)
    eeg = rng.standard_normal((3, 1050))                 # 10.5 TRs of 100 samples
    out = downsample_eeg(eeg, n_per_tr=100, steps_per_tr=5)
    assert out.shape == (3, 50) and out.dtype == np.float32  # the partial TR is dropped
    ref = block_reduce(eeg[:, :1000], (1, 20), np.mean)
    assert_allclose(out, ref, rtol=1e-5, atol=1e-6)  # float32 sums
    with pytest.raises(ValueError, match="must divide the EEG samples per TR"):
        downsample_eeg(eeg, n_per_tr=100, steps_per_tr=3)


def test_pool_volume_is_a_block_mean_over_voxels_inside_the_grid():
    rng = np.random.default_rng(1)
    fmri = rng.standard_normal((7, 8, 5, 4))
    pool = (3, 2, 2)
    out = pool_volume(fmri, pool)
    assert out.shape == (3, 4, 3, 4)
    # scikit-image pads partial blocks with zeros: divide its sums by the real voxel counts
    sums = block_reduce(fmri, pool + (1,), np.sum)
    counts = block_reduce(np.ones(fmri.shape[:3]), pool, np.sum)[..., None]
    assert_allclose(out, sums / counts, rtol=1e-5, atol=1e-6)
    assert pool_volume(fmri, (1, 1, 1)).shape == fmri.shape


def test_normalize():
    rng = np.random.default_rng(2)
    eeg, fmri = 1e-5 * rng.standard_normal((4, 30)) + 3e-5, 1e-12 * rng.standard_normal((2, 2, 2, 6))
    e, f, scales = normalize(eeg, fmri)
    assert_allclose(e.mean(-1), 0, atol=1e-6) and assert_allclose(f.mean(-1), 0, atol=1e-6)
    assert_allclose(np.sqrt(np.mean(e ** 2)), 1, rtol=1e-5)
    assert_allclose(np.sqrt(np.mean(f ** 2)), 1, rtol=1e-5)
    assert_allclose(e * scales["eeg_scale"], eeg - eeg.mean(-1, keepdims=True), rtol=1e-4,
                    atol=1e-12)


def test_split_and_test_runs_refused(dataset):
    data = TranscoderData(dataset, 5, {"n_val": 1})
    assert data.train_runs == ["run-000", "run-001"] and data.val_runs == ["run-002"]
    assert data.test_runs == ["run-003"] == dataset.manifest["split"]["test"]
    assert data.volume_shape == dataset.config.grid_shape  # 16-mm voxels: no pooling to 12 mm
    eeg, fmri, _ = data.load(("run-000", 0))
    assert eeg.shape == (64, 50) and fmri.shape == (*data.volume_shape, 10)
    for purpose in ("train", "val"):
        with pytest.raises(RuntimeError, match="test split"):
            data.load(("run-003", 0), purpose)
    assert data.load(("run-003", 0), "test")[1].shape == fmri.shape
    chunks = TranscoderData(dataset, 5, {"chunk_trs": 4, "chunk_step": 2})
    assert chunks.items("train")[:4] == [("run-000", 0), ("run-000", 2), ("run-000", 4),
                                         ("run-000", 6)]
    eeg, fmri, _ = chunks.load(("run-000", 2))
    assert eeg.shape == (64, 20) and fmri.shape[-1] == 4
    # the chunk is the run's TRs 2-5, reduced
    raw = dataset.read_run(0)
    assert_allclose(normalize(downsample_eeg(raw["eeg"][:, 200:600], 100, 5), fmri)[0], eeg,
                    rtol=1e-4, atol=1e-5)


def test_training_lowers_the_loss_and_never_reads_test_runs(full_run, dataset):
    out, history, read = full_run
    assert len(history) == 4
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    for key in ("train_eeg2fmri", "train_fmri2eeg", "train_eeg_cycle", "train_fmri_cycle",
                "val_loss", "val_eeg2fmri"):
        assert np.isfinite(history[-1][key])
    test = set(dataset.manifest["split"]["test"])
    assert read and not test & set(read)
    assert set(read) == {"run-000", "run-001", "run-002"}  # train and validation runs
    model, meta = load_model(out / "model", return_meta=True)
    assert meta["data"]["test_runs"] == sorted(test) and meta["data"]["steps_per_tr"] == 5
    assert model.config.volume_shape == dataset.config.grid_shape
    # the saved model on the held-out run, prepared as in training
    data = TranscoderData(dataset, 5, meta["data"]["settings"])
    eeg, fmri, _ = data.load((meta["data"]["test_runs"][0], 0), "test")
    pred = transcode(out / "model", eeg, fmri)
    assert pred["eeg2fmri"].shape == fmri.shape and pred["fmri2eeg"].shape == eeg.shape
    assert pred["eeg_sources"].shape == (*model.config.volume_shape, eeg.shape[1])
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["epochs"] == 4 and config["model"]["n_channels"] == 64


def test_resume_after_interruption_gives_identical_weights(full_run, dataset, tmp_path):
    out_full = full_run[0]
    out = tmp_path / "interrupted"

    class Stop(Exception):
        pass

    def stop_after_two(epoch, row):
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        fit(dataset, out, config=TINY, epoch_callback=stop_after_two)
    assert (out / "checkpoints" / "latest").read_text().strip() == "epoch-0002"
    with pytest.raises(FileExistsError, match="resume"):
        fit(dataset, out, config=TINY)
    history = fit(dataset, out, config=TINY, resume=True)
    assert len(history) == 4
    a, _ = load_checkpoint(out_full / "checkpoints")
    b, _ = load_checkpoint(out / "checkpoints")
    keys = [k for k in a if k.startswith(("model.", "opt."))]
    assert keys and sorted(keys) == sorted(k for k in b if k.startswith(("model.", "opt.")))
    for k in keys:
        assert torch.equal(a[k], b[k]), k
    with pytest.raises(ValueError, match="other training settings"):
        fit(dataset, out, config={**TINY, "train": {"epochs": 5, "lr": 1e-2}}, resume=True)


def test_subject_level_on_the_group_model(full_run, dataset, tmp_path, monkeypatch):
    """The subject level trains on the group model's full-resolution estimates of the
    training runs (never the test run) and writes a subject-level model folder."""
    read = []
    original = EEGfMRIDataset.read_run

    def spy(self, run, **kw):
        read.append(run)
        return original(self, run, **kw)

    monkeypatch.setattr(EEGfMRIDataset, "read_run", spy)
    out = tmp_path / "subject"
    history = fit_subject(dataset, full_run[0] / "model", out, config="tiny")
    assert len(history) == 2 and all(np.isfinite(r["train_loss"]) for r in history)
    assert read and not set(read) & set(dataset.manifest["split"]["test"])
    model, meta = load_model(out / "model", return_meta=True)
    assert isinstance(model, SubjectTranscoder) and meta["data"]["level"] == "subject"
    assert meta["data"]["n_epochs"] > 0 and meta["data"]["chunk"] == [8, 8, 8]
    with pytest.raises(ValueError, match="group-level model folder"):
        fit_subject(dataset, out / "model", tmp_path / "again", config="tiny")


@pytest.mark.parametrize("config, error, match", [
    ({"preset": "tiny", "model": {"n_channels": 32}}, ValueError, "come from the data set"),
    ({"preset": "tiny", "optim": {}}, ValueError, "Unknown training config section"),
    ({"preset": "tiny", "train": {"weights": {"eeg2eeg": 1}}}, ValueError, "loss weight"),
    ({"preset": "tiny", "train": {"cycle": "both"}}, ValueError, "TrainConfig.cycle"),
    ({"preset": "tiny", "data": {"chunk_step": 2}}, ValueError, "needs 'chunk_trs'"),
    ({"preset": "tiny", "data": {"fmri_pool": [2, 2]}}, ValueError, "3 ints"),
    ({"preset": "tiny", "model": {"fmri_kernel": 2}}, ValueError, "must be odd"),
    ({"preset": "huge"}, ValueError, "'preset'"),
])
def test_bad_fit_configs(config, error, match):
    with pytest.raises(error, match=match):
        load_fit_config(config)


def test_bad_data_setups(dataset, tmp_path):
    with pytest.raises(ValueError, match="must divide the data set's EEG samples per TR"):
        TranscoderData(dataset, 3)
    with pytest.raises(ValueError, match="must leave training runs"):
        TranscoderData(dataset, 5, {"n_val": 3})
    with pytest.raises(ValueError, match="exceeds the 10 TRs"):
        TranscoderData(dataset, 5, DataConfig(chunk_trs=11))
    with pytest.raises(ValueError, match="did you mean 'epochs'"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        fit(tmp_path, tmp_path / "out", config="tiny")

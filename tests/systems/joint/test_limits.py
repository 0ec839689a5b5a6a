"""The joint model's jobs checked before work: stimulus length, memory, disk, finite outputs,
absurd model sizes (issue 16)."""

import json
import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from neurofuse._resources import ResourceError, format_bytes, ignore_limits
from neurofuse.cli.main import main
from neurofuse.data.store import read_dataset
from neurofuse.systems.joint import resources
from neurofuse.systems.joint.model import JointModel
from neurofuse.systems.joint.predict import predict_bold, write_predictions
from neurofuse.systems.joint.resources import _n_params, estimate_fit_dataset, estimate_predict
from neurofuse.systems.joint.trainer import TrainConfig, fit, load_fit_config

SMALL = {"d_model": 16, "n_layers": 2, "n_heads": 2, "d_ff": 32, "window": 20, "dropout": 0.0,
         "block_size": 16}
GiB = 1024 ** 3


@pytest.fixture(scope="module")
def ds(tiny_study):
    return read_dataset(tiny_study)


@pytest.fixture(scope="module")
def model(ds):
    torch.manual_seed(0)
    return JointModel.from_dataset(ds, encoder_kwargs=SMALL)


def _stimulus(model, n, seed=0):
    return np.random.default_rng(seed).standard_normal(
        (n, model.encoder.config.d_stim)).astype(np.float32)


def test_a_stimulus_shorter_than_the_receptive_field(model, tmp_path, catch_logs):
    field = 2 * (20 - 1) + 1
    with pytest.raises(ValueError, match=r"has 3 samples, less than one TR"):
        write_predictions(model, _stimulus(model, 3), tmp_path / "p")
    assert not (tmp_path / "p").exists()
    # MEG from 3 samples: predicted (finite) with a warning that the context is short
    with catch_logs("warning") as log:
        written = write_predictions(model, _stimulus(model, 3), tmp_path / "p3",
                                    subjects=["S01"])
    assert rf"The stimulus has 3 samples (0.06 s at 50 Hz), shorter than the model's receptive " \
           rf"field of {field} samples" in log.text
    import mne

    raw = mne.io.read_raw_fif(written[-1], verbose="error")
    assert raw.n_times == 3 and np.isfinite(raw.get_data()).all()
    # MEG needs only the receptive field; BOLD one TR (100 samples) more than that here
    with pytest.raises(ValueError, match=r"has 60 samples, less than one TR \(100 samples\): "
                                         r"BOLD cannot be predicted for fMRI subjects \['S02'\]"):
        write_predictions(model, _stimulus(model, 60), tmp_path / "p")
    written = write_predictions(model, _stimulus(model, 60), tmp_path / "p", subjects=["S01"])
    assert [p.name for p in written] == ["sources-lh.stc", "sources-rh.stc", "S01_pred-raw.fif"]
    with pytest.raises(ValueError, match="less than one TR"):
        predict_bold(model, "S02", np.zeros((8196, 99), np.float32))


def test_predict_estimate_is_honest(model, tmp_path):
    """Estimated peak within a factor 2 of the numpy allocations measured (tracemalloc sees
    numpy, not torch: the encoder's blocks are extra), and the files' size within 5 %."""
    n = 3000
    stim = _stimulus(model, n)
    tracemalloc.start()
    try:
        written = write_predictions(model, stim, tmp_path / "p")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    memory, disk = estimate_predict(model, n)
    assert 0.5 < memory["total"] / peak < 2, (memory, peak)
    size = sum(p.stat().st_size for p in written)
    assert abs(disk["total"] - size) < 0.05 * size
    # the source estimate, the dominant part, grows linearly with the stimulus
    assert estimate_predict(model, 2 * n)[0]["source estimate"] == 2 * memory["source estimate"]


def test_a_huge_stimulus_is_refused_before_work(model, tmp_path, monkeypatch):
    fname = tmp_path / "huge.npy"
    # 5 million samples: a sparse file, read only for its header
    np.lib.format.open_memmap(fname, mode="w+", dtype=np.float32,
                              shape=(5_000_000, model.encoder.config.d_stim))
    monkeypatch.setattr(resources, "available_memory", lambda: 16 * GiB)
    with pytest.raises(ResourceError) as exc:
        write_predictions(model, fname, tmp_path / "p")
    msg = str(exc.value)
    # 8196 sources x 5e6 samples x 4 bytes = 153 GiB held, + 11.4 GiB of MEG (306 x 5e6, f64)
    need = estimate_predict(model, 5_000_000)[0]["total"]
    assert 8196 * 5e6 * 4 + 306 * 5e6 * 8 < need < 1.1 * (8196 * 5e6 * 4 + 306 * 5e6 * 8)
    assert msg.startswith(f"Predicting for a stimulus of 5000000 samples (100,000 s) needs "
                          f"about {format_bytes(need)} of memory, 16 GiB available (largest: "
                          "source estimate 153 GiB, MEG of S01 11.4 GiB")
    per_sample = estimate_predict(model, 5_000_000)[0]["total"] / 5_000_000
    assert f"parts of at most about {int(16 * GiB / per_sample)} samples" in msg
    assert "--force" in msg and not (tmp_path / "p").exists()


def test_force_runs_what_the_estimate_refuses(model, tmp_path, monkeypatch, catch_logs):
    monkeypatch.setattr(resources, "available_memory", lambda: 2 ** 20)
    with pytest.raises(ResourceError, match="1 MiB available"):
        write_predictions(model, _stimulus(model, 200), tmp_path / "p")
    with ignore_limits(), catch_logs("warning") as log:
        write_predictions(model, _stimulus(model, 200), tmp_path / "p")
    assert "Continuing anyway" in log.text and (tmp_path / "p" / "S02_bold.npy").is_file()


@pytest.mark.filterwarnings("ignore:invalid value encountered in matmul")
def test_a_model_that_predicts_nan_writes_nothing(ds, model, tmp_path, capsys):
    broken = JointModel.from_dataset(ds, encoder_kwargs=SMALL)
    broken.load_state_dict(model.state_dict())
    with torch.no_grad():
        broken.encoder.source_layer.weight[5, 3] = float("nan")
    path = broken.save(tmp_path / "model")
    stim = tmp_path / "stim.npy"
    np.save(stim, _stimulus(model, 300))
    assert main(["joint", "predict", str(path), "--stimulus", str(stim), "--out",
                 str(tmp_path / "p"), "-q"]) == 1
    err = capsys.readouterr().err
    assert f"The model in '{path}' predicts NaN or infinite sources" in err
    assert "likely damaged or its training diverged. Nothing was written." in err
    assert not (tmp_path / "p").exists()
    # a NaN gain (a damaged MEG head) is caught on its output, again before anything is kept
    broken = JointModel.from_dataset(ds, encoder_kwargs=SMALL)
    broken.load_state_dict(model.state_dict())
    broken.meg_heads["S01"].gain[7] = float("inf")
    with pytest.raises(ValueError, match="predicts NaN or infinite MEG of S01"):
        write_predictions(broken, _stimulus(model, 300), tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_stc_files_are_mnes_bytes(model, tmp_path):
    import mne

    from neurofuse.systems.joint.predict import predict_sources, to_source_estimate, write_stc

    sources = predict_sources(model, _stimulus(model, 150))
    to_source_estimate(model, sources).save(tmp_path / "mne", ftype="stc", verbose="error")
    n_lh = len(model.vertices[0])
    write_stc(tmp_path / "ours-lh.stc", sources[:n_lh], model.vertices[0], tstep=0.02, step=7)
    write_stc(tmp_path / "ours-rh.stc", sources[n_lh:], model.vertices[1], tstep=0.02, step=7)
    for hemi in ("lh", "rh"):
        assert (tmp_path / f"ours-{hemi}.stc").read_bytes() == \
            (tmp_path / f"mne-{hemi}.stc").read_bytes()
    stc = mne.read_source_estimate(tmp_path / "ours")
    np.testing.assert_array_equal(stc.data, sources)


def test_parameter_count_of_the_estimate_is_exact(ds, model):
    cfg = model.encoder.config
    learn, buffers = _n_params(cfg, [306], [8196])
    assert learn == sum(p.numel() for p in model.parameters())
    assert buffers == model.meg_heads["S01"].gain.numel()


_MEASURE = textwrap.dedent("""
    import json, sys, torch
    from neurofuse.data.store import read_dataset
    from neurofuse.systems.joint.task import JointTask
    from neurofuse.systems.joint.trainer import load_fit_config
    from neurofuse.training.task import RunContext

    def hwm():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024

    torch.set_num_threads(1)
    ds = read_dataset(sys.argv[1])
    train, enc = load_fit_config("tiny")
    task = JointTask(ds, train, encoder_kwargs=enc)
    ctx = RunContext(device=torch.device("cpu"))
    with open("/proc/self/clear_refs", "w") as fid:
        fid.write("5")  # reset the peak RSS to the current RSS
    start = hwm()
    model = task.setup(ctx)
    ctx.model = ctx.module = model
    ctx.epoch = train.meg_first_epochs  # both modalities on
    opt = torch.optim.AdamW(model.parameters())
    batch = next(iter(task.train_batches(0)))
    for _ in range(2):
        loss, _ = task.training_step(ctx, batch, opt)
        loss.backward()
        opt.step()
        opt.zero_grad()
    print(json.dumps(hwm() - start))
""")


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK),
                    reason="needs Linux's /proc/self/clear_refs to measure a peak")
def test_fit_estimate_is_honest(tiny_study):
    """Estimate within a factor 2 of the peak resident memory of two training steps (model
    built from the store, AdamW, forward and backward), measured in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])}
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(tiny_study)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    train, enc = load_fit_config("tiny")
    est = estimate_fit_dataset(read_dataset(tiny_study), train, enc)
    assert 0.5 < est["total"] / measured < 2, (est, measured)


def test_a_huge_model_is_refused_before_anything_is_built(small_store, tmp_path, monkeypatch):
    def never(*args, **kwargs):  # pragma: no cover - must not run
        raise AssertionError("the model was built")

    monkeypatch.setattr(JointModel, "from_dataset", never)
    with pytest.raises(ResourceError, match=r"Training a joint model of [\d,]+ weights \(d_model "
                       r"1000000, n_layers 2.* needs about [\d,.]+ TiB of memory, .* available "
                       r"\(largest: weights, gradients, AdamW moments"):
        fit(small_store, tmp_path / "run", encoder_kwargs={"d_model": 10 ** 6, "n_heads": 2,
                                                           "n_layers": 2})
    with pytest.raises(ResourceError, match="batches of 1000000000 pieces"):
        fit(small_store, tmp_path / "run", train_config={"batch_size": 10 ** 9})
    assert not (tmp_path / "run").exists()


def test_fit_config_errors_name_the_field(tmp_path, small_store):
    with pytest.raises(ValueError, match=r"TrainConfig.loss_seconds \(40 s\) must not exceed "
                                         r"piece_seconds \(8 s\)"):
        TrainConfig(piece_seconds=8.0, loss_seconds=40.0)
    with pytest.raises(ValueError, match=r"'d_model' \(16\) must be divisible by 'n_heads' \(3\)"):
        load_fit_config({"preset": "tiny", "encoder": {"n_heads": 3}})
    with pytest.raises(ValueError, match="'TrainConfig.lr' must be a finite positive number, "
                                         "got nan"):
        load_fit_config({"preset": "tiny", "train": {"lr": float("nan")}})
    with pytest.raises(ValueError, match="'d_model' must be an int >= 1, got 0"):
        load_fit_config({"preset": "tiny", "encoder": {"d_model": 0}})


def test_cli_fit_refuses_a_huge_model_without_a_traceback(small_store, tmp_path, capsys):
    cfg = tmp_path / "fit.json"
    cfg.write_text('{"preset": "tiny", "encoder": {"d_model": 1000000}}')
    assert main(["joint", "fit", str(cfg), "--data", str(small_store.path), "--out",
                 str(tmp_path / "r"), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("neurofuse joint fit: error: Training a joint model of")
    assert "reduce encoder d_model / n_layers" in err and "--force" in err


def test_cli_evaluate_refuses_a_huge_model_before_the_ridge_work(tiny_study, tmp_path, capsys):
    cfg = tmp_path / "fit.json"
    cfg.write_text('{"preset": "tiny", "encoder": {"d_model": 1000000}}')
    out = tmp_path / "ev"
    assert main(["joint", "evaluate", "--data", str(tiny_study), "--out", str(out), "--fit",
                 str(cfg), "-q"]) == 1
    assert "needs about" in capsys.readouterr().err and not out.exists()

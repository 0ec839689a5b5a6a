"""Training the MEG2fMRI cGAN through the shared loop (paper §3.4): equality with a
hand-written Pix2Pix loop, exact resume, the learning-rate schedule, learning a known map,
and the settings."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import neurofuse.training.loop as loop_module
from neurofuse.systems.meg2fmri.model import CganConfig, MEG2fMRICGAN, load_model, synthesize
from neurofuse.systems.meg2fmri.task import CganTask, read_snapshots
from neurofuse.systems.meg2fmri.trainer import (FIT_PRESETS, TrainConfig, fit,
                                                load_fit_config)
from neurofuse.training import load_checkpoint

TINY = {"preset": "tiny", "train": {"epochs": 4}}


def _linear_problem(n, n_features=12, noise=0.01, seed=0):
    """Slices ``minmax(2 * anatomy + 0.5 * X @ W) + noise``: a smooth 'brain' plus one smooth
    blob per MEG feature, scaled by that feature (ground truth known and learnable)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:32, :32]
    anatomy = np.exp(-((yy - 16) ** 2 + (xx - 16) ** 2) / (2 * 9 ** 2))
    centres = rng.uniform(6, 26, (n_features, 2))
    W = np.stack([np.exp(-((yy - c[0]) ** 2 + (xx - c[1]) ** 2) / (2 * 3 ** 2))
                  for c in centres]).reshape(n_features, -1)
    X = rng.standard_normal((n, n_features)).astype(np.float32)
    Z = (2 * anatomy.reshape(1, -1) + 0.5 * X @ W).reshape(n, 32, 32)
    Y = (Z - Z.min((1, 2), keepdims=True)) / np.ptp(Z, (1, 2), keepdims=True)
    Y = np.clip(Y + noise * rng.standard_normal(Y.shape), 0, 1).astype(np.float32)
    return X, Y


@pytest.fixture(scope="module")
def data():
    X, Y = _linear_problem(60)
    return {"X_train": X[:44], "Y_train": Y[:44], "X_val": X[44:], "Y_val": Y[44:]}


def _tensors(out):
    tensors, meta = load_checkpoint(out / "checkpoints")
    return tensors, meta


def _no_seconds(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_fit_equals_a_hand_written_pix2pix_loop(tmp_path, data):
    """The loop's two optimisers, losses and schedules are Pix2Pix's training, step by step:
    the weights (and BatchNorm statistics) after 3 epochs equal a loop written out here."""
    history = fit(data["X_train"], data["Y_train"], tmp_path / "run", X_val=data["X_val"],
                  Y_val=data["Y_val"], config={**TINY, "train": {"epochs": 3}})
    cfg, mcfg = load_fit_config("tiny")
    torch.manual_seed(cfg.seed)
    model = MEG2fMRICGAN(CganConfig(n_features=12, **mcfg)).train()
    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(model.generator.parameters(), lr=1e-3, betas=(0.5, 0.999))
    sched = [torch.optim.lr_scheduler.StepLR(o, 2, 0.5) for o in (opt_d, opt_g)]
    X, Y = torch.as_tensor(data["X_train"]), torch.as_tensor(data["Y_train"])
    bce = torch.nn.BCEWithLogitsLoss()
    d_losses = []
    for _ in range(3):
        order, d_sum = torch.randperm(len(X)), []
        for b0 in range(0, len(X), 8):
            x, y = X[order[b0:b0 + 8]], Y[order[b0:b0 + 8]]
            with torch.no_grad():
                fake = model.generator(x)
            real_logits = model.discriminator(x, y)
            fake_logits = model.discriminator(x, fake)
            loss_d = (bce(real_logits, torch.ones_like(real_logits))
                      + bce(fake_logits, torch.zeros_like(fake_logits))) / 2
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
            d_sum.append(loss_d.item())
            fake = model.generator(x)
            logits = model.discriminator(x, fake)
            loss_g = bce(logits, torch.ones_like(logits)) + 100.0 * ((fake - y) ** 2).mean()
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
        d_losses.append(np.mean(d_sum))
        for s in sched:
            s.step()
    tensors, meta = _tensors(tmp_path / "run")
    for k, v in model.state_dict().items():
        assert torch.equal(tensors[f"model.{k}"], v), k
    assert [row["train_d_loss"] for row in history] == pytest.approx(d_losses, rel=1e-6)
    # The validation MSE is the generator's error on the validation pairs.
    with torch.no_grad():
        val = F.mse_loss(model.eval().generator(torch.as_tensor(data["X_val"])),
                         torch.as_tensor(data["Y_val"]))
    assert history[-1]["val_mse"] == pytest.approx(float(val), rel=1e-6)
    assert list(meta["optimizers"]) == ["discriminator", "generator"]
    assert set(history[0]) >= {"train_d_loss", "train_g_loss", "train_g_adv", "train_g_recon",
                               "lr_discriminator", "lr_generator", "val_mse"}
    row = history[0]
    assert row["train_g_loss"] == pytest.approx(row["train_g_adv"] + 100 * row["train_g_recon"])


def test_interrupted_fit_resumes_exactly(tmp_path, data, monkeypatch):
    """4 epochs straight vs 2 epochs, a crash after epoch 3 recorded its snapshot but before
    its checkpoint, and a resume: identical weights, optimiser and scheduler states, RNG,
    history, best model and snapshots."""
    kwargs = dict(X_val=data["X_val"], Y_val=data["Y_val"], config=TINY,
                  snapshot_inputs=data["X_val"][:3])
    straight = fit(data["X_train"], data["Y_train"], tmp_path / "straight", **kwargs)

    save = loop_module.save_checkpoint

    class Crash(Exception):
        pass

    def crashing_save(ckpt_dir, **kw):
        if kw["trainer_state"]["epoch"] == 3:
            raise Crash
        return save(ckpt_dir, **kw)

    monkeypatch.setattr(loop_module, "save_checkpoint", crashing_save)
    with pytest.raises(Crash):
        fit(data["X_train"], data["Y_train"], tmp_path / "resumed", **kwargs)
    monkeypatch.setattr(loop_module, "save_checkpoint", save)
    assert list(read_snapshots(tmp_path / "resumed")[0]) == [1, 2, 3]
    _, meta = _tensors(tmp_path / "resumed")
    assert meta["trainer"]["epoch"] == 2
    with pytest.raises(FileExistsError, match="resume"):
        fit(data["X_train"], data["Y_train"], tmp_path / "resumed", **kwargs)
    resumed = fit(data["X_train"], data["Y_train"], tmp_path / "resumed", resume=True,
                  **kwargs)

    a, meta_a = _tensors(tmp_path / "straight")
    b, meta_b = _tensors(tmp_path / "resumed")
    assert sorted(a) == sorted(b)
    assert any(k.startswith("opt.generator.") for k in a)
    assert any(k.startswith("opt.discriminator.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k  # model, both optimisers' moments, RNG
    assert meta_a["optimizers"] == meta_b["optimizers"]  # step counts, learning rates
    assert meta_a["schedulers"] == meta_b["schedulers"]
    assert _no_seconds(straight) == _no_seconds(resumed)
    for name in ("straight", "resumed"):
        assert (tmp_path / name / "history.csv").is_file()
    ep_a, img_a = read_snapshots(tmp_path / "straight")
    ep_b, img_b = read_snapshots(tmp_path / "resumed")
    assert list(ep_a) == [1, 2, 3, 4] == list(ep_b)
    assert img_a.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(img_a, img_b)
    # The last snapshot is the final generator's output.
    final = MEG2fMRICGAN(load_model(tmp_path / "straight" / "model").config)
    final.load_state_dict({k[6:]: v for k, v in a.items() if k.startswith("model.")})
    np.testing.assert_allclose(img_a[-1], synthesize(final, data["X_val"][:3]), atol=1e-6)
    # The best model (lowest val_mse) is saved.
    best = int(np.argmin([row["val_mse"] for row in straight]))
    best_model = load_model(tmp_path / "straight" / "model")
    np.testing.assert_allclose(synthesize(best_model, data["X_val"][:3]), img_a[best],
                               atol=1e-6)
    # A resume on other data is refused.
    with pytest.raises(ValueError, match="Incompatible checkpoint"):
        fit(data["X_train"][1:], data["Y_train"][1:], tmp_path / "resumed", resume=True,
            **kwargs)


def test_step_lr_halves_every_20_epochs(tmp_path, data):
    """Paper schedule: Adam at 1e-4 for epochs 1-20, 5e-5 for 21-40, 2.5e-5 for 41-60."""
    cfg = TrainConfig()
    task = CganTask(data["X_train"], data["Y_train"], cfg, CganConfig(n_features=12))
    optimizers, schedulers = task.configure_optimizers(MEG2fMRICGAN(CganConfig(n_features=12)))
    used = []
    for _ in range(60):
        used.append([o.param_groups[0]["lr"] for o in optimizers.values()])
        for o in optimizers.values():
            o.step()  # no gradients: changes nothing, but an epoch steps before its schedule
        for s in schedulers.values():
            s.step()
    expected = [1e-4] * 20 + [5e-5] * 20 + [2.5e-5] * 20
    assert [u[0] for u in used] == pytest.approx(expected)
    assert [u[1] for u in used] == pytest.approx(expected)
    assert all(o.defaults["betas"] == (0.5, 0.999) for o in optimizers.values())
    # Through the loop (tiny preset: x0.5 every 2 epochs): the history's learning rates are
    # those after each epoch's scheduler step.
    history = fit(data["X_train"], data["Y_train"], tmp_path / "run", config=TINY)
    for name in ("lr_discriminator", "lr_generator"):
        assert [row[name] for row in history] == pytest.approx([1e-3, 5e-4, 5e-4, 2.5e-4])


def test_learns_a_known_linear_map(tmp_path):
    """Slices made from the MEG vector by a known linear map: the trained generator beats the
    mean training slice on held-out pairs, and its output depends on the MEG (shuffled inputs
    do worse)."""
    X, Y = _linear_problem(600)
    train, val, test = slice(0, 400), slice(400, 500), slice(500, 600)
    fit(X[train], Y[train], tmp_path / "run", X_val=X[val], Y_val=Y[val],
        config={"preset": "tiny", "train": {"epochs": 6, "lr_step": 20}})
    pred = synthesize(tmp_path / "run" / "model", X[test])
    mse = float(((pred - Y[test]) ** 2).mean())
    mean_slice = float(((Y[train].mean(0) - Y[test]) ** 2).mean())
    shuffled = synthesize(tmp_path / "run" / "model", X[test][::-1])
    assert mse < 0.6 * mean_slice
    assert float(((shuffled - Y[test]) ** 2).mean()) > 2 * mse
    assert pred.min() >= 0 and pred.max() <= 1


def test_settings(tmp_path):
    assert TrainConfig() == TrainConfig(epochs=125, batch_size=32, lr=1e-4, betas=(0.5, 0.999),
                                        lr_step=20, lr_gamma=0.5)
    assert TrainConfig().loop_config().patience is None  # the paper trains all 125 epochs
    for preset in FIT_PRESETS:
        load_fit_config(preset)
    with pytest.raises(ValueError, match="'epoch'.*did you mean 'epochs'"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="betas"):
        TrainConfig(betas=(0.5,))
    with pytest.raises(ValueError, match="section"):
        load_fit_config({"trainer": {}})
    with pytest.raises(ValueError, match="n_features"):
        load_fit_config({"model": {"n_features": 3}})
    toml = tmp_path / "c.toml"
    toml.write_text('preset = "tiny"\n[train]\nrecon_weight = 10.0\n[model]\n'
                    'output_range = "authors"\n')
    train, model = load_fit_config(toml)
    assert train.recon_weight == 10.0 and train.batch_size == 8
    assert model["output_range"] == "authors" and model["hidden"] == [32, 64]
    (tmp_path / "c.json").write_text(json.dumps({"train": {"lr_step": 5}}))
    assert load_fit_config(tmp_path / "c.json")[0] == TrainConfig(lr_step=5)
    assert TrainConfig.from_dict(json.loads(json.dumps(TrainConfig().to_dict()))) == TrainConfig()


def test_fit_input_errors(tmp_path, data):
    X, Y = data["X_train"], data["Y_train"]
    with pytest.raises(ValueError, match="'X_train' holds 44 pairs but 'Y_train' 43"):
        fit(X, Y[:-1], tmp_path / "a", config=TINY)
    with pytest.raises(ValueError, match=r"'Y_train' must have shape \(n_pairs, height, width"):
        fit(X, Y.reshape(44, -1), tmp_path / "a", config=TINY)
    with pytest.raises(ValueError, match="both 'X_val' and 'Y_val'"):
        fit(X, Y, tmp_path / "a", X_val=X, config=TINY)
    with pytest.raises(ValueError, match="n_features"):
        fit(X, Y, tmp_path / "a", config=TINY, model_config={"n_features": 12})
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="'X_train' contains 1 NaN"):
        fit(bad, Y, tmp_path / "a", config=TINY)


DDP_WORKER = """
import hashlib, json, sys
import numpy as np, torch
from neurofuse.training.distributed import cleanup_distributed, init_distributed
from neurofuse.training.loop import fit_task
from neurofuse.systems.meg2fmri.model import CganConfig
from neurofuse.systems.meg2fmri.task import CganTask
from neurofuse.systems.meg2fmri.trainer import load_fit_config

class Kept(CganTask):
    def setup(self, ctx):
        self.model = super().setup(ctx)
        return self.model

ctx = init_distributed("cpu")
rng = np.random.default_rng(0)
X = rng.standard_normal((24, 5)).astype(np.float32)
Y = rng.random((24, 32, 32)).astype(np.float32)
cfg, mcfg = load_fit_config({"preset": "tiny", "train": {"epochs": 2}})
task = Kept(X, Y, cfg, CganConfig(n_features=5, **mcfg), X_val=X[:4], Y_val=Y[:4])
history = fit_task(task, sys.argv[1], config=cfg.loop_config(), device="cpu")
params = {k: v.detach().numpy().tobytes() for k, v in task.model.named_parameters()}
digest = {k: hashlib.sha256(v).hexdigest() for k, v in params.items()}
cleanup_distributed()
print(json.dumps({"rank": ctx.rank, "digest": digest, "val": history[-1]["val_mse"]}))
"""


def test_data_parallel_processes_stay_in_step(tmp_path):
    """Two gloo processes, each on half of every batch: the gradients of both optimisers'
    steps are averaged across processes, so both end with the same weights."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = str(Path(__file__).resolve().parents[3])
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": root}
        procs.append(subprocess.Popen([sys.executable, "-c", DDP_WORKER, str(tmp_path / "run")],
                                      env=env, text=True, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE))
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert [o["rank"] for o in outs] == [0, 1]
    assert outs[0]["digest"] == outs[1]["digest"]
    assert outs[0]["val"] == outs[1]["val"]
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()

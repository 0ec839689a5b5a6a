"""The source layer's adaptive prior: a learned mixture of smoothing widths, and the choice
of a fixed width by validation loss."""

import json

import numpy as np
import pytest
import torch

from neurofuse.anatomy import source_smoother
from neurofuse.systems.joint.encoder import (
    MIXTURE_WIDTHS,
    EncoderConfig,
    SourceLayer,
    StimulusEncoder,
)

# A coarse subset of fsaverage5 vertices (514 sources): real cortical geometry, fast smoothers.
VERTS = [np.arange(0, 10242, 40), np.arange(0, 10242, 40)]
N_SRC = 2 * len(VERTS[0])
SMALL = {"d_model": 16, "n_layers": 2, "n_heads": 2, "d_ff": 32, "window": 20, "dropout": 0.0,
         "block_size": 16}


@pytest.fixture(scope="module")
def smoothers():
    return {w: source_smoother(VERTS, w) for w in (5.0, 10.0, 20.0, 40.0)}


def _mixture(widths, smoothers, d_model=8, seed=0):
    torch.manual_seed(seed)
    layer = SourceLayer(d_model, N_SRC, widths=widths)
    for w in widths:
        if w > 0:
            layer.set_smoother(smoothers[w], width=w)
    return layer


# ---------------------------------------------------------------------------- config


def test_config_defaults_roundtrip_and_errors():
    fixed = EncoderConfig(source_fwhm=15.0)
    assert not any(k.startswith("source_mixture") or k in ("source_prior", "source_widths")
                   for k in fixed.to_dict())  # a fixed prior's description is unchanged
    mix = EncoderConfig(source_prior="mixture")
    assert mix.source_widths == MIXTURE_WIDTHS
    d = json.loads(json.dumps(mix.to_dict()))
    assert d["source_prior"] == "mixture" and d["source_widths"] == list(MIXTURE_WIDTHS)
    assert EncoderConfig.from_dict(d) == mix
    assert EncoderConfig(source_prior="mixture", source_widths=[0, 7.5]).source_widths == (0.0,
                                                                                          7.5)
    for kwargs, match in [
        ({"source_widths": [0, 10]}, "source_widths.*mixture"),
        ({"source_prior": "mixture", "source_fwhm": 15.0}, "source_fwhm"),
        ({"source_prior": "mixture", "source_widths": [0, -5]}, "source_widths"),
        ({"source_prior": "mixture", "source_widths": [10, 10.0]}, "distinct"),
        ({"source_prior": "mixture", "source_widths": []}, "at least one"),
        ({"source_prior": "learned"}, "source_prior"),
        ({"source_mixture_lr": 0.1}, "source_mixture_lr.*mixture"),
        ({"source_prior": "mixture", "source_mixture_loss": "test"}, "source_mixture_loss"),
        ({"source_prior": "mixture", "source_mixture_every": 0}, "source_mixture_every"),
    ]:
        with pytest.raises(ValueError, match=match):
            EncoderConfig(**kwargs)
    with pytest.raises(TypeError, match="source_widths"):
        EncoderConfig(source_prior="mixture", source_widths=10.0)


# ---------------------------------------------------------------------------- the layer


@pytest.mark.parametrize("width", [0.0, 10.0, 40.0])
def test_one_hot_mixture_equals_the_fixed_layer(smoothers, width):
    """Weights (0, ..., 1, ..., 0) give the fixed smoother of that width (or none for 0)."""
    widths = (0.0, 5.0, 10.0, 40.0)
    mix = _mixture(widths, smoothers)
    with torch.no_grad():
        mix.mixture_logits.fill_(-1e4)
        mix.mixture_logits[widths.index(width)] = 0.0
        mix.bias.normal_()
    torch.manual_seed(0)
    fixed = SourceLayer(8, N_SRC, smooth=width > 0)
    if width > 0:
        fixed.set_smoother(smoothers[width])
    with torch.no_grad():
        fixed.bias.copy_(mix.bias)
    torch.testing.assert_close(fixed.weight, mix.weight, rtol=0, atol=0)  # same draw
    np.testing.assert_array_equal(mix.mixture_weights(), np.eye(len(widths))[widths.index(width)])
    z = torch.randn(3, 7, 8)
    a, b = fixed(z), mix(z)
    torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-9)
    g = torch.randn_like(a)
    (a * g).sum().backward()
    (b * g).sum().backward()
    # float32 rounding only (the GEMMs see a view of K (W | b) instead of W itself)
    tol = 1e-6 * float(fixed.weight.grad.abs().max())
    torch.testing.assert_close(mix.weight.grad, fixed.weight.grad, rtol=1e-5, atol=tol)
    torch.testing.assert_close(mix.bias.grad, fixed.bias.grad, rtol=1e-5, atol=tol)


def test_mixture_and_its_gradients_equal_the_dense_formula(smoothers):
    """sum_k softmax(a)_k K_k (W z + b) and its gradients (W, b, logits) against float64
    autograd of the dense formula."""
    widths = (0.0, 5.0, 20.0, 40.0)
    layer = _mixture(widths, smoothers)
    with torch.no_grad():
        layer.mixture_logits.copy_(torch.tensor([0.3, -0.2, 0.5, 0.1]))
        layer.weight.normal_()
        layer.bias.normal_()
    z = torch.randn(2, 5, 8)
    g = torch.randn(2, 5, N_SRC)
    (layer(z) * g).sum().backward()
    ks = [torch.eye(N_SRC, dtype=torch.float64) if w == 0 else
          torch.as_tensor(smoothers[w].toarray()) for w in widths]
    logits = layer.mixture_logits.detach().double().requires_grad_()
    w = layer.weight.detach().double().requires_grad_()
    b = layer.bias.detach().double().requires_grad_()
    p = torch.softmax(logits, 0)
    k = sum(p[i] * ks[i] for i in range(len(widths)))
    ref = z.double() @ (k @ w).T + k @ b
    torch.testing.assert_close(layer(z).double(), ref, rtol=1e-5, atol=1e-5)
    (ref * g.double()).sum().backward()
    assert torch.all(layer.mixture_logits.grad != 0)  # the gradient reaches every logit
    torch.testing.assert_close(layer.mixture_logits.grad.double(), logits.grad, rtol=1e-4,
                               atol=1e-4)
    torch.testing.assert_close(layer.weight.grad.double(), w.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(layer.bias.grad.double(), b.grad, rtol=1e-4, atol=1e-4)


def test_mixture_under_mixed_precision_stays_float32(smoothers):
    """bf16 autocast (TrainConfig.mixed_precision): K W is still computed in float32 (CPU
    sparse products have no bf16 kernels), so it equals the plain float32 result."""
    layer = _mixture((0.0, 10.0), smoothers)
    with torch.no_grad():
        layer.mixture_logits.copy_(torch.tensor([0.2, -0.1]))
    ref_w, ref_b = layer.effective()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        w, b = layer.effective()
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, ref_w, rtol=0, atol=0)
    (w.sum() + b.sum()).backward()
    assert torch.all(layer.mixture_logits.grad != 0)


def test_replacing_a_smoother_rebuilds_the_mixture(smoothers):
    layer = _mixture((0.0, 5.0), smoothers)
    z = torch.randn(1, 4, 8)
    with torch.no_grad():
        before = layer(z)
        layer.set_smoother(smoothers[40.0].tocsr()[:, :] * 1.0, width=5.0)  # any (S, S) matrix
        after = layer(z)
        ref = 0.5 * (layer.weight @ z[0].T).T + 0.5 * torch.as_tensor(
            smoothers[40.0].toarray(), dtype=torch.float32).matmul(layer.weight @ z[0].T).T
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after[0], ref, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="width= one of the non-zero"):
        layer.set_smoother(smoothers[5.0])
    with pytest.raises(ValueError, match="width= one of the non-zero"):
        layer.set_smoother(smoothers[5.0], width=0.0)
    fixed = SourceLayer(8, N_SRC, smooth=True)
    with pytest.raises(ValueError, match="'width' is for a mixture"):
        fixed.set_smoother(smoothers[5.0], width=5.0)


def test_held_out_loss_finds_the_generating_width_and_training_loss_does_not(smoothers):
    """Simulated ground truth: sources = K_20mm U z, observed with noise per source (as the
    fMRI observes them). Logits fitted on held-out samples (the 'validation' rule: W on the
    training samples, the logits on others) move to the generating 20 mm, among 5 / 20 / 40;
    fitted with the training loss, they move to the narrowest, which fits the noise best."""
    rng = np.random.default_rng(0)
    d, n = 8, 400
    truth = smoothers[20.0].toarray() @ rng.standard_normal((N_SRC, d))  # (S, d)
    zs = rng.standard_normal((2 * n, d))
    sig = zs @ truth.T
    y = sig + 2.0 * sig.std() * rng.standard_normal(sig.shape)  # CNR 0.5
    zt, yt = (torch.as_tensor(a, dtype=torch.float32) for a in (zs, y))

    def corr_loss(pred, target):  # 1 - mean r per source, as the joint model's fMRI term
        pc, tc = pred - pred.mean(0), target - target.mean(0)
        return 1 - ((pc * tc).sum(0) / (pc.norm(dim=0) * tc.norm(dim=0))).mean()

    def run(held_out):
        layer = _mixture((5.0, 20.0, 40.0), smoothers)
        main = torch.optim.Adam([layer.weight, layer.bias] + ([] if held_out else
                                                             [layer.mixture_logits]), lr=1e-2)
        prior = torch.optim.Adam([layer.mixture_logits], lr=0.05)
        for _ in range(120):
            main.zero_grad()
            corr_loss(layer(zt[:n]), yt[:n]).backward()
            main.step()
            if held_out:
                prior.zero_grad()
                corr_loss(layer(zt[n:]), yt[n:]).backward()
                prior.step()
        return layer.mixture_weights()

    w = run(held_out=True)
    assert np.argmax(w) == 1 and w[1] > 0.8, w
    w = run(held_out=False)
    assert np.argmax(w) == 0 and w[1] < 1 / 3, w


# ---------------------------------------------------------------------------- the model


# model.json's encoder fields before the adaptive prior existed: a fixed-prior model still
# writes exactly these, so old folders and new ones are alike (and old checkpoints resume).
OLD_ENCODER_KEYS = {"d_stim", "d_model", "n_layers", "n_heads", "d_ff", "dropout", "window",
                    "d_src", "block_size", "source_init_scale", "source_fwhm"}


def test_model_mixture_builds_saves_and_loads(tiny_study, tmp_path):
    import scipy.sparse

    from neurofuse.data.store import read_dataset
    from neurofuse.systems.joint.model import JointModel

    ds = read_dataset(tiny_study)
    torch.manual_seed(0)
    model = JointModel.from_dataset(ds, encoder_kwargs={
        **SMALL, "source_prior": "mixture", "source_widths": [0, 10]})
    layer = model.encoder.source_layer
    k_ref = source_smoother(ds.metadata["template"]["vertices"], 10.0)
    k = layer.mixture_smoother_1
    k = scipy.sparse.csr_array((k.values().numpy(), k.col_indices().numpy(),
                                k.crow_indices().numpy()), shape=tuple(k.shape))
    assert abs(k - k_ref).max() < 1e-7 and k.nnz == k_ref.nnz
    with torch.no_grad():
        layer.mixture_logits.copy_(torch.tensor([-0.5, 0.5]))
    prior = model.source_prior()
    w10 = 1 / (1 + np.exp(-1.0))
    np.testing.assert_allclose(prior["weights"], [1 - w10, w10], rtol=1e-5)
    assert prior["argmax_fwhm"] == 10.0 and prior["mean_fwhm"] == pytest.approx(10 * w10, 1e-4)
    path = model.save(tmp_path / "m")
    cfg = json.loads((path / "model.json").read_text())
    assert cfg["encoder"]["source_prior"] == "mixture" and cfg["encoder"]["source_widths"] == [0, 10]
    assert cfg["source_prior"] == prior
    loaded = JointModel.load(path).eval()
    model.eval()
    feats = torch.as_tensor(np.array(ds.features("story-01")[:300]))[None]
    with torch.no_grad():
        a = model(feats, meg=["S01"], fmri=["S02"])
        b = loaded(feats, meg=["S01"], fmri=["S02"])
    torch.testing.assert_close(b.sources, a.sources, rtol=0, atol=0)
    torch.testing.assert_close(b.fmri["S02"], a.fmri["S02"], rtol=0, atol=0)
    assert loaded.source_prior() == prior
    # its K, for smoothing other estimates with the model's own prior
    k = loaded.spatial_prior()
    ref = (1 - w10) * scipy.sparse.eye_array(model.n_sources) + w10 * k_ref
    assert abs(k - ref).max() < 1e-6  # sparse: 8196 x 8196 dense would be 0.5 GB


def test_fixed_prior_model_is_unchanged(tiny_study, tmp_path):
    """The default (and the fixed smoothed) layer: no new weights, buffers or model.json keys."""
    from neurofuse.data.store import read_dataset
    from neurofuse.systems.joint.model import JointModel

    ds = read_dataset(tiny_study)
    for extra in ({}, {"source_fwhm": 15.0}):
        torch.manual_seed(0)
        model = JointModel.from_dataset(ds, encoder_kwargs={**SMALL, **extra})
        assert not [k for k in model.state_dict() if "mixture" in k]
        cfg = json.loads((model.save(tmp_path / f"m{len(extra)}") / "model.json").read_text())
        assert set(cfg["encoder"]) == OLD_ENCODER_KEYS and "source_prior" not in cfg
        assert model.source_prior() == {"prior": "fixed", "fwhm": extra.get("source_fwhm")}
        k = model.spatial_prior()
        if extra:
            ref = source_smoother(ds.metadata["template"]["vertices"], 15.0)
            assert abs(k - ref).max() < 1e-7 and k.nnz == ref.nnz
        else:
            assert k is None
    # an encoder description without the new keys (an old model.json) is the fixed prior
    old = {k: v for k, v in cfg["encoder"].items()}
    assert StimulusEncoder.from_config(old).config.source_prior == "fixed"


# ---------------------------------------------------------------------------- training


def _fit_tiny(tiny_study, out, epochs=2, **encoder):
    from neurofuse.systems.joint.trainer import fit, load_fit_config

    train, enc = load_fit_config({"preset": "tiny", "train": {"seed": 0, "max_epochs": epochs},
                                  "encoder": {"source_prior": "mixture", **encoder}})
    return fit(tiny_study, out, train_config=train, encoder_kwargs=enc)


def test_fit_learns_the_mixture_on_validation_stories(tiny_study, tmp_path):
    from neurofuse.systems.joint.model import JointModel
    from neurofuse.training import load_checkpoint

    history = _fit_tiny(tiny_study, tmp_path / "val", source_widths=[0, 10],
                        source_mixture_every=1)
    # MEG-first epoch: the logits wait for the fMRI term; then they move
    assert history[0]["alpha_fmri"] == 0
    assert history[0]["mix_0mm"] == history[0]["mix_10mm"] == 0.5
    assert history[-1]["mix_10mm"] != 0.5
    assert history[-1]["mix_0mm"] + history[-1]["mix_10mm"] == pytest.approx(1.0)
    tensors, meta = load_checkpoint(tmp_path / "val" / "checkpoints")
    assert any("prior" in k for k in tensors), "the logits' optimizer is checkpointed"
    model = JointModel.load(tmp_path / "val" / "model")
    assert model.source_prior()["prior"] == "mixture"
    # 'training': the logits are trained with everything else, from the first epoch
    history = _fit_tiny(tiny_study, tmp_path / "train", epochs=1, source_widths=[0, 10],
                        source_mixture_loss="training")
    assert history[0]["mix_10mm"] != 0.5
    tensors, _ = load_checkpoint(tmp_path / "train" / "checkpoints")
    assert not any("prior" in k for k in tensors)


def test_select_source_fwhm_picks_the_lowest_validation_loss_and_resumes(tiny_study, tmp_path):
    from neurofuse.systems.joint.prior import select_source_fwhm

    fit_config = {"preset": "tiny", "train": {"max_epochs": 2}}
    best, table = select_source_fwhm(tiny_study, [0, 10], fit_config, out=tmp_path)
    assert [r["fwhm"] for r in table] == [0.0, 10.0]
    losses = [r["val_total"] for r in table]
    assert losses[0] != losses[1] and best == table[int(np.argmin(losses))]["fwhm"]
    for row in table:  # the recorded loss is the best fMRI-phase epoch of that fit
        import csv

        with open(tmp_path / f"fwhm-{row['fwhm']:g}mm" / "history.csv") as f:
            rows = [r for r in csv.DictReader(f) if float(r["alpha_fmri"]) > 0]
        assert row["val_total"] == pytest.approx(min(float(r["val_total"]) for r in rows))
    saved = json.loads((tmp_path / "selection.json").read_text())
    assert saved["best"] == best and saved["done"]
    # a second call reads the finished fits back instead of training again
    stamp = (tmp_path / "fwhm-10mm" / "model" / "model.safetensors").stat().st_mtime_ns
    assert select_source_fwhm(tiny_study, [0, 10], fit_config, out=tmp_path) == (best, table)
    assert (tmp_path / "fwhm-10mm" / "model" / "model.safetensors").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_resume_with_the_mixture_equals_a_straight_run(tiny_study, tmp_path):
    """The logits' own optimizer and its validation batches resume exactly."""
    from neurofuse.systems.joint.trainer import fit, load_fit_config
    from neurofuse.training import load_checkpoint

    def run(out, epochs, resume=False):
        train, enc = load_fit_config({
            "preset": "tiny", "train": {"max_epochs": epochs, "patience": 10},
            "encoder": {"source_prior": "mixture", "source_widths": [0, 10],
                        "source_mixture_every": 2}})
        return fit(tiny_study, out, train_config=train, encoder_kwargs=enc, resume=resume)

    straight = run(tmp_path / "a", 2)  # epoch 1 MEG only, epoch 2 with fMRI: logits move
    run(tmp_path / "b", 1)
    resumed = run(tmp_path / "b", 2, resume=True)
    assert [r["mix_10mm"] for r in resumed] == pytest.approx([r["mix_10mm"] for r in straight],
                                                             abs=1e-7)
    assert straight[-1]["mix_10mm"] != 0.5
    a, _ = load_checkpoint(tmp_path / "a" / "checkpoints")
    b, _ = load_checkpoint(tmp_path / "b" / "checkpoints")
    assert sorted(a) == sorted(b)
    for k in a:
        if a[k].dtype.is_floating_point:
            torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0, msg=k)

"""The joint model on a tiny simulated study: shapes, gradients, persistence, MNE outputs."""

import json

import mne
import numpy as np
import pytest
import torch

from neurofuse.data.store import read_dataset
from neurofuse.systems.joint.model import JointModel, ModelOutput
from neurofuse.systems.joint.predict import (
    predict_bold,
    predict_meg,
    predict_sources,
    to_source_estimate,
)

SMALL = {"d_model": 16, "n_layers": 2, "n_heads": 2, "d_ff": 32, "window": 20, "dropout": 0.0,
         "block_size": 16}


@pytest.fixture(scope="module")
def ds(tiny_study):
    return read_dataset(tiny_study)


@pytest.fixture(scope="module")
def model(ds):
    torch.manual_seed(0)
    return JointModel.from_dataset(ds, encoder_kwargs=SMALL)


def test_shapes_and_gradients(ds, model):
    feats = torch.as_tensor(np.array(ds.features("story-01")[:400]))[None].repeat(2, 1, 1)
    out = model(feats, meg=["S01"], fmri=["S02"])
    assert out.sources.shape == (2, 400, 8196)
    assert out.meg["S01"].shape == (2, 400, 306)
    assert out.fmri["S02"].shape == (2, 4, 8196)
    model.zero_grad()
    (out.meg["S01"].pow(2).mean() + out.fmri["S02"].mean()).backward()
    hrf = model.fmri_heads["S02"].hrf.log_params.grad
    assert hrf is not None and torch.all(hrf != 0)
    for layer in model.encoder.layers:
        g = layer.attn.lag_embedding.grad
        assert g is not None and g.abs().sum() > 0
    # physics buffers are not trained
    assert not any(b.requires_grad for b in model.buffers())


def test_save_load_roundtrip(ds, model, tmp_path):
    path = model.save(tmp_path / "m")
    assert sorted(p.name for p in path.iterdir()) == ["infos", "model.json", "model.safetensors"]
    json.loads((path / "model.json").read_text())  # plain JSON config
    loaded = JointModel.load(path)
    feats = torch.as_tensor(np.array(ds.features("story-02")[:300]))[None]
    model.eval(), loaded.eval()
    with torch.no_grad():
        a = model(feats, meg=["S01"], fmri=["S02"])
        b = loaded(feats, meg=["S01"], fmri=["S02"])
    torch.testing.assert_close(a.sources, b.sources, rtol=0, atol=0)
    torch.testing.assert_close(a.fmri["S02"], b.fmri["S02"], rtol=0, atol=0)
    assert loaded.infos["S01"]["ch_names"] == ds.info("S01")["ch_names"]


def test_incompatible_weights_rejected(ds, model, tmp_path):
    other = JointModel.from_dataset(ds, encoder_kwargs={**SMALL, "d_model": 32})
    with pytest.raises(ValueError, match="Incompatible checkpoint.*shape"):
        other.load_flat_state(model.flat_state())
    with pytest.raises(FileNotFoundError, match="not a neurofuse model folder"):
        JointModel.load(tmp_path)


def _flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # a tensor's last byte: the header still parses
    path.write_bytes(bytes(data))


def test_damaged_or_edited_model_files_are_refused(ds, model, tmp_path):
    """A bit flipped in the weights fails the checksum recorded in model.json; a model.json
    edited to fewer layers no longer matches the weights' tensors."""
    from neurofuse._io import DamagedFileError

    path = model.save(tmp_path / "m")
    cfg = json.loads((path / "model.json").read_text())
    assert set(cfg["checksums"]) == {"model.safetensors"}
    _flip_last_byte(path / "model.safetensors")
    with pytest.raises(DamagedFileError, match="model weights .*model.safetensors.* damaged"):
        JointModel.load(path)
    path = model.save(tmp_path / "m2")
    cfg = json.loads((path / "model.json").read_text())
    assert cfg["encoder"]["n_layers"] > 1
    cfg["encoder"]["n_layers"] -= 1
    (path / "model.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="tensors this model does not have.*model.json"):
        JointModel.load(path)


def test_chunked_inference_equals_one_pass(ds, model):
    feats = np.array(ds.features("story-04"))
    full = predict_sources(model, feats, chunk_seconds=1000)
    chunked = predict_sources(model, feats, chunk_seconds=1.3)
    np.testing.assert_allclose(chunked, full, rtol=1e-5, atol=1e-6 * np.abs(full).max())
    with torch.no_grad():
        model.eval()
        direct = model.encoder(torch.as_tensor(feats)[None])[0].T.numpy()
    np.testing.assert_allclose(full, direct, rtol=1e-5, atol=1e-6 * np.abs(full).max())


def test_mne_outputs(ds, model):
    feats = np.array(ds.features("story-04"))
    src = predict_sources(model, feats, sfreq=ds.sfreq)
    stc = to_source_estimate(model, src)
    assert isinstance(stc, mne.SourceEstimate) and stc.subject == "fsaverage"
    assert [len(v) for v in stc.vertices] == [4098, 4098]
    assert stc.data.shape == (8196, len(feats)) and stc.sfreq == ds.sfreq
    sub = to_source_estimate(model, src, subject="S02")
    np.testing.assert_allclose(sub.data, ds.morph("S02") @ src, rtol=1e-5, atol=1e-7)
    raw = predict_meg(model, "S01", src)
    assert raw.ch_names == ds.info("S01")["ch_names"] and raw.n_times == len(feats)
    head = model.meg_heads["S01"]
    expected = np.asarray(ds.leadfield("S01"), float) @ (ds.morph("S01") @ src.astype(float))
    np.testing.assert_allclose(raw.get_data(), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    bold = predict_bold(model, "S02", src, rows_per_chunk=1000)
    assert bold.shape == (8196, len(feats) // 100)
    with torch.no_grad():  # row chunks == the head applied to the whole stimulus at once
        ref = model.fmri_heads["S02"](torch.as_tensor(src.T)[None])[0].T.numpy()
    np.testing.assert_allclose(bold, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
    assert head.scale > 0


def test_bad_inputs(ds, model):
    feats = np.array(ds.features("story-04"))
    with pytest.raises(ValueError, match="wrong dimension.*expects 92"):
        predict_sources(model, feats[:, :50])
    with pytest.raises(ValueError, match="Wrong sampling rate.*expected 50 Hz, got 100 Hz"):
        predict_sources(model, feats, sfreq=100.0)
    bad = feats.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        predict_sources(model, bad)
    with pytest.raises(ValueError, match="Unknown subject"):
        to_source_estimate(model, np.zeros((8196, 10)), subject="S99")


def test_forward_equals_encoder_then_each_head():
    """The reordered forward (gains on z, one Hilbert transform, fused fMRI heads) gives the
    same outputs and parameter gradients as encoder -> sources -> each head, the plain way."""
    import scipy.sparse

    from neurofuse.systems.joint.encoder import StimulusEncoder
    from neurofuse.systems.joint.heads import FMRIHead, MEGHead

    rng = np.random.default_rng(0)
    S, B, T = 30, 2, 80
    torch.manual_seed(0)
    enc = StimulusEncoder(d_stim=6, d_model=8, n_layers=1, n_heads=2, d_ff=16, window=7,
                          dropout=0.0, d_src=S, block_size=8)
    morphs = [scipy.sparse.random_array((S, S), density=0.15, random_state=i, format="csr")
              for i in range(4)]
    meg = {f"m{i}": MEGHead.from_forward(rng.standard_normal((5, S)), morphs[i]) for i in (0, 1)}
    fmri = {f"f{i}": FMRIHead(morphs[i], sfreq=10.0, tr=2.0) for i in (2, 3)}
    model = JointModel(enc, meg_heads=meg, fmri_heads=fmri, sfreq=10.0, tr=2.0)
    feats = torch.randn(B, T, 6)
    out = model(feats, meg=list(meg), fmri=list(fmri))
    weights = {k: torch.randn(v.shape) for k, v in
               [("s", out.sources), *out.meg.items(), *out.fmri.items()]}

    def functional(o):
        return ((o.sources * weights["s"]).sum()
                + sum((o.meg[k] * weights[k]).sum() for k in meg)
                + sum((o.fmri[k] * weights[k]).sum() for k in fmri))

    model.zero_grad()
    functional(out).backward()
    fast = {n: p.grad.clone() for n, p in model.named_parameters()}

    model.zero_grad()
    sources = enc(feats)  # (B, T, S)
    ref = ModelOutput(sources)
    for k, h in meg.items():
        ref.meg[k] = sources @ h.gain.T
    for k, h in fmri.items():
        dense = torch.as_tensor(h.morph.to_dense())
        ref.fmri[k] = h.bold(torch.einsum("rs,bts->rbt", dense, sources))
    functional(ref).backward()
    for k in ("sources", "meg", "fmri"):
        a, b = getattr(out, k), getattr(ref, k)
        for x, y in (zip(a.values(), b.values()) if isinstance(a, dict) else [(a, b)]):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5 * float(y.detach().abs().max()))
    for n, p in model.named_parameters():
        torch.testing.assert_close(fast[n], p.grad, rtol=1e-4,
                                   atol=1e-5 * float(p.grad.abs().max()) + 1e-12, msg=n)


def test_latent_smoothness_equals_smoothness_of_the_sources():
    """ModelOutput.latent lets the smoothness loss skip the (B, T, S) pass: same value and
    same gradients as the mean squared step of the sources themselves."""
    from neurofuse.systems.joint.encoder import StimulusEncoder
    from neurofuse.systems.joint.losses import smoothness_loss

    torch.manual_seed(1)
    enc = StimulusEncoder(d_stim=5, d_model=8, n_layers=1, n_heads=2, d_ff=16, window=5,
                          dropout=0.0, d_src=40, block_size=8)
    with torch.no_grad():
        enc.source_layer.bias.normal_(0, 3.0)  # the bias must cancel
    # float64: the plain path subtracts sources ~3 apart by ~0.01 (float32 would lose digits)
    model = JointModel(enc, sfreq=10.0, tr=2.0).double()
    out = model(torch.randn(3, 30, 5, dtype=torch.float64))
    assert out.latent is not None
    grads = []
    for latent in (out.latent, None):
        model.zero_grad()
        loss = smoothness_loss(out.sources, latent=latent)
        loss.backward(retain_graph=True)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()
                      if p.grad is not None})
        if latent is not None:
            fast = loss.detach()
        else:
            torch.testing.assert_close(fast, loss.detach(), rtol=1e-10, atol=0)
    # Offsets cancel in every step: the latent path does not reach the source bias at all,
    # the plain path gives it rounding noise (like the last LayerNorm's bias in both).
    scale = max(float(g.abs().max()) for g in grads[1].values())
    assert float(grads[1].pop("encoder.source_layer.bias").abs().max()) < 1e-10 * scale
    assert grads[0].keys() == grads[1].keys()
    for n in grads[1]:
        torch.testing.assert_close(grads[0][n], grads[1][n], rtol=1e-8, atol=1e-10 * scale,
                                   msg=n)


def test_smoothed_source_layer(ds, tmp_path):
    """source_fwhm: K built from the dataset's fsaverage sources; every head sees K (Wz + b)."""
    from neurofuse.anatomy import source_smoother

    torch.manual_seed(0)
    plain = JointModel.from_dataset(ds, encoder_kwargs=SMALL)
    torch.manual_seed(0)
    smooth = JointModel.from_dataset(ds, encoder_kwargs={**SMALL, "source_fwhm": 12.0})
    k_ref = source_smoother(ds.metadata["template"]["vertices"], 12.0)
    k = smooth.encoder.source_layer.smoother
    assert k.layout == torch.sparse_csr
    np.testing.assert_allclose(k.to_dense().numpy(), k_ref.toarray(), rtol=1e-6, atol=1e-9)
    feats = torch.as_tensor(np.array(ds.features("story-01")[:300]))[None]
    plain.eval(), smooth.eval()
    with torch.no_grad():
        a = plain(feats, meg=["S01"], fmri=["S02"])
        b = smooth(feats, meg=["S01"], fmri=["S02"])
        ref = torch.as_tensor(k_ref @ a.sources[0].double().numpy().T).T  # (T, S)
        torch.testing.assert_close(b.sources[0].double(), ref, rtol=1e-4, atol=1e-6)
        gain = smooth.meg_heads["S01"].gain.double()
        torch.testing.assert_close(b.meg["S01"][0].double(), ref @ gain.T, rtol=1e-4, atol=1e-5)
        # the same outputs through the saved model, and through predict_sources
        loaded = JointModel.load(smooth.save(tmp_path / "m")).eval()
        c = loaded(feats, meg=["S01"], fmri=["S02"])
    torch.testing.assert_close(c.sources, b.sources, rtol=0, atol=0)
    torch.testing.assert_close(c.fmri["S02"], b.fmri["S02"], rtol=0, atol=0)
    np.testing.assert_allclose(predict_sources(loaded, feats[0].numpy()), b.sources[0].numpy().T,
                               rtol=1e-5, atol=1e-6)

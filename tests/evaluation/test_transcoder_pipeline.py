"""System D's evaluation pipeline: both source truths from one set of predictions, and the
learned HRF / lead field read from encoders that are the true operators (r = 1)."""

import types

import numpy as np
import pytest
import torch

from neurofuse.evaluation import transcoder_pipeline as tp
from neurofuse.evaluation.transcoder import evaluate_transcoder, true_signals
from neurofuse.simulation.eeg_fmri import make_config, simulate_dataset
from neurofuse.simulation.eeg_fmri.fmri import sample_bold
from neurofuse.systems.transcoder import TranscoderData


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return simulate_dataset(tmp_path_factory.mktemp("dpipe") / "d",
                            make_config("noise_free", "tiny", bem="sphere"), 3, n_test=1)


def test_both_truths_scored_from_one_prediction(ds):
    calls = []

    def erp_oracle(ds_, run):  # a transcoder whose sources are X * d exactly
        calls.append(run)
        t = true_signals(ds_, run)
        return {"fmri": t["fmri"], "eeg": t["eeg"], "sources": {"eeg": t["erp"]}}

    rows = evaluate_transcoder(ds, transcoder=erp_oracle, methods=(),
                               source_truth=("latent", "erp"))
    assert calls == ["run-002"]  # predicted once, scored twice
    by = {(r["source_truth"], r["source_kind"]): r for r in rows}
    assert set(by) == {(t, k) for t in ("latent", "erp") for k in ("oscillatory", "sparse")}
    for k in ("oscillatory", "sparse"):
        assert by["erp", k]["source_r"] == pytest.approx(1.0)
        assert by["latent", k]["source_r"] < 0.9  # the ERP kernel is not the identity
        assert by["latent", k]["fmri_r"] == pytest.approx(1.0)
        assert by["latent", k]["eeg_r"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="source_truth"):
        evaluate_transcoder(ds, transcoder=erp_oracle, methods=(), source_truth=("X",))


def test_learned_responses_of_true_operators(ds, monkeypatch):
    """Encoders that *are* the block-averaged HRF at the TRs and the lead field pooled to the
    group grid (plus an offset, which the impulse response must remove) give r = 1."""
    steps = 5
    data = TranscoderData(ds, steps, {"fmri_pool": (2, 2, 2)})
    gshape = tuple(data.volume_shape)
    sim = ds.config
    spp = data.n_per_tr // steps
    n_trs = 16
    # step j -> TR m response of the simulator's BOLD (slice offset 0)
    drive = np.zeros((n_trs * steps, n_trs * data.n_per_tr))
    for j in range(n_trs * steps):
        drive[j, j * spp:(j + 1) * spp] = 1.0 / spp
    resp = torch.as_tensor(sample_bold(drive, sim.sfreq, sim.tr, np.zeros(1), sim.hrf)[0],
                           dtype=torch.float32)  # (n_steps, n_trs)
    ijk = np.unravel_index(ds.truth("source_voxels"), tuple(sim.grid_shape))
    cell = np.ravel_multi_index(tuple(ijk[a] // 2 for a in range(3)), gshape)
    lf = ds.truth("leadfield")
    G = np.zeros((lf.shape[0], int(np.prod(gshape))))
    np.add.at(G.T, cell, lf.T)
    G = torch.as_tensor(G, dtype=torch.float32)

    def fmri_encoder(x):  # (B, X, Y, Z, n_steps) -> (B, X, Y, Z, n_trs)
        return x @ resp[:x.shape[-1], :x.shape[-1] // steps] + 0.3

    def eeg_encoder(x):  # (B, X, Y, Z, T) -> (B, n_channels, T)
        return torch.einsum("cv,bvt->bct", G, x.reshape(x.shape[0], -1, x.shape[-1])) - 2.0

    cfg = types.SimpleNamespace(steps_per_tr=steps, volume_shape=gshape,
                                n_channels=data.n_channels)
    fake = types.SimpleNamespace(config=cfg, fmri_encoder=fmri_encoder,
                                 eeg_encoder=eeg_encoder)
    meta = {"data": data.describe()}
    monkeypatch.setattr(tp, "_group_model", lambda model: (fake, meta))
    out = tp.learned_responses("unused", ds, n_trs=n_trs)
    assert out["hrf_r"] == pytest.approx(1.0, abs=1e-6)
    # float32 around the 0.3 offset: ~3e-8 absolute, against a peak of ~4e-3
    np.testing.assert_allclose(out["hrf_learned"], out["hrf_true"], rtol=1e-4, atol=1e-7)
    assert np.argmax(out["hrf_true"]) in (2, 3)  # the canonical HRF peaks at ~5 s (TR 2 s)
    assert len(out["leadfield_r"]) == len(np.unique(cell))
    np.testing.assert_allclose(out["leadfield_r"], 1.0, atol=1e-5)

"""The transcoder's four losses (paper eq. 5) against a hand computation in numpy, and the
pathways that feed them against the networks composed by hand."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from neurofuse.systems.transcoder import (FIT_PRESETS, LOSS_TERMS, Transcoder,
                                          TranscoderConfig, transcoder_loss)
from neurofuse.systems.transcoder.losses import check_weights



def _random_outputs(rng):
    eeg = rng.standard_normal((2, 5, 12))
    fmri = rng.standard_normal((2, 3, 4, 2, 6))
    outs = {"fmri2eeg": rng.standard_normal(eeg.shape), "eeg_cycle": rng.standard_normal(eeg.shape),
            "eeg2fmri": rng.standard_normal(fmri.shape),
            "fmri_cycle": rng.standard_normal(fmri.shape)}
    return eeg, fmri, outs


def _t(a):
    return torch.as_tensor(a, dtype=torch.float32)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_four_losses_against_hand_computation(reduction):
    rng = np.random.default_rng(0)
    eeg, fmri, outs = _random_outputs(rng)
    weights = {"fmri2eeg": 0.5, "eeg2fmri": 2.0, "fmri_cycle": 0.0, "eeg_cycle": 3.0}
    loss, terms = transcoder_loss({k: _t(v) for k, v in outs.items()}, _t(eeg), _t(fmri),
                                  weights=weights, reduction=reduction)
    # hand computation, in float64, straight from eq. 5's definitions
    target = {"fmri2eeg": eeg, "eeg_cycle": eeg, "eeg2fmri": fmri, "fmri_cycle": fmri}
    expected = {}
    for k in LOSS_TERMS:
        sq = [(a - b) ** 2 for a, b in zip(target[k].ravel(), outs[k].ravel())]
        expected[k] = sum(sq) / (len(sq) if reduction == "mean" else 1)
    for k in LOSS_TERMS:
        assert_allclose(float(terms[k]), expected[k], rtol=1e-5)
    assert_allclose(float(loss), sum(weights[k] * expected[k] for k in LOSS_TERMS), rtol=1e-5)
    # the paper's equal weights: the plain sum of the four
    loss1, _ = transcoder_loss({k: _t(v) for k, v in outs.items()}, _t(eeg), _t(fmri),
                               reduction=reduction)
    assert_allclose(float(loss1), sum(expected.values()), rtol=1e-5)


def test_loss_is_zero_for_perfect_reconstructions_and_backpropagates():
    rng = np.random.default_rng(1)
    eeg, fmri, _ = _random_outputs(rng)
    outs = {"fmri2eeg": _t(eeg), "eeg_cycle": _t(eeg), "eeg2fmri": _t(fmri),
            "fmri_cycle": _t(fmri)}
    loss, terms = transcoder_loss(outs, _t(eeg), _t(fmri))
    assert float(loss) == 0 and all(float(v) == 0 for v in terms.values())
    pred = (_t(fmri) + 1).requires_grad_(True)
    loss, _ = transcoder_loss({**outs, "eeg2fmri": pred}, _t(eeg), _t(fmri))
    loss.backward()
    # d/dpred mean((pred - fmri)^2) = 2 (pred - fmri) / n = 2 / n
    assert_allclose(pred.grad.numpy(), np.full(fmri.shape, 2 / fmri.size), rtol=1e-5)


def test_pathways_compose_the_networks():
    """``forward``'s outputs are the paper's pathways: decoder then the other modality's
    encoder, and the cycles as configured (eval mode: batch norm is a fixed map)."""
    torch.manual_seed(0)
    cfg = TranscoderConfig(n_channels=8, volume_shape=(4, 5, 3), **FIT_PRESETS["tiny"]["model"])
    m = Transcoder(cfg).eval()
    eeg, fmri = torch.randn(1, 8, 15), torch.randn(1, 4, 5, 3, 3)
    with torch.no_grad():
        out = m(eeg, fmri)
        s_e, s_f = m.eeg_decoder(eeg), m.fmri_decoder(fmri)
        assert torch.allclose(out["eeg2fmri"], m.fmri_encoder(s_e))
        assert torch.allclose(out["fmri2eeg"], m.eeg_encoder(s_f))
        assert torch.allclose(out["eeg_cycle"], m.eeg_encoder(m.fmri_decoder(m.fmri_encoder(s_e))))
        assert torch.allclose(out["fmri_cycle"], m.fmri_encoder(m.eeg_decoder(m.eeg_encoder(s_f))))
        direct = m(eeg, fmri, cycle="direct")
        assert torch.allclose(direct["eeg_cycle"], m.eeg_encoder(s_e))
        assert torch.allclose(direct["fmri_cycle"], m.fmri_encoder(s_f))
        assert torch.equal(out["eeg_sources"], s_e) and torch.equal(out["fmri_sources"], s_f)


def test_bad_weights_and_outputs():
    with pytest.raises(ValueError, match="did you mean 'eeg2fmri'"):
        check_weights({"eeg_fmri": 1.0})
    with pytest.raises(ValueError, match="all 0"):
        check_weights(dict.fromkeys(LOSS_TERMS, 0.0))
    with pytest.raises(ValueError, match=">= 0"):
        check_weights({"eeg_cycle": -1.0})
    assert check_weights(None) == dict.fromkeys(LOSS_TERMS, 1.0)
    eeg, fmri = torch.zeros(1, 2, 5), torch.zeros(1, 2, 2, 2, 1)
    with pytest.raises(ValueError, match="lacks 'eeg2fmri'"):
        transcoder_loss({"fmri2eeg": eeg}, eeg, fmri)
    _, terms = transcoder_loss({"fmri2eeg": eeg}, eeg, fmri,
                               weights={"eeg2fmri": 0, "fmri_cycle": 0, "eeg_cycle": 0})
    assert list(terms) == ["fmri2eeg"]
    with pytest.raises(ValueError, match="has shape"):
        transcoder_loss({"fmri2eeg": eeg[..., :3]}, eeg, fmri,
                        weights={"eeg2fmri": 0, "fmri_cycle": 0, "eeg_cycle": 0})
    with pytest.raises(ValueError, match="'reduction'"):
        transcoder_loss({"fmri2eeg": eeg}, eeg, fmri, reduction="max",
                        weights={"eeg2fmri": 0, "fmri_cycle": 0, "eeg_cycle": 0})

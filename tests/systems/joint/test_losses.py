"""The training loss (paper §2.6) against numpy references and hand computations."""

import numpy as np
import pytest
import torch

from neurofuse.systems.joint.model import ModelOutput
from neurofuse.systems.joint.losses import (
    joint_loss,
    loss_mask,
    masked_correlation,
    smoothness_loss,
)


def _np_masked_r(pred, target, mask):
    """Reference: np.corrcoef per piece and target over the masked samples."""
    B, _, n = pred.shape
    out = np.empty((B, n))
    for b in range(B):
        keep = mask[b].astype(bool)
        for j in range(n):
            out[b, j] = np.corrcoef(pred[b, keep, j], target[b, keep, j])[0, 1]
    return out


@pytest.mark.parametrize("pred_scale, target_scale, dtype", [
    (1.0, 1.0, torch.float64),
    (1.0, 1.0, torch.float32),
    (1e3, 1e-12, torch.float32),  # predictions in arbitrary units, MEG in tesla
    (1e-12, 1e-13, torch.float32),
])
def test_masked_correlation_matches_numpy(pred_scale, target_scale, dtype):
    rng = np.random.default_rng(0)
    B, T, n = 3, 60, 5
    target = rng.standard_normal((B, T, n))
    pred = 0.6 * target + rng.standard_normal((B, T, n))  # r around 0.5, spread over targets
    pred[..., 0] = -pred[..., 0]  # a negative correlation too
    # A different, not necessarily contiguous, set of samples per piece.
    mask = np.zeros((B, T))
    mask[0, 20:] = 1
    mask[1, :] = 1
    mask[2] = rng.random(T) < 0.5
    expected = _np_masked_r(pred, target, mask)
    # Masked-out samples must not matter: make them huge.
    pred[mask == 0] += 1e3
    target[mask == 0] -= 1e3
    r = masked_correlation(torch.tensor(pred * pred_scale, dtype=dtype),
                           torch.tensor(target * target_scale, dtype=dtype),
                           torch.tensor(mask))
    assert r.shape == (B, n) and r.dtype == dtype
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    np.testing.assert_allclose(r.numpy(), expected, atol=tol)
    assert np.abs(expected).max() > 0.3 and expected[:, 0].max() < 0  # not a trivial case


def test_masked_correlation_gradient_is_finite_at_tesla_scale():
    rng = np.random.default_rng(1)
    target = torch.tensor(rng.standard_normal((2, 40, 3)) * 1e-12, dtype=torch.float32)
    pred = torch.tensor(rng.standard_normal((2, 40, 3)), requires_grad=True)
    mask = loss_mask(torch.tensor([10, 20]), 40)
    r = masked_correlation(pred, target.double(), mask)
    r.sum().backward()
    assert torch.isfinite(pred.grad).all()
    # Samples outside the mask get no gradient.
    assert torch.all(pred.grad[0, :10] == 0) and torch.all(pred.grad[1, :20] == 0)
    assert torch.all(pred.grad[0, 10:].abs().sum(0) > 0)


def test_masked_correlation_of_a_constant_is_zero_not_nan():
    pred = torch.ones(1, 10, 2)
    target = torch.randn(1, 10, 2)
    r = masked_correlation(pred, target, torch.ones(1, 10))
    assert torch.equal(r, torch.zeros(1, 2))


def test_loss_mask():
    m = loss_mask(torch.tensor([0, 3, 7]), 10)
    expected = np.zeros((3, 10))
    expected[0, 0:] = expected[1, 3:] = expected[2, 7:] = 1
    np.testing.assert_array_equal(m.numpy(), expected)
    # At TR resolution: loss_start is in samples, the mask in TRs.
    m = loss_mask(torch.tensor([0, 20, 40]), 60, step=10)
    assert m.shape == (3, 6)
    np.testing.assert_array_equal(m.sum(1).numpy(), [6, 4, 2])
    np.testing.assert_array_equal(m[1].numpy(), [0, 0, 1, 1, 1, 1])


def test_smoothness_loss_by_hand():
    rng = np.random.default_rng(2)
    s = rng.standard_normal((2, 5, 3))
    expected = sum((s[b, t, k] - s[b, t - 1, k]) ** 2
                   for b in range(2) for t in range(1, 5) for k in range(3)) / (2 * 4 * 3)
    assert smoothness_loss(torch.tensor(s)).item() == pytest.approx(expected, rel=1e-12)
    assert smoothness_loss(torch.ones(2, 5, 3)).item() == 0.0


def _batch_and_output(rng, B=4, T=40, spt=10):
    """Two MEG subjects (M2 heard only pieces 1 and 3) and one fMRI subject (pieces 0, 2)."""
    srcs = torch.tensor(rng.standard_normal((B, T, 6)))
    out = ModelOutput(srcs, meg={"M1": torch.tensor(rng.standard_normal((B, T, 3))),
                                 "M2": torch.tensor(rng.standard_normal((B, T, 2)))},
                      fmri={"F1": torch.tensor(rng.standard_normal((B, T // spt, 4)))})
    # Targets correlate with the predictions so r is not ~0.
    rows = {"M1": [0, 1, 2, 3], "M2": [1, 3], "F1": [0, 2]}
    batch = {"loss_start": torch.tensor([20, 10, 20, 30]), "meg": {}, "fmri": {}}
    for kind, sub in (("meg", "M1"), ("meg", "M2"), ("fmri", "F1")):
        pred = getattr(out, kind)[sub][rows[sub]]
        target = pred + torch.tensor(rng.standard_normal(tuple(pred.shape)))
        batch[kind][sub] = (target, torch.tensor(rows[sub]))
    weights = {("meg", "M1"): torch.tensor([0.5, 0.3, 0.2]), ("meg", "M2"): torch.tensor([0.9, 0.1]),
               ("fmri", "F1"): torch.tensor([0.25, 0.25, 0.25, 0.25])}
    return out, batch, weights


def test_joint_loss_by_hand():
    rng = np.random.default_rng(3)
    spt = 10
    out, batch, weights = _batch_and_output(rng, spt=spt)
    B = 4
    per_piece = {"meg": [[] for _ in range(B)], "fmri": [[] for _ in range(B)]}
    for kind, step in (("meg", 1), ("fmri", spt)):
        for sub, (target, rows) in batch[kind].items():
            for i, b in enumerate(rows.tolist()):
                start = int(batch["loss_start"][b]) // step
                p = getattr(out, kind)[sub][b, start:].numpy()
                y = target[i, start:].numpy()
                r = np.array([np.corrcoef(p[:, j], y[:, j])[0, 1] for j in range(p.shape[1])])
                per_piece[kind][b].append(np.sum(weights[(kind, sub)].numpy() * (1 - r)))
    # Mean over the subjects that heard a piece, then over the B pieces of the batch.
    meg = sum(np.mean(v) for v in per_piece["meg"] if v) / B
    fmri = sum(np.mean(v) for v in per_piece["fmri"] if v) / B
    s = out.sources.numpy()
    smooth = np.mean((s[:, 1:] - s[:, :-1]) ** 2)
    terms = joint_loss(out, batch, weights, alpha_meg=1.0, alpha_fmri=0.7, alpha_smooth=1e-2,
                       samples_per_tr=spt)
    assert terms.meg.item() == pytest.approx(meg, rel=1e-10)
    assert terms.fmri.item() == pytest.approx(fmri, rel=1e-10)
    assert terms.smooth.item() == pytest.approx(smooth, rel=1e-10)
    assert terms.total.item() == pytest.approx(meg + 0.7 * fmri + 1e-2 * smooth, rel=1e-10)
    # alpha = 0 switches a term off entirely (the MEG-first phase).
    off = joint_loss(out, batch, weights, alpha_fmri=0.0, alpha_smooth=0.0, samples_per_tr=spt)
    assert off.fmri.item() == 0.0 and off.smooth.item() == 0.0
    assert off.total.item() == pytest.approx(meg, rel=1e-10)


def _subset(out, batch, idx):
    """The pieces ``idx`` of a batch, as a data-parallel rank would see them."""
    idx = list(idx)
    pos = {b: i for i, b in enumerate(idx)}
    sub_out = ModelOutput(out.sources[idx], meg={k: v[idx] for k, v in out.meg.items()},
                          fmri={k: v[idx] for k, v in out.fmri.items()})
    sub_batch = {"loss_start": batch["loss_start"][idx], "meg": {}, "fmri": {}}
    for kind in ("meg", "fmri"):
        for sub, (target, rows) in batch[kind].items():
            keep = [i for i, b in enumerate(rows.tolist()) if b in pos]
            if keep:
                sub_batch[kind][sub] = (target[keep],
                                        torch.tensor([pos[b] for b in rows[keep].tolist()]))
    return sub_out, sub_batch


def test_joint_loss_is_a_mean_over_pieces():
    """What makes data-parallel training equal to one process: the mean of the losses of
    two equal halves of a batch is the loss of the batch (here with subjects that heard only
    some pieces, so a per-subject mean would not split this way)."""
    rng = np.random.default_rng(4)
    out, batch, weights = _batch_and_output(rng)
    kw = dict(alpha_fmri=1.0, alpha_smooth=1e-2, samples_per_tr=10)
    full = joint_loss(out, batch, weights, **kw)
    halves = [joint_loss(*_subset(out, batch, idx), weights, **kw) for idx in ([0, 2], [1, 3])]
    for name in ("total", "meg", "fmri", "smooth"):
        split = (getattr(halves[0], name) + getattr(halves[1], name)) / 2
        assert split.item() == pytest.approx(getattr(full, name).item(), rel=1e-12), name

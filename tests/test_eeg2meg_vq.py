"""System B's vector quantiser (Eq. 3–4) against a hand computation on a tiny codebook."""

import pytest
import torch

from neurofuse.systems.eeg2meg.vq import VectorQuantizer

# Three codewords in 2-D and three inputs, each closest to a different codeword:
#   z0 = (0.9, 0.1): to e0 = (0, 0) 0.82, to e1 = (1, 0) 0.02, to e2 = (0, 2) 4.42 -> code 1
#   z1 = (0.2, 1.5): to e0 2.29, to e1 2.89, to e2 0.29                              -> code 2
#   z2 = (-0.1, -0.2): to e0 0.05, to e1 1.25, to e2 4.85                            -> code 0
CODEBOOK = [[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]]
Z = [[0.9, 0.1], [0.2, 1.5], [-0.1, -0.2]]
CODES = [1, 2, 0]
# z - e_code = (-0.1, 0.1), (0.2, -0.5), (-0.1, -0.2); squares sum to 0.36 over 6 elements.
MSE = 0.36 / 6
BETA = 0.25


def _vq():
    vq = VectorQuantizer(3, 2, beta=BETA, data_init=False).double()
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor(CODEBOOK, dtype=torch.float64))
    return vq


def test_codes_loss_and_output_match_the_hand_computation():
    vq = _vq()
    z = torch.tensor(Z, dtype=torch.float64, requires_grad=True)
    z_q, loss, codes, perplexity = vq(z)
    assert codes.tolist() == CODES
    torch.testing.assert_close(z_q, torch.tensor(CODEBOOK, dtype=torch.float64)[CODES])
    assert loss.item() == pytest.approx(MSE * (1 + BETA), rel=1e-12)
    assert perplexity.item() == pytest.approx(3.0)  # three codewords used once each


def test_straight_through_gradient_is_the_upstream_gradient():
    vq = _vq()
    z = torch.tensor(Z, dtype=torch.float64, requires_grad=True)
    upstream = torch.tensor([[1.0, -2.0], [0.5, 3.0], [-1.5, 0.25]], dtype=torch.float64)
    z_q, _, _, _ = vq(z)
    (z_q * upstream).sum().backward()
    torch.testing.assert_close(z.grad, upstream)
    assert vq.codebook.grad is None or not vq.codebook.grad.any()  # z_q's value is detached


def test_codebook_term_moves_only_the_codebook_and_commitment_only_the_input():
    vq = _vq()
    z = torch.tensor(Z, dtype=torch.float64, requires_grad=True)
    _, loss, _, _ = vq(z)
    loss.backward()
    e = torch.tensor(CODEBOOK, dtype=torch.float64)[CODES]
    zt = torch.tensor(Z, dtype=torch.float64)
    # d/dz of beta * mean((z - sg[e])^2) = 2 beta (z - e) / 6; codebook term gives z nothing
    torch.testing.assert_close(z.grad, 2 * BETA * (zt - e) / 6)
    # d/de_k of mean((sg[z] - e)^2) = 2 (e_k - z_i) / 6 for the z_i assigned to k
    expected = torch.zeros(3, 2, dtype=torch.float64)
    for i, k in enumerate(CODES):
        expected[k] += 2 * (e[i] - zt[i]) / 6
    torch.testing.assert_close(vq.codebook.grad, expected)


def test_beta_zero_leaves_the_input_without_loss_gradient():
    vq = VectorQuantizer(3, 2, beta=0.0, data_init=False).double()
    z = torch.tensor(Z, dtype=torch.float64, requires_grad=True)
    vq(z)[1].backward()
    assert not z.grad.any()


def test_perplexity_is_one_for_a_single_code_and_works_on_token_grids():
    vq = _vq()
    z = torch.tensor([[0.9, 0.1]] * 4, dtype=torch.float64).reshape(2, 2, 1, 2)  # (B, C, P, D)
    z_q, _, codes, perplexity = vq(z)
    assert codes.shape == (2, 2, 1) and z_q.shape == z.shape
    assert (codes == 1).all() and perplexity.item() == pytest.approx(1.0)


def test_data_init_takes_codewords_from_the_first_training_batch_once():
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 3)
    z = 10 + torch.randn(50, 3)  # far from the N(0, 1/D) initial codewords
    vq.train()
    vq(z)
    dist = torch.cdist(vq.codebook.detach(), z).min(dim=1).values
    assert (dist < 0.1).all()  # every codeword sits on an input vector
    assert bool(vq.initialised) and "initialised" in vq.state_dict()
    before = vq.codebook.detach().clone()
    vq(z - 20)
    torch.testing.assert_close(vq.codebook.detach(), before)  # not repeated
    fresh = VectorQuantizer(4, 3).eval()
    fresh(z)
    assert not bool(fresh.initialised)  # never in eval mode


def test_wrong_dimension_is_refused():
    with pytest.raises(ValueError, match="last dimension D = 2"):
        _vq()(torch.zeros(3, 5, dtype=torch.float64))


def _restarting_vq(threshold=1.0, decay=0.5):
    vq = VectorQuantizer(3, 2, beta=BETA, data_init=False, dead_code_threshold=threshold,
                         usage_decay=decay).double()
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor(CODEBOOK, dtype=torch.float64))
    return vq.train()


def test_dead_code_restart_follows_the_moving_use_by_hand():
    vq = _restarting_vq(threshold=1.0, decay=0.5)
    both = torch.tensor([Z[0], Z[2]], dtype=torch.float64)  # codes 1 and 0; code 2 unused
    vq(both)
    # first call: the use is the counts (1, 1, 0); code 2 < 1 is restarted on an input
    # vector of the call and its use set to the threshold
    torch.testing.assert_close(vq.usage, torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64))
    assert any(torch.equal(vq.codebook.detach()[2], v) for v in both)
    torch.testing.assert_close(vq.codebook.detach()[:2],
                               torch.tensor(CODEBOOK[:2], dtype=torch.float64))
    # second call, three inputs at code 1's codeword: use 0.5 * (1, 1, 1) + 0.5 * (0, 3, 0)
    # = (0.5, 2, 0.5); codes 0 and 2 fall below 1 and both restart on that vector
    vq.codebook.data[2] = torch.tensor([0.0, 50.0], dtype=torch.float64)  # far from everything
    same = torch.tensor([[1.0, 0.0]] * 3, dtype=torch.float64)
    _, _, codes, _ = vq(same)
    assert codes.tolist() == [1, 1, 1]  # the codes of this call are chosen before restarting
    torch.testing.assert_close(vq.usage, torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(vq.codebook.detach(), same)


def test_dead_code_restart_is_off_by_default_and_in_eval_mode():
    vq = _vq().train()
    vq(torch.tensor([Z[0]] * 5, dtype=torch.float64))
    torch.testing.assert_close(vq.codebook.detach(), torch.tensor(CODEBOOK, dtype=torch.float64))
    assert "usage" not in vq.state_dict()  # so model folders written before load unchanged
    vq = _restarting_vq().eval()
    vq(torch.tensor([Z[0]] * 5, dtype=torch.float64))
    torch.testing.assert_close(vq.codebook.detach(), torch.tensor(CODEBOOK, dtype=torch.float64))
    assert torch.isnan(vq.usage).all()


def test_dead_code_settings_are_checked():
    with pytest.raises(ValueError, match="usage_decay"):
        VectorQuantizer(3, 2, dead_code_threshold=1.0, usage_decay=1.0)
    with pytest.raises(ValueError, match="dead_code_threshold"):
        VectorQuantizer(3, 2, dead_code_threshold=-1.0)


RESTART_WORKER = """
import json, torch
from neurofuse.training.distributed import cleanup_distributed, init_distributed
from neurofuse.systems.eeg2meg.vq import VectorQuantizer
ctx = init_distributed("cpu")
torch.manual_seed(0)  # the same initial state on both ranks, as the training loop seeds
vq = VectorQuantizer(16, 2, dead_code_threshold=3.0).train()
data = torch.Generator().manual_seed(100 + ctx.rank)  # each rank its own batches
first = counts = None
for step in range(3):
    codes = vq(torch.randn(40, 2, generator=data) + 4 * ctx.rank)[2]
    if first is None:
        first, counts = vq.usage.tolist(), torch.bincount(codes, minlength=16).tolist()
cleanup_distributed()
print(json.dumps({"codebook": vq.codebook.tolist(), "usage": vq.usage.tolist(),
                  "first": first, "counts": counts}))
"""


def test_dead_code_restart_under_two_processes_keeps_one_codebook():
    from _ranks import run_ranks

    outs = run_ranks(RESTART_WORKER)
    # every rank restarted the same codes with rank 0's vectors: one codebook, one use
    assert outs[0]["codebook"] == outs[1]["codebook"]
    assert outs[0]["usage"] == outs[1]["usage"]
    # the first call's use is the whole batch's counts (both ranks' summed, not averaged);
    # the codes below the threshold, 3, restarted and were set to it
    total = torch.tensor(outs[0]["counts"]) + torch.tensor(outs[1]["counts"])
    assert total.sum() == 80 and (total < 3).any() and (total >= 3).any()
    expected = torch.where(total < 3, torch.tensor(3), total).to(torch.float32)
    torch.testing.assert_close(torch.tensor(outs[0]["first"]), expected)

"""System B's spatial focus mapping: Eq. 2 across channels, then attention across patches."""

import pytest
import torch

from neurofuse.systems.eeg2meg.spatial_focus import (
    ChannelAttention,
    SpatialFocusMapping,
    TemporalAttention,
)


def test_channel_attention_is_eq2_written_out():
    torch.manual_seed(0)
    att = ChannelAttention(8).double()
    h = torch.randn(2, 5, 3, 8, dtype=torch.float64)  # (B, C, P, D)
    wq, wk, wv = (m.weight.T for m in (att.w_q, att.w_k, att.w_v))  # x @ W
    expected = torch.empty_like(h)
    for b in range(2):
        for p in range(3):
            x = h[b, :, p]  # (C, D): the channels at one patch
            q, k, v = x @ wq, x @ wk, x @ wv
            a = torch.softmax(q @ k.T / 8 ** 0.5, dim=-1)  # (C, C), d_k = D
            expected[b, :, p] = a @ v + x
    torch.testing.assert_close(att(h), expected)
    weights = att.attention_weights(h)
    assert weights.shape == (2, 3, 1, 5, 5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 1, 5, dtype=torch.float64))


def test_channel_attention_with_zero_values_is_the_residual():
    att = ChannelAttention(8, n_heads=2)
    torch.nn.init.zeros_(att.w_v.weight)
    h = torch.randn(2, 5, 3, 8)
    torch.testing.assert_close(att(h), h)


def test_channel_attention_mixes_channels_within_a_patch_only():
    torch.manual_seed(1)
    att = ChannelAttention(8, n_heads=2)
    h = torch.randn(1, 5, 3, 8)
    h2 = h.clone()
    h2[0, 2, 1] += 1.0  # change channel 2 at patch 1
    diff = (att(h2) - att(h)).abs().sum(-1)[0]  # (C, P)
    assert (diff[:, 1] > 0).all()  # every channel at patch 1 sees it
    assert diff[:, [0, 2]].max() == 0  # other patches do not
    perm = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(att(h[:, perm]), att(h)[:, perm])  # permutation-equivariant


def test_temporal_attention_mixes_patches_within_a_channel_only():
    torch.manual_seed(2)
    att = TemporalAttention(8, n_heads=2).eval()
    h = torch.randn(1, 4, 6, 8)
    h2 = h.clone()
    h2[0, 1, 3] += 1.0
    diff = (att(h2) - att(h)).abs().sum(-1)[0]  # (C, P)
    assert (diff[1] > 0).all()
    assert diff[[0, 2, 3]].max() == 0


def test_spatial_focus_mapping_shape_gradients_and_checks():
    sfm = SpatialFocusMapping(8, channel_heads=1, temporal_heads=4)
    h = torch.randn(2, 5, 3, 8, requires_grad=True)
    out = sfm(h)
    assert out.shape == h.shape
    out.pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in sfm.parameters())
    with pytest.raises(ValueError, match="must divide the feature size D = 8"):
        SpatialFocusMapping(8, channel_heads=3)

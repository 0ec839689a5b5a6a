"""Spatial focus mapping: channel self-attention (Eq. 2), then temporal attention over patches.

Paper ↔ code
------------
- Eq. 2: ``H_spa = softmax(Q Kᵀ / √d_k) V + H_enc`` with ``Q, K, V = H_enc W_Q, H_enc W_K,
  H_enc W_V`` and ``W_* ∈ R^{D×D}`` (bias-free linear maps), the softmax over the *channel*
  axis: every patch position attends across the C_e electrodes separately. With
  ``channel_heads = 1`` (default) ``d_k = D`` exactly as written; more heads split D into
  ``channel_heads`` slices of ``d_k = D / channel_heads`` (concatenated, no output projection,
  so one head is the paper's formula).
- Temporal attention (§II-C, no equation): multi-head self-attention across the P patches of
  each channel, pre-LayerNorm, with a residual — the standard transformer form; the paper gives
  neither the head count nor the normalisation.
- Not in this module: channel identity. Attention is permutation-equivariant, so the generator
  adds a learned per-channel (and per-patch) embedding to ``H_enc`` before this module.
"""

from __future__ import annotations

import torch
from torch import nn

from ..._checks import _check_int

__all__ = ["ChannelAttention", "SpatialFocusMapping", "TemporalAttention"]


def _check_divides(name: str, heads: int, dim: int) -> None:
    if dim % heads:
        raise ValueError(f"'{name}' ({heads}) must divide the feature size D = {dim}; use a "
                         f"divisor of {dim}.")


class ChannelAttention(nn.Module):
    """Eq. 2: self-attention across channels with a residual.

    Parameters
    ----------
    dim : int
        Feature size D.
    n_heads : int
        Heads (1: the paper's single attention).
    """

    def __init__(self, dim: int, n_heads: int = 1):
        super().__init__()
        self.dim = _check_int("dim", dim)
        self.n_heads = _check_int("n_heads", n_heads)
        _check_divides("n_heads", n_heads, dim)
        self.w_q = nn.Linear(dim, dim, bias=False)
        self.w_k = nn.Linear(dim, dim, bias=False)
        self.w_v = nn.Linear(dim, dim, bias=False)

    def attention_weights(self, h: torch.Tensor) -> torch.Tensor:
        """The channel affinity of Eq. 2, ``softmax(Q Kᵀ / √d_k)``.

        Parameters
        ----------
        h : torch.Tensor, shape (B, C, P, D)

        Returns
        -------
        weights : torch.Tensor, shape (B, P, n_heads, C, C)
            Row ``i`` holds how much channel ``i`` takes from each channel (rows sum to 1).
        """
        q, k = self._split(self.w_q(h)), self._split(self.w_k(h))  # (B, P, H, C, d_k)
        return torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, c, p, d = x.shape
        x = x.reshape(b, c, p, self.n_heads, d // self.n_heads)  # (B, C, P, H, d_k)
        return x.permute(0, 2, 3, 1, 4)  # (B, P, H, C, d_k)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Apply Eq. 2.

        Parameters
        ----------
        h : torch.Tensor, shape (B, C, P, D)
            ``H_enc``.

        Returns
        -------
        h_spa : torch.Tensor, shape (B, C, P, D)
        """
        b, c, p, d = h.shape
        v = self._split(self.w_v(h))  # (B, P, H, C, d_k)
        out = self.attention_weights(h) @ v  # (B, P, H, C, d_k)
        out = out.permute(0, 3, 1, 2, 4).reshape(b, c, p, d)  # (B, C, P, D)
        return out + h


class TemporalAttention(nn.Module):
    """Pre-norm multi-head self-attention across the patches of each channel, with a residual.

    Parameters
    ----------
    dim : int
        Feature size D.
    n_heads : int
        Attention heads (must divide D).
    dropout : float
        Attention dropout.
    """

    def __init__(self, dim: int, n_heads: int = 4, dropout: float = 0.0):
        super().__init__()
        _check_int("dim", dim)
        _check_int("n_heads", n_heads)
        _check_divides("n_heads", n_heads, dim)
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, n_heads, dropout=dropout, batch_first=True)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Attend over the patch axis.

        Parameters
        ----------
        h : torch.Tensor, shape (B, C, P, D)

        Returns
        -------
        out : torch.Tensor, shape (B, C, P, D)
        """
        b, c, p, d = h.shape
        x = h.reshape(b * c, p, d)  # (B·C, P, D)
        y = self.norm(x)
        y, _ = self.attn(y, y, y, need_weights=False)
        return (x + y).reshape(b, c, p, d)


class SpatialFocusMapping(nn.Module):
    """Channel attention (Eq. 2) followed by temporal attention.

    Parameters
    ----------
    dim : int
        Feature size D of the encoder's tokens.
    channel_heads : int
        Heads of the channel attention (1: Eq. 2 as written).
    temporal_heads : int
        Heads of the temporal attention.
    dropout : float
        Dropout of the temporal attention.
    """

    def __init__(self, dim: int, channel_heads: int = 1, temporal_heads: int = 4,
                 dropout: float = 0.0):
        super().__init__()
        self.channel = ChannelAttention(dim, channel_heads)
        self.temporal = TemporalAttention(dim, temporal_heads, dropout)

    def forward(self, h_enc: torch.Tensor) -> torch.Tensor:
        """Focus the encoder's tokens.

        Parameters
        ----------
        h_enc : torch.Tensor, shape (B, C_e, P, D)

        Returns
        -------
        h : torch.Tensor, shape (B, C_e, P, D)
            The spatio-temporally fused features that the vector quantiser receives.
        """
        return self.temporal(self.channel(h_enc))

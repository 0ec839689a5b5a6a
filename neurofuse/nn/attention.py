"""Causal sliding-window self-attention with learnable lag embeddings added to the keys.

Paper §2.2: "Each attention block uses a causal sliding window of 500 tokens [...]. We add
learnable positional embeddings to the keys within each attention block, so that the
transformer can learn feature-dependent neural latency."

For one head, with queries ``q_t``, keys ``k_t'``, values ``v_t'`` (``d_head`` wide) and the
head's slice ``P`` (window, d_head) of the lag embedding::

    score(t, t') = q_t . (k_t' + P[t - t']) / sqrt(d_head)    if 0 <= t - t' < window
                 = -inf                                       otherwise
    out_t        = sum_t' softmax_t'(score(t, .)) v_t'

so a query sees itself (lag 0) and the ``window - 1`` preceding samples, and the term
``q_t . P[lag]`` lets each head prefer latencies that depend on what ``q_t`` encodes. No
positional term is added to the values.

Two implementations give the same result (to float rounding) and the same gradients:

- ``"blocked"`` (``"auto"``): queries in blocks of ``block_size``; each block attends to a
  key/value slice covering ``[start - window + 1, end)`` (clipped at 0, and widened to the
  previous block boundary, at most ``block_size - 1`` extra keys, all masked). The lag term
  ``q_blk @ P^T`` (blk, window) is "skewed" into the (blk, slice) score layout with the
  Transformer-XL pad-and-reshape trick, the band outside the window is set to ``-inf``, and
  the result is the float ``attn_mask`` of :func:`torch.nn.functional.scaled_dot_product_attention`
  (so CUDA may pick a fused kernel). Memory is O(T * (block_size + window)), never O(T^2).
- ``"dense"``: the plain reference, full (T, T) scores; O(T^2) memory. For tests and the
  "straightforward implementation" benchmark only.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import _check_int, _check_option

__all__ = ["IMPLS", "LagWindowAttention", "lag_window_attention"]

#: Accepted values of the ``impl`` argument.
IMPLS = ("auto", "blocked", "dense")


def _check_heads(d_model: int, n_heads: int) -> None:
    if d_model % n_heads:
        divisors = [h for h in range(1, min(d_model, 16) + 1) if d_model % h == 0]
        raise ValueError(
            f"'d_model' ({d_model}) must be divisible by 'n_heads' ({n_heads}) so that each "
            f"head gets d_model / n_heads dimensions. Choose n_heads in {divisors}"
            f"{' ...' if d_model > 16 else ''} or change d_model."
        )


def _check_dropout(value) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"'dropout' must be a real number, got {type(value).__name__} ({value!r}).")
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"'dropout' must be in [0, 1), got {value}.")
    return value


def _dense_lag_attention(q, k, v, p, dropout_p: float):
    """Reference: full (T, T) scores. q, k, v (B, H, T, Dh); p (H, W, Dh) -> (B, H, T, Dh)."""
    B, H, T, Dh = q.shape
    W = p.shape[-2]
    scale = 1.0 / math.sqrt(Dh)
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale  # (B, H, T, T)
    rel = torch.matmul(q, p.transpose(-1, -2)) * scale  # (B, H, T, W): [t, l] = q_t . P[l]
    pos = torch.arange(T, device=q.device)
    lag = pos[:, None] - pos[None, :]  # (T, T): t - t'
    outside = (lag < 0) | (lag >= W)  # (T, T)
    idx = lag.clamp(0, W - 1).expand(B, H, T, T)  # (B, H, T, T)
    scores = scores + torch.gather(rel, -1, idx)  # (B, H, T, T)
    scores = scores.masked_fill(outside, float("-inf"))  # (B, H, T, T)
    attn = torch.softmax(scores, dim=-1)  # (B, H, T, T)
    if dropout_p > 0:
        attn = F.dropout(attn, p=dropout_p, training=True)
    return torch.matmul(attn, v)  # (B, H, T, Dh)


def _blocked_lag_attention(q, k, v, p, dropout_p: float, block_size: int):
    """Query blocks with key/value window slices. Shapes as in :func:`_dense_lag_attention`.

    q, k and v are cut into blocks with :meth:`torch.Tensor.split` and each block's key/value
    slice is the ``torch.cat`` of the blocks that cover its window: unlike indexing
    ``k[:, :, k0:stop]``, whose backward writes into a zero tensor of the full (B, H, T, Dh)
    shape for every block (O(T^2 / block_size) time), split/cat backpropagate in O(T).
    The slice therefore starts at a block boundary and may hold up to ``block_size - 1``
    extra keys before the window, which the band mask removes.
    """
    B, H, _, Dh = q.shape
    W = p.shape[-2]
    scale = 1.0 / math.sqrt(Dh)
    # Contiguous (B, H, T, Dh): each block is then a view that folds B and H into one batch
    # axis without a copy.
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()  # (B, H, T, Dh)
    q_blocks = q.split(block_size, dim=2)  # n_blocks x (B, H, n, Dh)
    k_blocks = k.split(block_size, dim=2)  # n_blocks x (B, H, n, Dh)
    v_blocks = v.split(block_size, dim=2)  # n_blocks x (B, H, n, Dh)
    # Row m of p_rev holds lag W - 1 - m, so that after skewing, column c of a block's bias
    # is the key at time (start - W + 1 + c). The 1 / sqrt(Dh) scale is folded in once.
    p_rev_t = (p.flip(-2) * scale).transpose(-1, -2)  # (H, Dh, W)
    outs = []
    for b, q_blk in enumerate(q_blocks):
        start = b * block_size
        n = q_blk.shape[2]
        stop = start + n
        b0 = max(0, (start - W + 1) // block_size)  # first key block of the slice
        k0 = b0 * block_size  # first key of the slice
        extra = (start - W + 1) - k0  # > 0: keys before the window; < 0: window clipped at 0
        if b > b0:
            k_sl = torch.cat(k_blocks[b0 : b + 1], dim=2)  # (B, H, L, Dh), L = stop - k0
            v_sl = torch.cat(v_blocks[b0 : b + 1], dim=2)  # (B, H, L, Dh)
        else:
            k_sl, v_sl = k_blocks[b], v_blocks[b]  # (B, H, L, Dh)

        # Lag term, one bmm per head (a broadcast matmul would copy P for every batch item).
        q_h = q_blk.transpose(0, 1).reshape(H, B * n, Dh)  # (H, B * n, Dh)
        rel = torch.bmm(q_h, p_rev_t)  # (H, B * n, W): [i, m] = q_i . P[W-1-m] / sqrt(Dh)
        rel = rel.view(H, B, n, W).transpose(0, 1)  # (B, H, n, W)
        # Skew (Transformer-XL rel-shift): pad to M columns, re-read the rows with stride
        # M - 1, so that out[i, c] = rel[i, c - i - pad_left], i.e. the key at column c sits
        # at lag (start + i) - (start - W + 1 - pad_left + c). Positions outside the window
        # hold padding or wrapped values and are masked below.
        pad_left = max(extra, 0)
        M = pad_left + W + n
        rel = F.pad(rel, (pad_left, n))  # (B, H, n, M)
        rel = rel.reshape(B, H, n * M)[..., : n * (M - 1)]  # (B, H, n * (M - 1))
        rel = rel.reshape(B, H, n, M - 1)  # (B, H, n, M - 1): key k0 + min(extra, 0) + c
        rel = rel[..., max(-extra, 0) :]  # (B, H, n, L): key k0 + c

        i = torch.arange(start, stop, device=q.device)  # (n,) query times
        j = torch.arange(k0, stop, device=q.device)  # (L,) key times
        lag = i[:, None] - j[None, :]  # (n, L)
        outside = (lag < 0) | (lag >= W)  # (n, L)
        bias = rel.masked_fill(outside, float("-inf"))  # (B, H, n, L)

        out = F.scaled_dot_product_attention(
            q_blk, k_sl, v_sl, attn_mask=bias, dropout_p=dropout_p, scale=scale
        )  # (B, H, n, Dh)
        outs.append(out)
    return torch.cat(outs, dim=-2)  # (B, H, T, Dh)


def lag_window_attention(q, k, v, lag_embedding, *, dropout_p=0.0, block_size=128, impl="auto"):
    """Functional causal sliding-window attention with lag embeddings added to the keys.

    Parameters
    ----------
    q, k, v : Tensor, shape (B, H, T, d_head)
        Queries, keys and values, already split into heads.
    lag_embedding : Tensor, shape (H, window, d_head)
        ``lag_embedding[h, l]`` is added to every key seen at lag ``l`` by head ``h``.
    dropout_p : float
        Dropout on the attention weights (applied whenever > 0; pass 0 in eval mode).
    block_size : int
        Queries per block of the ``"blocked"`` implementation.
    impl : "auto" | "blocked" | "dense"
        ``"auto"`` is ``"blocked"``.

    Returns
    -------
    out : Tensor, shape (B, H, T, d_head)
    """
    _check_option("impl", impl, IMPLS)
    if impl == "dense":
        return _dense_lag_attention(q, k, v, lag_embedding, dropout_p)
    return _blocked_lag_attention(q, k, v, lag_embedding, dropout_p, block_size)


class LagWindowAttention(nn.Module):
    """Multi-head causal sliding-window self-attention with per-lag key embeddings.

    Parameters
    ----------
    d_model : int
        Width of the input and output.
    n_heads : int
        Number of heads; must divide ``d_model``.
    window : int
        Number of samples a query sees: itself and the ``window - 1`` before it
        (500 = 10 s at 50 Hz in the paper).
    dropout : float
        Dropout on the attention weights, in training mode only. With ``dropout > 0`` the
        ``"blocked"`` and ``"dense"`` implementations draw different masks, so they agree
        only in distribution; in eval mode (or with ``dropout=0``) they agree to rounding.
    block_size : int
        Queries per block of the ``"blocked"`` implementation (memory and speed knob only;
        the result does not depend on it).
    bias : bool
        Whether the q, v and output projections have a bias (the key projection never has
        one: softmax is invariant to it).

    Attributes
    ----------
    q_proj, k_proj, v_proj, out_proj : nn.Linear
        The projections, each (d_model -> d_model).
    lag_embedding : nn.Parameter, shape (window, d_model)
        Row ``l`` is added to the keys at lag ``l`` (query time - key time); split into heads
        like the keys. Initialised from N(0, 0.02^2).

    Notes
    -----
    The blocked implementation passes the lag term as a float ``attn_mask`` that requires
    grad. On CPU, SDPA then uses its "math" backend (the fused CPU kernel is used only when
    no gradient is needed, e.g. under ``torch.no_grad()``), which keeps each block's attention
    weights for the backward pass: about ``B * H * T * (block_size + window) * 4`` bytes per
    layer in float32 (~80 MiB for B=8, H=2, T=2000, window=500), plus the concatenated
    key/value slices. On CUDA, SDPA may choose the memory-efficient kernel, which accepts a
    bias with gradient. ``block_size`` changes neither the result nor the gradients.
    """

    def __init__(self, d_model, n_heads, *, window=500, dropout=0.0, block_size=128, bias=True):
        super().__init__()
        d_model = _check_int("d_model", d_model)
        n_heads = _check_int("n_heads", n_heads)
        _check_heads(d_model, n_heads)
        self.d_model = d_model
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.window = _check_int(
            "window",
            window,
            how_to_fix="It is the number of samples a query sees, itself included.",
        )
        self.block_size = _check_int("block_size", block_size)
        self.dropout = _check_dropout(dropout)
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        # No key bias: it adds q·b to every score of a query, which softmax ignores, so it
        # would get exactly zero gradient and only drift under AdamW's weight decay.
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        self.lag_embedding = nn.Parameter(torch.empty(self.window, d_model))
        nn.init.normal_(self.lag_embedding, std=0.02)

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, n_heads={self.n_heads}, window={self.window}, "
            f"dropout={self.dropout}, block_size={self.block_size}"
        )

    def forward(self, x: torch.Tensor, *, impl: str = "auto") -> torch.Tensor:
        """Attend over the preceding ``window`` samples.

        Parameters
        ----------
        x : Tensor, shape (B, T, d_model)
        impl : "auto" | "blocked" | "dense"
            ``"auto"`` is ``"blocked"`` on every device; ``"dense"`` is the O(T^2) reference.

        Returns
        -------
        out : Tensor, shape (B, T, d_model)
        """
        _check_option("impl", impl, IMPLS)
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(
                f"'x' must have shape (B, T, d_model={self.d_model}), got {tuple(x.shape)}."
            )
        B, T, D = x.shape
        H, Dh = self.n_heads, self.d_head
        q = self.q_proj(x).view(B, T, H, Dh).transpose(1, 2)  # (B, H, T, Dh)
        k = self.k_proj(x).view(B, T, H, Dh).transpose(1, 2)  # (B, H, T, Dh)
        v = self.v_proj(x).view(B, T, H, Dh).transpose(1, 2)  # (B, H, T, Dh)
        p = self.lag_embedding.view(self.window, H, Dh).transpose(0, 1)  # (H, W, Dh)
        out = lag_window_attention(
            q,
            k,
            v,
            p,
            dropout_p=self.dropout if self.training else 0.0,
            block_size=self.block_size,
            impl=impl,
        )  # (B, H, T, Dh)
        out = out.transpose(1, 2).reshape(B, T, D)  # (B, T, D)
        return self.out_proj(out)  # (B, T, D)

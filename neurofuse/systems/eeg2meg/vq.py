"""Vector quantiser of the spatial focus mapping (Eq. 3–4), with a learnable (non-EMA) codebook.

Paper ↔ code
------------
- Eq. 3: each D-vector ``z`` is replaced by its nearest codeword ``e_k*`` (Euclidean).
- Eq. 4: ``L_VQ = ||sg[z] - z_q||² + β ||z - sg[z_q]||²``. The squared norms are *means* over
  every element (as in VQ-VAE implementations), so the loss does not grow with the batch or the
  token count; the codebook term moves only the codebook, the commitment term only ``z``.
- Straight-through estimator: the output is ``z + sg[z_q - z]`` (value ``z_q``, gradient of
  the identity), so the upstream gradient reaches ``z`` unchanged.
- Left open by the paper: the codebook's initialisation. Codewords start ``N(0, 1/D)``; with
  ``data_init=True`` (default) they are replaced, on the first training call, by randomly
  chosen input vectors (a common remedy for dead codes; under DDP rank 0's choice is
  broadcast); a buffer records that this happened, so it is saved and never repeated after a
  resume.
- Also left open: codes that fall out of use. Learnable codebooks collapse onto a few
  codewords (the demo generator's batch perplexity fell from ~100 to ~34 of 128 in 16 epochs,
  docs/eeg2meg.md). With ``dead_code_threshold > 0`` each code's use is tracked as an
  exponential moving average of its assignments per training call (decay ``usage_decay``),
  and a code whose average falls below the threshold is replaced by a randomly chosen input
  vector of the current call (the dead-code restart of Jukebox / SoundStream, as
  ``threshold_ema_dead_code`` of lucidrains' ``vector-quantize-pytorch``). The codebook stays
  learnt by Eq. 4's gradient in between; the average is a saved buffer, so a resumed run
  continues exactly. 0 (default) switches it off. As in that library, the restart happens in
  the forward pass (this call's codes and loss use the old codewords, and the optimiser's
  moments of a restarted row are kept), the vectors are drawn with replacement, and the
  threshold counts assignments per call of the whole batch (all ranks summed under DDP).
"""

from __future__ import annotations

import torch
from torch import nn

from ..._checks import _check_int, _check_positive

__all__ = ["VectorQuantizer"]


class VectorQuantizer(nn.Module):
    """Nearest-codeword quantiser with codebook and commitment losses (Eq. 3–4).

    Parameters
    ----------
    codebook_size : int
        Number of codewords ``K``.
    dim : int
        Dimension ``D`` of the vectors and codewords.
    beta : float
        Commitment weight ``β``.
    data_init : bool
        Replace the codebook by random input vectors at the first call in training mode.
    dead_code_threshold : float
        Restart a code whose moving-average number of assignments per training call falls
        below this (0: never; see the module docstring).
    usage_decay : float
        Decay of that moving average (0 to < 1; 0.8, as ``vector-quantize-pytorch``).
    """

    def __init__(self, codebook_size: int, dim: int, beta: float = 0.25, *, data_init=True,
                 dead_code_threshold: float = 0.0, usage_decay: float = 0.8):
        super().__init__()
        self.codebook_size = _check_int("codebook_size", codebook_size)
        self.dim = _check_int("dim", dim)
        self.beta = _check_positive("beta", beta, allow_zero=True)
        self.dead_code_threshold = _check_positive("dead_code_threshold", dead_code_threshold,
                                                   allow_zero=True)
        if not 0 <= usage_decay < 1:
            raise ValueError(f"'usage_decay' must be in [0, 1), got {usage_decay!r}.")
        self.usage_decay = float(usage_decay)
        self.codebook = nn.Parameter(torch.randn(codebook_size, dim) / dim ** 0.5)  # (K, D)
        self.register_buffer("initialised", torch.tensor(not data_init))
        if self.dead_code_threshold > 0:  # only then: models saved without it load as before
            # NaN until the first training call sets it to that call's counts
            self.register_buffer("usage", torch.full((codebook_size,), float("nan")))

    @torch.no_grad()
    def _init_from(self, flat: torch.Tensor) -> None:
        n = flat.shape[0]
        if n >= self.codebook_size:
            idx = torch.randperm(n, device=flat.device)[: self.codebook_size]
        else:
            idx = torch.randint(n, (self.codebook_size,), device=flat.device)
        noise = 1e-3 * flat.std() * torch.randn_like(self.codebook)
        self.codebook.copy_(flat[idx] + noise)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.broadcast(self.codebook.data, src=0)  # one codebook for all ranks
        self.initialised.fill_(True)

    @torch.no_grad()
    def _restart_dead(self, flat: torch.Tensor, counts: torch.Tensor) -> None:
        """Update the moving use of every code with ``counts`` (K,) and restart dead codes."""
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        counts = counts.to(self.usage.dtype)
        if distributed:  # the global batch's counts on every rank: the same codes restart
            torch.distributed.all_reduce(counts)
        if torch.isnan(self.usage).any():
            self.usage.copy_(counts)
        else:
            self.usage.mul_(self.usage_decay).add_(counts, alpha=1 - self.usage_decay)
        dead = torch.nonzero(self.usage < self.dead_code_threshold).flatten()
        if not len(dead):
            return
        idx = torch.randint(flat.shape[0], (len(dead),), device=flat.device)
        self.codebook.data[dead] = flat[idx].to(self.codebook.dtype)
        if distributed:
            torch.distributed.broadcast(self.codebook.data, src=0)
        # a restarted code starts at the threshold: unused in the next call, it restarts again
        self.usage[dead] = self.dead_code_threshold

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Indices of the nearest codewords (Eq. 3).

        Parameters
        ----------
        z : torch.Tensor, shape (..., D)

        Returns
        -------
        codes : torch.Tensor of int64, shape (...)
        """
        flat = z.reshape(-1, self.dim)  # (N, D)
        # ||z - e||² = ||z||² - 2 z·e + ||e||² (||z||² is the same for every codeword)
        dist = (self.codebook.pow(2).sum(1)[None, :]
                - 2 * flat @ self.codebook.t())  # (N, K)
        return dist.argmin(dim=1).reshape(z.shape[:-1])

    def forward(self, z: torch.Tensor):
        """Quantise ``z``.

        Parameters
        ----------
        z : torch.Tensor, shape (..., D)
            The continuous features (``H_spa``).

        Returns
        -------
        z_q : torch.Tensor, shape (..., D)
            Quantised features; their gradient passes straight through to ``z``.
        loss : torch.Tensor, scalar
            Eq. 4.
        codes : torch.Tensor of int64, shape (...)
            The chosen codewords.
        perplexity : torch.Tensor, scalar
            ``exp`` of the entropy of the codes' frequencies in this batch (1: one codeword
            used; ``K``: all used equally).
        """
        if z.shape[-1] != self.dim:
            raise ValueError(f"'z' must have last dimension D = {self.dim}, got shape "
                             f"{tuple(z.shape)}.")
        if self.training and not bool(self.initialised):
            self._init_from(z.detach().reshape(-1, self.dim))
        codes = self.nearest(z.detach())
        quantised = self.codebook[codes]  # (..., D)
        codebook_loss = (z.detach() - quantised).pow(2).mean()
        commitment = (z - quantised.detach()).pow(2).mean()
        loss = codebook_loss + self.beta * commitment
        z_q = z + (quantised - z).detach()  # straight-through
        counts = torch.bincount(codes.reshape(-1), minlength=self.codebook_size)
        if self.training and self.dead_code_threshold > 0:
            self._restart_dead(z.detach().reshape(-1, self.dim), counts)
        counts = counts.to(z.dtype)
        probs = counts / counts.sum()
        perplexity = torch.exp(-(probs * torch.log(probs.clamp_min(1e-12))).sum())
        return z_q, loss, codes, perplexity

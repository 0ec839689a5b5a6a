"""Latent conditional diffusion (Eq. 5–6): the DDPM process, the denoiser ε_θ and its samplers.

Paper ↔ code
------------
- Eq. 5: ``z_t = √ᾱ_t z₀ + √(1−ᾱ_t) ε`` (:meth:`GaussianDiffusion.q_sample`), timesteps
  ``t = 0 … T_diff−1`` (``t = 0`` is the first noising step, ``ᾱ_0 = 1 − β_0``).
- Schedule: "a predefined noise variance schedule"; the standard DDPM one, linear ``β_t`` from
  1e-4 to 0.02 over 1000 steps (Ho et al. 2020) by default, Nichol & Dhariwal's cosine ``ᾱ``
  optionally.
- Eq. 6: ``L_diff = E ||ε − ε_θ(z_t, t, c)||²`` with ``t`` uniform and the squared norm a mean
  over elements (:meth:`GaussianDiffusion.loss`).
- ε_θ (not specified by the paper): a transformer over the T' latent frames
  (:class:`ConditionalDenoiser`): sinusoidal frame positions, the timestep as a sinusoidal
  embedding and MLP that scales and shifts every block (adaptive LayerNorm, "FiLM"), and
  cross-attention from the frames to the condition tokens ``c = Z_q`` (B, C_e, P, D) — which
  get a learned embedding per (channel, patch) token, because quantisation replaces each token
  by a codeword that no longer says where it came from. The output layer starts at zero.
- Time-aligned condition (``aligned_dim > 0``, with ``n_channels`` and ``n_patches`` given):
  a token stands for a whole patch (``patch_size`` samples, e.g. 200 ms) while the latent has
  a frame every few samples, and cross-attention can only hand a frame a *weighted mean* of
  token values — the same vectors for every frame of a patch — so the phase of a rhythm inside
  a patch (α, β, γ) is very hard to read out that way (measured on the demo world: generation
  r ≈ 0.05 even on the training subjects, though a per-offset linear map recovers a patch's
  waveform from its frozen token with r ≈ 0.8). So each token is also "unpatchified" by one
  linear map shared by all channels, ``D → patch_size · aligned_dim`` (one small vector per
  sample of its patch), averaged over the ``T / T'`` samples of each latent frame, and each
  frame gets ``Linear(C_e · aligned_dim → dim)`` of its channels' vectors added to its input:
  a learned, time-aligned spatial map from the condition to every frame (the way vocoders
  condition a denoiser on an upsampled spectrogram). The paper does not describe ε_θ;
  ``aligned_dim = 0`` is cross-attention alone.
- Sampling: ancestral DDPM over all steps (:meth:`GaussianDiffusion.ddpm_sample`) and
  deterministic DDIM (η = 0, Song et al. 2021) on ``steps <= T_diff`` evenly spaced timesteps
  (:meth:`GaussianDiffusion.ddim_sample`). Both may clip the ``ẑ₀`` estimates to ±``clip``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..._checks import _check_int, _check_option

__all__ = ["ConditionalDenoiser", "GaussianDiffusion", "make_beta_schedule",
           "timestep_embedding"]


def make_beta_schedule(n_steps: int, schedule: str = "linear", beta_start: float = 1e-4,
                       beta_end: float = 0.02) -> torch.Tensor:
    """The DDPM noise schedule ``β_t``.

    Parameters
    ----------
    n_steps : int
        Diffusion steps ``T_diff``.
    schedule : 'linear' | 'cosine'
        Linear ``β`` between ``beta_start`` and ``beta_end``, or the cosine ``ᾱ`` schedule
        (offset ``s = 0.008``, ``β`` clipped at 0.999).
    beta_start, beta_end : float
        Linear schedule's end points.

    Returns
    -------
    betas : torch.Tensor of float64, shape (n_steps,)
    """
    _check_int("n_steps", n_steps, 1)
    _check_option("schedule", schedule, ("linear", "cosine"))
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, n_steps, dtype=torch.float64)
    s = 0.008
    steps = torch.arange(n_steps + 1, dtype=torch.float64) / n_steps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (time)steps or positions.

    Parameters
    ----------
    t : torch.Tensor, shape (N,)
        Steps (integers or reals).
    dim : int
        Embedding size.
    max_period : float
        Longest period of the sinusoids.

    Returns
    -------
    emb : torch.Tensor of float32, shape (N, dim)
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device,
                                                           dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]  # (N, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class _Block(nn.Module):
    """Self-attention over frames, cross-attention to the condition, MLP; timestep FiLM."""

    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.self_attn = nn.MultiheadAttention(dim, n_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, n_heads, dropout=dropout, batch_first=True)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.film = nn.Linear(dim, 4 * dim)  # scale and shift before attention and MLP

    def forward(self, x, cond, t_emb):
        s1, b1, s2, b2 = self.film(t_emb)[:, None].chunk(4, dim=-1)  # each (B, 1, dim)
        h = self.norm1(x) * (1 + s1) + b1
        x = x + self.self_attn(h, h, h, need_weights=False)[0]
        h = self.norm2(x)
        x = x + self.cross_attn(h, cond, cond, need_weights=False)[0]
        return x + self.mlp(self.norm3(x) * (1 + s2) + b2)


class ConditionalDenoiser(nn.Module):
    """ε_θ(z_t, t, c): predicts the noise of a latent from the timestep and the condition.

    Parameters
    ----------
    latent_dim : int
        Channels ``d_lat`` of the latent.
    cond_dim : int
        Feature size D of the condition tokens.
    n_cond_tokens : int
        Condition tokens ``C_e * P`` (each gets a learned embedding).
    dim : int
        Width of the transformer.
    n_layers : int
        Blocks.
    n_heads : int
        Attention heads (must divide ``dim``).
    dropout : float
        Attention dropout.
    n_channels, n_patches, patch_size : int | None
        The condition's layout ``(C_e, P)`` (``n_cond_tokens = C_e · P``) and the samples per
        patch, needed by the time-aligned path.
    aligned_dim : int
        Features per channel and latent frame of the time-aligned path (see the module
        docstring); 0: none (cross-attention only).
    n_frames : int | None
        Latent frames ``T'`` (``P · patch_size`` must be a multiple of it), needed by the
        time-aligned path.
    """

    def __init__(self, latent_dim: int, cond_dim: int, n_cond_tokens: int, dim: int = 128,
                 n_layers: int = 4, n_heads: int = 4, dropout: float = 0.0, *,
                 n_channels=None, n_patches=None, patch_size=None, aligned_dim: int = 0,
                 n_frames=None):
        super().__init__()
        self.latent_dim = _check_int("latent_dim", latent_dim)
        self.dim = _check_int("dim", dim)
        self.n_cond_tokens = _check_int("n_cond_tokens", n_cond_tokens)
        _check_int("n_layers", n_layers)
        if dim % _check_int("n_heads", n_heads):
            raise ValueError(f"'n_heads' ({n_heads}) must divide 'dim' ({dim}).")
        self.in_proj = nn.Linear(latent_dim, dim)
        self.time_mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.cond_proj = nn.Sequential(nn.Linear(cond_dim, dim), nn.LayerNorm(dim))
        self.cond_pos = nn.Parameter(0.02 * torch.randn(n_cond_tokens, dim))
        self.blocks = nn.ModuleList(_Block(dim, n_heads, dropout) for _ in range(n_layers))
        self.out_norm = nn.LayerNorm(dim)
        self.aligned_dim = _check_int("aligned_dim", aligned_dim, 0)
        if self.aligned_dim:
            for name, value in (("n_channels", n_channels), ("n_patches", n_patches),
                                ("patch_size", patch_size), ("n_frames", n_frames)):
                _check_int(name, value)
            n_samples = n_patches * patch_size
            if n_channels * n_patches != n_cond_tokens or n_samples % n_frames:
                raise ValueError(f"The time-aligned condition needs n_channels × n_patches = "
                                 f"n_cond_tokens and n_patches × patch_size a multiple of "
                                 f"n_frames, got {n_channels} × {n_patches} vs "
                                 f"{n_cond_tokens} tokens and {n_samples} samples for "
                                 f"{n_frames} frames. Pass the condition's layout (C_e, P) "
                                 "and latent frames that divide its samples, or "
                                 "aligned_dim=0 (cross-attention only).")
            self.n_channels, self.n_patches, self.patch_size = n_channels, n_patches, patch_size
            self.n_frames = n_frames
            self.unpatchify = nn.Linear(cond_dim, patch_size * aligned_dim)
            self.aligned_proj = nn.Linear(n_channels * aligned_dim, dim)
        self.out = nn.Linear(dim, latent_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Predict the noise.

        Parameters
        ----------
        z_t : torch.Tensor, shape (B, d_lat, T')
            Noisy latent.
        t : torch.Tensor of int64, shape (B,)
            Timesteps.
        cond : torch.Tensor, shape (B, C_e, P, D)
            Condition tokens (``Z_q``).

        Returns
        -------
        eps : torch.Tensor, shape (B, d_lat, T')
        """
        b, _, n = z_t.shape
        c = cond.reshape(b, -1, cond.shape[-1])  # (B, C_e·P, D)
        if c.shape[1] != self.n_cond_tokens:
            raise ValueError(f"'cond' must hold {self.n_cond_tokens} tokens (C_e × P), got "
                             f"shape {tuple(cond.shape)}.")
        c = self.cond_proj(c) + self.cond_pos  # (B, C_e·P, dim)
        pos = timestep_embedding(torch.arange(n, device=z_t.device), self.dim)
        x = self.in_proj(z_t.transpose(1, 2)) + pos.to(z_t.dtype)  # (B, T', dim)
        if self.aligned_dim:
            x = x + self._aligned(cond, n)
        t_emb = self.time_mlp(timestep_embedding(t, self.dim).to(z_t.dtype))  # (B, dim)
        for block in self.blocks:
            x = block(x, c, t_emb)
        return self.out(self.out_norm(x)).transpose(1, 2)  # (B, d_lat, T')

    def _aligned(self, cond: torch.Tensor, n_frames: int) -> torch.Tensor:
        """The time-aligned condition of every latent frame, (B, T', dim)."""
        b, c, p, _ = cond.shape
        if (c, p, n_frames) != (self.n_channels, self.n_patches, self.n_frames):
            raise ValueError(f"'cond' must have shape (B, {self.n_channels}, {self.n_patches}, "
                             f"D) for {self.n_frames} latent frames, got {tuple(cond.shape)} "
                             f"and {n_frames} frames.")
        k, n_samples = self.aligned_dim, p * self.patch_size
        u = self.unpatchify(cond)  # (B, C_e, P, patch_size·k)
        u = u.reshape(b, c, n_samples, k)  # (B, C_e, T, k): patch p, sample s → p·size + s
        u = u.reshape(b, c, n_frames, n_samples // n_frames, k).mean(3)  # (B, C_e, T', k)
        u = u.permute(0, 2, 1, 3).reshape(b, n_frames, c * k)  # (B, T', C_e·k)
        return self.aligned_proj(u)  # (B, T', dim)


class GaussianDiffusion(nn.Module):
    """The DDPM forward process, its training loss, and two samplers.

    Parameters
    ----------
    n_steps : int
        Diffusion steps ``T_diff``.
    schedule : 'linear' | 'cosine'
        See :func:`make_beta_schedule`.
    beta_start, beta_end : float
        Linear schedule's end points.
    """

    def __init__(self, n_steps: int = 1000, schedule: str = "linear", beta_start: float = 1e-4,
                 beta_end: float = 0.02):
        super().__init__()
        betas = make_beta_schedule(n_steps, schedule, beta_start, beta_end)
        self.n_steps = int(n_steps)
        self.register_buffer("betas", betas, persistent=False)
        self.register_buffer("alphas_cumprod", torch.cumprod(1 - betas, 0), persistent=False)

    def _abar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``ᾱ_t`` (1 for t = −1) broadcast against ``like`` (B, ...)."""
        abar = torch.where(t >= 0, self.alphas_cumprod[t.clamp(min=0)],
                           torch.ones((), dtype=self.alphas_cumprod.dtype,
                                      device=self.alphas_cumprod.device))
        return abar.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))

    def q_sample(self, z0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Eq. 5: the noisy latent at step ``t``.

        Parameters
        ----------
        z0 : torch.Tensor, shape (B, ...)
        t : torch.Tensor of int64, shape (B,)
        noise : torch.Tensor, shape (B, ...)

        Returns
        -------
        z_t : torch.Tensor, shape (B, ...)
        """
        abar = self._abar(t, z0)
        return abar.sqrt() * z0 + (1 - abar).sqrt() * noise

    def predict_z0(self, z_t, t, eps, clip=None):
        """The one-step estimate ``ẑ₀ = (z_t − √(1−ᾱ_t) ε) / √ᾱ_t``.

        Parameters
        ----------
        z_t : torch.Tensor, shape (B, ...)
        t : torch.Tensor of int64, shape (B,)
        eps : torch.Tensor, shape (B, ...)
            (Predicted) noise.
        clip : float | None
            Clamp the estimate to ``[-clip, clip]``.

        Returns
        -------
        z0_hat : torch.Tensor, shape (B, ...)
        """
        abar = self._abar(t, z_t)
        z0 = (z_t - (1 - abar).sqrt() * eps) / abar.sqrt()
        return z0 if clip is None else z0.clamp(-clip, clip)

    def loss(self, denoiser, z0, cond, *, generator=None):
        """Eq. 6 at uniformly drawn timesteps.

        Parameters
        ----------
        denoiser : callable
            ``denoiser(z_t, t, cond) -> eps`` (e.g. :class:`ConditionalDenoiser`).
        z0 : torch.Tensor, shape (B, d_lat, T')
        cond : torch.Tensor
            Passed to the denoiser.
        generator : torch.Generator | None
            Source of ``t`` and ``ε`` (on the latent's device).

        Returns
        -------
        out : dict
            ``"loss"`` (scalar), ``"t"`` (B,), ``"noise"``, ``"z_t"``, ``"eps"`` (the
            prediction), each of ``z0``'s shape.
        """
        t = torch.randint(self.n_steps, (z0.shape[0],), device=z0.device, generator=generator)
        noise = torch.randn(z0.shape, device=z0.device, dtype=z0.dtype, generator=generator)
        z_t = self.q_sample(z0, t, noise)
        eps = denoiser(z_t, t, cond)
        return {"loss": (eps - noise).pow(2).mean(), "t": t, "noise": noise, "z_t": z_t,
                "eps": eps}

    def timesteps(self, steps: int | None = None) -> list:
        """The descending timesteps of a ``steps``-step sampler (all steps when None).

        Parameters
        ----------
        steps : int | None
            ``1 <= steps <= n_steps``.

        Returns
        -------
        timesteps : list of int
            From ``n_steps − 1`` down to 0, evenly spaced.
        """
        steps = self.n_steps if steps is None else _check_int("steps", steps, 1)
        if steps > self.n_steps:
            raise ValueError(f"'steps' must be <= the {self.n_steps} diffusion steps, got "
                             f"{steps}.")
        ts = torch.linspace(self.n_steps - 1, 0, steps, dtype=torch.float64).round().long()
        return sorted(set(ts.tolist()), reverse=True)

    @torch.no_grad()
    def ddim_sample(self, denoiser, shape, cond, *, steps=None, z_T=None, eta=0.0,
                    generator=None, clip=None, device=None, dtype=torch.float32):
        """DDIM sampling: deterministic with η = 0 (default), ancestral-like with η = 1.

        Parameters
        ----------
        denoiser : callable
            ``denoiser(z_t, t, cond) -> eps``.
        shape : tuple of int
            Latent shape ``(B, d_lat, T')``.
        cond : torch.Tensor
            Passed to the denoiser.
        steps : int | None
            Number of steps (default: all ``n_steps``).
        z_T : torch.Tensor | None
            Starting point; default: drawn from ``generator`` (standard normal).
        eta : float
            Scale of the fresh noise of each step (Song et al.'s η): 0 deterministic; 1 with
            every step gives the DDPM posterior variance.
        generator : torch.Generator | None
            Source of ``z_T`` when it is not given, and of the noise when ``eta > 0``.
        clip : float | None
            Clamp each ``ẑ₀`` estimate to ``[-clip, clip]``.
        device, dtype
            Of the latent when ``z_T`` is drawn.

        Returns
        -------
        z0 : torch.Tensor, shape ``shape``
        """
        z = (torch.randn(shape, generator=generator, device=device, dtype=dtype)
             if z_T is None else z_T)
        ts = self.timesteps(steps)
        for i, t_now in enumerate(ts):
            t = torch.full((z.shape[0],), t_now, dtype=torch.long, device=z.device)
            t_prev = torch.full_like(t, ts[i + 1] if i + 1 < len(ts) else -1)
            eps = denoiser(z, t, cond)
            z0 = self.predict_z0(z, t, eps, clip)
            if clip is not None:  # keep ε consistent with the clipped estimate
                abar = self._abar(t, z)
                eps = (z - abar.sqrt() * z0) / (1 - abar).sqrt()
            abar, abar_prev = self._abar(t, z), self._abar(t_prev, z)
            sigma = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).sqrt()
            z = abar_prev.sqrt() * z0 + (1 - abar_prev - sigma ** 2).clamp_min(0).sqrt() * eps
            if eta > 0 and t_prev[0] >= 0:
                z = z + sigma * torch.randn(z.shape, generator=generator, device=z.device,
                                            dtype=z.dtype)
        return z

    @torch.no_grad()
    def ddpm_sample(self, denoiser, shape, cond, *, generator=None, clip=None, device=None,
                    dtype=torch.float32):
        """Ancestral DDPM sampling over all steps (Ho et al. 2020, posterior variance β̃_t).

        Parameters
        ----------
        denoiser : callable
            ``denoiser(z_t, t, cond) -> eps``.
        shape : tuple of int
            Latent shape ``(B, d_lat, T')``.
        cond : torch.Tensor
            Passed to the denoiser.
        generator : torch.Generator | None
            Source of every draw.
        clip : float | None
            Clamp each ``ẑ₀`` estimate to ``[-clip, clip]``.
        device, dtype
            Of the latent.

        Returns
        -------
        z0 : torch.Tensor, shape ``shape``
        """
        z = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        for t_now in range(self.n_steps - 1, -1, -1):
            t = torch.full((shape[0],), t_now, dtype=torch.long, device=z.device)
            z0 = self.predict_z0(z, t, denoiser(z, t, cond), clip)
            abar, abar_prev = self._abar(t, z), self._abar(t - 1, z)
            beta = (1 - abar / abar_prev)
            mean = (abar_prev.sqrt() * beta * z0 + (1 - beta).sqrt() * (1 - abar_prev) * z) \
                / (1 - abar)
            if t_now > 0:
                var = beta * (1 - abar_prev) / (1 - abar)
                z = mean + var.sqrt() * torch.randn(shape, generator=generator,
                                                     device=z.device, dtype=z.dtype)
            else:
                z = mean
        return z


"""The MEG autoencoder that defines the diffusion's latent ``z₀`` (implied by §II-D, built here).

Paper ↔ code
------------
- The paper diffuses "the real MEG latent representation z₀" but never says how it is made.
  Here: a convolutional encoder ``E: (B, C_m, T) → (B, d_lat, T')`` with ``T' = T /
  2**n_down`` (a "same" convolution across all sensors, then ``n_down`` stride-2 stages, each
  followed by a residual block) and its mirror decoder ``D`` (transposed stride-2
  convolutions, kernel 4, which exactly double the length).
- The latent is standardised by a BatchNorm without affine parameters, so ``z₀`` has about
  unit variance per latent channel, which the fixed DDPM schedule assumes (it plays the role
  of the scale factor of latent diffusion models). The decoder learns to undo it.
- The autoencoder is trained by its own L1 reconstruction term (``lambda_ae`` in
  :class:`~neurofuse.systems.eeg2meg.config.GeneratorConfig`) jointly with everything else.
"""

from __future__ import annotations

import torch
from torch import nn

from ..._checks import _check_int

__all__ = ["MEGAutoencoder"]


class _ResBlock(nn.Module):
    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.GroupNorm(1, channels), nn.GELU(),
            nn.Conv1d(channels, channels, kernel, padding=kernel // 2),
            nn.GroupNorm(1, channels), nn.GELU(),
            nn.Conv1d(channels, channels, kernel, padding=kernel // 2),
        )

    def forward(self, x):
        return x + self.net(x)


class MEGAutoencoder(nn.Module):
    """Temporal-convolution encoder/decoder between MEG epochs and the latent ``z₀``.

    Parameters
    ----------
    n_channels : int
        MEG channels ``C_m``.
    latent_dim : int
        Latent channels ``d_lat``.
    hidden : int
        Feature maps of the hidden convolutions.
    n_down : int
        Stride-2 stages (``T' = T / 2**n_down``).
    kernel : int
        Odd kernel of the "same" convolutions.
    """

    def __init__(self, n_channels: int, latent_dim: int, hidden: int = 128, n_down: int = 2,
                 kernel: int = 7):
        super().__init__()
        self.n_channels = _check_int("n_channels", n_channels)
        self.latent_dim = _check_int("latent_dim", latent_dim)
        self.n_down = _check_int("n_down", n_down, 0)
        _check_int("hidden", hidden)
        _check_int("kernel", kernel)
        if kernel % 2 == 0:
            raise ValueError(f"'kernel' must be odd (a 'same' padding), got {kernel}.")
        enc = [nn.Conv1d(n_channels, hidden, kernel, padding=kernel // 2)]
        for _ in range(n_down):
            enc += [nn.GELU(), nn.Conv1d(hidden, hidden, 4, stride=2, padding=1),
                    _ResBlock(hidden, kernel)]
        enc += [nn.GELU(), nn.Conv1d(hidden, latent_dim, 1)]
        self.encoder = nn.Sequential(*enc)
        self.latent_norm = nn.BatchNorm1d(latent_dim, affine=False)
        dec = [nn.Conv1d(latent_dim, hidden, 1)]
        for _ in range(n_down):
            dec += [_ResBlock(hidden, kernel), nn.GELU(),
                    nn.ConvTranspose1d(hidden, hidden, 4, stride=2, padding=1)]
        dec += [_ResBlock(hidden, kernel), nn.GELU(),
                nn.Conv1d(hidden, n_channels, kernel, padding=kernel // 2)]
        self.decoder = nn.Sequential(*dec)

    def encode(self, meg: torch.Tensor) -> torch.Tensor:
        """MEG to latent.

        Parameters
        ----------
        meg : torch.Tensor, shape (B, C_m, T)
            ``T`` a multiple of ``2**n_down``.

        Returns
        -------
        z0 : torch.Tensor, shape (B, d_lat, T / 2**n_down)
        """
        if meg.ndim != 3 or meg.shape[1] != self.n_channels:
            raise ValueError(f"'meg' must have shape (B, {self.n_channels}, T), got "
                             f"{tuple(meg.shape)}.")
        if meg.shape[-1] % 2 ** self.n_down:
            raise ValueError(f"'meg' must have a length that is a multiple of "
                             f"{2 ** self.n_down}, got {meg.shape[-1]}.")
        return self.latent_norm(self.encoder(meg))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent to MEG.

        Parameters
        ----------
        z : torch.Tensor, shape (B, d_lat, T')

        Returns
        -------
        meg : torch.Tensor, shape (B, C_m, T' * 2**n_down)
        """
        return self.decoder(z)

    def forward(self, meg: torch.Tensor) -> torch.Tensor:
        """Reconstruct ``meg`` through the latent (shape as the input)."""
        return self.decode(self.encode(meg))

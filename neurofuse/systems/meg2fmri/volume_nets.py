"""The 3-D networks of the MEG2fMRI cGAN: whole volumes and sequences of volumes (beyond the
paper; issue 13 item 5).

They follow the paper's 2-D design (:mod:`.model`), lifted to the native grid of the fMRI:

Generator (an FC trunk from the MEG vector, then transposed 3-D convolutions)::

    meg (B, n_features) -> Linear 512 -> ReLU -> Linear 1024 -> ReLU -> Linear 1024 -> ReLU
        -> Linear c0 * prod(base) -> ReLU -> (B, c0, *base)          base = ceil(grid / 2**n)
        -> [ConvTranspose3d(c_i -> c_i+1, k4 s2 p1) -> BatchNorm3d -> ReLU] for each next c
        -> ConvTranspose3d(c_last -> n_out, k4 s2 p1) -> tanh        (B, n_out, *base * 2**n)
        -> centre crop to the grid                                   (B, n_out, n_x, n_y, n_z)

with ``g_channels = (c0, ..., c_last)`` (n = ``len(g_channels)`` doublings, the DCGAN
pattern) and ``n_out`` = 1 for a volume or ``n_frames`` for a sequence (frames are output
channels). A grid not divisible by ``2**n`` is reached by a centre crop of the next larger
multiple: ``(base * 2**n - grid) // 2`` voxels are dropped before each axis and the rest after.

Discriminator (a 3-D patch discriminator conditioned on the MEG as in the paper)::

    meg (B, n_features) -> Linear prod(coarse) -> (B, 1, *coarse)       coarse = ceil(grid / s)
        -> trilinear up-sampling to the grid -> (B, 1, n_x, n_y, n_z)  ─┐
    image (B, [n_frames,] n_x, n_y, n_z) -> (B, n_in, n_x, n_y, n_z)  ─┴─ concat
        -> Conv3d(1 + n_in -> 64, k4 s2 p1) -> LeakyReLU 0.2
        -> Conv3d(64 -> 128, k4 s2 p1) -> BatchNorm3d -> LeakyReLU 0.2
        -> Conv3d(128 -> 1, k4 s1 p1)                                  patch logits (B, d, h, w)

The paper projects the MEG vector to a full-resolution map; a linear layer to every voxel of a
106 × 106 × 72 grid would hold 265 M weights, so the MEG is projected to a grid ``s`` =
``project_stride`` times coarser (4 by default; 1 projects to every voxel, as the paper) and
up-sampled trilinearly (``align_corners=False``).

Sizes. On the demo grid (36 × 36 × 24, 6 mm) the default ``g_channels = (64, 32, 16)``
gives a 5 × 5 × 3 trunk grid and a generator of 6.8 M weights. On SMN4Lang's native grid
(106 × 106 × 72) three doublings leave a 14 × 14 × 9 trunk grid, and the trunk's last layer
alone 116 M weights: use four, e.g. ``g_channels = (128, 64, 32, 16)`` (7 × 7 × 5; 35 M in
all). Targets are float32 whole grids: 0.12 MB per event on the demo grid, 3.2 MB on the
native grid (times ``n_frames`` for sequences).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...nn.mlp import mlp_layers

__all__ = ["VolumeDiscriminator", "VolumeGenerator", "crop_centre", "to_output_range",
           "upsampled_shape"]


def upsampled_shape(grid, n_up) -> tuple:
    """The generator's grid before cropping: the smallest multiples of ``2**n_up`` that hold
    ``grid``.

    Parameters
    ----------
    grid : tuple of int
        The target grid.
    n_up : int
        Number of doublings.

    Returns
    -------
    base, full : tuple of int, tuple of int
        The FC trunk's grid ``ceil(grid / 2**n_up)`` and ``base * 2**n_up``.
    """
    f = 2 ** int(n_up)
    base = tuple(math.ceil(int(n) / f) for n in grid)
    return base, tuple(b * f for b in base)


def crop_centre(x, grid):
    """Crop the last ``len(grid)`` axes of ``x`` to ``grid``, centred.

    Parameters
    ----------
    x : Tensor, shape (..., *full)
        ``full`` at least ``grid`` on every axis.
    grid : tuple of int

    Returns
    -------
    x : Tensor, shape (..., *grid)
        ``x[..., a:a + n, ...]`` with ``a = (full - n) // 2`` on every axis.
    """
    full = x.shape[-len(grid):]
    index = [slice(None)] * (x.ndim - len(grid))
    for m, n in zip(full, grid):
        if m < n:
            raise ValueError(f"Cannot crop an axis of {m} to {n}.")
        a = (m - n) // 2
        index.append(slice(a, a + n))
    return x[tuple(index)]



def to_output_range(x, output_range):
    """A tanh output in [-1, 1] as the generators return it: mapped to [0, 1] (``"unit"``)
    or left as it is (``"authors"``)."""
    return (x + 1.0) / 2.0 if output_range == "unit" else x

class VolumeGenerator(nn.Module):
    """FC trunk + transposed 3-D convolutions: MEG vector -> volume or sequence of volumes.

    Parameters
    ----------
    config : CganConfig
        With a 3-D ``image_shape`` (:class:`~neurofuse.systems.meg2fmri.model.CganConfig`).
    """

    def __init__(self, config):
        super().__init__()
        self.config = config
        grid, chans = tuple(config.image_shape), tuple(config.g_channels)
        self.base, _ = upsampled_shape(grid, len(chans))
        self.trunk = nn.Sequential(*mlp_layers(
            (config.n_features, *config.hidden, chans[0] * int(np.prod(self.base)))))
        ups = []
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            ups += [nn.ConvTranspose3d(c_in, c_out, 4, stride=2, padding=1),
                    nn.BatchNorm3d(c_out), nn.ReLU()]
        n_out = 1 if config.n_frames is None else config.n_frames
        ups += [nn.ConvTranspose3d(chans[-1], n_out, 4, stride=2, padding=1), nn.Tanh()]
        self.up = nn.Sequential(*ups)

    def forward(self, meg):
        """Generate volumes.

        Parameters
        ----------
        meg : Tensor, shape (B, n_features)

        Returns
        -------
        image : Tensor, shape (B, n_x, n_y, n_z) or (B, n_frames, n_x, n_y, n_z)
            In [0, 1] (``output_range='unit'``) or [-1, 1] (``'authors'``).
        """
        x = self.trunk(meg).reshape(meg.shape[0], self.config.g_channels[0], *self.base)
        x = crop_centre(self.up(x), tuple(self.config.image_shape))  # (B, n_out, X, Y, Z)
        if self.config.n_frames is None:
            x = x[:, 0]  # (B, X, Y, Z)
        return to_output_range(x, self.config.output_range)


class VolumeDiscriminator(nn.Module):
    """MEG-conditioned 3-D patch discriminator.

    Parameters
    ----------
    config : CganConfig
        With a 3-D ``image_shape``.
    """

    def __init__(self, config):
        super().__init__()
        self.config = config
        grid = tuple(config.image_shape)
        self.coarse = tuple(math.ceil(n / config.project_stride) for n in grid)
        self.project = nn.Linear(config.n_features, int(np.prod(self.coarse)))
        n_in = 1 + (1 if config.n_frames is None else config.n_frames)
        c1, c2 = config.d_channels
        k, p, slope = config.kernel_size, config.padding, config.leaky_slope
        self.net = nn.Sequential(
            nn.Conv3d(n_in, c1, k, stride=2, padding=p), nn.LeakyReLU(slope),
            nn.Conv3d(c1, c2, k, stride=2, padding=p), nn.BatchNorm3d(c2), nn.LeakyReLU(slope),
            nn.Conv3d(c2, 1, k, stride=1, padding=p),
        )

    def forward(self, meg, image):
        """Patch logits of ``image`` being a real volume (sequence) given ``meg``.

        Parameters
        ----------
        meg : Tensor, shape (B, n_features)
        image : Tensor, shape (B, n_x, n_y, n_z) or (B, n_frames, n_x, n_y, n_z)

        Returns
        -------
        logits : Tensor, shape (B, d, h, w)
            :attr:`CganConfig.patch_shape`.
        """
        grid = tuple(self.config.image_shape)
        meg_map = self.project(meg).reshape(meg.shape[0], 1, *self.coarse)  # (B, 1, *coarse)
        if self.coarse != grid:
            meg_map = F.interpolate(meg_map, size=grid, mode="trilinear", align_corners=False)
        if self.config.n_frames is None:
            image = image[:, None]  # (B, 1, X, Y, Z)
        x = torch.cat([meg_map, image], dim=1)  # (B, 1 + n_in, X, Y, Z)
        return self.net(x)[:, 0]  # (B, d, h, w)

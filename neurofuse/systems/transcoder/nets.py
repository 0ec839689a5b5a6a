"""The transcoder's four networks (paper §4.3.2): spatial ones for EEG, temporal ones for fMRI.

Each network has ``n_layers`` (paper: 5) layers. Every hidden layer is a (transposed)
convolution, a ReLU, then batch normalisation (group level) or a residual layer (subject
level); the last layer is a bare (transposed) convolution. EEG networks act on each time
step alone (space only), fMRI networks on each voxel alone (time only), so the EEG decoder is
an inverse model, the EEG encoder a lead field, the fMRI decoder a deconvolution and the fMRI
encoder an HRF. Source activity is laid out ``(batch, n_x, n_y, n_z, n_steps)`` everywhere,
as the fMRI.

EEG decoder (channels -> volume; ``U = eeg_upsamplings`` doublings)::

    eeg (B, C, T) -> (B*T, C) -> Linear C -> c0 * prod(coarse)       (transposed conv of a
        -> (B*T, c0, *coarse) -> ReLU -> post                         1-voxel input)
        -> [ConvT3d stride 2 k4 p1 | stride 1 k3 p1] -> ReLU -> post  x (n_layers - 2)
        -> ConvT3d -> 1 map -> crop to volume_shape -> (B, X, Y, Z, T)

EEG encoder (volume -> channels), the mirror image::

    sources (B, X, Y, Z, T) -> (B*T, 1, X', Y', Z') zero-padded to coarse * 2**U
        -> [Conv3d stride 1 k3 p1 | stride 2 k4 p1] -> ReLU -> post  x (n_layers - 1)
        -> flatten -> Linear -> (B, C, T)

fMRI decoder (TRs -> source steps; ``s = steps_per_tr``)::

    fmri (B, X, Y, Z, N) -> (B*V, 1, N)
        -> ConvT1d k (stride 1, "same") -> ReLU -> post               x (n_layers - 1)
        -> ConvT1d stride s, kernel 3s, padding s -> (B*V, 1, N*s) -> (B, X, Y, Z, N*s)

fMRI encoder (source steps -> TRs)::

    sources (B, X, Y, Z, N*s) -> (B*V, 1, N*s)
        -> Conv1d stride s, kernel 3s, padding s -> ReLU -> post     (N steps)
        -> Conv1d k ("same") -> ReLU -> post                          x (n_layers - 2)
        -> Conv1d k -> (B*V, 1, N) -> (B, X, Y, Z, N)

A kernel of 3s at stride s gives every step exactly three taps, so a transposed convolution
has no checkerboard pattern. Up-sampling last in the decoder and down-sampling first in the
encoder keeps the other layers at the TR rate, where a kernel of 7 covers 14 s.
"""

from __future__ import annotations

import math

from torch import nn

from .config import TranscoderConfig

__all__ = ["EEGDecoder", "EEGEncoder", "FMRIDecoder", "FMRIEncoder", "ResidualLayer",
           "count_parameters", "init_weights"]


class ResidualLayer(nn.Module):
    """``x + conv(x)`` with a "same" convolution, zero-initialised (starts as the identity).

    Parameters
    ----------
    channels : int
        Feature maps in and out.
    dim : 1 | 3
        Temporal (1-D) or spatial (3-D) convolution.
    kernel : int
        Odd kernel size.
    """

    def __init__(self, channels, dim, kernel=3):
        super().__init__()
        conv = nn.Conv1d if dim == 1 else nn.Conv3d
        self.conv = conv(channels, channels, kernel, padding=kernel // 2)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x):
        """``x + conv(x)``, same shape as ``x``."""
        return x + self.conv(x)


def _post(block, channels, dim):
    """ReLU, then batch normalisation or a residual layer."""
    if block == "batchnorm":
        norm = nn.BatchNorm1d(channels) if dim == 1 else nn.BatchNorm3d(channels)
    else:
        norm = ResidualLayer(channels, dim)
    return nn.Sequential(nn.ReLU(), norm)


def init_weights(module):
    """He-normal weights (ReLU gain) and zero biases for every (transposed) convolution and
    linear map of ``module``, but the residual layers (zero, the identity).

    PyTorch's default initialisation shrinks the signal by ~2x per layer, so that after five
    layers of a few feature maps whole layers can start dead; He's keeps its scale.
    """
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv3d, nn.ConvTranspose1d,
                          nn.ConvTranspose3d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    for m in module.modules():  # residual layers start as the identity
        if isinstance(m, ResidualLayer):
            nn.init.zeros_(m.conv.weight)
            nn.init.zeros_(m.conv.bias)
    return module


def _check_config(config):
    if not isinstance(config, TranscoderConfig):
        raise TypeError(f"'config' must be a TranscoderConfig, got {type(config).__name__}.")
    return config


def _check_input(name, x, ndim, shape_doc, expected=None):
    if x.ndim != ndim:
        raise ValueError(f"'{name}' must have shape {shape_doc} ({ndim}-D), got shape "
                         f"{tuple(x.shape)}.")
    if expected is not None:
        for axis, want in expected.items():
            if x.shape[axis] != want:
                raise ValueError(f"'{name}' must have shape {shape_doc} with axis {axis} = "
                                 f"{want} (the model's configuration), got shape "
                                 f"{tuple(x.shape)}.")


class EEGDecoder(nn.Module):
    """EEG -> source volume by spatial transposed convolutions (an inverse model).

    Parameters
    ----------
    config : TranscoderConfig
    """

    def __init__(self, config):
        super().__init__()
        cfg = self.config = _check_config(config)
        ch = cfg.eeg_channels
        self.project = nn.Linear(cfg.n_channels, ch[0] * math.prod(cfg.coarse_shape))
        self.project_post = _post(cfg.block, ch[0], 3)
        layers = []
        for i in range(1, cfg.n_layers):
            c_out = ch[i] if i < cfg.n_layers - 1 else 1
            kernel, stride = (4, 2) if i <= cfg.eeg_upsamplings else (3, 1)
            conv = nn.ConvTranspose3d(ch[i - 1], c_out, kernel, stride=stride, padding=1)
            layers.append(nn.Sequential(conv, _post(cfg.block, c_out, 3))
                          if i < cfg.n_layers - 1 else conv)
        self.layers = nn.Sequential(*layers)

    def forward(self, eeg):
        """Map EEG to sources.

        Parameters
        ----------
        eeg : Tensor, shape (batch, n_channels, n_steps)

        Returns
        -------
        sources : Tensor, shape (batch, n_x, n_y, n_z, n_steps)
        """
        cfg = self.config
        _check_input("eeg", eeg, 3, "(batch, n_channels, n_steps)", {1: cfg.n_channels})
        B, C, T = eeg.shape
        h = eeg.transpose(1, 2).reshape(B * T, C)                       # (B*T, C)
        h = self.project(h).view(B * T, cfg.eeg_channels[0], *cfg.coarse_shape)
        h = self.layers(self.project_post(h))                           # (B*T, 1, X', Y', Z')
        X, Y, Z = cfg.volume_shape
        h = h[:, 0, :X, :Y, :Z]                                         # (B*T, X, Y, Z)
        return h.reshape(B, T, X, Y, Z).permute(0, 2, 3, 4, 1)          # (B, X, Y, Z, T)


class EEGEncoder(nn.Module):
    """Source volume -> EEG by spatial convolutions (a lead field).

    Parameters
    ----------
    config : TranscoderConfig
    """

    def __init__(self, config):
        super().__init__()
        cfg = self.config = _check_config(config)
        ch = cfg.eeg_channels[::-1]
        first_down = cfg.n_layers - 1 - cfg.eeg_upsamplings
        layers = []
        for i in range(cfg.n_layers - 1):
            kernel, stride = (4, 2) if i >= first_down else (3, 1)
            layers += [nn.Conv3d(1 if i == 0 else ch[i - 1], ch[i], kernel, stride=stride,
                                 padding=1), _post(cfg.block, ch[i], 3)]
        self.layers = nn.Sequential(*layers)
        self.project = nn.Linear(ch[-1] * math.prod(cfg.coarse_shape), cfg.n_channels)

    def forward(self, sources):
        """Map sources to EEG.

        Parameters
        ----------
        sources : Tensor, shape (batch, n_x, n_y, n_z, n_steps)

        Returns
        -------
        eeg : Tensor, shape (batch, n_channels, n_steps)
        """
        cfg = self.config
        _check_input("sources", sources, 5, "(batch, n_x, n_y, n_z, n_steps)",
                     dict(enumerate(cfg.volume_shape, start=1)))
        B, X, Y, Z, T = sources.shape
        h = sources.permute(0, 4, 1, 2, 3).reshape(B * T, 1, X, Y, Z)
        f = 2 ** cfg.eeg_upsamplings
        pad = [0, 0] * 3
        for axis, (n, c) in enumerate(zip((X, Y, Z), cfg.coarse_shape)):
            pad[2 * (2 - axis) + 1] = c * f - n                          # F.pad: last dim first
        h = nn.functional.pad(h, pad)                                   # (B*T, 1, X', Y', Z')
        h = self.layers(h).flatten(1)                                   # (B*T, c0 * coarse)
        return self.project(h).view(B, T, cfg.n_channels).transpose(1, 2)  # (B, C, T)


def _stride_geometry(steps):
    """Kernel 3s, padding s: every step gets exactly 3 taps (no checkerboard)."""
    return 3 * steps, steps


class FMRIDecoder(nn.Module):
    """fMRI -> source time courses by temporal transposed convolutions (a deconvolution).

    Parameters
    ----------
    config : TranscoderConfig
    """

    def __init__(self, config):
        super().__init__()
        cfg = self.config = _check_config(config)
        ch, k = cfg.fmri_channels, cfg.fmri_kernel
        layers = []
        for i in range(cfg.n_layers - 1):
            layers += [nn.ConvTranspose1d(1 if i == 0 else ch[i - 1], ch[i], k, padding=k // 2),
                       _post(cfg.block, ch[i], 1)]
        kernel, pad = _stride_geometry(cfg.steps_per_tr)
        layers.append(nn.ConvTranspose1d(ch[-1], 1, kernel, stride=cfg.steps_per_tr,
                                         padding=pad))
        self.layers = nn.Sequential(*layers)

    def forward(self, fmri):
        """Map fMRI to sources.

        Parameters
        ----------
        fmri : Tensor, shape (batch, n_x, n_y, n_z, n_trs)

        Returns
        -------
        sources : Tensor, shape (batch, n_x, n_y, n_z, n_trs * steps_per_tr)
        """
        cfg = self.config
        _check_input("fmri", fmri, 5, "(batch, n_x, n_y, n_z, n_trs)",
                     dict(enumerate(cfg.volume_shape, start=1)))
        B, X, Y, Z, N = fmri.shape
        h = self.layers(fmri.reshape(B * X * Y * Z, 1, N))              # (B*V, 1, N*s)
        return h.view(B, X, Y, Z, N * cfg.steps_per_tr)


class FMRIEncoder(nn.Module):
    """Source time courses -> fMRI by temporal convolutions (an HRF).

    Parameters
    ----------
    config : TranscoderConfig
    """

    def __init__(self, config):
        super().__init__()
        cfg = self.config = _check_config(config)
        ch, k = cfg.fmri_channels[::-1], cfg.fmri_kernel
        kernel, pad = _stride_geometry(cfg.steps_per_tr)
        layers = [nn.Conv1d(1, ch[0], kernel, stride=cfg.steps_per_tr, padding=pad),
                  _post(cfg.block, ch[0], 1)]
        for i in range(1, cfg.n_layers - 1):
            layers += [nn.Conv1d(ch[i - 1], ch[i], k, padding=k // 2),
                       _post(cfg.block, ch[i], 1)]
        layers.append(nn.Conv1d(ch[-1], 1, k, padding=k // 2))
        self.layers = nn.Sequential(*layers)

    def forward(self, sources):
        """Map sources to fMRI.

        Parameters
        ----------
        sources : Tensor, shape (batch, n_x, n_y, n_z, n_steps)
            ``n_steps`` a multiple of ``steps_per_tr``.

        Returns
        -------
        fmri : Tensor, shape (batch, n_x, n_y, n_z, n_steps // steps_per_tr)
        """
        cfg = self.config
        _check_input("sources", sources, 5, "(batch, n_x, n_y, n_z, n_steps)",
                     dict(enumerate(cfg.volume_shape, start=1)))
        B, X, Y, Z, T = sources.shape
        if T % cfg.steps_per_tr:
            raise ValueError(f"'sources' must hold a whole number of TRs: n_steps ({T}) a "
                             f"multiple of steps_per_tr ({cfg.steps_per_tr}).")
        h = self.layers(sources.reshape(B * X * Y * Z, 1, T))           # (B*V, 1, N)
        return h.view(B, X, Y, Z, T // cfg.steps_per_tr)


def count_parameters(module) -> int:
    """Number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


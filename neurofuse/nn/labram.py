"""LaBraM's architecture as a channel-independent EEG patch encoder (System B's Eq. 1).

LaBraM, the *Large Brain Model* of Jiang, Zhao & Lu (ICLR 2024, "Large Brain Model for
Learning Generic Representations with Tremendous EEG Data in BCI";
https://github.com/935963004/LaBraM; also braindecode's ``Labram``), cuts each EEG channel
into patches of ``patch_size`` samples, turns every patch into a token with a small stack of
1-D convolutions (its *TemporalConv*: conv → GroupNorm → GELU, three times, the first conv
strided), adds a temporal (patch-position) embedding and an electrode embedding, prepends a
cls token and runs pre-norm transformer blocks with q/k normalisation and layer scale. This
module is our own implementation of that architecture (facts such as layer names, shapes and
the order of operations follow the original so that its checkpoints load, see
:mod:`neurofuse.nn.labram_checkpoint`; the code is ours). Attention runs through
:func:`torch.nn.functional.scaled_dot_product_attention`.

For System B (Li & Wang, §II-B, Eq. 1) the encoder sees every EEG channel as an independent
univariate sequence: ``x`` (B, C, T) is reshaped to B·C sequences of one channel, encoded,
and the channel axis restored, giving ``H_enc`` (B, C, P, D) with ``P = T / patch_size``
patches of ``D = embed_dim`` features. No attention crosses channels, so channel ``i``'s
tokens do not depend on channel ``j``'s signal.

Differences from LaBraM, by design:

* the convolutions are :class:`torch.nn.Conv1d` (LaBraM writes them as ``Conv2d`` with a
  ``(1, k)`` kernel: the same numbers; the checkpoint loader drops the singleton axis);
* when the flattened convolution output (``conv_channels`` × output length) differs from
  ``embed_dim`` a linear ``patch_proj`` maps it to ``embed_dim`` (LaBraM's sizes make them
  equal: 8 × 25 = 200 for 200-sample patches; then no projection exists);
* the electrode embedding is optional and added only when electrode indices are given
  (:func:`electrode_indices`), since a univariate sequence carries no channel name;
* the final LayerNorm (``norm``) is applied to every token, as in LaBraM's pretraining model;
* LaBraM's GroupNorm statistics in the patch convolutions span every patch of every channel
  of a sample; here a sample is one channel's sequence (Eq. 1), so they span its patches;
* masked patches (pretraining) have their samples zeroed before the convolutions, so their
  content cannot reach the other tokens through those statistics.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import _check_int, _check_keys, _check_positive

__all__ = ["LABRAM_CHANNELS", "LABRAM_PRESETS", "LaBraM", "LaBraMConfig", "electrode_indices",
           "freeze"]

#: LaBraM's electrode table (upper-case 10-20/10-10 names; the row of each name in the
#: electrode embedding, after the cls row 0). The original repository's list with the last
#: bipolar montage names dropped, as in braindecode, so that 128 rows match the released
#: LaBraM weights.
LABRAM_CHANNELS = (
    "FP1", "FPZ", "FP2", "AF9", "AF7", "AF5", "AF3", "AF1", "AFZ", "AF2", "AF4", "AF6", "AF8",
    "AF10", "F9", "F7", "F5", "F3", "F1", "FZ", "F2", "F4", "F6", "F8", "F10", "FT9", "FT7",
    "FC5", "FC3", "FC1", "FCZ", "FC2", "FC4", "FC6", "FT8", "FT10", "T9", "T7", "C5", "C3",
    "C1", "CZ", "C2", "C4", "C6", "T8", "T10", "TP9", "TP7", "CP5", "CP3", "CP1", "CPZ", "CP2",
    "CP4", "CP6", "TP8", "TP10", "P9", "P7", "P5", "P3", "P1", "PZ", "P2", "P4", "P6", "P8",
    "P10", "PO9", "PO7", "PO5", "PO3", "PO1", "POZ", "PO2", "PO4", "PO6", "PO8", "PO10", "O1",
    "OZ", "O2", "O9", "CB1", "CB2", "IZ", "O10", "T3", "T5", "T4", "T6", "M1", "M2", "A1", "A2",
    "CFC1", "CFC2", "CFC3", "CFC4", "CFC5", "CFC6", "CFC7", "CFC8", "CCP1", "CCP2", "CCP3",
    "CCP4", "CCP5", "CCP6", "CCP7", "CCP8", "T1", "T2", "FTT9H", "TTP7H", "TPP9H", "FTT10H",
    "TPP8H", "TPP10H", "FP1-F7", "F7-T7", "T7-P7", "P7-O1", "FP2-F8", "F8-T8", "T8-P8", "P8-O2",
)

#: Named sizes: LaBraM's Base/Large/Huge (200-sample patches at 200 Hz) and small ones of ours
#: for 50-sample patches at 250 Hz (7 conv outputs × 8 channels = 56 features, no projection).
LABRAM_PRESETS = {
    "base": {"patch_size": 200, "embed_dim": 200, "depth": 12, "n_heads": 10,
             "conv_channels": 8},
    "large": {"patch_size": 200, "embed_dim": 400, "depth": 24, "n_heads": 16,
              "conv_channels": 16},
    "huge": {"patch_size": 200, "embed_dim": 800, "depth": 48, "n_heads": 16,
             "conv_channels": 32},
    "small": {"patch_size": 50, "embed_dim": 56, "depth": 4, "n_heads": 4,
              "conv_channels": 8},
    "tiny": {"patch_size": 50, "embed_dim": 28, "depth": 1, "n_heads": 2, "conv_channels": 4,
             "conv_groups": 2, "max_patches": 8, "n_electrodes": 0},
}


def _conv_length(n, kernel, stride):
    """Output length of a 'same'-padded (``kernel // 2``) convolution of ``n`` samples."""
    return (n + 2 * (kernel // 2) - kernel) // stride + 1


@dataclass(frozen=True)
class LaBraMConfig:
    """Every size of :class:`LaBraM` (LaBraM-Base's values by default).

    Parameters
    ----------
    patch_size : int
        Samples per patch (200 in LaBraM, 1 s at 200 Hz; e.g. 50 at 250 Hz).
    embed_dim : int
        Token features ``D``.
    depth : int
        Transformer blocks.
    n_heads : int
        Attention heads (``embed_dim`` must be a multiple).
    mlp_ratio : float
        Hidden width of the blocks' MLP over ``embed_dim``.
    conv_channels : int
        Feature maps of the patch convolutions (LaBraM's ``out_chans``).
    conv_kernels : tuple of 3 int
        Odd kernels of the three convolutions (15, 3, 3); each is 'same'-padded.
    conv_stride : int
        Stride of the first convolution (8).
    conv_groups : int
        Groups of the GroupNorms (4; divides ``conv_channels``).
    max_patches : int
        Rows of the temporal embedding: the most patches a sequence may have (16).
    n_electrodes : int
        Rows of the electrode embedding after its cls row (128, :data:`LABRAM_CHANNELS`); 0:
        no electrode embedding.
    qkv_bias : bool
        Learnable query and value biases (LaBraM's ``q_bias``, ``v_bias``; off in its
        released models).
    qk_norm : bool
        LayerNorm of queries and keys per head (on in LaBraM).
    init_values : float
        Initial layer scale (``gamma_1``, ``gamma_2``); 0: no layer scale.
    dropout, attn_dropout, drop_path : float
        Dropout after the attention projection and the MLP, of the attention weights, and
        the largest stochastic-depth rate (linearly increasing over the blocks).
    norm_eps : float
        Epsilon of the LayerNorms.
    """

    patch_size: int = 200
    embed_dim: int = 200
    depth: int = 12
    n_heads: int = 10
    mlp_ratio: float = 4.0
    conv_channels: int = 8
    conv_kernels: tuple = (15, 3, 3)
    conv_stride: int = 8
    conv_groups: int = 4
    max_patches: int = 16
    n_electrodes: int = 128
    qkv_bias: bool = False
    qk_norm: bool = True
    init_values: float = 0.1
    dropout: float = 0.0
    attn_dropout: float = 0.0
    drop_path: float = 0.0
    norm_eps: float = 1e-6

    def __post_init__(self):
        for name in ("patch_size", "embed_dim", "depth", "n_heads", "conv_channels",
                     "conv_stride", "conv_groups", "max_patches"):
            _check_int(f"LaBraMConfig.{name}", getattr(self, name))
        _check_int("LaBraMConfig.n_electrodes", self.n_electrodes, 0)
        if self.embed_dim % self.n_heads:
            raise ValueError(f"'LaBraMConfig.embed_dim' ({self.embed_dim}) must be a multiple "
                             f"of n_heads ({self.n_heads}); change one of them.")
        if self.conv_channels % self.conv_groups:
            raise ValueError(f"'LaBraMConfig.conv_channels' ({self.conv_channels}) must be a "
                             f"multiple of conv_groups ({self.conv_groups}).")
        kernels = self.conv_kernels
        if not isinstance(kernels, (list, tuple)) or len(kernels) != 3:
            raise ValueError(f"'LaBraMConfig.conv_kernels' must be 3 odd ints, got {kernels!r}.")
        kernels = tuple(_check_int(f"LaBraMConfig.conv_kernels[{i}]", k)
                        for i, k in enumerate(kernels))
        if any(k % 2 == 0 for k in kernels):
            raise ValueError(f"'LaBraMConfig.conv_kernels' must be odd ('same' padding), got "
                             f"{kernels}.")
        object.__setattr__(self, "conv_kernels", kernels)
        _check_positive("LaBraMConfig.mlp_ratio", self.mlp_ratio)
        _check_positive("LaBraMConfig.init_values", self.init_values, allow_zero=True)
        _check_positive("LaBraMConfig.norm_eps", self.norm_eps)
        for name in ("dropout", "attn_dropout", "drop_path"):
            value = _check_positive(f"LaBraMConfig.{name}", getattr(self, name), allow_zero=True)
            if value >= 1:
                raise ValueError(f"'LaBraMConfig.{name}' must be in [0, 1), got {value}.")
        for name in ("qkv_bias", "qk_norm"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"'LaBraMConfig.{name}' must be a bool, got "
                                f"{getattr(self, name)!r}.")

    @property
    def conv_length(self) -> int:
        """Outputs of the patch convolutions per patch (25 for LaBraM's 200-sample patches)."""
        return _conv_length(self.patch_size, self.conv_kernels[0], self.conv_stride)

    @property
    def conv_features(self) -> int:
        """Flattened convolution features per patch: ``conv_channels * conv_length``."""
        return self.conv_channels * self.conv_length

    def n_patches(self, n_times: int) -> int:
        """Patches of a sequence of ``n_times`` samples; an error naming ``patch_size``
        (or ``max_patches``) unless they fit."""
        if n_times % self.patch_size:
            raise ValueError(
                f"The EEG has {n_times} samples, not a multiple of the encoder's patch_size "
                f"({self.patch_size}): crop or pad the epochs to a multiple of patch_size "
                f"(e.g. {n_times // self.patch_size * self.patch_size} samples), or build "
                "the encoder with another patch_size.")
        n = n_times // self.patch_size
        if n > self.max_patches:
            raise ValueError(
                f"The EEG has {n} patches of {self.patch_size} samples but the temporal "
                f"embedding holds max_patches={self.max_patches}: use shorter epochs or "
                "build the encoder with a larger max_patches.")
        return n

    def to_dict(self) -> dict:
        """The sizes as a JSON-serialisable dict."""
        out = dataclasses.asdict(self)
        out["conv_kernels"] = list(self.conv_kernels)
        return out

    @classmethod
    def from_dict(cls, values) -> LaBraMConfig:
        """A configuration from a dict (:meth:`to_dict`'s, or a preset name's sizes plus
        changes with the key ``preset``); unknown keys raise ValueError."""
        values = dict(values)
        preset = values.pop("preset", None)
        if preset is not None:
            if preset not in LABRAM_PRESETS:
                raise ValueError(f"Unknown LaBraM preset {preset!r}: expected one of "
                                 f"{sorted(LABRAM_PRESETS)}.")
            values = {**LABRAM_PRESETS[preset], **values}
        _check_keys("LaBraMConfig", values, [f.name for f in dataclasses.fields(cls)])
        return cls(**values)


class _PatchConv(nn.Module):
    """LaBraM's TemporalConv: patches (N, P, patch_size) of N sequences → (N, P, features).

    Each convolution runs within one patch (no sample of a neighbouring patch enters it); the
    GroupNorm statistics span all patches of a sequence, as LaBraM's (there a "sample" holds
    every patch of every channel; here one channel's sequence, Eq. 1).
    """

    def __init__(self, cfg: LaBraMConfig):
        super().__init__()
        k1, k2, k3 = cfg.conv_kernels
        c = cfg.conv_channels
        self.conv1 = nn.Conv1d(1, c, k1, stride=cfg.conv_stride, padding=k1 // 2)
        self.norm1 = nn.GroupNorm(cfg.conv_groups, c)
        self.conv2 = nn.Conv1d(c, c, k2, padding=k2 // 2)
        self.norm2 = nn.GroupNorm(cfg.conv_groups, c)
        self.conv3 = nn.Conv1d(c, c, k3, padding=k3 // 2)
        self.norm3 = nn.GroupNorm(cfg.conv_groups, c)

    def forward(self, x):
        N, P, S = x.shape
        h = x.reshape(N * P, 1, S)
        for conv, norm in ((self.conv1, self.norm1), (self.conv2, self.norm2),
                           (self.conv3, self.norm3)):
            h = conv(h)  # (N P, c, L)
            c, L = h.shape[1:]
            h = F.gelu(norm(h.view(N, P, c, L).transpose(1, 2)))  # (N, c, P, L)
            h = h.transpose(1, 2).reshape(N * P, c, L)
        return h.view(N, P, c, L).transpose(2, 3).reshape(N, P, L * c)  # LaBraM's "(T C)"


class _Attention(nn.Module):
    """Multi-head self-attention with LaBraM's q/v biases and q/k LayerNorms."""

    def __init__(self, cfg: LaBraMConfig):
        super().__init__()
        d = cfg.embed_dim
        self.n_heads = cfg.n_heads
        head = d // cfg.n_heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        if cfg.qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(d))
            self.v_bias = nn.Parameter(torch.zeros(d))
        else:
            self.q_bias = self.v_bias = None
        if cfg.qk_norm:
            self.q_norm = nn.LayerNorm(head, eps=cfg.norm_eps)
            self.k_norm = nn.LayerNorm(head, eps=cfg.norm_eps)
        else:
            self.q_norm = self.k_norm = None
        self.attn_dropout = cfg.attn_dropout
        self.proj = nn.Linear(d, d)
        self.proj_drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        B, N, D = x.shape
        bias = None
        if self.q_bias is not None:  # no key bias, as LaBraM (and BEiT)
            bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias)  # (B, N, 3 * D)
        q, k, v = qkv.view(B, N, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)  # (B, H, N, Dh)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        x = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_dropout if self.training else 0.0)  # (B, H, N, Dh)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B, N, D)))


class _MLP(nn.Module):
    def __init__(self, cfg: LaBraMConfig):
        super().__init__()
        hidden = int(cfg.embed_dim * cfg.mlp_ratio)
        self.fc1 = nn.Linear(cfg.embed_dim, hidden)
        self.fc2 = nn.Linear(hidden, cfg.embed_dim)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.drop(self.fc2(F.gelu(self.fc1(x))))


class _Block(nn.Module):
    """Pre-norm transformer block with layer scale and stochastic depth (LaBraM's Block)."""

    def __init__(self, cfg: LaBraMConfig, drop_path: float):
        super().__init__()
        d = cfg.embed_dim
        self.norm1 = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.attn = _Attention(cfg)
        self.norm2 = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.mlp = _MLP(cfg)
        if cfg.init_values > 0:
            self.gamma_1 = nn.Parameter(torch.full((d,), float(cfg.init_values)))
            self.gamma_2 = nn.Parameter(torch.full((d,), float(cfg.init_values)))
        else:
            self.gamma_1 = self.gamma_2 = None
        self.drop_path = drop_path

    def _drop(self, x):
        if not self.training or self.drop_path == 0:
            return x
        keep = 1 - self.drop_path
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def forward(self, x):
        y = self.attn(self.norm1(x))
        x = x + self._drop(y if self.gamma_1 is None else self.gamma_1 * y)
        y = self.mlp(self.norm2(x))
        return x + self._drop(y if self.gamma_2 is None else self.gamma_2 * y)


class LaBraM(nn.Module):
    """LaBraM's encoder applied channel by channel: EEG (B, C, T) → tokens (B, C, P, D).

    Parameters
    ----------
    config : LaBraMConfig | dict | None
        The sizes (None: LaBraM-Base's, or those of ``sizes``).
    **sizes
        :class:`LaBraMConfig` fields that override ``config``'s (e.g. ``patch_size=50``);
        without ``config`` also ``preset`` (a name of :data:`LABRAM_PRESETS`).

    Attributes
    ----------
    config : LaBraMConfig
    patch_size : int
        Samples per patch.
    embed_dim : int
        Features per token ``D``.
    electrodes : Tensor of int, shape (n_channels,) | None
        Default electrode rows (see :meth:`forward`), a non-persistent buffer (not saved):
        set it with :meth:`set_electrodes` to use the electrode embedding when the module is
        called without ``electrodes``.

    Notes
    -----
    Jiang, Zhao & Lu (2024), "Large Brain Model for Learning Generic Representations with
    Tremendous EEG Data in BCI", ICLR; https://github.com/935963004/LaBraM. This is our own
    implementation of its architecture (see the module docstring for the differences).
    """

    def __init__(self, config=None, **sizes):
        super().__init__()
        if config is None:
            config = LaBraMConfig.from_dict(sizes)  # sizes may name a preset
        else:
            if isinstance(config, dict):
                config = LaBraMConfig.from_dict(config)
            elif not isinstance(config, LaBraMConfig):
                raise TypeError(f"'config' must be a LaBraMConfig, a dict or None, got "
                                f"{type(config).__name__}.")
            if "preset" in sizes:
                raise ValueError("Pass 'preset' inside config (or without a config), not "
                                 "next to one: LaBraM(preset='small', depth=2).")
            if sizes:
                config = LaBraMConfig.from_dict({**config.to_dict(), **sizes})
        self.config = cfg = config
        self.patch_size, self.embed_dim = cfg.patch_size, cfg.embed_dim
        d = cfg.embed_dim
        self.patch_embed = _PatchConv(cfg)
        self.patch_proj = (nn.Linear(cfg.conv_features, d) if cfg.conv_features != d
                           else None)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = (nn.Parameter(torch.zeros(1, cfg.n_electrodes + 1, d))
                          if cfg.n_electrodes else None)
        self.time_embed = nn.Parameter(torch.zeros(1, cfg.max_patches, d))
        self.pos_drop = nn.Dropout(cfg.dropout)
        rates = torch.linspace(0, cfg.drop_path, cfg.depth).tolist()
        self.blocks = nn.ModuleList(_Block(cfg, r) for r in rates)
        self.norm = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.register_buffer("electrodes", None, persistent=False)
        self._init_weights()

    def _init_weights(self):
        for p in (self.cls_token, self.mask_token, self.time_embed, self.pos_embed):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02, a=-0.02, b=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        with torch.no_grad():  # LaBraM/BEiT: scale each residual branch's output by depth
            for i, block in enumerate(self.blocks, start=1):
                block.attn.proj.weight.div_(math.sqrt(2.0 * i))
                block.mlp.fc2.weight.div_(math.sqrt(2.0 * i))

    # ------------------------------------------------------------------ helpers
    def set_electrodes(self, electrodes):
        """Use the electrode embedding rows ``electrodes`` by default (None: none).

        Parameters
        ----------
        electrodes : sequence of int | sequence of str | Tensor | None
            One row of :data:`LABRAM_CHANNELS` per input channel (indices, or channel names
            looked up with :func:`electrode_indices`).
        """
        if electrodes is not None:
            electrodes = self._electrode_tensor(electrodes, None)
        self.electrodes = electrodes

    def _electrode_tensor(self, electrodes, n_channels):
        if self.pos_embed is None:
            raise ValueError("'electrodes' was given but this LaBraM has no electrode "
                             "embedding (n_electrodes=0); build it with n_electrodes > 0 or "
                             "pass electrodes=None.")
        if len(electrodes) and isinstance(list(electrodes)[0], str):
            electrodes = electrode_indices(electrodes)
        idx = torch.as_tensor(electrodes, dtype=torch.long, device=self.cls_token.device)
        if idx.ndim != 1 or (n_channels is not None and idx.numel() != n_channels):
            raise ValueError(f"'electrodes' must hold one index per channel ({n_channels}), "
                             f"got shape {tuple(idx.shape)}.")
        n = self.config.n_electrodes
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise ValueError(f"'electrodes' must be rows 0..{n - 1} of the electrode "
                             f"embedding, got {idx.tolist()}.")
        return idx

    def n_patches(self, n_times: int) -> int:
        """Patches of a sequence of ``n_times`` samples (:meth:`LaBraMConfig.n_patches`)."""
        return self.config.n_patches(n_times)

    # ------------------------------------------------------------------ forward
    def forward(self, x, *, electrodes=None, mask=None, return_cls=False):
        """Encode every channel of ``x`` on its own (Eq. 1).

        Parameters
        ----------
        x : Tensor, shape (B, C, T)
            EEG (per-channel standardised); ``T`` a multiple of ``patch_size``.
        electrodes : sequence of int or str | Tensor, shape (C,) | None
            Electrode-embedding row of each channel (:func:`electrode_indices` turns names
            into rows); None: :attr:`electrodes` if set, else no electrode embedding.
        mask : Tensor of bool, shape (B, C, P) | None
            Patches whose tokens are replaced by the learned mask token before the
            embeddings are added (masked patch modelling); their samples are zeroed first,
            so nothing of them reaches the other tokens.
        return_cls : bool
            Also return each sequence's cls token.

        Returns
        -------
        tokens : Tensor, shape (B, C, P, D)
            ``P = T / patch_size`` patches, ``D = embed_dim`` features.
        cls : Tensor, shape (B, C, D)
            Only with ``return_cls``.
        """
        if x.ndim != 3:
            raise ValueError(f"'x' must have shape (batch, n_channels, n_times), got shape "
                             f"{tuple(x.shape)}.")
        B, C, T = x.shape
        P = self.n_patches(T)
        d = self.embed_dim
        patches = x.reshape(B * C, P, self.patch_size)  # R_in: one sequence per channel
        if mask is not None:
            if mask.shape != (B, C, P):
                raise ValueError(f"'mask' must have shape (B, C, P) = {(B, C, P)}, got "
                                 f"{tuple(mask.shape)}.")
            w = mask.reshape(B * C, P, 1)
            # zero the masked samples: they would reach the other tokens through the
            # GroupNorm statistics of the patch convolutions
            patches = patches.masked_fill(w, 0.0)
        tokens = self.patch_embed(patches)  # (B C, P, F)
        if self.patch_proj is not None:
            tokens = self.patch_proj(tokens)  # (B C, P, D)
        if mask is not None:
            w = w.to(tokens.dtype)
            tokens = tokens * (1 - w) + self.mask_token * w
        tokens = tokens + self.time_embed[:, :P]
        cls = self.cls_token.expand(B * C, 1, d)
        electrodes = (self.electrodes if electrodes is None
                      else self._electrode_tensor(electrodes, C))
        if electrodes is not None:
            if electrodes.numel() != C:
                raise ValueError(f"The encoder's electrodes name {electrodes.numel()} "
                                 f"channels but the EEG has {C}: set_electrodes() again.")
            pos = self.pos_embed[0, 1:][electrodes]  # (C, D)
            tokens = tokens + pos.repeat(B, 1).unsqueeze(1)  # (B C, 1, D)
            cls = cls + self.pos_embed[:, :1]
        h = self.pos_drop(torch.cat((cls, tokens), dim=1))  # (B C, 1 + P, D)
        for block in self.blocks:
            h = block(h)
        h = self.norm(h)
        out = h[:, 1:].reshape(B, C, P, d)  # R_out: restore the channel axis
        if return_cls:
            return out, h[:, 0].reshape(B, C, d)
        return out


def electrode_indices(ch_names) -> list:
    """Rows of LaBraM's electrode embedding (:data:`LABRAM_CHANNELS`) for channel names.

    Parameters
    ----------
    ch_names : sequence of str
        EEG channel names (case-insensitive; e.g. ``info.ch_names``).

    Returns
    -------
    rows : list of int
        One row per name.
    """
    table = {name: i for i, name in enumerate(LABRAM_CHANNELS)}
    rows, unknown = [], []
    for name in ch_names:
        row = table.get(str(name).upper())
        (unknown if row is None else rows).append(name if row is None else row)
    if unknown:
        raise ValueError(f"Channel names {unknown} are not in LaBraM's electrode table "
                         "(neurofuse.nn.labram.LABRAM_CHANNELS): rename them to 10-20/10-10 "
                         "names, drop them, or encode without electrodes (electrodes=None).")
    return rows


def freeze(module: nn.Module) -> nn.Module:
    """Freeze ``module``: no parameter requires a gradient, and it is put in eval mode.

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    module : torch.nn.Module
        The same object. A parent's ``train()`` switches it back to training mode (dropout
        and stochastic depth; off by default in :class:`LaBraMConfig`), but its parameters
        stay frozen.
    """
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()

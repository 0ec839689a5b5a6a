"""The stimulus encoder: features -> transformer with lag-window attention -> fsaverage sources.

Paper §2.2: a linear input layer (d_stim = 852 -> d_model = 256), four standard transformer
encoder layers (two heads, feed-forward 512, dropout 0.2) whose attention is causal over the
preceding 500 samples (10 s at 50 Hz) with learnable lag embeddings added to the keys, and a
linear source layer (d_model -> d_src = 8196)::

    z_in  = W_in x_t + b_in                        (B, T, d_model)
    z_out = layer_4(... layer_1(z_in))             (B, T, d_model)
    s_t   = W_src z_out + b_src                    (B, T, d_src)
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..._checks import _check_int, _check_keys, _check_option
from ...nn.attention import IMPLS, LagWindowAttention, _check_heads

__all__ = ["EncoderConfig", "EncoderLayer", "SourceLayer", "StimulusEncoder"]


@dataclass(frozen=True)
class EncoderConfig:
    """The whole configuration of a :class:`StimulusEncoder` (paper §2.2 defaults).

    Parameters
    ----------
    d_stim : int
        Width of the stimulus features (768 GPT-2 + 44 phonemes + 40 mel bands = 852).
    d_model : int
        Width of the transformer.
    n_layers : int
        Number of encoder layers.
    n_heads : int
        Attention heads per layer; must divide ``d_model``.
    d_ff : int
        Width of the feed-forward block.
    dropout : float
        Dropout in [0, 1) on the attention weights and the two residual branches.
    window : int
        Samples each query sees, itself included (500 = 10 s at 50 Hz).
    d_src : int
        Number of sources (8196 for fsaverage oct6).
    block_size : int
        Query block of the attention (memory/speed only; does not change the result).
    source_init_scale : float
        The source layer's initial weights are PyTorch's default draw times this factor, and
        its bias starts at 0. The lead fields leave most source patterns invisible to MEG
        (their null space); whatever the initial weights put there, MEG never corrects, so a
        small start (0.01) acts as an implicit minimum-norm prior. 1 is PyTorch's default. The
        paper does not specify the initialisation. Only affects a new model.
    source_fwhm : float | None
        Full width at half maximum, in mm, of a fixed Gaussian smoother ``K`` applied to the
        source layer: ``sources = K (W z + b)`` (:class:`SourceLayer`). None or 0 (the
        paper's model; 0 for TOML, which has no null) means no smoothing. Neighbouring cortex carries correlated activity, and the
        lead fields cannot tell neighbours apart, so with little data each source's own
        weights fit noise; ``K`` restricts the sources to spatially smooth patterns (the
        prior LORETA-type inverses use). ``K`` is built from the source positions by
        :meth:`~neurofuse.systems.joint.model.JointModel.from_dataset`; a bare encoder keeps
        ``K = I`` until :meth:`SourceLayer.set_smoother` is called. Not in the paper.
    """

    d_stim: int = 852
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 2
    d_ff: int = 512
    dropout: float = 0.2
    window: int = 500
    d_src: int = 8196
    block_size: int = 128
    source_init_scale: float = 0.01
    source_fwhm: float | None = None

    def __post_init__(self):
        for field in dataclasses.fields(self):
            if field.name in ("dropout", "source_init_scale", "source_fwhm"):
                continue
            object.__setattr__(self, field.name,
                               _check_int(field.name, getattr(self, field.name), 1))
        dropout = self.dropout
        if not isinstance(dropout, numbers.Real) or isinstance(dropout, bool):
            raise TypeError(f"'dropout' must be a real number, got {type(dropout).__name__}.")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"'dropout' must be in [0, 1), got {dropout}.")
        object.__setattr__(self, "dropout", float(dropout))
        scale = self.source_init_scale
        if not isinstance(scale, numbers.Real) or isinstance(scale, bool) or not scale > 0 \
                or not math.isfinite(scale):
            raise ValueError(f"'source_init_scale' must be a finite number > 0, got {scale!r}.")
        object.__setattr__(self, "source_init_scale", float(scale))
        fwhm = self.source_fwhm
        if fwhm is not None:
            if not isinstance(fwhm, numbers.Real) or isinstance(fwhm, bool) or not fwhm >= 0 \
                    or not math.isfinite(fwhm):
                raise ValueError(f"'source_fwhm' must be None (or 0: no smoothing) or a finite "
                                 f"number of mm > 0, got {fwhm!r}.")
            object.__setattr__(self, "source_fwhm", float(fwhm) if fwhm > 0 else None)
        _check_heads(self.d_model, self.n_heads)

    def to_dict(self) -> dict:
        """Return the configuration as a plain (JSON/TOML-serialisable) dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, config: dict) -> EncoderConfig:
        """Build a configuration from a dict; missing keys take the defaults.

        Raises ``ValueError`` for a key that is not a field, naming it and the valid ones.
        """
        if not isinstance(config, dict):
            raise TypeError(f"'config' must be a dict, got {type(config).__name__}.")
        _check_keys("EncoderConfig", config, [f.name for f in dataclasses.fields(cls)])
        return cls(**config)


class EncoderLayer(nn.Module):
    """Post-norm transformer encoder layer with :class:`LagWindowAttention`.

    The same computation as ``nn.TransformerEncoderLayer(norm_first=False,
    activation="relu")`` with its self-attention replaced::

        x = norm1(x + dropout1(attn(x)))
        x = norm2(x + dropout2(linear2(dropout(relu(linear1(x))))))

    Parameters
    ----------
    d_model, n_heads, d_ff : int
        Widths, as in :class:`EncoderConfig`.
    dropout : float
        Dropout on the attention weights and on the residual branches (training mode only).
    window, block_size : int
        Passed to :class:`LagWindowAttention`.
    """

    def __init__(self, d_model, n_heads, d_ff, dropout, window, block_size=128):
        super().__init__()
        self.attn = LagWindowAttention(
            d_model, n_heads, window=window, dropout=dropout, block_size=block_size
        )
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, *, impl: str = "auto") -> torch.Tensor:
        """x (B, T, d_model) -> (B, T, d_model)."""
        x = self.norm1(x + self.dropout1(self.attn(x, impl=impl)))  # (B, T, d_model)
        ff = self.linear2(self.dropout(torch.relu(self.linear1(x))))  # (B, T, d_model)
        return self.norm2(x + self.dropout2(ff))  # (B, T, d_model)


class SourceLayer(nn.Module):
    """The source layer: ``sources = K (W z + b)``, with ``K`` a fixed spatial smoother.

    Without smoothing (``K = I``) this is an ``nn.Linear(d_model, d_src)``, with the same
    parameter names, initial draw and state-dict keys.

    Parameters
    ----------
    d_model, d_src : int
    init_scale : float
        Factor on PyTorch's default initial weights (see
        :attr:`EncoderConfig.source_init_scale`); the bias starts at 0.
    smooth : bool
        Hold a smoother ``K`` (a sparse CSR buffer, identity until :meth:`set_smoother`).

    Attributes
    ----------
    weight : Parameter, shape (d_src, d_model)
        ``W``, before smoothing.
    bias : Parameter, shape (d_src,)
    smoother : sparse CSR tensor, shape (d_src, d_src) | None
    """

    def __init__(self, d_model, d_src, *, init_scale=0.01, smooth=False):
        super().__init__()
        linear = nn.Linear(d_model, d_src)  # PyTorch's default draw (same RNG use as before)
        with torch.no_grad():  # small start: an implicit minimum-norm prior (see EncoderConfig)
            self.weight = nn.Parameter(linear.weight.detach() * init_scale)
            self.bias = nn.Parameter(torch.zeros(d_src))
        self.register_buffer("smoother", None)
        if smooth:
            import scipy.sparse

            from .heads import _to_sparse_csr

            self.smoother = _to_sparse_csr(scipy.sparse.eye_array(d_src, format="csr"))

    @property
    def d_src(self) -> int:
        return self.weight.shape[0]

    def set_smoother(self, matrix):
        """Set ``K`` from a (d_src, d_src) scipy sparse matrix or dense array."""
        import scipy.sparse

        from .heads import _to_sparse_csr

        if self.smoother is None:
            raise ValueError("This source layer was built without smoothing; build the encoder "
                             "with source_fwhm=<mm> to give it a smoother.")
        mat = scipy.sparse.csr_array(matrix, dtype=np.float32)
        if mat.shape != (self.d_src, self.d_src):
            raise ValueError(f"'matrix' must be ({self.d_src}, {self.d_src}) (d_src x d_src), "
                             f"got {mat.shape}.")
        self.smoother = _to_sparse_csr(mat).to(self.weight.device)

    def effective(self):
        """``(K W, K b)``: the weight (d_src, d_model) and bias (d_src,) acting on ``z``."""
        if self.smoother is None:
            return self.weight, self.bias
        k = self.smoother.to(self.weight.dtype)
        wb = torch.cat([self.weight, self.bias[:, None]], 1)  # (S, D + 1)
        kwb = k @ wb
        return kwb[:, :-1], kwb[:, -1]

    def forward(self, z):
        """(..., d_model) -> (..., d_src)."""
        weight, bias = self.effective()
        return torch.nn.functional.linear(z, weight, bias)

    def extra_repr(self) -> str:
        return (f"d_model={self.weight.shape[1]}, d_src={self.d_src}, "
                f"smoothed={self.smoother is not None}")


class StimulusEncoder(nn.Module):
    """Stimulus features -> fsaverage source estimates (paper §2.2).

    Every argument is a field of :class:`EncoderConfig` (see there); the validated
    configuration is kept as ``self.config``. Rebuild a model with
    ``StimulusEncoder(**config.to_dict())`` or :meth:`from_config`.

    Attributes
    ----------
    config : EncoderConfig
    input_layer : nn.Linear
        d_stim -> d_model.
    layers : nn.ModuleList of EncoderLayer
    source_layer : SourceLayer
        d_model -> d_src.
    """

    def __init__(
        self,
        d_stim=852,
        d_model=256,
        n_layers=4,
        n_heads=2,
        d_ff=512,
        dropout=0.2,
        window=500,
        d_src=8196,
        block_size=128,
        source_init_scale=0.01,
        source_fwhm=None,
    ):
        super().__init__()
        self.config = cfg = EncoderConfig(
            d_stim=d_stim,
            d_model=d_model,
            n_layers=n_layers,
            n_heads=n_heads,
            d_ff=d_ff,
            dropout=dropout,
            window=window,
            d_src=d_src,
            block_size=block_size,
            source_init_scale=source_init_scale,
            source_fwhm=source_fwhm,
        )
        self.input_layer = nn.Linear(cfg.d_stim, cfg.d_model)
        self.layers = nn.ModuleList(
            EncoderLayer(
                cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout, cfg.window, cfg.block_size
            )
            for _ in range(cfg.n_layers)
        )
        self.source_layer = SourceLayer(cfg.d_model, cfg.d_src, init_scale=cfg.source_init_scale,
                                        smooth=cfg.source_fwhm is not None)

    @classmethod
    def from_config(cls, config: EncoderConfig | dict) -> StimulusEncoder:
        """Build an encoder from an :class:`EncoderConfig` or its dict form."""
        if isinstance(config, dict):
            config = EncoderConfig.from_dict(config)
        if not isinstance(config, EncoderConfig):
            raise TypeError(
                f"'config' must be an EncoderConfig or a dict, got {type(config).__name__}."
            )
        return cls(**config.to_dict())

    def _check_features(self, features) -> None:
        d_stim = self.config.d_stim
        if not isinstance(features, torch.Tensor):
            raise TypeError(
                f"'features' must be a torch.Tensor of shape (B, T, d_stim={d_stim}), got "
                f"{type(features).__name__}. Convert numpy arrays with torch.as_tensor(x, "
                "dtype=torch.float32)."
            )
        if features.ndim != 3:
            hint = " Add a batch axis with features[None]." if features.ndim == 2 else ""
            raise ValueError(
                f"'features' must have shape (B, T, d_stim={d_stim}) (3-D), got shape "
                f"{tuple(features.shape)}.{hint}"
            )
        if features.shape[-1] != d_stim:
            raise ValueError(
                f"'features' of the wrong dimension: expected the last axis to have d_stim="
                f"{d_stim} features, got {features.shape[-1]} (shape {tuple(features.shape)}). "
                f"This model was built for d_stim={d_stim}; extract the same feature streams "
                "it was trained on, or build a StimulusEncoder with "
                f"d_stim={features.shape[-1]}."
            )
        if not features.is_floating_point():
            raise TypeError(f"'features' must be a floating-point tensor, got {features.dtype}.")
        finite = torch.isfinite(features)
        if not bool(finite.all()):
            n_nan = int(torch.isnan(features).sum())
            n_inf = int((~finite).sum()) - n_nan
            first = tuple(int(i) for i in torch.nonzero(~finite)[0])
            raise ValueError(
                f"'features' contains {n_nan} NaN and {n_inf} infinite values out of "
                f"{features.numel()} (first at index {first}); all values must be finite. "
                "Fill the gaps in the feature streams (e.g. with zeros) before encoding."
            )

    def forward(self, features: torch.Tensor, *, impl: str = "auto") -> torch.Tensor:
        """Predict source activity from stimulus features.

        Parameters
        ----------
        features : Tensor, shape (B, T, d_stim)
            Stimulus features at the model's sampling rate (50 Hz in the paper).
        impl : "auto" | "blocked" | "dense"
            Attention implementation (see :class:`LagWindowAttention`); the result does not
            depend on it.

        Returns
        -------
        sources : Tensor, shape (B, T, d_src)
            Source estimates on the fsaverage source space.
        """
        return self.source_layer(self.hidden(features, impl=impl))  # (B, T, d_src)

    def hidden(self, features: torch.Tensor, *, impl: str = "auto") -> torch.Tensor:
        """The last transformer layer's output, before the source layer.

        ``forward(features) == source_layer(hidden(features))``. The joint model uses it to
        apply the linear source layer and the linear physics in the cheapest order.

        Parameters
        ----------
        features : Tensor, shape (B, T, d_stim)
        impl : "auto" | "blocked" | "dense"

        Returns
        -------
        z : Tensor, shape (B, T, d_model)
        """
        _check_option("impl", impl, IMPLS)
        self._check_features(features)
        z = self.input_layer(features)  # (B, T, d_model)
        for layer in self.layers:
            z = layer(z, impl=impl)  # (B, T, d_model)
        return z

    def encode(self, features: torch.Tensor, *, impl: str = "auto") -> torch.Tensor:
        """Same as calling the model: features (B, T, d_stim) -> sources (B, T, d_src)."""
        return self(features, impl=impl)

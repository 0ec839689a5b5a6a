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
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..._checks import _check_int, _check_keys, _check_option
from ...nn.attention import IMPLS, LagWindowAttention, _check_heads

__all__ = ["EncoderConfig", "EncoderLayer", "MIXTURE_LOSSES", "MIXTURE_WIDTHS", "SOURCE_PRIORS",
           "SourceLayer", "StimulusEncoder"]

#: Source-layer priors (:attr:`EncoderConfig.source_prior`).
SOURCE_PRIORS = ("fixed", "mixture")
#: The ``'mixture'`` prior's default smoothing widths, FWHM in mm (0: no smoothing).
MIXTURE_WIDTHS = (0.0, 5.0, 10.0, 15.0, 20.0, 30.0)
#: What the mixture logits minimise (:attr:`EncoderConfig.source_mixture_loss`).
MIXTURE_LOSSES = ("validation", "training")
# Fields of EncoderConfig that only the 'mixture' prior uses (left out of a fixed one's dict).
_MIXTURE_FIELDS = ("source_prior", "source_widths", "source_mixture_loss", "source_mixture_lr",
                   "source_mixture_every")


def _check_widths(widths) -> tuple:
    """``source_widths`` as a tuple of distinct finite floats >= 0 (0 for 'no smoothing')."""
    if isinstance(widths, (str, bytes)) or not hasattr(widths, "__iter__"):
        raise TypeError(f"'source_widths' must be a sequence of FWHMs in mm (e.g. [0, 10, 20]), "
                        f"got {type(widths).__name__} ({widths!r}).")
    out = []
    for w in widths:
        if not isinstance(w, numbers.Real) or isinstance(w, bool) or not math.isfinite(w) \
                or w < 0:
            raise ValueError(f"'source_widths' must hold finite FWHMs in mm >= 0 (0: no "
                             f"smoothing), got {w!r} in {list(widths)!r}.")
        out.append(float(w))
    if not out:
        raise ValueError("'source_widths' must hold at least one FWHM in mm, got an empty "
                         "sequence. Use e.g. [0, 5, 10, 15, 20, 30].")
    if len(set(out)) != len(out):
        raise ValueError(f"'source_widths' must be distinct, got {out!r}: drop the repeats.")
    return tuple(out)


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
        Used by ``source_prior="fixed"`` only.
    source_prior : 'fixed' | 'mixture'
        How the source layer's smoother is chosen (not in the paper):

        * ``'fixed'`` (default): ``K`` is the Gaussian smoother of ``source_fwhm`` (or the
          identity), fixed before training; every existing model is this.
        * ``'mixture'``: ``K = sum_k softmax(a)_k K_k``, a learned mixture of the Gaussian
          smoothers of ``source_widths`` (0: the identity, no smoothing). The logits ``a``
          (``SourceLayer.mixture_logits``, starting at 0: equal weights) are trained with the
          other weights by a loss that uses no ground truth (``source_mixture_loss``); the
          weights the model chose are in ``model.json`` (``source_prior``), in the training
          history (``mix_<w>mm`` columns) and :meth:`SourceLayer.mixture_weights`. The
          smoothers are sparse, stacked on the widest one's pattern: a training step costs
          about as much as a fixed smoother of the widest width (3x a fixed 15-mm one, on the
          demo's 2052 sources, for the default widths).
    source_widths : sequence of float | None
        FWHMs in mm (each >= 0, distinct) of the ``'mixture'`` prior; None: ``(0, 5, 10, 15,
        20, 30)`` (:data:`MIXTURE_WIDTHS`). Must be None for ``'fixed'``.
    source_mixture_loss : 'validation' | 'training'
        What the mixture logits minimise (``'mixture'`` only). ``'validation'`` (default):
        the validation stories' loss (recorded MEG and fMRI, the loss early stopping watches),
        by their own Adam optimizer (``"prior"`` in the checkpoints), one step on one
        validation batch every ``source_mixture_every`` training steps, from the first epoch
        with the fMRI term on; the other weights never see the validation stories. A handful
        of logits fitted on held-out stories is choosing a width by validation loss, made
        continuous. ``'training'``: the training loss, with every other weight. The
        training loss always prefers the narrowest width on offer: a narrower smoother can fit
        everything a wider one can, and the noise too (see the docs,
        ``docs/simulation-benchmark.md``).
    source_mixture_lr : float
        Adam learning rate of the logits for ``'validation'`` (> 0).
    source_mixture_every : int
        Training steps per logit step for ``'validation'`` (>= 1): each logit step costs one
        training step's forward and backward pass on a validation batch.

    Notes
    -----
    :meth:`to_dict` leaves out the ``source_prior`` / ``source_widths`` / ``source_mixture_*``
    fields while the prior is ``'fixed'``, so the description (and ``model.json``) of a
    fixed-prior model is the same as before these options existed, and its checkpoints still
    resume.
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
    source_prior: str = "fixed"
    source_widths: tuple | None = None
    source_mixture_loss: str = "validation"
    source_mixture_lr: float = 0.05
    source_mixture_every: int = 4

    def __post_init__(self):
        for field in dataclasses.fields(self):
            if field.name in ("dropout", "source_init_scale", "source_fwhm", "source_prior",
                              "source_widths", "source_mixture_loss", "source_mixture_lr"):
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
        _check_option("source_prior", self.source_prior, SOURCE_PRIORS)
        widths = self.source_widths
        _check_option("source_mixture_loss", self.source_mixture_loss, MIXTURE_LOSSES)
        lr = self.source_mixture_lr
        if not isinstance(lr, numbers.Real) or isinstance(lr, bool) or not lr > 0 \
                or not math.isfinite(lr):
            raise ValueError(f"'source_mixture_lr' must be a finite number > 0, got {lr!r}.")
        object.__setattr__(self, "source_mixture_lr", float(lr))
        if self.source_prior == "fixed":
            changed = [f.name for f in dataclasses.fields(self) if f.name.startswith(
                "source_mixture_") and getattr(self, f.name) != f.default]
            if changed:
                raise ValueError(f"{changed} set the 'mixture' source prior; this one is "
                                 "source_prior='fixed'. Drop them or set "
                                 "source_prior='mixture'.")
            if widths is not None:
                raise ValueError(f"'source_widths' is for source_prior='mixture'; the fixed "
                                 f"prior's width is 'source_fwhm'. Got source_widths={widths!r} "
                                 "with source_prior='fixed': drop source_widths or set "
                                 "source_prior='mixture'.")
        else:
            if fwhm is not None:
                raise ValueError(f"'source_fwhm' is the fixed prior's width; "
                                 f"source_prior='mixture' mixes 'source_widths'. Got "
                                 f"source_fwhm={fwhm!r}: drop it (or set it to 0).")
            object.__setattr__(self, "source_widths", _check_widths(
                MIXTURE_WIDTHS if widths is None else widths))
        _check_heads(self.d_model, self.n_heads)

    def to_dict(self) -> dict:
        """Return the configuration as a plain (JSON/TOML-serialisable) dict.

        ``source_prior`` and ``source_widths`` are left out while they hold their defaults
        (``'fixed'``, None), so a fixed-prior model's description is what it always was.
        """
        out = dataclasses.asdict(self)
        if out["source_prior"] == "fixed":
            for key in [k for k in out if k in _MIXTURE_FIELDS]:
                del out[key]
        else:
            out["source_widths"] = list(out["source_widths"])
        return out

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


def _csr(crow, col, vals, n):
    """An (n, n) CSR tensor from a pattern built (and checked) by
    :meth:`SourceLayer._mixture_structure`: not re-checked at every step."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, vals, size=(n, n), check_invariants=False)


class _MixtureProduct(torch.autograd.Function):
    """``(sum_k p_k K_k) X`` with every ``K_k`` on one sparse pattern: one sparse product
    forward, one (with the pre-built transpose) and one sampled product backward.

    Autograd through ``K @ X`` with a sparse ``K`` transposes ``K`` at every step, and a sum
    of ``n_widths`` such products costs ``n_widths`` of them: on the demo's 2052 sources
    (widths 0-30 mm) this is about 3-4x faster than either.
    """

    @staticmethod
    def forward(ctx, p, x, crow, col, crow_t, col_t, perm, values):
        # p (n_widths,), x (S, D'), values (n_widths, nnz). In float32 under autocast too
        # (sparse products have no bfloat16 kernels on CPU).
        with torch.autocast(x.device.type, enabled=False):
            vals = p @ values  # (nnz,): the mixture's values on the pattern
            n = x.shape[0]
            out = _csr(crow, col, vals, n) @ x  # (S, D')
        ctx.save_for_backward(p, x, crow, col, crow_t, col_t, perm, values, vals)
        return out

    @staticmethod
    def backward(ctx, grad):
        p, x, crow, col, crow_t, col_t, perm, values, vals = ctx.saved_tensors
        n = x.shape[0]
        grad = grad.to(x.dtype).contiguous()  # (S, D')
        grad_p = grad_x = None
        with torch.autocast(x.device.type, enabled=False):
            if ctx.needs_input_grad[1]:  # K^T grad
                grad_x = _csr(crow_t, col_t, vals[perm], n) @ grad
            if ctx.needs_input_grad[0]:  # d/dK_ij = grad_i . x_j on the pattern, per width
                pattern = _csr(crow, col, vals, n)
                sampled = torch.sparse.sampled_addmm(pattern, grad, x.T.contiguous(), beta=0.0)
                grad_p = values @ sampled.values()  # (n_widths,)
        return grad_p, grad_x, None, None, None, None, None, None


class SourceLayer(nn.Module):
    """The source layer: ``sources = K (W z + b)``, with ``K`` a spatial smoother.

    Without smoothing (``K = I``) this is an ``nn.Linear(d_model, d_src)``, with the same
    parameter names, initial draw and state-dict keys. With ``widths`` (the ``'mixture'``
    prior), ``K = sum_k softmax(a)_k K_k`` over one fixed smoother per width (the identity for
    width 0), with learned logits ``a``.

    Parameters
    ----------
    d_model, d_src : int
    init_scale : float
        Factor on PyTorch's default initial weights (see
        :attr:`EncoderConfig.source_init_scale`); the bias starts at 0.
    smooth : bool
        Hold one fixed smoother ``K`` (a sparse CSR buffer, identity until
        :meth:`set_smoother`).
    widths : sequence of float | None
        FWHMs in mm of a learned mixture of smoothers (each a sparse CSR buffer
        ``mixture_smoother_<k>``, identity until :meth:`set_smoother` with ``width=``;
        none for a width of 0). Excludes ``smooth``.

    Attributes
    ----------
    weight : Parameter, shape (d_src, d_model)
        ``W``, before smoothing.
    bias : Parameter, shape (d_src,)
    smoother : sparse CSR tensor, shape (d_src, d_src) | None
        The fixed ``K`` (None for no smoothing or a mixture).
    widths : tuple of float | None
        The mixture's widths.
    mixture_logits : Parameter, shape (n_widths,)
        ``a`` (mixture only; starts at 0, equal weights).
    """

    def __init__(self, d_model, d_src, *, init_scale=0.01, smooth=False, widths=None):
        super().__init__()
        linear = nn.Linear(d_model, d_src)  # PyTorch's default draw (same RNG use as before)
        with torch.no_grad():  # small start: an implicit minimum-norm prior (see EncoderConfig)
            self.weight = nn.Parameter(linear.weight.detach() * init_scale)
            self.bias = nn.Parameter(torch.zeros(d_src))
        self.register_buffer("smoother", None)
        self.widths = None if widths is None else _check_widths(widths)
        if smooth and self.widths is not None:
            raise ValueError("A source layer smooths with one fixed smoother (smooth=True) or a "
                             "mixture (widths=...), not both.")
        if smooth or self.widths is not None:
            import scipy.sparse

            from .heads import _to_sparse_csr

            eye = _to_sparse_csr(scipy.sparse.eye_array(d_src, format="csr"))
        if smooth:
            self.smoother = eye
        if self.widths is not None:
            self.mixture_logits = nn.Parameter(torch.zeros(len(self.widths)))
            for k, width in enumerate(self.widths):
                if width > 0:
                    self.register_buffer(f"mixture_smoother_{k}", eye.clone())

    @property
    def d_src(self) -> int:
        return self.weight.shape[0]

    def set_smoother(self, matrix, *, width=None):
        """Set ``K`` (or, with ``width``, the mixture's smoother of that width).

        Parameters
        ----------
        matrix : scipy sparse matrix | array, shape (d_src, d_src)
        width : float | None
            For a mixture layer: which of :attr:`widths` (> 0) ``matrix`` smooths at.
        """
        import scipy.sparse

        from .heads import _to_sparse_csr

        if self.widths is not None:
            nonzero = [w for w in self.widths if w > 0]
            if width is None or float(width) not in nonzero:
                raise ValueError(f"This source layer mixes smoothers of widths {list(self.widths)} "
                                 f"mm: pass width= one of the non-zero ones {nonzero}, got "
                                 f"width={width!r}.")
            name = f"mixture_smoother_{self.widths.index(float(width))}"
        elif self.smoother is None:
            raise ValueError("This source layer was built without smoothing; build the encoder "
                             "with source_fwhm=<mm> to give it a smoother.")
        elif width is not None:
            raise ValueError(f"'width' is for a mixture source layer (source_prior='mixture'); "
                             f"this one has one fixed smoother. Got width={width!r}: drop it.")
        else:
            name = "smoother"
        mat = scipy.sparse.csr_array(matrix, dtype=np.float32)
        if mat.shape != (self.d_src, self.d_src):
            raise ValueError(f"'matrix' must be ({self.d_src}, {self.d_src}) (d_src x d_src), "
                             f"got {mat.shape}.")
        setattr(self, name, _to_sparse_csr(mat).to(self.weight.device))

    def mixture_weights(self) -> np.ndarray | None:
        """``softmax(a)``, array of shape (n_widths,) in the order of :attr:`widths`; None
        for a layer without a mixture."""
        if self.widths is None:
            return None
        with torch.no_grad():
            return torch.softmax(self.mixture_logits.detach().double(), 0).cpu().numpy()

    def _mixture_structure(self):
        """The mixture's smoothers on one sparsity pattern, built once per set of buffers.

        Returns ``(crow, col, crow_t, col_t, perm, values)``: the CSR pattern (the union of
        the widths' patterns) and that of its transpose (``perm`` maps the pattern's values
        to the transpose's), and ``values`` (n_widths, nnz), each width's smoother on the
        pattern. Rebuilt when a smoother is replaced or moved (new buffer objects).
        """
        bufs = tuple(getattr(self, f"mixture_smoother_{k}") if w > 0 else None
                     for k, w in enumerate(self.widths))
        cache = getattr(self, "_mixture_cache", None)
        if cache is not None and all(a is b for a, b in zip(cache[0], bufs)):
            return cache[1]
        n = self.d_src
        lins, datas = [], []
        for buf in bufs:
            if buf is None:  # width 0: the identity
                rows, cols, data = np.arange(n), np.arange(n), np.ones(n, np.float32)
            else:
                crow = buf.crow_indices().cpu().numpy()
                rows = np.repeat(np.arange(n), np.diff(crow))
                cols = buf.col_indices().cpu().numpy()
                data = buf.values().detach().cpu().numpy()
            lins.append(rows.astype(np.int64) * n + cols)
            datas.append(data)
        lin = np.unique(np.concatenate(lins))  # sorted: row-major, columns ascending (CSR)
        rows, cols = lin // n, lin % n
        values = np.zeros((len(bufs), lin.size), np.float32)
        for k, (lk, dk) in enumerate(zip(lins, datas)):
            values[k, np.searchsorted(lin, lk)] = dk
        perm = np.argsort(cols * n + rows, kind="stable")  # the transpose's CSR order

        def crow_of(r):
            return np.searchsorted(r, np.arange(n + 1))

        dev = self.weight.device
        as_t = lambda a, dt: torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=dev)  # noqa: E731
        struct = (as_t(crow_of(rows), torch.int64), as_t(cols, torch.int64),
                  as_t(crow_of(cols[perm]), torch.int64), as_t(rows[perm], torch.int64),
                  as_t(perm, torch.int64), as_t(values, torch.float32))
        with warnings.catch_warnings():  # check it once here, not at every step
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            for c, i in ((struct[0], struct[1]), (struct[2], struct[3])):
                torch.sparse_csr_tensor(c, i, struct[5][0], size=(n, n), check_invariants=True)
        self._mixture_cache = (bufs, struct)
        return struct

    def effective(self):
        """``(K W, K b)``: the weight (d_src, d_model) and bias (d_src,) acting on ``z``."""
        if self.widths is not None:
            wb = torch.cat([self.weight, self.bias[:, None]], 1)  # (S, D + 1)
            p = torch.softmax(self.mixture_logits, 0)  # (n_widths,)
            crow, col, crow_t, col_t, perm, values = self._mixture_structure()
            kwb = _MixtureProduct.apply(p.to(values.dtype), wb.to(values.dtype), crow, col,
                                        crow_t, col_t, perm, values).to(wb.dtype)
            return kwb[:, :-1], kwb[:, -1]
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
        out = (f"d_model={self.weight.shape[1]}, d_src={self.d_src}, "
               f"smoothed={self.smoother is not None}")
        if self.widths is not None:
            out += f", mixture_widths={list(self.widths)}"
        return out


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
        source_prior="fixed",
        source_widths=None,
        source_mixture_loss="validation",
        source_mixture_lr=0.05,
        source_mixture_every=4,
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
            source_prior=source_prior,
            source_widths=source_widths,
            source_mixture_loss=source_mixture_loss,
            source_mixture_lr=source_mixture_lr,
            source_mixture_every=source_mixture_every,
        )
        self.input_layer = nn.Linear(cfg.d_stim, cfg.d_model)
        self.layers = nn.ModuleList(
            EncoderLayer(
                cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout, cfg.window, cfg.block_size
            )
            for _ in range(cfg.n_layers)
        )
        self.source_layer = SourceLayer(cfg.d_model, cfg.d_src, init_scale=cfg.source_init_scale,
                                        smooth=cfg.source_fwhm is not None,
                                        widths=cfg.source_widths)

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

"""Broadband spectral calibration (§II-E): the learnable frequency filter (Eq. 7) and band loss (Eq. 8).

:data:`BANDS` (from :mod:`neurofuse.physics.bands`, the one definition) names the five bands.

Paper ↔ code
------------
- Eq. 7: ``Ŷ = IFFT(FFT(Ŷ_raw) ⊙ W_freq)``. Here the real FFT over time (``rfft``/``irfft``,
  so the output stays real), one complex weight per frequency bin shared by all channels,
  initialised to ``1 + 0j`` so the module is the identity at initialisation. The paper does not
  say whether ``W_freq`` is per channel; ``per_channel=True`` gives one per (channel, bin).
- Eq. 8: ``L_spec = Σ_b mean_{c,t} (Ŷ_b − Y_b)²`` (also averaged over the batch), where the
  band signals come from zero-phase FIR band-pass filters designed by
  :func:`mne.filter.create_filter` (firwin, MNE's default transition bands) and applied
  exactly as :func:`mne.filter.filter_data` does (MNE's "reflect_limited" edge padding,
  zero-phase shift), but in torch so gradients flow. A band whose upper edge reaches Nyquist
  becomes a high-pass; one above Nyquist is left out (both are logged).
- Edge padding (``pad``): MNE's default ``"reflect_limited"``, or ``"constant"`` (zeros,
  MNE's ``pad="constant"``). The paper does not say how its bands are filtered. On short
  epochs the choice decides what the loss weighs: the δ filter (1651 taps at 250 Hz) is
  longer than a 1-s epoch, and ``"reflect_limited"`` pads with ``2 x[0] − x[k]``, so the
  band signals are mostly the padding, made from the first and last samples. For 250-sample
  epochs the diagonal of ``Q`` (below) is 81 at those two samples and 0.96 in between: 40 %
  of the loss's weight on 2 of 250 samples. With ``"constant"`` it is 0.74 and 0.96 (0.6 %);
  either way the filters' responses are MNE's (docs/eeg2meg.md, "The band loss's edges").
- The loss itself does not filter: every band filter (padding, convolution, crop) is a fixed
  linear map ``M_b`` of an epoch's ``T`` samples, so ``Σ_b ||M_b d||² = dᵀ Q d`` with ``Q =
  Σ_b M_bᵀ M_b``, computed once per epoch length and factored as ``Q = L Lᵀ``
  (:meth:`BandFilterBank.loss_factor`); :func:`band_loss` is ``||d L||²`` over ``B·C·T``,
  one ``T × T`` product per row instead of six long FFTs (the same number to rounding, and
  ~50 times faster on 306-channel, 250-sample epochs, where the δ filter has 1651 taps).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.fft import next_fast_len
from torch import nn

from ..._checks import _check_int, _check_option, _check_positive, _check_type
from ..._logging import logger
from ...physics.bands import BANDS  # noqa: F401 (re-exported)
from .config import BAND_PADS

__all__ = ["BANDS", "BAND_PADS", "BandFilterBank", "SpectralFilter", "band_loss"]


class SpectralFilter(nn.Module):
    """Eq. 7: a learnable complex gain per frequency bin (identity at initialisation).

    Parameters
    ----------
    n_times : int
        Samples of the signals it filters.
    n_channels : int | None
        With ``per_channel=True``, the channels (one weight per channel and bin).
    per_channel : bool
        One weight per (channel, bin) instead of per bin.
    """

    def __init__(self, n_times: int, n_channels: int | None = None, *, per_channel=False):
        super().__init__()
        self.n_times = _check_int("n_times", n_times)
        n_freqs = n_times // 2 + 1
        if per_channel:
            shape = (_check_int("n_channels", n_channels), n_freqs)
        else:
            shape = (n_freqs,)
        weight = torch.zeros(*shape, 2)
        weight[..., 0] = 1.0  # 1 + 0j
        self.weight = nn.Parameter(weight)  # (..., n_freqs, 2): real and imaginary parts

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """Filter ``y`` over its last axis.

        Parameters
        ----------
        y : torch.Tensor, shape (..., C, n_times)

        Returns
        -------
        out : torch.Tensor, shape (..., C, n_times)
        """
        if y.shape[-1] != self.n_times:
            raise ValueError(f"'y' must have {self.n_times} samples on its last axis, got "
                             f"shape {tuple(y.shape)}.")
        real = y.dtype if y.dtype in (torch.float32, torch.float64) else torch.float32
        w = torch.view_as_complex(self.weight.to(real).contiguous())
        spec = torch.fft.rfft(y.to(real), dim=-1) * w
        return torch.fft.irfft(spec, n=self.n_times, dim=-1).to(y.dtype)


def _pad(x: torch.Tensor, n_edge: int, pad: str = "reflect_limited") -> torch.Tensor:
    """mne.cuda._smart_pad of the last axis by ``n_edge`` on each side, in torch
    (``pad``: one of :data:`BAND_PADS`)."""
    if n_edge == 0:
        return x
    if pad == "constant":
        zeros = x.new_zeros(*x.shape[:-1], n_edge)
        return torch.cat([zeros, x, zeros], dim=-1)
    n = x.shape[-1]
    zeros = x.new_zeros(*x.shape[:-1], max(n_edge - n + 1, 0))
    left = 2 * x[..., :1] - x[..., 1:n_edge + 1].flip(-1)
    right = 2 * x[..., -1:] - x[..., max(n - n_edge - 1, 0):n - 1].flip(-1)
    return torch.cat([zeros, left, x, right, zeros], dim=-1)


class BandFilterBank(nn.Module):
    """Zero-phase FIR band-pass filters matching :func:`mne.filter.filter_data`, in torch.

    Parameters
    ----------
    sfreq : float
        Sampling rate in Hz.
    bands : dict of str to (float, float)
        Band edges in Hz (default :data:`BANDS`).
    pad : 'reflect_limited' | 'constant'
        Edge padding, as :func:`mne.filter.filter_data`'s ``pad`` (:data:`BAND_PADS`; see
        the module docstring for what it changes on short epochs).
    """

    def __init__(self, sfreq: float, bands: dict | None = None, *, pad="reflect_limited"):
        super().__init__()
        import mne

        self.sfreq = _check_positive("sfreq", sfreq)
        _check_type("pad", pad, str)
        self.pad = _check_option("pad", pad, BAND_PADS)
        bands = dict(BANDS if bands is None else bands)
        nyquist = self.sfreq / 2
        kernels, names = [], []
        for name, (lo, hi) in bands.items():
            if lo >= nyquist:
                logger.info("Band %r (%g–%g Hz) lies above Nyquist (%g Hz): left out.",
                            name, lo, hi, nyquist)
                continue
            if hi >= nyquist:
                logger.info("Band %r: %g Hz reaches Nyquist (%g Hz); using a %g Hz high-pass.",
                            name, hi, nyquist, lo)
                hi = None
            h = mne.filter.create_filter(None, self.sfreq, lo, hi, fir_design="firwin",
                                         verbose=False)
            kernels.append(np.asarray(h, dtype=np.float64))
            names.append(name)
        self.names = tuple(names)
        self.lengths = tuple(len(h) for h in kernels)
        longest = max(self.lengths)
        bank = np.zeros((len(kernels), longest))
        for i, h in enumerate(kernels):
            bank[i, :len(h)] = h  # left-aligned; each band is shifted by its own length below
        self.register_buffer("kernels", torch.from_numpy(bank), persistent=False)
        self._factors = {}  # (n_times, dtype, device) -> L of loss_factor

    def loss_factor(self, n_times: int, dtype=torch.float32, device=None) -> torch.Tensor:
        """``L`` with ``L Lᵀ = Σ_b M_bᵀ M_b``, ``M_b`` the band filters as ``T × T`` matrices.

        For a signal ``d`` of ``n_times`` samples, ``||d L||² = Σ_b ||band_b(d)||²`` (as
        :meth:`forward` filters it). Computed in float64 once per length, dtype and device.

        Parameters
        ----------
        n_times : int
            Samples ``T``.
        dtype : torch.dtype
        device : torch.device | str | None

        Returns
        -------
        factor : torch.Tensor, shape (n_times, n_times)
        """
        key = (int(n_times), dtype, str(device))
        if key not in self._factors:
            eye = torch.eye(int(n_times), dtype=torch.float64, device=self.kernels.device)
            # forward(eye)[b, i] = M_b e_i, so forward(eye)[b] = M_bᵀ
            mt = self.forward(eye)  # (n_bands, T, T)
            q = torch.einsum("bij,bkj->ik", mt, mt)  # Σ_b M_bᵀ M_b
            w, v = torch.linalg.eigh((q + q.T) / 2)
            factor = v * w.clamp_min(0).sqrt()  # (T, T): factor factorᵀ = q
            self._factors[key] = factor.to(dtype=dtype, device=device)
        return self._factors[key]

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """Split ``y`` into bands.

        Parameters
        ----------
        y : torch.Tensor, shape (..., n_times)

        Returns
        -------
        bands : torch.Tensor, shape (n_bands, ..., n_times)
            In the order of :attr:`names` (float32 for half-precision input).
        """
        if y.dtype not in (torch.float32, torch.float64):
            y = y.float()  # FFTs of half precision are not supported everywhere
        n = y.shape[-1]
        # One padding serves every band: reflect_limited padding of the longest edge starts
        # with the shorter ones' samples (zero padding is zeros throughout). A band of length
        # L reads (L − 1) / 2 samples beyond the signal: within its own edge min(L, n) − 1
        # when L <= n; when L > n its edge is n − 1, as the longest one's, and beyond it MNE
        # and this padding both hold zeros.
        n_edge = max(min(max(self.lengths), n) - 1, 0)
        x = _pad(y, n_edge, self.pad)  # (..., n + 2 n_edge)
        # Circular convolution of this length equals the linear one on the kept samples: the
        # wrap-around only brings in the zeros beyond the padded signal.
        longest = max(self.lengths)
        n_fft = next_fast_len(max(n + n_edge + (longest - 1) // 2, longest), real=True)
        spectrum = torch.fft.rfft(x, n=n_fft)
        kernels = torch.fft.rfft(self.kernels.to(y.dtype), n=n_fft)  # (n_bands, n_freqs)
        out = []
        for i, length in enumerate(self.lengths):
            full = torch.fft.irfft(spectrum * kernels[i], n=n_fft)  # (..., n_fft)
            shift = (length - 1) // 2 + n_edge
            out.append(full[..., shift:shift + n])
        return torch.stack(out)


def band_loss(y_hat: torch.Tensor, y: torch.Tensor, filter_bank: BandFilterBank) -> torch.Tensor:
    """Eq. 8: the sum over bands of the mean squared error of the band-filtered signals.

    Parameters
    ----------
    y_hat, y : torch.Tensor, shape (B, C_m, T)
        Synthesised and real MEG.
    filter_bank : BandFilterBank
        The band filters.

    Returns
    -------
    loss : torch.Tensor, scalar
    """
    diff = y_hat - y  # filtering is linear: (Ŷ − Y)_b = Ŷ_b − Y_b
    if diff.dtype not in (torch.float32, torch.float64):
        diff = diff.float()
    factor = filter_bank.loss_factor(diff.shape[-1], diff.dtype, diff.device)  # (T, T)
    # Σ_b mean (M_b d)² = dᵀ (Σ_b M_bᵀ M_b) d / (B·C·T) = ||d L||² / (B·C·T)
    return (diff @ factor).pow(2).sum() / diff.numel()

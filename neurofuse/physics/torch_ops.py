"""Torch counterparts of the numpy physics, used inside models (differentiable).

* :func:`hilbert_transform` / :func:`analytic_envelope`: the FFT Hilbert transform and
  envelope ``|x + jH(x)|``, the same maths as :func:`neurofuse.physics.envelope.envelope`.
* :class:`DoubleGammaHRF`: a learnable SPM double-gamma HRF sampled every TR; at its initial
  parameters its kernel is :func:`neurofuse.physics.hrf.spm_hrf` at ``sfreq = 1 / tr``.

This module imports torch (an optional extra); :mod:`neurofuse.physics` itself does not.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._checks import _check_positive

__all__ = ["DoubleGammaHRF", "analytic_envelope", "hilbert_transform"]


def hilbert_transform(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Discrete Hilbert transform ``H(x)`` of a real signal along ``dim``, by FFT.

    ``x + jH(x)`` is the analytic signal of :func:`scipy.signal.hilbert` (whose imaginary
    part this is): the spectrum is multiplied by ``-j`` at positive frequencies, ``+j`` at
    negative ones and 0 at DC and (even lengths) Nyquist. Computed with a real FFT and a real
    inverse FFT (half the work of the complex inverse FFT of the analytic signal). ``H`` is
    linear, kills constants and is antisymmetric (its adjoint is ``-H``).

    Parameters
    ----------
    x : tensor, shape (..., n, ...)
        Real signal.
    dim : int
        Time dimension.

    Returns
    -------
    hx : tensor, same shape and dtype as ``x``
    """
    n = x.shape[dim]
    spec = torch.fft.rfft(x, dim=dim)  # (..., n // 2 + 1, ...)
    mult = torch.full((spec.shape[dim],), -1j, dtype=spec.dtype, device=x.device)
    mult[0] = 0
    if n % 2 == 0:
        mult[-1] = 0
    shape = [1] * x.ndim
    shape[dim] = -1
    return torch.fft.irfft(spec * mult.view(shape), n=n, dim=dim)


def analytic_envelope(x: torch.Tensor, dim: int = -1, eps: float = 0.0) -> torch.Tensor:
    """Envelope ``|x + jH(x)|`` of a real signal along ``dim``, by FFT (exact like scipy).

    Parameters
    ----------
    x : tensor, shape (..., n, ...)
        Real signal.
    dim : int
        Time dimension.
    eps : float
        Added under the square root so the gradient is finite where the envelope is 0.

    Returns
    -------
    env : tensor, same shape as ``x``
    """
    hx = hilbert_transform(x, dim=dim)
    return torch.sqrt(x * x + hx * hx + eps)


class DoubleGammaHRF(nn.Module):
    """Learnable SPM-style double-gamma haemodynamic response, sampled every TR.

    ``h(t) = g(t; peak/d1, d1) - ratio * g(t; undershoot/d2, d2)`` with ``g`` the gamma pdf
    (shape, scale), normalised to unit sum; initialised at SPM's canonical shape (peak 6 s,
    undershoot 16 s, ratio 1/6, dispersions 1). Positive parameters are learned in log space.

    Parameters
    ----------
    tr : float
        Sampling interval of the kernel (s).
    length : float
        Kernel length (s); ``floor(length / tr) + 1`` taps.
    peak, undershoot, ratio, dispersion, undershoot_dispersion : float
        Initial values.
    learnable : bool
        Whether the parameters receive gradients.
    """

    def __init__(self, tr=2.0, *, length=32.0, peak=6.0, undershoot=16.0, ratio=1 / 6,
                 dispersion=1.0, undershoot_dispersion=1.0, learnable=True):
        super().__init__()
        self.tr = _check_positive("tr", tr)
        self.length = _check_positive("length", length)
        init = {"peak": peak, "undershoot": undershoot, "ratio": ratio, "dispersion": dispersion,
                "undershoot_dispersion": undershoot_dispersion}
        for name, val in init.items():
            _check_positive(name, val)
        self.log_params = nn.Parameter(
            torch.log(torch.tensor([init[k] for k in init], dtype=torch.float32)),
            requires_grad=learnable,
        )
        self.n_taps = math.floor(self.length / self.tr + 1e-9) + 1

    @property
    def params(self) -> dict:
        """Current parameter values (floats)."""
        vals = self.log_params.detach().exp().tolist()
        return dict(zip(("peak", "undershoot", "ratio", "dispersion", "undershoot_dispersion"), vals))

    def kernel(self) -> torch.Tensor:
        """The kernel, shape (n_taps,), unit sum."""
        peak, under, ratio, d1, d2 = self.log_params.exp()
        t = torch.arange(self.n_taps, dtype=self.log_params.dtype, device=self.log_params.device)
        t = t * self.tr

        def gamma_pdf(shape, scale):
            # t = 0 gives 0 for shape > 1 (the canonical case) and is masked otherwise.
            safe = torch.where(t > 0, t, torch.ones_like(t))
            logp = (shape - 1) * torch.log(safe) - safe / scale - torch.lgamma(shape) - shape * torch.log(scale)
            return torch.where(t > 0, torch.exp(logp), torch.zeros_like(t))

        h = gamma_pdf(peak / d1, d1) - ratio * gamma_pdf(under / d2, d2)
        return h / h.sum()

    def toeplitz(self, n_trs: int) -> torch.Tensor:
        """The causal convolution as a matrix: ``K[k, j] = h[k - j]`` (0 outside the taps).

        Returns
        -------
        K : tensor, shape (n_trs, n_trs)
            Lower triangular (banded); ``bold = K @ p`` along the TR axis.
        """
        h = self.kernel()
        lag = torch.arange(n_trs, device=h.device)
        lag = lag[:, None] - lag[None, :]  # (n_trs, n_trs): k - j
        inside = (lag >= 0) & (lag < self.n_taps)
        return torch.where(inside, h[lag.clamp(0, self.n_taps - 1)], h.new_zeros(()))

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        """Causal convolution along TRs.

        Parameters
        ----------
        p : tensor, shape (B, n_trs, n_sources)

        Returns
        -------
        bold : tensor, shape (B, n_trs, n_sources)
            ``bold[:, k] = sum_j h[j] p[:, k - j]`` (zero before the first TR).
        """
        return self.toeplitz(p.shape[1]).to(p.dtype) @ p  # (B, n_trs, n_sources)

    def convolve_last(self, p: torch.Tensor) -> torch.Tensor:
        """The same convolution along the last axis: p (..., n_trs) -> (..., n_trs)."""
        return p @ self.toeplitz(p.shape[-1]).to(p.dtype).T

"""Fixed-physics heads that turn fsaverage source activity into each subject's MEG and fMRI.

* :class:`MEGHead`: ``m = L_i M_i s``. ``L_i M_i`` is precomputed once as a dense
  (n_channels, n_sources_fsaverage) gain, so no per-subject source tensor is ever formed.
* :class:`FMRIHead`: ``x = M_i s`` (sparse), envelope ``|x + jH(x)|`` (Hilbert transform by
  FFT), averaged over each TR, convolved causally with a learnable double-gamma HRF.

Both are ``nn.Module`` s whose physics lives in buffers (they move with ``.to()``) and are
never trained; only the HRF parameters are learnable.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import nn

from .._checks import _check_positive


def _to_sparse_csr(matrix, dtype=torch.float32) -> torch.Tensor:
    import scipy.sparse

    m = scipy.sparse.csr_array(matrix)
    m.sort_indices()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.as_tensor(m.indptr, dtype=torch.int64),
            torch.as_tensor(m.indices, dtype=torch.int64),
            torch.as_tensor(m.data, dtype=dtype),
            size=m.shape,
            check_invariants=True,
        )


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
    n = x.shape[dim]
    # One-sided spectrum of the real signal (half the work of a complex FFT), doubled except
    # at DC and Nyquist; the inverse complex FFT of it zero-padded to n is the analytic signal.
    spec = torch.fft.rfft(x, dim=dim)  # (..., n // 2 + 1, ...)
    h = torch.full((spec.shape[dim],), 2.0, dtype=x.dtype, device=x.device)
    h[0] = 1.0
    if n % 2 == 0:
        h[-1] = 1.0
    shape = [1] * x.ndim
    shape[dim] = -1
    z = torch.fft.ifft(spec * h.view(shape), n=n, dim=dim)
    return torch.sqrt(z.real**2 + z.imag**2 + eps)


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
        self.n_taps = int(math.floor(self.length / self.tr + 1e-9)) + 1

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
        B, n_tr, S = p.shape
        h = self.kernel().to(p.dtype)
        x = p.permute(0, 2, 1).reshape(B * S, 1, n_tr)  # (B*S, 1, n_tr)
        x = nn.functional.pad(x, (self.n_taps - 1, 0))
        y = nn.functional.conv1d(x, h.flip(0).view(1, 1, -1))  # (B*S, 1, n_tr)
        return y.view(B, S, n_tr).permute(0, 2, 1)


class MEGHead(nn.Module):
    """``m_hat = L M s`` with the gain ``G = L M`` precomputed (dense, not learnable).

    Parameters
    ----------
    gain : array, shape (n_channels, n_sources_fsaverage)
        ``L @ M``, already multiplied by ``scale`` (use :meth:`from_forward`).
    scale : float
        Factor applied to the physical gain so predictions are O(1) numbers (the correlation
        loss ignores scale); divide predictions by it to get tesla (T/m for gradiometers)
        per unit of source activity.
    """

    def __init__(self, gain, *, scale=1.0, morph=None):
        super().__init__()
        self.scale = float(scale)
        self.register_buffer("gain", torch.as_tensor(np.asarray(gain), dtype=torch.float32))
        # Kept (not used in forward) so source estimates can be morphed to this subject.
        self.register_buffer("morph", None if morph is None else _to_sparse_csr(morph))

    @classmethod
    def from_forward(cls, leadfield, morph, *, scale=None) -> MEGHead:
        """Build from a lead field (n_channels, n_sources_subject) and a morph
        (n_sources_subject, n_sources_fsaverage); ``scale=None`` normalises the gain to unit RMS.
        """
        import scipy.sparse

        leadfield = np.asarray(leadfield, np.float64)
        morph = scipy.sparse.csr_array(morph)
        from ..anatomy.forward import check_morph

        check_morph(morph, leadfield.shape[1], morph.shape[1])
        gain = np.asarray((morph.T @ leadfield.T).T)  # (n_channels, n_src_fs)
        if scale is None:
            scale = 1.0 / float(np.sqrt(np.mean(gain**2)))
        return cls(gain * scale, scale=scale, morph=morph)

    @property
    def n_channels(self) -> int:
        return self.gain.shape[0]

    def forward(self, sources: torch.Tensor) -> torch.Tensor:
        """sources (B, T, n_src_fs) -> MEG (B, T, n_channels), in units of ``1/scale`` T."""
        return sources @ self.gain.T.to(sources.dtype)


class FMRIHead(nn.Module):
    """Source-level BOLD: HRF * TR-average( envelope( M s ) ).

    Parameters
    ----------
    morph : sparse, shape (n_sources_subject, n_sources_fsaverage)
    sfreq : float
        Sampling rate of the sources (Hz).
    tr : float
        fMRI repetition time (s); ``tr * sfreq`` must be whole.
    hrf_kwargs : dict | None
        Initial values for :class:`DoubleGammaHRF`.
    """

    def __init__(self, morph, *, sfreq=50.0, tr=2.0, hrf_kwargs=None):
        super().__init__()
        self.sfreq = _check_positive("sfreq", sfreq)
        self.tr = _check_positive("tr", tr)
        n = self.tr * self.sfreq
        if abs(n - round(n)) > 1e-9:
            raise ValueError(f"tr * sfreq must be a whole number of samples, got {n:g}.")
        self.samples_per_tr = int(round(n))
        self.register_buffer("morph", _to_sparse_csr(morph))
        self.hrf = DoubleGammaHRF(self.tr, **(hrf_kwargs or {}))

    @property
    def n_sources(self) -> int:
        return self.morph.shape[0]

    def forward(self, sources: torch.Tensor) -> torch.Tensor:
        """sources (B, T, n_src_fs) -> BOLD (B, T // samples_per_tr, n_sources_subject).

        ``T`` must be a whole number of TRs.
        """
        B, T, S = sources.shape
        if T % self.samples_per_tr:
            raise ValueError(f"The piece length ({T} samples) must be a whole number of TRs "
                             f"({self.samples_per_tr} samples at {self.sfreq:g} Hz).")
        flat = sources.reshape(B * T, S).T  # (S, B*T)
        # Keep time as the last, contiguous axis: the FFTs of the envelope run ~2x faster than
        # along a strided axis, and the morph product already comes out in this layout.
        x = (self.morph.to(sources.dtype) @ flat).view(-1, B, T)  # (n_sub, B, T)
        return self.bold(x)

    def bold(self, x: torch.Tensor) -> torch.Tensor:
        """BOLD of subject-space source activity (any subset of this subject's sources).

        Parameters
        ----------
        x : tensor, shape (n_rows, B, T)
            Morphed source activity, time last; ``T`` a whole number of TRs.

        Returns
        -------
        bold : tensor, shape (B, T // samples_per_tr, n_rows)
        """
        n_rows, B, T = x.shape
        env = analytic_envelope(x, dim=-1, eps=1e-12)
        p = env.view(n_rows, B, T // self.samples_per_tr, self.samples_per_tr).mean(-1)  # (n_rows, B, n_tr)
        return self.hrf(p.permute(1, 2, 0))  # (B, n_tr, n_rows)

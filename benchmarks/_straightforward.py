"""A straightforward implementation of the joint model, the reference of bench_joint_model.py.

Same parameters and the same math as :class:`neurofuse.systems.joint.model.JointModel`, written the
obvious way:

- attention: ``impl="dense"`` (full (T, T) masked scores per head and batch item);
- morphs: dense (n_sources_subject, n_sources_fsaverage) float32 matrices;
- MEG head: ``L @ (M @ s)``, forming the full per-subject source tensor (B, T, n_sub);
- fMRI head: the same envelope -> TR mean -> HRF as :class:`~neurofuse.systems.joint.heads.FMRIHead`
  but with the dense morph and no activation checkpointing; the envelope is the textbook
  full-complex-FFT Hilbert transform (a frozen copy, see :func:`analytic_envelope`), the HRF a
  copy of the model's.

Build it from a ``JointModel`` with :func:`from_joint_model` so that the weights (encoder,
HRFs) are copies of the model's and the outputs can be compared.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from neurofuse.systems.joint.model import ModelOutput


def analytic_envelope(x, dim=-1, eps=0.0):
    """``|x + jH(x)|`` the scipy.signal.hilbert way: full complex FFT, one-sided weights, iFFT.

    A frozen copy of the reference math (so optimising the package's envelope does not change
    the baseline it is compared with).
    """
    n = x.shape[dim]
    spec = torch.fft.fft(x, dim=dim)  # complex, same shape as x
    h = torch.zeros(n, dtype=x.dtype, device=x.device)
    h[0] = 1.0
    if n % 2 == 0:
        h[n // 2] = 1.0
        h[1 : n // 2] = 2.0
    else:
        h[1 : (n + 1) // 2] = 2.0
    shape = [1] * x.ndim
    shape[dim] = n
    z = torch.fft.ifft(spec * h.view(shape), dim=dim)  # analytic signal
    return torch.sqrt(z.real**2 + z.imag**2 + eps)


class DenseMEGHead(nn.Module):
    """``m = L (M s)`` with a dense morph; ``leadfield`` already carries the head's scale."""

    def __init__(self, leadfield, morph_dense):
        super().__init__()
        self.register_buffer("leadfield", torch.as_tensor(leadfield, dtype=torch.float32))
        self.register_buffer("morph", torch.as_tensor(morph_dense, dtype=torch.float32))

    def forward(self, sources):
        x = sources @ self.morph.T  # (B, T, n_sub): the full per-subject source tensor
        return x @ self.leadfield.T  # (B, T, n_channels)


class DenseFMRIHead(nn.Module):
    """HRF * TR-mean(envelope(M s)) with a dense morph (same math as ``FMRIHead``)."""

    def __init__(self, morph_dense, hrf, samples_per_tr):
        super().__init__()
        self.register_buffer("morph", torch.as_tensor(morph_dense, dtype=torch.float32))
        self.hrf = hrf
        self.samples_per_tr = int(samples_per_tr)

    def forward(self, sources):
        B, T, _ = sources.shape
        x = sources @ self.morph.T  # (B, T, n_sub)
        env = analytic_envelope(x, dim=1, eps=1e-12)  # (B, T, n_sub)
        p = env.reshape(B, T // self.samples_per_tr, self.samples_per_tr, -1).mean(2)
        return self.hrf(p)  # (B, n_tr, n_sub)


class StraightforwardJointModel(nn.Module):
    """Encoder (dense attention) + dense-morph heads; ``forward`` mirrors ``JointModel``'s."""

    def __init__(self, encoder, meg_heads, fmri_heads):
        super().__init__()
        self.encoder = encoder
        self.meg_heads = nn.ModuleDict(meg_heads)
        self.fmri_heads = nn.ModuleDict(fmri_heads)

    def forward(self, features, *, meg=(), fmri=(), impl="dense"):
        sources = self.encoder(features, impl=impl)  # (B, T, d_src)
        out = ModelOutput(sources)
        for sub in meg:
            out.meg[sub] = self.meg_heads[sub](sources)
        for sub in fmri:
            out.fmri[sub] = self.fmri_heads[sub](sources)
        return out


def _dense(morph):
    """Dense float32 copy of a scipy.sparse morph (no float64 intermediate)."""
    return morph.astype(np.float32).toarray()


def from_joint_model(model, leadfields, morphs):
    """Build the straightforward twin of a ``JointModel``.

    Parameters
    ----------
    model : JointModel
        Its encoder and HRFs are deep-copied (same values, independent parameters).
    leadfields : dict of str to array, shape (n_channels, n_sources_subject)
        The raw lead fields the MEG heads were built from (``MEGHead.from_forward``).
    morphs : dict of str to scipy.sparse, shape (n_sources_subject, n_sources_fsaverage)
    """
    encoder = copy.deepcopy(model.encoder)
    meg = {}
    for sub, head in model.meg_heads.items():
        lf = np.asarray(leadfields[sub], np.float64) * head.scale
        meg[sub] = DenseMEGHead(lf.astype(np.float32), _dense(morphs[sub]))
    fmri = {}
    for sub, head in model.fmri_heads.items():
        fmri[sub] = DenseFMRIHead(_dense(morphs[sub]),
                                  copy.deepcopy(head.hrf), head.samples_per_tr)
    return StraightforwardJointModel(encoder, meg, fmri)

"""Fixed-physics heads that turn fsaverage source activity into each subject's MEG and fMRI.

* :class:`MEGHead`: ``m = L_i M_i s``. ``L_i M_i`` is precomputed once as a dense
  (n_channels, n_sources_fsaverage) gain, so no per-subject source tensor is ever formed.
* :class:`EEGHead`: ``e = P L_i M_i s`` with ``P = I - 1 1^T / n`` the average reference
  (the MEG head's physics with the subject's three-layer-BEM EEG lead field).
* :class:`FMRIHead`: ``x = M_i s`` (sparse), envelope ``|x + jH(x)|`` (Hilbert transform by
  FFT), averaged over each TR, convolved causally with a learnable double-gamma HRF.

Both are ``nn.Module`` s whose physics lives in buffers (they move with ``.to()``) and are
never trained; only the HRF parameters are learnable.

How the fMRI heads are computed (:func:`envelope_tr_means`): the Hilbert transform acts
along time and the morph along sources, so they commute, ``H(M s) = M H(s)``; one Hilbert
transform of the fsaverage sources serves every subject. Each subject's rows are then
processed piece by piece in cache-sized row chunks (gather ``[M s | M H(s)]`` for a few rows,
envelope, TR mean) so that no (n_sources, B, T) per-subject tensor is ever stored; the
backward pass recomputes the chunk and scatters its gradient back through the morph. The
result is the same as the textbook order (morph, then FFT Hilbert transform, envelope, TR
mean) to float rounding.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..._checks import _check_positive
from ...physics.torch_ops import DoubleGammaHRF, analytic_envelope, hilbert_transform


def _to_sparse_csr(matrix, dtype=torch.float32) -> torch.Tensor:
    import scipy.sparse

    m = scipy.sparse.csr_array(matrix)
    if not m.has_sorted_indices:
        # Sort a copy: a CSR made from another (even with a dtype change) can share its index
        # array with it, and sorting in place would scramble the caller's matrix.
        m = m.copy()
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
        from ...anatomy.forward import check_morph

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


class EEGHead(MEGHead):
    """``e_hat = P L M s``: an average-referenced EEG head (dense gain, not learnable).

    ``P = I - 1 1^T / n_electrodes`` is the average reference, applied to the gain once, so
    every prediction has zero mean over electrodes at every sample, whether the stored lead
    field was referenced or not (``P`` is idempotent).

    Parameters
    ----------
    gain : array, shape (n_electrodes, n_sources_fsaverage)
        ``P L M`` already multiplied by ``scale`` (use :meth:`from_forward`).
    scale : float
        Factor applied to the physical gain; divide predictions by it to get volts per unit
        of source activity.
    morph : sparse, shape (n_sources_subject, n_sources_fsaverage) | None
    """

    @classmethod
    def from_forward(cls, leadfield, morph, *, scale=None) -> EEGHead:
        """Build from an EEG lead field (n_electrodes, n_sources_subject), referenced or not,
        and a morph (n_sources_subject, n_sources_fsaverage); ``scale=None`` normalises the
        referenced gain to unit RMS.
        """
        leadfield = np.asarray(leadfield, np.float64)
        if leadfield.ndim != 2 or leadfield.shape[0] < 2:
            raise ValueError("'leadfield' must be an EEG lead field of shape (n_electrodes >= 2, "
                             f"n_sources), got shape {leadfield.shape}.")
        return super().from_forward(average_reference(leadfield), morph, scale=scale)


def average_reference(leadfield):
    """``P L`` with ``P = I - 1 1^T / n``: each column minus its mean over electrodes.

    Parameters
    ----------
    leadfield : array, shape (n_electrodes, n_sources)

    Returns
    -------
    referenced : array, shape (n_electrodes, n_sources)
    """
    leadfield = np.asarray(leadfield, np.float64)
    return leadfield - leadfield.mean(axis=0, keepdims=True)


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

    #: Added under the square root of the envelope (finite gradient where it is 0).
    eps = 1e-12

    def __init__(self, morph, *, sfreq=50.0, tr=2.0, hrf_kwargs=None):
        super().__init__()
        self.sfreq = _check_positive("sfreq", sfreq)
        self.tr = _check_positive("tr", tr)
        n = self.tr * self.sfreq
        if abs(n - round(n)) > 1e-9:
            raise ValueError(f"tr * sfreq must be a whole number of samples, got {n:g}.")
        self.samples_per_tr = round(n)
        self.register_buffer("morph", _to_sparse_csr(morph))
        self.hrf = DoubleGammaHRF(self.tr, **(hrf_kwargs or {}))
        self._chunks = (None, {})  # (morph the cache was built from, {key: _MorphChunks})

    @property
    def n_sources(self) -> int:
        return self.morph.shape[0]

    def _check_length(self, n_times: int) -> None:
        if n_times % self.samples_per_tr:
            raise ValueError(f"The piece length ({n_times} samples) must be a whole number of TRs "
                             f"({self.samples_per_tr} samples at {self.sfreq:g} Hz).")

    def morph_chunks(self, rows: int, dtype=torch.float32) -> _MorphChunks:
        """The morph cut into chunks of ``rows`` rows (built once per morph buffer, cached)."""
        morph, cache = self._chunks
        if morph is not self.morph:  # new buffer (load, .to(), ...): rebuild
            cache = {}
            self._chunks = (self.morph, cache)
        if (rows, dtype) not in cache:
            cache[rows, dtype] = _MorphChunks(self.morph, rows, dtype)
        return cache[rows, dtype]

    def forward(self, sources: torch.Tensor) -> torch.Tensor:
        """sources (B, T, n_src_fs) -> BOLD (B, T // samples_per_tr, n_sources_subject).

        ``T`` must be a whole number of TRs.
        """
        self._check_length(sources.shape[1])
        s = sources.transpose(1, 2)  # (B, S, T)
        sh = torch.cat([s, hilbert_transform(s, dim=-1)], dim=2)  # (B, S, 2T), time last
        return fmri_bold([self], sh)[0]

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
        self._check_length(T)
        env = analytic_envelope(x, dim=-1, eps=self.eps)
        p = env.view(n_rows, B, T // self.samples_per_tr, self.samples_per_tr).mean(-1)
        return self.hrf.convolve_last(p).permute(1, 2, 0)  # (B, n_tr, n_rows)


# ----------------------------------------------------------------------------- fused fMRI path
#: Target size (floats) of the gathered ``[M s | M H(s)]`` rows of one chunk on CPU, so that
#: the chunk's envelope arithmetic stays in cache (2^19 was the fastest of 2^16..2^22 on the
#: paper-size benchmark, 8 morphs, batch 1, 2).
CHUNK_ELEMENTS = 2**19


def _chunk_rows(n_cols: int, device: torch.device) -> int:
    """Morph rows per chunk for gathered rows ``n_cols`` wide (a power of two; all on GPU)."""
    if device.type != "cpu":
        return 2**62  # one chunk per subject: GPU kernels want large work items
    rows = max(1, CHUNK_ELEMENTS // max(n_cols, 1))
    return 1 << (rows.bit_length() - 1)


class _MorphChunks:
    """A sparse morph as row chunks for :func:`torch.nn.functional.embedding_bag`.

    For each chunk of rows ``[r0, r1)``: the CSR entries (``cols``, re-based ``offsets``,
    ``weights``) to gather ``M[r0:r1] @ X``; and the transposed entries grouped by the
    distinct fsaverage sources ``uniq`` they touch (``t_rows``, ``t_offsets``, ``t_weights``)
    to scatter a chunk's gradient back, ``M[r0:r1].T @ G``, with one ``index_add_``.
    """

    def __init__(self, morph: torch.Tensor, rows: int, dtype=torch.float32):
        device = morph.device
        crow = morph.crow_indices().cpu().numpy()
        col = morph.col_indices().cpu().numpy()
        val = morph.values().detach().double().cpu().numpy()
        self.n_rows = morph.shape[0]
        self.chunks = []

        def tensor(a, dtype):
            return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)

        for r0 in range(0, self.n_rows, rows):
            r1 = min(r0 + rows, self.n_rows)
            a, b = int(crow[r0]), int(crow[r1])
            c, w = col[a:b], val[a:b]
            local = np.repeat(np.arange(r1 - r0), np.diff(crow[r0:r1 + 1]))  # row of entry
            order = np.argsort(c, kind="stable")
            uniq, first = np.unique(c[order], return_index=True)
            self.chunks.append((
                r0, r1,
                tensor(c, torch.int64), tensor(crow[r0:r1] - a, torch.int64), tensor(w, dtype),
                tensor(uniq, torch.int64), tensor(local[order], torch.int64),
                tensor(first, torch.int64), tensor(w[order], dtype),
            ))


def _gather(idx, offsets, weights, table):
    """Row ``i`` = sum over its entries of ``weights * table[idx]`` (CSR rows x dense)."""
    if idx.numel() == 0:
        return table.new_zeros(len(offsets), table.shape[1])
    return F.embedding_bag(idx, table, offsets, mode="sum", per_sample_weights=weights)


class _EnvelopeTRMean(torch.autograd.Function):
    """``p_i = TR-mean(sqrt((M_i s)^2 + (M_i H(s))^2 + eps))`` for several morphs at once.

    Input ``sh`` (B, n_src, 2T) holds ``[s_b | H(s_b)]`` for each piece ``b`` (each piece's
    table contiguous, time last). Outputs one (n_rows_i, B, n_trs) tensor per morph. Only
    ``sh`` is saved; the backward pass recomputes each chunk.
    """

    @staticmethod
    def forward(ctx, sh, chunkings, samples_per_tr, eps):
        B, _, T2 = sh.shape
        T = T2 // 2
        n_tr = T // samples_per_tr
        outs = [sh.new_empty(c.n_rows, B, n_tr) for c in chunkings]
        for b in range(B):
            table = sh[b].detach()  # (n_src, 2T), contiguous
            for chunking, p in zip(chunkings, outs):
                for r0, r1, cols, offsets, weights, *_ in chunking.chunks:
                    xy = _gather(cols, offsets, weights, table)  # (n, 2T): [M s | M H(s)]
                    x, y = xy[:, :T], xy[:, T:]
                    env = x * x  # (n, T)
                    env.addcmul_(y, y).add_(eps).sqrt_()
                    torch.mean(env.view(r1 - r0, n_tr, samples_per_tr), -1,
                               out=p[r0:r1, b])  # (n, n_tr)
        ctx.save_for_backward(sh)
        ctx.chunkings, ctx.spt, ctx.eps = chunkings, samples_per_tr, eps
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        (sh,) = ctx.saved_tensors
        spt, eps = ctx.spt, ctx.eps
        B, _, T2 = sh.shape
        T = T2 // 2
        n_tr = T // spt
        grads = [None if g is None else g / spt for g in grads]  # d mean / d sample
        grad = torch.zeros_like(sh)  # (B, n_src, 2T)
        for b in range(B):
            table = sh[b].detach()  # (n_src, 2T)
            grad_b = grad[b]
            for chunking, gp in zip(ctx.chunkings, grads):
                if gp is None:
                    continue
                for r0, r1, cols, offsets, weights, uniq, t_rows, t_offsets, t_weights in \
                        chunking.chunks:
                    n = r1 - r0
                    xy = _gather(cols, offsets, weights, table)  # (n, 2T)
                    x, y = xy[:, :T], xy[:, T:]
                    env = x * x
                    env.addcmul_(y, y).add_(eps).sqrt_()  # (n, T)
                    g = torch.div(gp[r0:r1, b, :, None], env.view(n, n_tr, spt))  # (n, n_tr, spt)
                    xy.view(n, 2, T).mul_(g.view(n, 1, T))  # d p / d [x | y] = g [x | y] / env
                    if len(uniq):
                        grad_b.index_add_(0, uniq, _gather(t_rows, t_offsets, t_weights, xy))
        return grad, None, None, None


def envelope_tr_means(heads, sh):
    """TR-averaged envelopes ``p`` of several fMRI heads from ``[s | H(s)]`` (fused, chunked).

    Parameters
    ----------
    heads : list of FMRIHead
        Heads with the same ``samples_per_tr``.
    sh : tensor, shape (B, n_sources_fsaverage, 2 * T)
        Per piece, the sources and their Hilbert transform along time, time last:
        ``sh[b, :, t] = s_b(t)`` and ``sh[b, :, T + t] = H(s_b)(t)``.

    Returns
    -------
    p : list of tensor, shape (n_sources_subject, B, T // samples_per_tr)
        ``mean over each TR of |M s + j M H(s)|``; float32 (float64 for float64 ``sh``).
    """
    spt = heads[0].samples_per_tr
    if any(h.samples_per_tr != spt for h in heads):
        raise ValueError("envelope_tr_means: all heads must share samples_per_tr.")
    heads[0]._check_length(sh.shape[2] // 2)
    rows = _chunk_rows(sh.shape[2], sh.device)
    dtype = torch.promote_types(sh.dtype, torch.float32)
    chunkings = [h.morph_chunks(rows, dtype) for h in heads]
    sh = sh.to(dtype).contiguous()
    return list(_EnvelopeTRMean.apply(sh, chunkings, spt, heads[0].eps))


def fmri_bold(heads, sh):
    """BOLD of several fMRI heads from ``[s | H(s)]`` (see :func:`envelope_tr_means`).

    Returns
    -------
    bold : list of tensor, shape (B, T // samples_per_tr, n_sources_subject)
        Views (time-major layout underneath).
    """
    ps = envelope_tr_means(heads, sh)
    return [h.hrf.convolve_last(p).permute(1, 2, 0) for h, p in zip(heads, ps)]

"""fMRI-weighted MNE (fMNE, Liu et al. 1998): the per-TR BOLD prior and its inverse."""

from __future__ import annotations

import math

import numpy as np

from ..._checks import _check_finite, _check_int, _check_ndim, _check_option, _check_positive
from ..._logging import logger, verbose
from ._common import (
    DEFAULT_FLOOR,
    NORMALIZATIONS,
    _check_data,
    _check_inverse,
    _check_lambda2,
    _check_to_fsaverage,
    _check_weights,
    _make_out,
)
from .classical import _prepare, _whitened_gain


def fmri_prior(bold, *, floor=DEFAULT_FLOOR, normalization="minmax") -> np.ndarray:
    """Per-TR diagonal source prior from BOLD: ``floor + (1 - floor) * normalised BOLD``.

    For TR ``k`` and source ``i`` with BOLD ``b[i, k]``:

    - ``'minmax'``: ``w[i, k] = (b[i, k] - min_j b[j, k]) / (max_j b[j, k] - min_j b[j, k])``
      (the default: defined for any units and sign, e.g. z-scored real BOLD);
    - ``'max'``: ``w[i, k] = max(b[i, k], 0) / max_j b[j, k]`` (keeps ratios of positive
      BOLD; negative BOLD counts as inactive);

    with ``w[:, k] = 1`` for a TR without contrast (all equal, or no positive BOLD under
    ``'max'``), and then ``p[i, k] = floor + (1 - floor) * w[i, k]``, in ``[floor, 1]``.

    Parameters
    ----------
    bold : array, shape (n_sources, n_trs)
        Source-level BOLD on the MEG subject's sources.
    floor : float
        Prior of the least active source, in (0, 1]. 0.1 (default) is Liu et al. (1998)'s
        ``nu_0``: fMRI-silent sources keep 10 % of the variance, so MEG activity the fMRI
        misses is damped, not forbidden. 1 makes the prior uniform (plain MNE).
    normalization : 'minmax' | 'max'

    Returns
    -------
    prior : array, shape (n_sources, n_trs), float64
    """
    floor = _check_positive("floor", floor)
    if floor > 1:
        raise ValueError(f"'floor' must be in (0, 1] (prior of the least active source "
                         f"relative to the most active), got {floor}.")
    _check_option("normalization", normalization, NORMALIZATIONS)
    bold = _check_ndim("bold", np.asarray(bold, dtype=np.float64), 2, "(n_sources, n_trs)")
    _check_finite("bold", bold)
    if normalization == "minmax":
        lo, hi = bold.min(axis=0), bold.max(axis=0)
        num, den = bold - lo, hi - lo
    else:
        num, den = np.maximum(bold, 0.0), bold.max(axis=0)
    flat = den <= 0
    w = num / np.where(flat, 1.0, den)[None, :]
    w[:, flat] = 1.0
    return floor + (1.0 - floor) * w


@verbose
def apply_fmne(data, inverse, bold, *, lambda2, sfreq, tr, floor=DEFAULT_FLOOR,
               normalization="minmax", bold_lag=0, to_fsaverage=None, out=None, verbose=None):
    """fMRI-weighted MNE with a time-varying prior: one kernel per TR (Liu et al. 1998).

    For the MEG samples ``t`` inside TR ``k`` (``k = floor(t / (sfreq * tr))``, the last
    partial TR using the last volume)::

        p_k   = fmri_prior(bold, floor, normalization)[:, k + bold_lag]    (in [floor, 1])
        R_k   = c_k · diag(r ⊙ p_k)
        s(t)  = R_k G~ᵀ (G~ R_k G~ᵀ + lambda2 · I)⁻¹ W y(t)

    where ``W`` is MNE's whitener (with SSP), ``G~ = W G`` the whitened gain, ``r`` the
    operator's source covariance (MNE's depth prior, times any static ``fmri_weights``), and
    ``c_k`` rescales ``R_k`` so that ``trace(G~ R_k G~ᵀ)`` equals the number of non-zero noise
    eigenvalues, MNE's convention that keeps ``lambda2`` the inverse whitened SNR² at every
    TR. With a uniform prior this is exactly MNE's "MNE" solution. Each TR costs one
    ``n_channels²·n_sources`` product and an ``n_channels``-sized linear solve.

    Parameters
    ----------
    data : array, shape (n_channels, n_times)
        MEG (may be a memmap), rows in the order of ``inverse["noise_cov"].ch_names``.
    inverse : mne.minimum_norm.InverseOperator
        From :func:`make_inverse` (fixed orientation).
    bold : array, shape (n_sources, n_trs)
        BOLD on the inverse's (MEG subject's) sources; see :func:`bold_to_subject`.
        ``n_trs`` must be ``floor`` or ``ceil`` of ``n_times / (sfreq * tr)``.
    lambda2 : float
        Regularisation, > 0 (``1 / CNR**2``).
    sfreq : float
        Sampling rate of ``data`` (Hz).
    tr : float
        fMRI repetition time (s).
    floor, normalization
        See :func:`fmri_prior`.
    bold_lag : int
        Use the BOLD ``bold_lag`` volumes later (clipped at the ends) as the prior of TR ``k``,
        e.g. 2-3 to compensate the haemodynamic delay. 0 (the paper's "corresponding TR").
    to_fsaverage : scipy.sparse matrix, shape (n_sources_fsaverage, n_sources) | None
        Map applied to each TR's estimate (see :func:`fsaverage_map`).
    out : array, shape (n_out, n_times) | None
        Where to write (float32 memmap welcome); None allocates float32.
    verbose : bool | str | None
        Log level for this call.

    Returns
    -------
    estimate : array, shape (n_out, n_times)
        Source estimate in A·m.
    """
    from ...data.store import expected_n_trs

    _check_inverse(inverse)
    lambda2 = _check_lambda2(lambda2)
    sfreq = _check_positive("sfreq", sfreq)
    tr = _check_positive("tr", tr)
    bold_lag = _check_int("bold_lag", bold_lag, None)  # volumes, any sign (clipped at the ends)
    data = _check_data(data, inverse)
    n_src, n_times = inverse["nsource"], data.shape[1]
    bold = _check_weights("bold", bold, n_src, ndim=2)
    prior = fmri_prior(bold, floor=floor, normalization=normalization)  # (n_sources, n_trs)
    n_trs = prior.shape[1]
    spt = sfreq * tr  # samples per TR
    allowed = {expected_n_trs(n_times, sfreq, tr), math.ceil(n_times / spt - 1e-9)}
    if n_trs not in allowed:
        raise ValueError(
            f"'bold' vs data length mismatch: 'bold' has {n_trs} volumes but {n_times} samples "
            f"at {sfreq:g} Hz with tr={tr:g} s span {sorted(allowed)} volume(s). Pass the BOLD "
            "and MEG of the same story (and check sfreq and tr).")
    to_fs = _check_to_fsaverage(to_fsaverage, n_src)
    out = _make_out(out, n_src if to_fs is None else to_fs.shape[0], n_times)

    inv = _prepare(inverse, lambda2, "MNE")
    whitener = inv["whitener"] @ inv["proj"]  # (n_whitened, n_channels)
    gain = _whitened_gain(inv)  # (n_whitened, n_sources)
    src_cov = inv["source_cov"]["data"]  # (n_sources,) depth prior, scaled
    col_power = np.einsum("ij,ij->j", gain, gain)  # (n_sources,) ||g~_i||²
    target = float(np.sum(inv["sing"] ** 2))  # number of non-zero noise eigenvalues
    eye = lambda2 * np.eye(gain.shape[0])
    logger.info("fMNE: %d TRs, lambda2=%g, floor=%g, normalization=%s, bold_lag=%d.", n_trs,
                lambda2, floor, normalization, bold_lag)
    n_blocks = math.ceil(n_times / spt - 1e-9)
    for k in range(n_blocks):
        a = round(k * spt)
        b = n_times if k == n_blocks - 1 else min(n_times, round((k + 1) * spt))
        if b <= a:
            continue
        kk = min(max(k + bold_lag, 0), n_trs - 1)
        r = src_cov * prior[:, kk]
        r *= target / float(col_power @ r)  # MNE's trace normalisation
        gr = gain * r[None, :]  # (n_whitened, n_sources) = G~ R_k
        y = whitener @ np.asarray(data[:, a:b], np.float64)  # (n_whitened, n_samples)
        # numpy's solve (not scipy's): one BLAS thread pool, no contention between two.
        est = gr.T @ np.linalg.solve(gr @ gain.T + eye, y)  # (n_sources, n_samples)
        out[:, a:b] = est if to_fs is None else to_fs @ est
    return out

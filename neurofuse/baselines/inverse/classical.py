"""Classical source imaging with MNE-Python: MNE, dSPM, sLORETA, eLORETA and fMRI-weighted MNE.

This is the baseline of the paper's simulation experiments (§4, appendix C): fixed-orientation,
depth-weighted (``depth=0.8``) minimum-norm inverses whose noise covariance comes from the
ground-truth noise and whose regularisation is ``lambda2 = 1 / CNR**2``. fMRI-weighted MNE
(fMNE, Liu et al. 1998) replaces MNE's source covariance by a diagonal prior built from the
normalised BOLD of each source at the TR each MEG sample falls in (see :func:`apply_fmne` for
the exact formula).

Everything is built on :func:`mne.minimum_norm.make_inverse_operator`; MNE-Python has no fMRI
prior argument, so the prior is applied by weighting the operator's (diagonal) source
covariance. With uniform weights every result equals :func:`mne.minimum_norm.apply_inverse_raw`.

Memory: estimates are produced in time chunks (one TR at a time for fMNE) in float64 and
written to a float32 output, which may be a memory-mapped file (``out=`` / ``out_dir=``), so a
long recording never needs ``n_times × n_sources`` float64 in memory.

Typical use on a dataset store::

    est = run_inverses(ds, "S01", "story-04")      # {method: (n_sources_fsaverage, n_times)}
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path

import numpy as np

from ..._checks import (
    _check_finite,
    _check_ndim,
    _check_option,
    _check_positive,
    _check_type,
)
from ..._logging import logger, verbose

__all__ = [
    "ALL_METHODS", "METHODS", "NORMALIZATIONS", "apply_fmne", "apply_inverse_array",
    "bold_to_subject", "estimate_to_fsaverage", "fmri_prior", "fsaverage_map",
    "lambda2_from_cnr", "make_inverse", "noise_cov_from_noise", "run_inverses",
]

METHODS = ("MNE", "dSPM", "sLORETA", "eLORETA")
ALL_METHODS = METHODS + ("fMNE",)
NORMALIZATIONS = ("minmax", "max")
#: Smallest regularisation used for noiseless data (CNR = inf): MNE needs lambda2 > 0.
MIN_LAMBDA2 = 1e-6
#: Default prior of the least active source relative to the most active one (Liu et al. 1998's
#: nu_0 = 0.1: fMRI-silent sources keep 10 % of the prior variance, so activity that fMRI
#: misses can still be recovered).
DEFAULT_FLOOR = 0.1


# ----------------------------------------------------------------------------- small helpers
def _check_lambda2(lambda2) -> float:
    if isinstance(lambda2, numbers.Real) and not isinstance(lambda2, bool) and (
            lambda2 <= 0 or not math.isfinite(lambda2)):
        raise ValueError(
            f"'lambda2' must be a finite number > 0, got {lambda2}. MNE needs lambda2 > 0; "
            "lambda2 = 1 / CNR**2, and for noiseless data (CNR = inf) use "
            f"lambda2_from_cnr(float('inf')), which floors it at {MIN_LAMBDA2:g}.")
    return _check_positive("lambda2", lambda2)


def _check_chunk_size(chunk_size) -> int:
    if not isinstance(chunk_size, (int, np.integer)) or isinstance(chunk_size, bool) \
            or chunk_size < 1:
        raise ValueError(f"'chunk_size' must be a positive integer (time samples per chunk), "
                         f"got {chunk_size!r}.")
    return int(chunk_size)


def _check_inverse(inverse):
    import mne
    from mne.io.constants import FIFF

    _check_type("inverse", inverse, mne.minimum_norm.InverseOperator,
                "mne.minimum_norm.InverseOperator (from make_inverse)")
    if inverse["source_ori"] != FIFF.FIFFV_MNE_FIXED_ORI:
        raise ValueError("'inverse' must be a fixed-orientation inverse operator (loose=0, "
                         "fixed=True), got a free/loose one. Build it with make_inverse.")
    return inverse


def _inverse_ch_names(inverse) -> list:
    return list(inverse["noise_cov"].ch_names)


def _check_data(data, inverse, name="data") -> np.ndarray:
    """A 2-D finite (n_channels, n_times) array whose rows match the inverse's channels."""
    if not (hasattr(data, "shape") and hasattr(data, "dtype")):  # keep memmaps as they are
        data = np.asarray(data)
    if data.ndim != 2:
        _check_ndim(name, data, 2, "(n_channels, n_times)")  # raises
    if not np.issubdtype(data.dtype, np.number):
        raise TypeError(f"'{name}' must be a numeric array, got dtype {data.dtype}.")
    n_ch = len(_inverse_ch_names(inverse))
    if data.shape[0] != n_ch:
        raise ValueError(
            f"'{name}' vs inverse channel mismatch: '{name}' has {data.shape[0]} rows but the "
            f"inverse operator was computed for {n_ch} channels. Pass one row per channel, "
            "in the order of inverse['noise_cov'].ch_names (the MEG channels of the info "
            "given to make_inverse, bads excluded).")
    if data.shape[1] < 1:
        raise ValueError(f"'{name}' has no time samples (shape {data.shape}).")
    _check_finite(name, data, how_to_fix="Interpolate or drop bad samples or channels (and "
                  "rebuild the inverse without them) before computing an inverse.")
    return data


def _check_to_fsaverage(to_fsaverage, n_src):
    if to_fsaverage is None:
        return None
    import scipy.sparse

    if not scipy.sparse.issparse(to_fsaverage):
        raise TypeError("'to_fsaverage' must be a scipy.sparse matrix (n_sources_fsaverage, "
                        f"n_sources) from fsaverage_map(morph), got {type(to_fsaverage).__name__}.")
    if to_fsaverage.shape[1] != n_src:
        raise ValueError(
            f"Morph vs source-space mismatch: 'to_fsaverage' has shape {to_fsaverage.shape} "
            f"but the inverse has {n_src} sources (expected ({to_fsaverage.shape[0]}, {n_src})). "
            "Build it with fsaverage_map(morph) from the same subject's morph.")
    return scipy.sparse.csr_array(to_fsaverage, dtype=np.float64)


def _make_out(out, n_rows, n_times):
    if out is None:
        return np.empty((n_rows, n_times), np.float32)
    if not hasattr(out, "shape") or tuple(out.shape) != (n_rows, n_times) \
            or not np.issubdtype(out.dtype, np.floating):
        raise ValueError(f"'out' must be a float array of shape ({n_rows}, {n_times}) "
                         "(n_sources, n_times), e.g. np.lib.format.open_memmap(fname, 'w+', "
                         f"np.float32, shape); got {getattr(out, 'shape', type(out).__name__)} "
                         f"with dtype {getattr(out, 'dtype', None)}.")
    return out


def lambda2_from_cnr(cnr, *, min_lambda2=MIN_LAMBDA2) -> float:
    """The paper's regularisation ``lambda2 = 1 / CNR**2``, floored at ``min_lambda2``.

    Parameters
    ----------
    cnr : float | 'inf'
        MEG contrast-to-noise ratio (sigma_signal / sigma_noise per channel).
    min_lambda2 : float
        Floor, used for noiseless data: ``CNR = inf`` would give ``lambda2 = 0``, which MNE
        cannot use (and which would amplify the float32 rounding noise of stored MEG). The
        default 1e-6 corresponds to CNR = 1000.

    Returns
    -------
    lambda2 : float
    """
    cnr = _check_positive("cnr", cnr, allow_inf=True)
    min_lambda2 = _check_positive("min_lambda2", min_lambda2)
    return max(1.0 / cnr**2, min_lambda2)


# ----------------------------------------------------------------------------- covariance
@verbose
def noise_cov_from_noise(noise, info, *, diag=True, chunk_size=8192, verbose=None):
    """Noise covariance from known (ground-truth) sensor noise.

    Parameters
    ----------
    noise : array, shape (n_channels, n_times)
        The noise alone, e.g. ``data - clean`` in a simulation. Rows follow
        ``info["ch_names"]``. The mean of each channel is removed (like
        :func:`mne.compute_raw_covariance`).
    info : mne.Info
        The channels of ``noise`` (MEG only).
    diag : bool
        Keep only the per-sensor variances (appendix C: "the noise covariance for each MEG
        sensor"; in the simulation the noise is independent across sensors, so the diagonal
        is the true covariance and avoids the estimation error of 306² off-diagonal terms
        from a few thousand samples). ``False`` gives the full sample covariance.
    chunk_size : int
        Time samples processed at once (memory control).
    verbose : bool | str | None
        Log level for this call.

    Returns
    -------
    noise_cov : mne.Covariance
        With ``nfree = n_times - 1`` and the projectors of ``info``.
    """
    import mne

    _check_type("info", info, mne.Info, "mne.Info")
    noise = _check_ndim("noise", noise, 2, "(n_channels, n_times)") \
        if np.ndim(noise) != 2 else noise
    names = list(info["ch_names"])
    if noise.shape[0] != len(names):
        raise ValueError(f"'noise' vs info channel mismatch: 'noise' has {noise.shape[0]} rows "
                         f"but info has {len(names)} channels. Pass one row per channel of info.")
    n_times = noise.shape[1]
    if n_times < 2:
        raise ValueError(f"'noise' needs at least 2 time samples to estimate a covariance, got "
                         f"{n_times}.")
    chunk_size = _check_chunk_size(chunk_size)
    total = np.zeros(len(names))
    for a in range(0, n_times, chunk_size):
        chunk = np.asarray(noise[:, a:a + chunk_size], dtype=np.float64)
        _check_finite(f"noise[:, {a}:{a + chunk.shape[1]}]", chunk)
        total += chunk.sum(axis=1)
    mean = total / n_times
    acc = np.zeros(len(names)) if diag else np.zeros((len(names), len(names)))
    for a in range(0, n_times, chunk_size):
        chunk = np.asarray(noise[:, a:a + chunk_size], dtype=np.float64) - mean[:, None]
        acc += (chunk**2).sum(axis=1) if diag else chunk @ chunk.T
    cov = acc / (n_times - 1)
    var = cov if diag else np.diag(cov)
    scale = np.max(var) if var.size else 0.0
    zero = np.flatnonzero(var <= 1e-30 * max(scale, 1e-300))
    if zero.size:
        raise ValueError(
            f"'noise' has (numerically) zero variance on {zero.size} channel(s), e.g. "
            f"{[names[i] for i in zero[:3]]}: the noise covariance would be singular. For "
            "noiseless data (CNR = inf) estimate the covariance's shape from the clean signal "
            "(noise_cov_from_noise(clean, info), what run_inverses does) or use "
            "mne.make_ad_hoc_cov(info).")
    logger.info("Noise covariance from %d samples of ground-truth noise (%s).", n_times,
                "diagonal" if diag else "full")
    return mne.Covariance(cov, names, list(info["bads"]), [p.copy() for p in info["projs"]],
                          n_times - 1, verbose=False)


# ----------------------------------------------------------------------------- operators
def _free_surf_forward(forward):
    """The forward in free orientation and surface coordinates, as MNE wants for depth=0.8."""
    import mne
    from mne.io.constants import FIFF

    if forward["source_ori"] == FIFF.FIFFV_MNE_FIXED_ORI and \
            forward.get("_orig_source_ori", FIFF.FIFFV_MNE_FIXED_ORI) == FIFF.FIFFV_MNE_FIXED_ORI:
        return None  # only the fixed solution exists
    return mne.convert_forward_solution(forward, surf_ori=True, force_fixed=False, use_cps=True,
                                        copy=True, verbose=False)


def _whitened_gain(inverse) -> np.ndarray:
    """Whitened gain ``G~ = W G``, shape (n_whitened, n_sources), from the operator's SVD.

    MNE stores the SVD of ``G~ diag(sqrt(R))`` (R: source covariance); undo the ``sqrt(R)``.
    """
    u = inverse["eigen_fields"]["data"].T  # (n_whitened, k)
    v = inverse["eigen_leads"]["data"]  # (n_sources, k)
    std = np.sqrt(inverse["source_cov"]["data"])  # (n_sources,)
    return ((u * inverse["sing"]) @ v.T) / std[None, :]


def _check_weights(name, weights, n_src, *, ndim=1):
    weights = np.asarray(weights, dtype=np.float64)
    shape_doc = "(n_sources,)" if ndim == 1 else "(n_sources, n_trs)"
    weights = _check_ndim(name, weights, ndim, shape_doc)
    if weights.shape[0] != n_src:
        raise ValueError(
            f"fMRI prior vs source-space mismatch: '{name}' has {weights.shape[0]} sources but "
            f"the inverse operator has {n_src}. The fMRI must live on the MEG subject's source "
            "space: map other subjects' BOLD with bold_to_subject(bolds, fmri_morphs, "
            "meg_morph).")
    _check_finite(name, weights)
    return weights


@verbose
def make_inverse(forward, info, noise_cov, *, depth=0.8, fmri_weights=None, verbose=None):
    """A fixed-orientation, depth-weighted MNE inverse operator (appendix C's settings).

    Calls ``mne.minimum_norm.make_inverse_operator(info, forward, noise_cov, loose=0.,
    depth=depth, fixed=True)``. As MNE requires for depth weighting, the forward is used in
    free orientation and surface coordinates (restored from a fixed ``Forward`` through the
    free solution MNE keeps in it); MNE then computes the depth prior from all three dipole
    orientations and picks the normal one. A forward that only ever had a fixed solution is
    depth-weighted from its normal components (``allow_fixed_depth``), with a log message.

    Parameters
    ----------
    forward : mne.Forward
        The subject's forward solution (e.g. ``ds.forward(subject)``).
    info : mne.Info
        The MEG channel info (e.g. ``ds.info(subject)``).
    noise_cov : mne.Covariance
        Sensor noise covariance (e.g. from :func:`noise_cov_from_noise`).
    depth : float | None
        Depth-weighting exponent (0.8 in the paper); None disables depth weighting.
    fmri_weights : array, shape (n_sources,) | None
        A static fMRI prior (Liu et al. 1998): source ``i``'s prior variance is multiplied by
        ``fmri_weights[i] > 0`` (e.g. 1 for fMRI-active and 0.1 for inactive sources, or one
        column of :func:`fmri_prior`). The source covariance is then rescaled like MNE does, so
        that ``trace(G~ R G~.T)`` equals the number of non-zero noise eigenvalues, and the SVD
        stored in the operator is recomputed. The result is a regular ``InverseOperator``
        usable with :func:`mne.minimum_norm.apply_inverse` and all methods. Uniform weights
        give exactly MNE's operator.
    verbose : bool | str | None
        Log level for this call.

    Returns
    -------
    inverse : mne.minimum_norm.InverseOperator
        Fixed orientation.
    """
    import mne
    from mne.minimum_norm import make_inverse_operator

    _check_type("forward", forward, mne.Forward, "mne.Forward")
    _check_type("info", info, mne.Info, "mne.Info")
    _check_type("noise_cov", noise_cov, mne.Covariance, "mne.Covariance")
    if depth is not None:
        depth = _check_positive("depth", depth, allow_zero=True)
    fwd_names = set(forward["info"]["ch_names"])
    missing = [ch for ch in info["ch_names"] if ch not in fwd_names and ch not in info["bads"]]
    if missing:
        raise ValueError(
            f"Lead field vs channel mismatch: {len(missing)} channel(s) of info are not in the "
            f"forward model, e.g. {missing[:3]} (forward has {forward['nchan']} channels, info "
            f"{len(info['ch_names'])}). Compute the forward with the same info.")
    cov_missing = [ch for ch in info["ch_names"] if ch not in noise_cov.ch_names
                   and ch not in info["bads"]]
    if cov_missing:
        raise ValueError(f"Noise covariance vs channel mismatch: {len(cov_missing)} channel(s) "
                         f"of info are not in noise_cov, e.g. {cov_missing[:3]}. Compute the "
                         "covariance for the same channels (noise_cov_from_noise(noise, info)).")
    weights = None
    if fmri_weights is not None:  # before the (slow) operator
        weights = _check_weights("fmri_weights", fmri_weights, forward["nsource"])
        if np.any(weights <= 0):
            raise ValueError(
                f"'fmri_weights' must be > 0 everywhere, got minimum {weights.min():g}: a zero "
                "prior variance removes a source from the model (and breaks dSPM/sLORETA). "
                "Use a floor, e.g. fmri_prior(bold, floor=0.1).")
    fwd = _free_surf_forward(forward)
    depth_arg = depth
    if fwd is None:
        fwd = forward
        if depth is not None:
            logger.info("The forward has no free-orientation solution: depth weighting from "
                        "the normal components only (allow_fixed_depth).")
            depth_arg = {"exp": depth, "allow_fixed_depth": True}
    inverse = make_inverse_operator(info, fwd, noise_cov, loose=0.0, depth=depth_arg,
                                    fixed=True, verbose=False)
    logger.info("Inverse operator: %d channels, %d sources, depth=%s.",
                len(_inverse_ch_names(inverse)), inverse["nsource"], depth)
    if weights is None:
        return inverse
    gain = _whitened_gain(inverse)  # (n_whitened, n_sources)
    target = float(np.sum(inverse["sing"] ** 2))  # = number of non-zero noise eigenvalues
    std = np.sqrt(inverse["source_cov"]["data"] * weights)
    weighted = gain * std[None, :]
    scale = math.sqrt(target / np.sum(weighted**2))
    std *= scale
    weighted *= scale
    u, s, vt = np.linalg.svd(weighted, full_matrices=False)
    inverse["eigen_fields"]["data"] = u.T
    inverse["sing"] = s
    inverse["eigen_leads"]["data"] = vt.T
    inverse["source_cov"]["data"] = std**2
    logger.info("Applied a static fMRI prior to the source covariance (weights %.3g..%.3g).",
                weights.min(), weights.max())
    return inverse


def _prepare(inverse, lambda2, method, method_params=None):
    from mne.minimum_norm import prepare_inverse_operator

    return prepare_inverse_operator(inverse, 1, lambda2, method, method_params=method_params,
                                    verbose=False)


def _kernel(inverse, lambda2, method, method_params=None) -> np.ndarray:
    """The imaging kernel, shape (n_sources, n_channels), exactly as MNE assembles it."""
    inv = _prepare(inverse, lambda2, method, method_params)
    trans = inv["eigen_fields"]["data"] @ (inv["whitener"] @ inv["proj"])  # (k, n_channels)
    trans *= inv["reginv"][:, None]
    kernel = inv["eigen_leads"]["data"] @ trans  # (n_sources, n_channels)
    if not inv["eigen_leads_weighted"]:
        kernel *= np.sqrt(inv["source_cov"]["data"])[:, None]
    if method in ("dSPM", "sLORETA"):
        kernel *= inv["noisenorm"][:, None]
    return kernel


# ----------------------------------------------------------------------------- application
@verbose
def apply_inverse_array(data, inverse, *, lambda2, method="MNE", method_params=None,
                        chunk_size=1024, to_fsaverage=None, out=None, verbose=None):
    """Apply a fixed-orientation inverse to an array, streaming over time chunks.

    Equals ``mne.minimum_norm.apply_inverse_raw(raw, inverse, lambda2, method,
    pick_ori=None).data`` (``nave=1``) without building a ``Raw`` or holding the float64 result.

    Parameters
    ----------
    data : array, shape (n_channels, n_times)
        MEG (may be a memmap), rows in the order of ``inverse["noise_cov"].ch_names``.
    inverse : mne.minimum_norm.InverseOperator
        From :func:`make_inverse`.
    lambda2 : float
        Regularisation, > 0 (the paper: ``1 / CNR**2``, see :func:`lambda2_from_cnr`).
    method : 'MNE' | 'dSPM' | 'sLORETA' | 'eLORETA'
    method_params : dict | None
        Passed to MNE (eLORETA options such as ``max_iter``, ``eps``).
    chunk_size : int
        Time samples per chunk; the float64 working memory is ``n_sources × chunk_size``.
    to_fsaverage : scipy.sparse matrix, shape (n_sources_fsaverage, n_sources) | None
        If given (from :func:`fsaverage_map`), it is folded into the kernel and the output is
        on fsaverage.
    out : array, shape (n_out, n_times) | None
        Where to write (e.g. a float32 memmap); ``n_out`` is ``n_sources`` or
        ``n_sources_fsaverage``. None allocates a float32 array.
    verbose : bool | str | None
        Log level for this call.

    Returns
    -------
    estimate : array, shape (n_out, n_times)
        Source estimate in A·m (MNE, eLORETA) or noise-normalised units (dSPM, sLORETA).
    """
    _check_inverse(inverse)
    _check_option("method", method, METHODS, extra="(fMNE: use apply_fmne.)")
    lambda2 = _check_lambda2(lambda2)
    chunk_size = _check_chunk_size(chunk_size)
    data = _check_data(data, inverse)
    to_fs = _check_to_fsaverage(to_fsaverage, inverse["nsource"])
    kernel = _kernel(inverse, lambda2, method, method_params)  # (n_sources, n_channels)
    if to_fs is not None:
        kernel = np.asarray(to_fs @ kernel)  # (n_sources_fsaverage, n_channels)
    n_times = data.shape[1]
    out = _make_out(out, kernel.shape[0], n_times)
    logger.info("Applying %s (lambda2=%g) to %d samples in chunks of %d.", method, lambda2,
                n_times, chunk_size)
    for a in range(0, n_times, chunk_size):
        out[:, a:a + chunk_size] = kernel @ np.asarray(data[:, a:a + chunk_size], np.float64)
    return out


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
    if not isinstance(bold_lag, (int, np.integer)) or isinstance(bold_lag, bool):
        raise TypeError(f"'bold_lag' must be an int (volumes), got {bold_lag!r}.")
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


# ----------------------------------------------------------------------------- source spaces
def fsaverage_map(morph):
    """Subject → fsaverage map: the transpose of the fsaverage → subject morph, row-normalised.

    Each fsaverage source becomes the weighted average of the subject sources that the morph
    builds from it (weights ``M[i, j] / sum_i M[i, j]``).

    Parameters
    ----------
    morph : scipy.sparse matrix, shape (n_sources, n_sources_fsaverage)
        fsaverage → subject morph (``ds.morph(subject)``).

    Returns
    -------
    to_fsaverage : scipy.sparse.csr_array, shape (n_sources_fsaverage, n_sources)
        Rows sum to 1; an fsaverage source no subject source draws from gets a zero row (and a
        warning).
    """
    import scipy.sparse

    if not scipy.sparse.issparse(morph):
        raise TypeError("'morph' must be a scipy.sparse matrix (n_sources, n_sources_fsaverage), "
                        f"got {type(morph).__name__}.")
    mt = scipy.sparse.csr_array(morph, dtype=np.float64).T.tocsr()  # (n_fs, n_sources)
    _check_finite("morph", mt.data)
    sums = np.asarray(mt.sum(axis=1)).ravel()
    empty = sums <= 0
    if empty.any():
        logger.warning("%d of %d fsaverage sources receive nothing from the subject's sources; "
                       "their estimate is 0.", int(empty.sum()), len(sums))
    inv = np.where(empty, 0.0, 1.0 / np.where(empty, 1.0, sums))
    return scipy.sparse.csr_array(scipy.sparse.diags_array(inv) @ mt)


def estimate_to_fsaverage(estimate, morph, *, chunk_size=4096, out=None):
    """Move a subject-space source estimate to fsaverage with :func:`fsaverage_map`.

    Parameters
    ----------
    estimate : array, shape (n_sources, n_times)
        On the subject's sources (may be a memmap).
    morph : scipy.sparse matrix, shape (n_sources, n_sources_fsaverage)
        The subject's fsaverage → subject morph (``ds.morph(subject)``).
    chunk_size : int
        Time samples per chunk.
    out : array, shape (n_sources_fsaverage, n_times) | None
        Where to write; None allocates float32.

    Returns
    -------
    estimate_fsaverage : array, shape (n_sources_fsaverage, n_times)
    """
    estimate = estimate if hasattr(estimate, "shape") else np.asarray(estimate)
    estimate = _check_ndim("estimate", estimate, 2, "(n_sources, n_times)") \
        if estimate.ndim != 2 else estimate
    to_fs = fsaverage_map(morph)
    if to_fs.shape[1] != estimate.shape[0]:
        raise ValueError(
            f"Morph vs source-space mismatch: 'morph' has shape {tuple(morph.shape)} but "
            f"'estimate' has {estimate.shape[0]} sources (expected ({estimate.shape[0]}, "
            "n_sources_fsaverage)). Use the morph of the subject the estimate belongs to.")
    chunk_size = _check_chunk_size(chunk_size)
    n_times = estimate.shape[1]
    out = _make_out(out, to_fs.shape[0], n_times)
    for a in range(0, n_times, chunk_size):
        out[:, a:a + chunk_size] = to_fs @ np.asarray(estimate[:, a:a + chunk_size], np.float64)
    return out


def bold_to_subject(bolds, fmri_morphs, meg_morph) -> np.ndarray:
    """Average the BOLD of fMRI subjects on fsaverage and morph it to the MEG subject.

    ``bold_meg = M_meg @ mean_s(F_s @ bold_s)`` with ``F_s = fsaverage_map(M_s)``. The raw
    BOLD units are averaged (fine when subjects share units, as in the simulation; z-score
    real data per subject first); :func:`fmri_prior` normalises per TR afterwards. An fMRI
    subject that is also the MEG subject goes through fsaverage too (a slight smoothing).

    Parameters
    ----------
    bolds : list of array, shape (n_sources_s, n_trs)
        Source-level BOLD of each fMRI subject (e.g. ``ds.fmri(s, story, average=True)``).
    fmri_morphs : list of scipy.sparse matrix, shape (n_sources_s, n_sources_fsaverage)
        Their fsaverage → subject morphs (``ds.morph(s)``).
    meg_morph : scipy.sparse matrix, shape (n_sources_meg, n_sources_fsaverage)
        The MEG subject's fsaverage → subject morph.

    Returns
    -------
    bold : array, shape (n_sources_meg, n_trs), float64
    """
    if not isinstance(bolds, (list, tuple)) or not isinstance(fmri_morphs, (list, tuple)):
        raise TypeError("'bolds' and 'fmri_morphs' must be lists (one entry per fMRI subject).")
    if not bolds or len(bolds) != len(fmri_morphs):
        raise ValueError(f"'bolds' and 'fmri_morphs' must be non-empty and of equal length, "
                         f"got {len(bolds)} and {len(fmri_morphs)}.")
    n_fs = meg_morph.shape[1]
    acc, n_trs = None, None
    for s, (bold, morph) in enumerate(zip(bolds, fmri_morphs)):
        bold = _check_ndim(f"bolds[{s}]", np.asarray(bold, np.float64), 2, "(n_sources, n_trs)")
        _check_finite(f"bolds[{s}]", bold)
        if tuple(morph.shape) != (bold.shape[0], n_fs):
            raise ValueError(
                f"Morph vs source-space mismatch: fmri_morphs[{s}] has shape "
                f"{tuple(morph.shape)} but bolds[{s}] has {bold.shape[0]} sources and fsaverage "
                f"{n_fs} (expected ({bold.shape[0]}, {n_fs})). Pass each subject's own morph.")
        if n_trs is not None and bold.shape[1] != n_trs:
            raise ValueError(f"bolds[{s}] has {bold.shape[1]} volumes but bolds[0] has {n_trs}: "
                             "pass the BOLD of the same story for every subject.")
        n_trs = bold.shape[1]
        fs = fsaverage_map(morph) @ bold  # (n_fs, n_trs)
        acc = fs if acc is None else acc + fs
    import scipy.sparse

    return np.asarray(scipy.sparse.csr_array(meg_morph, dtype=np.float64) @ (acc / len(bolds)))


# ----------------------------------------------------------------------------- benchmark helper
@verbose
def run_inverses(ds, meg_subject, story, *, methods=ALL_METHODS, fmri_subjects=None,
                 repeat=None, noise_cov=None, lambda2=None, depth=0.8, floor=DEFAULT_FLOOR,
                 normalization="minmax", bold_lag=0, method_params=None, chunk_size=1024,
                 out_dir=None, verbose=None) -> dict:
    """All classical inverses of one MEG subject and story, on fsaverage (appendix C).

    Steps: MEG averaged over repeats; noise covariance (diagonal) from the ground-truth noise
    ``data - L M s`` (``s``: ``ds.ground_truth("sources/<story>")``), or, for CNR = inf, the
    per-channel variance of the clean signal ``L M s`` (the shape the noise has at any
    finite CNR in the simulation); ``lambda2 = lambda2_from_cnr(ds.cnr(meg_subject)["meg"])``;
    :func:`make_inverse` with ``depth``; fMNE's BOLD from :func:`bold_to_subject`. Estimates
    are mapped to fsaverage with :func:`fsaverage_map` of the MEG subject's morph.

    Parameters
    ----------
    ds : neurofuse.data.store.Dataset
    meg_subject : str
    story : str
    methods : sequence of str
        Subset of ``('MNE', 'dSPM', 'sLORETA', 'eLORETA', 'fMNE')``.
    fmri_subjects : list of str | None
        Subjects whose BOLD forms the fMNE prior; None: all with fMRI for ``story``.
    repeat : int | None
        Which presentation of ``story`` to invert; None averages them all.
    noise_cov : mne.Covariance | None
        Overrides the ground-truth covariance (needed when the dataset has no ground-truth
        sources for ``story``).
    lambda2 : float | None
        Overrides ``1 / CNR**2``.
    depth, floor, normalization, bold_lag, method_params, chunk_size
        See :func:`make_inverse`, :func:`apply_fmne`, :func:`apply_inverse_array`.
    out_dir : path-like | None
        Write each estimate to ``<out_dir>/<meg_subject>_<story>_<method>.npy`` and return
        read-only memmaps (for long stories); None keeps float32 arrays in memory.
    verbose : bool | str | None
        Log level for this call.

    Returns
    -------
    estimates : dict of str to array, shape (n_sources_fsaverage, n_times)
        One float32 estimate per method, on fsaverage.
    """
    import scipy.sparse

    from ..._io import atomic_path, check_writable_dir

    methods = list(methods) if not isinstance(methods, str) else [methods]
    for m in methods:
        _check_option("methods", m, ALL_METHODS)
    _check_option("meg_subject", meg_subject, [s for s in ds.subjects
                                               if "meg" in ds.modalities(s)])
    _check_option("story", story, ds.subject_stories(meg_subject, "meg"))
    meg = ds.meg(meg_subject, story)  # (n_repeats, n_channels, n_times)
    if repeat is None:  # one repeat at a time: never n_repeats × n_channels × n_times float64
        data = sum(np.asarray(meg[r], np.float64) for r in range(meg.shape[0]))
        data = (data / meg.shape[0]).astype(np.float32)
    else:
        _check_option("repeat", repeat, list(range(meg.shape[0])))
        data = np.asarray(meg[repeat], np.float32)
    info, fwd = ds.info(meg_subject), ds.forward(meg_subject)
    morph = scipy.sparse.csr_array(ds.morph(meg_subject), dtype=np.float64)
    cnr = ds.cnr(meg_subject).get("meg", float("inf"))
    if noise_cov is None:
        name = f"sources/{story}"
        if f"{name}.npy" not in ds.ground_truth_names:
            raise ValueError(f"Dataset has no ground-truth sources for {story!r} to compute the "
                             "noise covariance from: pass noise_cov=..., or use a story with "
                             f"saved sources ({[g for g in ds.ground_truth_names if g.startswith('sources/')]}).")
        truth = ds.ground_truth(name)  # (n_sources_fsaverage, n_times)
        gain_fs = np.asarray((morph.T @ np.asarray(ds.leadfield(meg_subject), np.float64).T).T)
        resid = np.empty(data.shape, np.float32)
        for a in range(0, data.shape[1], chunk_size):
            clean = gain_fs @ np.asarray(truth[:, a:a + chunk_size], np.float64)
            resid[:, a:a + chunk_size] = clean if math.isinf(cnr) else \
                data[:, a:a + chunk_size] - clean
        noise_cov = noise_cov_from_noise(resid, info)
        del resid
    if lambda2 is None:
        lambda2 = lambda2_from_cnr(cnr)
    inverse = make_inverse(fwd, info, noise_cov, depth=depth)
    to_fs = fsaverage_map(morph)
    bold = None
    if "fMNE" in methods:
        if fmri_subjects is None:
            fmri_subjects = [s for s in ds.subjects if ds.has(s, "fmri", story)]
        if not fmri_subjects:
            raise ValueError(f"fMNE needs fMRI of story {story!r} but no subject has it; pass "
                             "fmri_subjects or drop 'fMNE' from methods.")
        for s in fmri_subjects:
            if not ds.has(s, "fmri", story):
                raise ValueError(f"fMRI subject {s!r} has no fMRI for story {story!r}.")
        bold = bold_to_subject([ds.fmri(s, story, average=True) for s in fmri_subjects],
                               [ds.morph(s) for s in fmri_subjects], morph)
    if out_dir is not None:
        out_dir = check_writable_dir(Path(out_dir), name="out_dir")
        out_dir.mkdir(parents=True, exist_ok=True)

    def compute(method, out):
        if method == "fMNE":
            return apply_fmne(data, inverse, bold, lambda2=lambda2, sfreq=ds.sfreq, tr=ds.tr,
                              floor=floor, normalization=normalization, bold_lag=bold_lag,
                              to_fsaverage=to_fs, out=out)
        return apply_inverse_array(data, inverse, lambda2=lambda2, method=method,
                                   method_params=method_params, chunk_size=chunk_size,
                                   to_fsaverage=to_fs, out=out)

    shape = (to_fs.shape[0], data.shape[1])
    results = {}
    for method in methods:
        logger.info("%s of %s / %s", method, meg_subject, story)
        if out_dir is None:
            results[method] = compute(method, None)
            continue
        fname = out_dir / f"{meg_subject}_{story}_{method}.npy"
        with atomic_path(fname, what=f"{method} estimate") as tmp:
            mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
            compute(method, mm)
            mm.flush()
            del mm
        results[method] = np.load(fname, mmap_mode="r")
    return results

"""Classical minimum-norm operators (MNE, dSPM, sLORETA, eLORETA) through MNE-Python.

This is the baseline of the paper's simulation experiments (§4, appendix C): fixed-orientation,
depth-weighted (``depth=0.8``) minimum-norm inverses whose noise covariance comes from the
ground-truth noise and whose regularisation is ``lambda2 = 1 / CNR**2`` (see :mod:`.noise`).
Everything is built on :func:`mne.minimum_norm.make_inverse_operator`; with uniform weights
every result equals :func:`mne.minimum_norm.apply_inverse_raw`. A static fMRI prior can weight
the operator's source covariance (``make_inverse(fmri_weights=...)``); the per-TR prior of
fMRI-weighted MNE is in :mod:`.fmri`.

Memory: estimates are produced in time chunks in float64 and written to a float32 output,
which may be a memory-mapped file (``out=``), so a long recording never needs
``n_times × n_sources`` float64 in memory.
"""

from __future__ import annotations

import math

import numpy as np

from ..._checks import _check_option, _check_positive, _check_type
from ..._logging import logger, verbose
from ._common import (
    METHODS,
    _check_chunk_size,
    _check_data,
    _check_inverse,
    _check_lambda2,
    _check_to_fsaverage,
    _check_weights,
    _inverse_ch_names,
    _make_out,
)


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

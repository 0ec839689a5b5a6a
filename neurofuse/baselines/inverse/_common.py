"""Constants and argument checks shared by the inverse modules."""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..._checks import _check_finite, _check_int, _check_ndim, _check_positive, _check_type

METHODS = ("MNE", "dSPM", "sLORETA", "eLORETA")
ALL_METHODS = METHODS + ("fMNE",)
NORMALIZATIONS = ("minmax", "max")
#: Smallest regularisation used for noiseless data (CNR = inf): MNE needs lambda2 > 0.
MIN_LAMBDA2 = 1e-6
#: Default prior of the least active source relative to the most active one (Liu et al. 1998's
#: nu_0 = 0.1: fMRI-silent sources keep 10 % of the prior variance, so activity that fMRI
#: misses can still be recovered).
DEFAULT_FLOOR = 0.1


def _check_lambda2(lambda2) -> float:
    if isinstance(lambda2, numbers.Real) and not isinstance(lambda2, bool) and (
            lambda2 <= 0 or not math.isfinite(lambda2)):
        raise ValueError(
            f"'lambda2' must be a finite number > 0, got {lambda2}. MNE needs lambda2 > 0; "
            "lambda2 = 1 / CNR**2, and for noiseless data (CNR = inf) use "
            f"lambda2_from_cnr(float('inf')), which floors it at {MIN_LAMBDA2:g}.")
    return _check_positive("lambda2", lambda2)


def _check_chunk_size(chunk_size) -> int:
    return _check_int("chunk_size", chunk_size, 1, how_to_fix="It counts the time samples "
                      "processed at once.")


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

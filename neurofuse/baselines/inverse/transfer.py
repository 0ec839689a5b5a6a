"""Physics transfers between sensor types: data → minimum-norm inverse → another forward.

A physics transfer predicts what a second sensor array would have recorded from what a first
one did, through the cortex both see: the minimum-norm source estimate of the first array's
data (:func:`~.classical.make_inverse`, any of MNE / dSPM / sLORETA / eLORETA) is projected
through the second array's fixed-orientation forward model. Both steps are linear, so the
whole transfer is one matrix ``T = G_target @ K`` (``K``: the inverse's imaging kernel, shape
(n_sources, n_source_channels), exactly as MNE-Python assembles it; ``G_target``: the
target's gain, shape (n_target_channels, n_sources)), built once by
:func:`make_transfer_operator` and applied to any number of epochs.

The two forward models must share the source space (same vertices, positions and surface
normals, e.g. two :func:`neurofuse.anatomy.make_forward` calls for one subject and one
spacing, one with ``eeg=True`` and one with ``meg=True``): :func:`check_same_source_space`.

Units: with ``method="MNE"`` or ``"eLORETA"`` the source estimate is in A·m and the transfer
is in the target's physical units. dSPM and sLORETA estimates are noise-normalised (a
different scale at every source), so their transfers are distorted in space and scale; they
are offered for comparison, correlation-type scores being the fair measure for them.
"""

from __future__ import annotations

import numpy as np

from ..._checks import _check_option, _check_type
from ..._logging import logger, verbose
from ._common import METHODS, _check_inverse, _check_lambda2, _inverse_ch_names
from .classical import _kernel

#: Largest distance (m) between the positions of a source in two forward models that still
#: counts as "the same source" (forward FIF files store positions in float32).
SOURCE_POS_ATOL = 1e-6
#: Largest difference of unit surface normals between the inverse and the target forward.
SOURCE_NN_ATOL = 1e-4


def _check_src(src_a, src_b, a, b):
    """Raise unless two source spaces have the same vertices at the same positions."""
    how = ("Compute both forward models for the same subject and source space (e.g. "
           "make_forward(subject, spacing=..., eeg=True) and make_forward(subject, "
           "spacing=..., meg=True) with the same spacing and mindist).")
    n_a = sum(len(s["vertno"]) for s in src_a)
    n_b = sum(len(s["vertno"]) for s in src_b)
    if n_a != n_b:
        raise ValueError(f"Source space mismatch: '{a}' has {n_a} sources but '{b}' has "
                         f"{n_b}. {how}")
    if len(src_a) != len(src_b):
        raise ValueError(f"Source space mismatch: '{a}' has {len(src_a)} source space(s) "
                         f"(hemispheres) but '{b}' has {len(src_b)}. {how}")
    for h, (sa, sb) in enumerate(zip(src_a, src_b)):
        if not np.array_equal(sa["vertno"], sb["vertno"]):
            raise ValueError(f"Source space mismatch: the vertices of source space {h} differ "
                             f"between '{a}' and '{b}' ({len(sa['vertno'])} vertices each). "
                             f"{how}")
        if sa["coord_frame"] != sb["coord_frame"]:
            raise ValueError(f"Coordinate frame mismatch: source space {h} of '{a}' is in "
                             f"frame {sa['coord_frame']} and that of '{b}' in "
                             f"{sb['coord_frame']}. {how}")
        dist = np.linalg.norm(np.asarray(sa["rr"])[sa["vertno"]]
                              - np.asarray(sb["rr"])[sb["vertno"]], axis=1)
        if dist.size and dist.max() > SOURCE_POS_ATOL:
            raise ValueError(f"Source space mismatch: the same vertices lie at different "
                             f"positions in '{a}' and '{b}' (up to {dist.max() * 1e3:.3g} mm "
                             f"apart in source space {h}): different subjects or transforms. "
                             f"{how}")
    return n_a


def check_same_source_space(forward, other, *, names=("forward", "other")):
    """Raise unless two forward models have the same sources (vertices and positions).

    Parameters
    ----------
    forward, other : mne.Forward
        Forward solutions (any orientation, any channels).
    names : tuple of str
        The two parameters' names, used in the error messages.

    Returns
    -------
    n_sources : int
        The number of sources they share.
    """
    import mne

    for name, fwd in zip(names, (forward, other)):
        _check_type(name, fwd, mne.Forward, "mne.Forward")
    return _check_src(forward["src"], other["src"], *names)


def _target_gain(target_forward, inverse):
    """The target's fixed-orientation gain (n_target, n_sources), normals checked."""
    import mne

    fixed = mne.convert_forward_solution(target_forward, surf_ori=True, force_fixed=True,
                                         use_cps=True, copy=True, verbose=False)
    nn_inv = np.asarray(inverse["source_nn"])
    nn_fwd = np.asarray(fixed["source_nn"])
    if nn_inv.shape != nn_fwd.shape or np.abs(nn_inv - nn_fwd).max() > SOURCE_NN_ATOL:
        raise ValueError(
            "Source orientation mismatch: the inverse's fixed source orientations differ from "
            "the target forward's surface normals (max difference "
            f"{np.abs(nn_inv - nn_fwd).max() if nn_inv.shape == nn_fwd.shape else 'n/a'}). "
            "Both must be the cortical-patch normals of one source space: build both forward "
            "models with make_forward on the same subject and spacing.")
    return np.asarray(fixed["sol"]["data"], np.float64), list(fixed["sol"]["row_names"])


@verbose
def make_transfer_operator(inverse, target_forward, *, lambda2, method="MNE",
                           method_params=None, verbose=None):
    """The linear physics transfer ``T = G_target @ K`` from one sensor array to another.

    ``K`` is the imaging kernel of ``inverse`` at ``lambda2`` and ``method`` exactly as
    :func:`mne.minimum_norm.apply_inverse_raw` uses it (projection, whitening, regularised
    SVD, source covariance and, for dSPM / sLORETA, noise normalisation); ``G_target`` is
    the target forward in fixed, surface-normal orientation (MNE's cortical-patch normals,
    the orientations the inverse estimates). Applying ``T`` to data equals applying the
    inverse and then the target forward to the source estimate.

    Parameters
    ----------
    inverse : mne.minimum_norm.InverseOperator
        Fixed-orientation operator of the source array (from :func:`~.make_inverse`).
    target_forward : mne.Forward
        Forward model of the target array on the inverse's source space (only its channels
        are used: pick them first, e.g. ``mne.pick_types_forward(fwd, meg=True,
        eeg=False)``).
    lambda2 : float
        Regularisation, > 0 (``1 / SNR**2``).
    method : 'MNE' | 'dSPM' | 'sLORETA' | 'eLORETA'
        Inverse method (see the module docstring about the units of dSPM / sLORETA).
    method_params : dict | None
        Passed to MNE (eLORETA options).
    verbose : bool | str | None
        Log level for this call.

    Returns
    -------
    operator : array, shape (n_target_channels, n_source_channels)
        float64; columns in the order of ``inverse["noise_cov"].ch_names``, rows in the
        order of the target forward's channels.
    target_ch_names : list of str
        The rows' channel names.
    """
    import mne

    _check_inverse(inverse)
    _check_type("target_forward", target_forward, mne.Forward, "mne.Forward")
    _check_option("method", method, METHODS)
    lambda2 = _check_lambda2(lambda2)
    _check_src(inverse["src"], target_forward["src"], "inverse", "target_forward")
    gain, names = _target_gain(target_forward, inverse)  # (n_target, n_sources)
    kernel = _kernel(inverse, lambda2, method, method_params)  # (n_sources, n_source_ch)
    logger.info("Physics transfer (%s, lambda2=%g): %d -> %d channels through %d sources.",
                method, lambda2, len(_inverse_ch_names(inverse)), len(names), kernel.shape[0])
    return gain @ kernel, names


__all__ = ["SOURCE_NN_ATOL", "SOURCE_POS_ATOL", "check_same_source_space",
           "make_transfer_operator"]

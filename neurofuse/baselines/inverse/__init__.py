"""Classical source imaging with MNE-Python: MNE, dSPM, sLORETA, eLORETA and fMRI-weighted MNE.

The baseline of the paper's simulation experiments (§4, appendix C), in parts:

- :mod:`.classical`: fixed-orientation depth-weighted operators (:func:`make_inverse`) and
  their streamed application (:func:`apply_inverse_array`);
- :mod:`.fmri`: fMRI-weighted MNE with a per-TR BOLD prior (:func:`fmri_prior`,
  :func:`apply_fmne`);
- :mod:`.noise`: regularisation (:func:`lambda2_from_cnr`) and noise covariance
  (:func:`noise_cov_from_noise`);
- :mod:`.fsaverage`: subject ↔ fsaverage maps (:func:`fsaverage_map`,
  :func:`estimate_to_fsaverage`, :func:`bold_to_subject`);
- :mod:`.posterior`: MNE and fMNE with a prior mean, ``ŝ = m + K (y − G m)``
  (:func:`apply_posterior`, :func:`prior_gain`, :func:`fit_prior_scale`);
- :mod:`.run`: every inverse on one story of a dataset store (:func:`run_inverses`);
- :mod:`.transfer`: physics transfers between sensor arrays on one source space (data →
  inverse → another forward, :func:`make_transfer_operator`, :func:`check_same_source_space`);
- :mod:`.volume`: a given lead field on discrete volume sources as an ``mne.Forward``
  (:func:`make_fixed_forward`), estimates as ``VolSourceEstimate`` / NIfTI
  (:func:`make_volume_stc`, :func:`estimate_to_nifti`).

Typical use on a dataset store::

    est = run_inverses(ds, "S01", "story-04")      # {method: (n_sources_fsaverage, n_times)}
"""

from ._common import ALL_METHODS, DEFAULT_FLOOR, METHODS, MIN_LAMBDA2, NORMALIZATIONS
from .classical import apply_inverse_array, make_inverse
from .fmri import apply_fmne, fmri_prior
from .fsaverage import bold_to_subject, estimate_to_fsaverage, fsaverage_map
from .noise import lambda2_from_cnr, noise_cov_from_noise
from .posterior import (
    POSTERIOR_METHODS,
    apply_posterior,
    fit_prior_scale,
    posterior_name,
    prior_gain,
)
from .run import run_inverses
from .transfer import check_same_source_space, make_transfer_operator
from .volume import estimate_to_nifti, make_fixed_forward, make_volume_stc

__all__ = [
    "ALL_METHODS", "DEFAULT_FLOOR", "METHODS", "MIN_LAMBDA2", "NORMALIZATIONS",
    "POSTERIOR_METHODS", "apply_fmne", "apply_inverse_array", "apply_posterior",
    "bold_to_subject", "check_same_source_space",
    "estimate_to_fsaverage", "estimate_to_nifti", "fit_prior_scale", "fmri_prior",
    "fsaverage_map",
    "lambda2_from_cnr", "make_fixed_forward", "make_inverse", "make_transfer_operator",
    "make_volume_stc", "noise_cov_from_noise", "posterior_name", "prior_gain", "run_inverses",
]

"""Classical source imaging with MNE-Python: MNE, dSPM, sLORETA, eLORETA and fMRI-weighted MNE.

See :mod:`neurofuse.baselines.inverse.classical`.
"""

from .classical import (  # noqa: F401
    ALL_METHODS,
    DEFAULT_FLOOR,
    METHODS,
    MIN_LAMBDA2,
    NORMALIZATIONS,
    apply_fmne,
    apply_inverse_array,
    bold_to_subject,
    estimate_to_fsaverage,
    fmri_prior,
    fsaverage_map,
    lambda2_from_cnr,
    make_inverse,
    noise_cov_from_noise,
    run_inverses,
)

__all__ = [
    "ALL_METHODS", "METHODS", "NORMALIZATIONS", "apply_fmne", "apply_inverse_array",
    "bold_to_subject", "estimate_to_fsaverage", "fmri_prior", "fsaverage_map",
    "lambda2_from_cnr", "make_inverse", "noise_cov_from_noise", "run_inverses",
]

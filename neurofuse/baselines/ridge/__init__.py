"""Ridge encoding models and the dataset ceilings of paper §3 (split into modules next)."""

from .ceilings import (
    DEFAULT_ALPHAS,
    FMRI_DELAYS_S,
    MEG_DELAYS_S,
    BandedRidge,
    RidgeCeiling,
    StackedRidge,
    _ArraySource,
    fit_fmri_ceiling,
    fit_meg_ceiling,
    ridge_fit,
    solve_ridge_cv_by_groups,
    solve_simplex_lstsq,
    use_ridge_backend,
)
from .ceilings import __all__  # noqa: F401

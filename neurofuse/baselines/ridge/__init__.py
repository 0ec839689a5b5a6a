"""Ridge encoding models (himalaya underneath) and the dataset ceilings of paper §3.

* :mod:`.backend`: himalaya's backend (:func:`use_ridge_backend`) and array helpers;
* :mod:`.solver`: the pure-function solver layer (sufficient statistics, standardisation,
  :func:`ridge_fit`, :func:`solve_ridge_cv_by_groups`, :func:`solve_stacked_ridge_cv`,
  :func:`solve_ridge_cv_batched`);
* :mod:`.stacking`: convex stacking weights (:func:`solve_simplex_lstsq`);
* :mod:`.estimators`: :class:`StackedRidge` and :class:`BandedRidge`;
* :mod:`.lagged`: :class:`LaggedRidge`, a spatio-temporal ridge between epoched signals
  (lags -L..L, penalty per output by CV over whole epochs) and its design
  (:func:`make_lagged_epochs`);
* :mod:`.ceilings`: :func:`fit_meg_ceiling`, :func:`fit_fmri_ceiling` and
  :class:`RidgeCeiling` on a dataset store;
* :mod:`.denoise`: the joint model's denoised training fMRI, in-sample or cross-fitted
  (:func:`denoise_fmri`, :func:`solve_ridge_crossfit`).
"""

from .backend import use_ridge_backend
from .ceilings import (
    FMRI_DELAYS_S,
    MEG_DELAYS_S,
    RidgeCeiling,
    fit_fmri_ceiling,
    fit_meg_ceiling,
)
from .denoise import FMRI_DENOISE, check_fmri_denoise, denoise_fmri, solve_ridge_crossfit
from .estimators import BandedRidge, StackedRidge
from .lagged import LaggedRidge, check_epochs, check_lags, make_lagged_epochs
from .solver import (
    DEFAULT_ALPHAS,
    ridge_fit,
    solve_ridge_cv_batched,
    solve_ridge_cv_by_groups,
    solve_stacked_ridge_cv,
)
from .stacking import solve_simplex_lstsq

__all__ = [
    "DEFAULT_ALPHAS",
    "FMRI_DELAYS_S",
    "FMRI_DENOISE",
    "LaggedRidge",
    "MEG_DELAYS_S",
    "BandedRidge",
    "RidgeCeiling",
    "StackedRidge",
    "check_epochs",
    "check_fmri_denoise",
    "check_lags",
    "denoise_fmri",
    "fit_fmri_ceiling",
    "fit_meg_ceiling",
    "make_lagged_epochs",
    "ridge_fit",
    "solve_ridge_cv_batched",
    "solve_ridge_crossfit",
    "solve_ridge_cv_by_groups",
    "solve_simplex_lstsq",
    "solve_stacked_ridge_cv",
    "use_ridge_backend",
]

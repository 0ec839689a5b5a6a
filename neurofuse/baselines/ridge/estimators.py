"""Ridge estimators with a scikit-learn-like API, thin layers over :mod:`.solver`.

:class:`StackedRidge` (Lin et al., 2024: one ridge per feature space, then per-target convex
weights over the spaces' cross-validated predictions) and :class:`BandedRidge` (himalaya's
``BandedRidgeCV``).
"""

from __future__ import annotations

import numpy as np

from ..._checks import _check_finite
from ..._logging import use_log_level
from .backend import _np, use_ridge_backend
from .solver import (
    _CHUNK,
    DEFAULT_ALPHAS,
    _ArraySource,
    _check_alphas,
    _check_batch,
    _check_groups,
    _make_folds,
    solve_stacked_ridge_cv,
)


def _check_spaces(X_list, n_samples=None, widths=None):
    if isinstance(X_list, np.ndarray) or not isinstance(X_list, (list, tuple)) or not X_list:
        raise TypeError("'X_list' must be a non-empty list of per-feature-space designs "
                        "(n_samples, p_k); wrap a single design as [X].")
    out = []
    for k, X in enumerate(X_list):
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"X_list[{k}] must have shape (n_samples, p_k), got shape "
                             f"{X.shape}.")
        if n_samples is None:
            n_samples = X.shape[0]
        if X.shape[0] != n_samples:
            raise ValueError(f"All feature spaces must have the same n_samples as Y "
                             f"({n_samples}), but X_list[{k}] has {X.shape[0]}.")
        _check_finite(f"X_list[{k}]", X)
        out.append(X)
    if widths is not None and [X.shape[1] for X in out] != list(widths):
        raise ValueError(f"The model was fitted on feature spaces of widths {list(widths)}, got "
                         f"{[X.shape[1] for X in out]}.")
    return out


class _LinearSpacesModel:
    """Shared predict for models that are linear in each feature space."""

    def _combined(self):
        raise NotImplementedError

    def predict(self, X_list):
        """Predict the targets.

        Parameters
        ----------
        X_list : list of array, shape (n_samples, p_k)
            One design per feature space, as in ``fit``.

        Returns
        -------
        Y_pred : array, shape (n_samples, n_targets)
        """
        if not hasattr(self, "coefs_"):
            raise RuntimeError(f"This {type(self).__name__} is not fitted yet: call fit first.")
        X_list = _check_spaces(X_list, widths=[c.shape[0] for c in self.coefs_])
        coefs, intercept = self._combined()
        out = np.empty((X_list[0].shape[0], intercept.shape[0]))
        for start in range(0, out.shape[0], _CHUNK):
            sl = slice(start, start + _CHUNK)
            acc = np.asarray(X_list[0][sl], dtype=np.float64) @ coefs[0] + intercept[None, :]
            for X, c in zip(X_list[1:], coefs[1:]):
                acc += np.asarray(X[sl], dtype=np.float64) @ c
            out[sl] = acc
        return out


class StackedRidge(_LinearSpacesModel):
    """Stacked ridge regression (Lin et al., 2024): one ridge per feature space, stacked.

    Each feature space ``k`` gets its own ridge (features standardised with training
    statistics, intercept, one alpha per target chosen by cross-validation over groups).
    The cross-validated predictions ``P_k`` of the spaces then fit per-target convex weights
    ``w = argmin ||y - sum_k w_k P_k||^2`` s.t. ``w >= 0``, ``sum w = 1``, and every space is
    refitted on all the data. With one space this is a plain per-target ``RidgeCV`` with
    folds over groups.

    Parameters
    ----------
    alphas : array, shape (n_alphas,)
        Candidate regularisations (> 0), shared by all spaces.
    cv : None | int | "stories"
        Folds over groups: ``None`` -> ``min(5, n_groups)``; int: that many folds of whole
        groups; ``"stories"``: leave one group out.
    n_targets_batch : int | None
        Targets processed at once in the solves (memory control; statistics ``X'Y`` are
        always held for all targets).
    backend : None | "numpy" | "torch" | "torch_cuda"
        himalaya backend for the heavy linear algebra (None: CUDA if present, else numpy).

    Attributes
    ----------
    coefs_ : list of array, shape (p_k, n_targets)
        Per-space ridge coefficients in the units of the inputs (before stacking weights).
    intercepts_ : array, shape (K, n_targets)
        Per-space intercepts.
    alphas_ : array, shape (K, n_targets)
        Chosen regularisation per space and target.
    weights_ : array, shape (n_targets, K)
        Convex stacking weights (>= 0, rows sum to 1).
    cv_scores_ : array, shape (K, n_alphas, n_targets)
        Cross-validated R^2 of each space and alpha.
    """

    def __init__(self, alphas=DEFAULT_ALPHAS, *, cv=None, n_targets_batch=None, backend=None):
        self.alphas = alphas
        self.cv = cv
        self.n_targets_batch = n_targets_batch
        self.backend = backend

    def fit(self, X_list, Y, groups, *, verbose=None):
        """Fit the per-space ridges and the stacking weights.

        Parameters
        ----------
        X_list : list of array, shape (n_samples, p_k)
            One design per feature space (already delayed).
        Y : array, shape (n_samples, n_targets)
        groups : array, shape (n_samples,)
            Story (or any group) label of each sample; CV folds hold whole groups.
        verbose : bool | str | None

        Returns
        -------
        self
        """
        Y = np.asarray(Y)
        if Y.ndim == 1:
            Y = Y[:, None]
        if Y.ndim != 2:
            raise ValueError(f"'Y' must have shape (n_samples, n_targets), got {Y.shape}.")
        _check_finite("Y", Y)
        X_list = _check_spaces(X_list, n_samples=Y.shape[0])
        groups = _check_groups(groups, Y.shape[0])
        return self.fit_source(_ArraySource(X_list, Y, groups), len(X_list), verbose=verbose)

    def fit_source(self, source, n_spaces, *, scoring="auto", verbose=None):
        """Fit on a streamed data source (designs built chunk by chunk, never held whole).

        Parameters
        ----------
        source : data source
            ``keys``, ``n_rows(key)`` and ``chunks(key, with_y=True)`` yielding
            ``(X_list, Y)`` (see :mod:`neurofuse.baselines.ridge.solver`).
        n_spaces : int
            Number of feature spaces (designs per chunk).
        scoring : "auto" | "gram" | "direct"
            How validation errors are computed (:func:`.solve_stacked_ridge_cv`).
        verbose : bool | str | None

        Returns
        -------
        self
        """
        res = solve_stacked_ridge_cv(source, n_spaces, alphas=self.alphas, cv=self.cv,
                                     n_targets_batch=self.n_targets_batch,
                                     backend=self.backend, scoring=scoring, verbose=verbose)
        self.coefs_ = res["coefs"]
        self.intercepts_ = res["intercepts"]
        self.alphas_ = res["alphas"]
        self.weights_ = res["weights"]
        self.cv_scores_ = res["cv_scores"]
        return self

    def _combined(self):
        coefs = [c * self.weights_[:, k][None, :] for k, c in enumerate(self.coefs_)]
        return coefs, (self.intercepts_ * self.weights_.T).sum(0)

    def predict_spaces(self, X_list):
        """Per-space predictions before stacking, array of shape (K, n_samples, n_targets)."""
        X_list = _check_spaces(X_list, widths=[c.shape[0] for c in self.coefs_])
        return np.stack([np.asarray(X, dtype=np.float64) @ c + b[None, :]
                         for X, c, b in zip(X_list, self.coefs_, self.intercepts_)])


class BandedRidge(_LinearSpacesModel):
    """Banded ridge: one joint ridge with a regularisation per feature space and target.

    A thin wrapper of himalaya's ``BandedRidgeCV`` (``GroupRidgeCV``, random search over the
    simplex of band scalings) with features standardised with training statistics and
    folds over groups. Unlike :class:`StackedRidge` it needs all designs in memory, and
    himalaya's solver forms an ``(n_val, n_train)`` matrix per alpha, so it suits short
    recordings only (about 20k samples for 4 GiB; the paper's MEG has ~790k).

    Parameters
    ----------
    alphas : array, shape (n_alphas,)
        Global regularisations searched for each candidate band scaling.
    n_iter : int
        Number of random band scalings tried (himalaya's ``n_iter``).
    cv : None | int | "stories"
        As in :class:`StackedRidge`.
    n_targets_batch : int | None
    backend : None | "numpy" | "torch" | "torch_cuda"
    random_state : int | None
    max_gib : float
        Refuse to fit (with an explanation) when himalaya's per-alpha matrix would exceed
        this many GiB.

    Attributes
    ----------
    coefs_ : list of array, shape (p_k, n_targets)
        Coefficients in the units of the inputs.
    intercept_ : array, shape (n_targets,)
    deltas_ : array, shape (K, n_targets)
        Log band scalings chosen per target.
    """

    def __init__(self, alphas=DEFAULT_ALPHAS, *, n_iter=20, cv=None, n_targets_batch=None,
                 backend=None, random_state=0, max_gib=4.0):
        self.alphas = alphas
        self.n_iter = n_iter
        self.max_gib = max_gib
        self.cv = cv
        self.n_targets_batch = n_targets_batch
        self.backend = backend
        self.random_state = random_state

    def fit(self, X_list, Y, groups, *, verbose=None):
        """Fit; arguments as in :meth:`StackedRidge.fit`."""
        from himalaya.ridge import BandedRidgeCV

        Y = np.asarray(Y)
        Y = Y[:, None] if Y.ndim == 1 else Y
        X_list = _check_spaces(X_list, n_samples=Y.shape[0])
        _check_finite("Y", Y)
        groups = _check_groups(groups, Y.shape[0])
        alphas = _check_alphas(self.alphas)
        src = _ArraySource(X_list, Y, groups)
        folds = _make_folds(src.keys, self.cv)
        splits = [(np.flatnonzero(~np.isin(groups, keys)), np.flatnonzero(np.isin(groups, keys)))
                  for keys in folds]
        n_train, n_val = max((len(tr), len(va)) for tr, va in splits)
        need = 8.0 * n_train * n_val / 2**30
        if need > self.max_gib:
            raise ValueError(
                f"BandedRidge (himalaya's primal random search) forms one (n_val, n_train) = "
                f"({n_val}, {n_train}) float64 matrix per alpha: {need:.1f} GiB > max_gib="
                f"{self.max_gib:g}. Use StackedRidge (memory independent of n_samples), fewer "
                "samples, or raise max_gib.")
        mus = [X.mean(0) for X in X_list]
        sigmas = [X.std(0) for X in X_list]
        sigmas = [np.where(s > 1e-12 * (np.abs(m) + 1), s, 1.0) for s, m in zip(sigmas, mus)]
        with use_ridge_backend(self.backend) as bk, use_log_level(verbose):
            Xs = [bk.asarray((X - m) / s, dtype="float64")
                  for X, m, s in zip(X_list, mus, sigmas)]
            model = BandedRidgeCV(
                groups="input", fit_intercept=True, cv=splits, random_state=self.random_state,
                solver_params={"alphas": alphas, "n_iter": int(self.n_iter), "progress_bar": False,
                               "n_targets_batch": _check_batch(self.n_targets_batch),
                               "n_alphas_batch": 1})
            model.fit(Xs, bk.asarray(np.asarray(Y, dtype=np.float64)))
            coef = _np(bk, model.coef_).reshape(-1, Y.shape[1])
            intercept = _np(bk, model.intercept_).reshape(Y.shape[1])
            self.deltas_ = _np(bk, model.deltas_).reshape(len(X_list), Y.shape[1])
        bounds = np.cumsum([0] + [X.shape[1] for X in X_list])
        self.coefs_ = [coef[a:b] / s[:, None] for a, b, s in zip(bounds[:-1], bounds[1:], sigmas)]
        self.intercept_ = intercept - sum(m @ c for m, c in zip(mus, self.coefs_))
        return self

    def _combined(self):
        return self.coefs_, self.intercept_


__all__ = ["BandedRidge", "StackedRidge"]

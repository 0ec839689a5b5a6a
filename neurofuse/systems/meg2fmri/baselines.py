"""What system C must beat: the mean training slice, ridge from the MEG vector to the pixels,
and the cGAN's own output when its MEG input is shuffled.

A min-max normalised raw fMRI slice is mostly anatomy, so a model that ignores the MEG can
score well on MSE and SSIM by reproducing the mean slice (issue 13). These baselines answer how
much of a score the MEG explains:

* :func:`mean_slice`: the mean of the training slices, predicted for every event;
* :class:`RidgeSlices`: one ridge per pixel from the MEG vector (the shared solver,
  :func:`neurofuse.baselines.ridge.solve_ridge_cv_by_groups`, alpha per pixel chosen by
  leave-subjects-out cross-validation);
* :func:`shuffle_rows`: a permutation of held-out MEG vectors without fixed points, so the
  shuffled control feeds every event another event's MEG.

The physics baseline (MEG → inverse → envelope → HRF → voxels, no training) is in
:mod:`.physics`.
"""

from __future__ import annotations

import numpy as np

from ..._checks import _check_int
from ...baselines.ridge import DEFAULT_ALPHAS, solve_ridge_cv_by_groups

__all__ = ["RidgeSlices", "mean_slice", "shuffle_rows"]


def _check_xy(X, Y=None):
    X = np.asarray(X, np.float64)
    if X.ndim != 2:
        raise ValueError(f"'X' must have shape (n_events, n_features), got shape {X.shape}.")
    if Y is None:
        return X
    Y = np.asarray(Y, np.float64)
    if Y.ndim < 3 or len(Y) != len(X):
        raise ValueError(f"'Y' must have shape (n_events, h, w) (or (n_events, [n_frames,] "
                         f"n_x, n_y, n_z)) with n_events = len(X) = {len(X)}, got shape "
                         f"{Y.shape}.")
    return X, Y


def mean_slice(Y) -> np.ndarray:
    """The mean training slice (or volume, or sequence: the mean training target).

    Parameters
    ----------
    Y : array, shape (n_events, h, w) or (n_events, [n_frames,] n_x, n_y, n_z)
        Training targets.

    Returns
    -------
    mean : array, shape (h, w) or ([n_frames,] n_x, n_y, n_z)
        float32.
    """
    Y = np.asarray(Y)
    if Y.ndim < 3 or not len(Y):
        raise ValueError(f"'Y' must have shape (n_events, h, w) with n_events >= 1, got shape "
                         f"{Y.shape}.")
    return Y.mean(axis=0, dtype=np.float64).astype(np.float32)


class RidgeSlices:
    """Ridge regression from MEG vectors to slice pixels, one alpha per pixel.

    Volumes and sequences are fitted the same way, one ridge per voxel (of every frame), on
    the flattened targets.

    Features are standardised with the training statistics and the pixels centred (an
    intercept), as scikit-learn's ``make_pipeline(StandardScaler(), Ridge(alpha))`` at each
    pixel's alpha; the alpha is chosen by cross-validation over whole groups (subjects), so it
    is the one that generalises to new subjects, as the held-out evaluation asks.

    Parameters
    ----------
    alphas : array, shape (n_alphas,)
        Candidate regularisations.
    cv : None | int | "stories"
        Folds of whole groups (see :func:`~neurofuse.baselines.ridge.solve_ridge_cv_by_groups`).
    """

    def __init__(self, *, alphas=DEFAULT_ALPHAS, cv=None):
        self.alphas = alphas
        self.cv = cv

    def fit(self, X, Y, groups) -> RidgeSlices:
        """Fit on training pairs.

        Parameters
        ----------
        X : array, shape (n_events, n_features)
        Y : array, shape (n_events, h, w) or (n_events, [n_frames,] n_x, n_y, n_z)
        groups : array, shape (n_events,)
            Group of each event (its subject); at least two distinct values.

        Returns
        -------
        self : RidgeSlices
        """
        X, Y = _check_xy(X, Y)
        self.image_shape_ = Y.shape[1:]
        coef, intercept, alphas, _ = solve_ridge_cv_by_groups(
            X, Y.reshape(len(Y), -1), np.asarray(groups), alphas=self.alphas, cv=self.cv)
        self.coef_, self.intercept_, self.best_alphas_ = coef, intercept, alphas
        return self

    def predict(self, X) -> np.ndarray:
        """Predicted slices.

        Parameters
        ----------
        X : array, shape (n_events, n_features)

        Returns
        -------
        Y : array, shape (n_events, *target_shape)
            float32, shaped as the training targets.
        """
        if not hasattr(self, "coef_"):
            raise RuntimeError("RidgeSlices is not fitted: call fit(X, Y, groups) first.")
        X = _check_xy(X)
        if X.shape[1] != self.coef_.shape[0]:
            raise ValueError(f"'X' must have {self.coef_.shape[0]} features (as in fit), got "
                             f"{X.shape[1]}.")
        Y = X @ self.coef_ + self.intercept_
        return Y.reshape(len(X), *self.image_shape_).astype(np.float32)


def shuffle_rows(n, rng) -> np.ndarray:
    """A random permutation of ``n`` rows that moves every row (a derangement).

    Parameters
    ----------
    n : int
        Number of rows (>= 2).
    rng : numpy.random.Generator | int
        Random generator or seed.

    Returns
    -------
    order : array of int, shape (n,)
        ``X[order]`` gives every row another row's values: ``order[i] != i`` for all i.
    """
    n = _check_int("n", n, minimum=2)
    rng = np.random.default_rng(rng)
    # Position perm[i] takes row perm[(i + k) % n] for a random k in [1, n): no row stays. (Not
    # uniform over all derangements, which a control does not need.)
    perm = rng.permutation(n)
    k = int(rng.integers(1, n))
    order = np.empty(n, np.int64)
    order[perm] = perm[(np.arange(n) + k) % n]
    return order

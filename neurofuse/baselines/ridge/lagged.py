"""A linear spatio-temporal ridge between two epoched signals (e.g. EEG → MEG).

Each output channel at time ``t`` is a linear function of every input channel at times
``t - lag`` for ``lag`` in ``lags`` (negative lags read the future of the input, as a
non-causal sensor-to-sensor map may):

``y[o, t] = b[o] + sum_{c, l} kernel[o, c, l] * x[c, t - lags[l]]``

with ``x`` taken as 0 outside its epoch (a lag never carries one epoch into the next). The
fit is the solver layer of :mod:`.solver`: input columns standardised with the training
statistics (of the training folds during cross-validation, of all training epochs in the
final fit), an intercept, and one ridge penalty per output channel chosen by
cross-validation over whole epochs (or whole groups of epochs, e.g. runs), never splitting
an epoch. Designs are built epoch batch by epoch batch and never held whole: memory depends
on ``n_channels_in × n_lags`` and the number of outputs, not on the number of epochs.

The lagged design reuses :func:`neurofuse.stimulus.delays.make_delayed` (column order
lag-major: column ``l * n_channels_in + c`` is input channel ``c`` at lag ``lags[l]``).
"""

from __future__ import annotations

import numbers

import numpy as np

from ..._checks import _check_finite, _check_int
from ..._logging import logger, verbose
from ...stimulus.delays import make_delayed
from .solver import _CHUNK, DEFAULT_ALPHAS, _check_alphas, _check_batch, solve_stacked_ridge_cv


def check_lags(lags) -> np.ndarray:
    """Integer sample lags from an int ``L`` (``-L .. L``) or a sequence.

    Parameters
    ----------
    lags : int | array-like of int, shape (n_lags,)
        ``L >= 0`` means ``-L, ..., L``; a sequence gives the lags themselves (unique
        integers, negative = the input's future).

    Returns
    -------
    lags : array of int64, shape (n_lags,)
    """
    if isinstance(lags, numbers.Integral) and not isinstance(lags, bool):
        n = _check_int("lags", lags, 0, how_to_fix="An int L means the lags -L..L samples; "
                       "pass a sequence for other lags.")
        return np.arange(-n, n + 1, dtype=np.int64)
    arr = np.atleast_1d(np.asarray(lags))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"'lags' must be an int L (lags -L..L) or a non-empty 1-D sequence of "
                         f"integer sample lags, got shape {arr.shape}.")
    if not np.issubdtype(arr.dtype, np.integer):
        if not (np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr))
                and np.all(arr == np.round(arr))):
            raise TypeError(f"'lags' must be integers (samples), got {arr.dtype} values "
                            f"{arr[:5].tolist()}.")
    arr = arr.astype(np.int64)
    if np.unique(arr).size != arr.size:
        raise ValueError(f"'lags' must not repeat, got {arr.tolist()}.")
    return arr


def check_epochs(name, x, n_channels=None, n_times=None, what="n_channels"):
    """Check an epoch array: numeric, finite, shape (n_epochs, n_channels, n_times).

    Parameters
    ----------
    name : str
        The parameter's name, for the error messages.
    x : array, shape (n_epochs, n_channels, n_times)
        The epochs (a memmap stays a memmap).
    n_channels, n_times : int | None
        Required sizes (None: any).
    what : str
        How the error messages call the channel axis (e.g. ``"n_eeg"``).

    Returns
    -------
    x : array, shape (n_epochs, n_channels, n_times)
    """
    if not (hasattr(x, "shape") and hasattr(x, "dtype")):
        x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"'{name}' must have shape (n_epochs, {what}, n_times) (3-D), got "
                         f"shape {x.shape}. Stack single epochs with x[np.newaxis].")
    if not np.issubdtype(x.dtype, np.number):
        raise TypeError(f"'{name}' must be a numeric array, got dtype {x.dtype}.")
    if n_channels is not None and x.shape[1] != n_channels:
        raise ValueError(f"'{name}' has {x.shape[1]} channels but {n_channels} were expected "
                         f"(shape {x.shape}, expected (n_epochs, {n_channels}, n_times)). Pass "
                         "the channels the model was fitted on, in the same order.")
    if n_times is not None and x.shape[2] != n_times:
        raise ValueError(f"'{name}' has {x.shape[2]} time samples but {n_times} were expected "
                         "(its pair's length): pair epochs of equal length.")
    if x.shape[0] < 1 or x.shape[2] < 1:
        raise ValueError(f"'{name}' is empty (shape {x.shape}).")
    _check_finite(name, x)
    return x


def make_lagged_epochs(x, lags, *, dtype=np.float64) -> np.ndarray:
    """The lagged design of epochs, zero outside each epoch.

    Parameters
    ----------
    x : array, shape (n_epochs, n_channels, n_times)
        Input epochs.
    lags : int | array-like of int, shape (n_lags,)
        See :func:`check_lags`; lag ``l`` reads ``x[..., t - l]``.
    dtype : dtype
        Output dtype.

    Returns
    -------
    design : array, shape (n_epochs * n_times, n_channels * n_lags)
        Rows epoch-major (``e * n_times + t``); column ``l * n_channels + c`` holds
        ``x[e, c, t - lags[l]]`` when ``0 <= t - lags[l] < n_times``, else 0.
    """
    x = check_epochs("x", x)
    lags = check_lags(lags)
    return _lagged(x, lags, dtype)


def _lagged(x, lags, dtype=np.float64):
    """:func:`make_lagged_epochs` without the checks (lags already validated)."""
    n_epochs, n_ch, n_times = x.shape
    shift = max(0, -int(lags.min()))  # the future lags read up to `shift` samples ahead
    out = np.empty((n_epochs * n_times, n_ch * len(lags)), dtype)
    for e in range(n_epochs):
        # pad the end so that delays lags + shift >= 0 reach the future; rows t + shift
        padded = np.zeros((n_times + shift, n_ch), dtype)
        padded[:n_times] = np.asarray(x[e]).T
        out[e * n_times:(e + 1) * n_times] = make_delayed(
            padded, lags + shift, dtype=dtype)[shift:shift + n_times]
    return out


def _epoch_folds(groups, n_epochs, cv):
    """Folds of whole groups of epochs: contiguous blocks of groups (in order of appearance)."""
    if groups is None:
        groups = np.arange(n_epochs)
    groups = np.asarray(groups)
    if groups.shape != (n_epochs,):
        raise ValueError(f"'groups' must have shape (n_epochs,) = ({n_epochs},): one label per "
                         f"epoch (e.g. its run or subject), got shape {groups.shape}.")
    labels, first = np.unique(groups, return_index=True)
    order = labels[np.argsort(first)]
    cv = _check_int("cv", cv, 2, how_to_fix="It counts the cross-validation folds (whole "
                    "epochs or groups per fold).")
    if cv > len(order):
        raise ValueError(f"'cv' ({cv}) must not exceed the number of epoch groups "
                         f"({len(order)}): every fold needs a whole epoch (group). Pass fewer "
                         "folds or more epochs.")
    blocks = np.array_split(np.arange(len(order)), cv)
    return [np.flatnonzero(np.isin(groups, order[b])) for b in blocks]


class _EpochSource:
    """A data source (see :mod:`.solver`) whose keys are folds of epochs."""

    def __init__(self, x, y, lags, folds):
        self.x, self.y, self.lags, self.folds = x, y, lags, folds
        self.keys = list(range(len(folds)))
        self.batch = max(1, _CHUNK // x.shape[2])  # epochs per chunk

    def n_rows(self, key):
        return len(self.folds[key]) * self.x.shape[2]

    def chunks(self, key, with_y=True):
        idx = self.folds[key]
        for a in range(0, len(idx), self.batch):
            ep = idx[a:a + self.batch]
            X = _lagged(np.asarray(self.x[ep]), self.lags)  # (n_ep * T, C_in * n_lags)
            Y = None
            if with_y:  # (n_ep, C_out, T) -> (n_ep * T, C_out)
                Y = np.asarray(self.y[ep], np.float64).transpose(0, 2, 1).reshape(
                    -1, self.y.shape[1])
            yield [X], Y


class LaggedRidge:
    """Spatio-temporal ridge from input epochs to output epochs, alpha per output by CV.

    Parameters
    ----------
    lags : int | array-like of int, shape (n_lags,)
        Input lags in samples (:func:`check_lags`): an int ``L`` means ``-L .. L``.
    alphas : array, shape (n_alphas,)
        Candidate penalties (> 0) on the standardised inputs (not rescaled by the number of
        samples, as in scikit-learn's ``Ridge``).
    cv : int
        Cross-validation folds, each a contiguous block of whole epochs (or of whole groups
        of epochs when ``fit`` gets ``groups``).
    n_targets_batch : int | None
        Outputs solved at once (memory control).
    backend : None | "numpy" | "torch" | "torch_cuda"
        himalaya backend for the linear algebra (None: CUDA if present, else numpy).

    Attributes
    ----------
    lags_ : array of int, shape (n_lags,)
    coef_ : array, shape (n_channels_in * n_lags, n_channels_out)
        In the units of the inputs (design columns lag-major, see
        :func:`make_lagged_epochs`).
    intercept_ : array, shape (n_channels_out,)
    alphas_ : array, shape (n_channels_out,)
        The chosen penalty of each output.
    cv_scores_ : array, shape (n_alphas, n_channels_out)
        Cross-validated R² of each candidate (errors summed over the folds).
    folds_ : list of array of int
        The epochs of each validation fold.
    """

    def __init__(self, lags=5, alphas=DEFAULT_ALPHAS, *, cv=5, n_targets_batch=None,
                 backend=None):
        self.lags = lags
        self.alphas = alphas
        self.cv = cv
        self.n_targets_batch = n_targets_batch
        self.backend = backend

    _in, _out = "X", "Y"  # parameter names in messages (subclasses rename them)

    @verbose
    def fit(self, X, Y, *, groups=None, verbose=None):
        """Fit the lagged ridge, choosing each output's penalty by CV over epochs.

        Parameters
        ----------
        X : array, shape (n_epochs, n_channels_in, n_times)
            Input epochs.
        Y : array, shape (n_epochs, n_channels_out, n_times)
            Output epochs, paired with ``X``.
        groups : array, shape (n_epochs,) | None
            A label per epoch (e.g. run or subject): folds hold whole groups. None: each
            epoch is its own group.
        verbose : bool | str | None
            Log level for this call.

        Returns
        -------
        self
        """
        lags = check_lags(self.lags)
        alphas = _check_alphas(self.alphas)
        batch = _check_batch(self.n_targets_batch)
        X = check_epochs(self._in, X)
        Y = check_epochs(self._out, Y, n_times=X.shape[2])
        if Y.shape[0] != X.shape[0]:
            raise ValueError(f"'{self._in}' and '{self._out}' must hold the same epochs, got "
                             f"{X.shape[0]} and {Y.shape[0]} epochs.")
        folds = _epoch_folds(groups, X.shape[0], self.cv)
        logger.info("Lagged ridge: %d epochs of %d samples, %d -> %d channels, %d lags (%d.."
                    "%d), %d folds.", X.shape[0], X.shape[2], X.shape[1], Y.shape[1],
                    len(lags), lags.min(), lags.max(), len(folds))
        res = solve_stacked_ridge_cv(_EpochSource(X, Y, lags, folds), 1, alphas=alphas,
                                     cv=len(folds), n_targets_batch=batch,
                                     backend=self.backend)
        self.lags_ = lags
        self.n_channels_in_ = X.shape[1]
        self.coef_ = res["coefs"][0]
        self.intercept_ = res["intercepts"][0]
        self.alphas_ = res["alphas"][0]
        self.cv_scores_ = res["cv_scores"][0]
        self.folds_ = folds
        return self

    @property
    def kernel_(self):
        """The fitted map, array of shape (n_channels_out, n_channels_in, n_lags).

        ``y[o, t] = intercept_[o] + sum_{c, l} kernel_[o, c, l] * x[c, t - lags_[l]]``.
        """
        self._check_fitted()
        n_lags = len(self.lags_)
        return self.coef_.reshape(n_lags, self.n_channels_in_, -1).transpose(2, 1, 0)

    def _check_fitted(self):
        if not hasattr(self, "coef_"):
            raise RuntimeError(f"This {type(self).__name__} is not fitted yet: call fit first.")

    def predict(self, X):
        """Predict output epochs.

        Parameters
        ----------
        X : array, shape (n_epochs, n_channels_in, n_times)

        Returns
        -------
        Y_pred : array, shape (n_epochs, n_channels_out, n_times)
            float64.
        """
        self._check_fitted()
        X = check_epochs(self._in, X, n_channels=self.n_channels_in_)
        n_epochs, _, n_times = X.shape
        out = np.empty((n_epochs, self.coef_.shape[1], n_times))
        step = max(1, _CHUNK // n_times)
        for a in range(0, n_epochs, step):
            design = _lagged(np.asarray(X[a:a + step]), self.lags_)
            pred = design @ self.coef_ + self.intercept_[None, :]  # (n_ep * T, C_out)
            out[a:a + step] = pred.reshape(-1, n_times, pred.shape[1]).transpose(0, 2, 1)
        return out


__all__ = ["LaggedRidge", "check_epochs", "check_lags", "make_lagged_epochs"]

"""The pure-function ridge solver layer (himalaya style): statistics, standardisation, solves.

Layers, bottom to top:

1. Sufficient statistics. A ridge with an intercept and standardised features needs only
   ``n``, ``sum(x)``, ``X^T X``, ``X^T Y``, ``sum(y)`` and ``sum(y^2)``; these add up over
   groups (stories) and over chunks of a group, so designs are built chunk by chunk and never
   held whole. Cross-validation over groups subtracts a fold's statistics from the total.
2. Standardisation and eigendecomposition of one problem (:class:`_Standardized`), from which
   every alpha's coefficients and validation error follow cheaply (:func:`_gram_sse`,
   :func:`_direct_sse`).
3. Public solvers: :func:`ridge_fit` (given alpha per target),
   :func:`solve_ridge_cv_by_groups` (alpha per target by cross-validation over groups),
   :func:`solve_stacked_ridge_cv` (the same, per feature space, on a streamed data source,
   with convex stacking weights from :func:`~.stacking.solve_simplex_lstsq`) and
   :func:`solve_ridge_cv_batched` (many small problems, each with its own design).

A *data source* (what :func:`solve_stacked_ridge_cv` reads) is any object with ``keys`` (the
group labels, in order), ``n_rows(key)`` (samples of a group) and ``chunks(key, with_y=True)``
yielding ``(X_list, Y)``: one design chunk ``(m, p_k)`` per feature space and the targets
``(m, n_targets)`` of the same ``m`` samples (``None`` when ``with_y`` is False).

Alphas are not rescaled by the number of samples (as in scikit-learn and himalaya), hence the
wide default grid ``logspace(-2, 8, 21)``.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..._checks import _check_finite, _check_int, _check_option
from ..._logging import logger, verbose
from .backend import _b, _eigh, _np, use_ridge_backend
from .stacking import solve_simplex_lstsq

DEFAULT_ALPHAS = np.logspace(-2, 8, 21)
_CHUNK = 8192  # rows of design processed at a time


# ------------------------------------------------------------------------------------------
# sufficient statistics
# ------------------------------------------------------------------------------------------
class _Stats:
    """Additive sufficient statistics of one design X (m, p) and targets Y (m, t)."""

    __slots__ = ("n", "sx", "sy", "xx", "xy", "yy")

    def __init__(self):
        self.n, self.sx, self.sy, self.xx, self.xy, self.yy = 0, None, None, None, None, None

    def add(self, bk, X, Y):
        Xb, Yb = _b(bk, X), _b(bk, Y)
        parts = (Xb.sum(0), Yb.sum(0), Xb.T @ Xb, Xb.T @ Yb, (Yb * Yb).sum(0))
        if self.sx is None:
            self.sx, self.sy, self.xx, self.xy, self.yy = parts
        else:
            for name, val in zip(self.__slots__[1:], parts):
                setattr(self, name, getattr(self, name) + val)
        self.n += X.shape[0]

    def combine(self, other, sign=1.0):
        out = _Stats()
        out.n = self.n + sign * other.n
        for name in self.__slots__[1:]:
            setattr(out, name, getattr(self, name) + sign * getattr(other, name))
        return out


class _Standardized:
    """Training-set standardisation and eigendecomposition of one ridge problem."""

    def __init__(self, bk, st, *, fit_intercept=True, standardize=True):
        n = st.n
        p = st.sx.shape[0]
        zeros = st.sx * 0.0
        self.mu = st.sx / n if fit_intercept else zeros
        self.ybar = st.sy / n if fit_intercept else st.sy * 0.0
        diag = st.xx.diagonal()
        if standardize:
            var = (diag / n - (st.sx / n) ** 2).clip(0, None)
            # constant (e.g. all-zero) columns: var is rounding noise; they get no weight
            self.const = var <= 1e-10 * (diag / n) + 1e-300
            self.sigma = (var * ~self.const + self.const) ** 0.5
        else:
            self.const = diag < 0  # none
            self.sigma = zeros + 1.0
        outer_s = self.sigma[:, None] * self.sigma[None, :]
        C = (st.xx - n * self.mu[:, None] * self.mu[None, :]) / outer_s
        Cxy = (st.xy - n * self.mu[:, None] * self.ybar[None, :]) / self.sigma[:, None]
        if standardize and bool(self.const.any()):
            C[self.const, :] = 0.0
            C[:, self.const] = 0.0
            Cxy[self.const, :] = 0.0
        self.p = p
        lam, V = _eigh(bk, C)
        del C
        # Drop the numerical null space (the rank test of numpy.linalg.matrix_rank): it holds
        # no signal (Cxy lies in the row space of X) and costs time when n_samples < p.
        rank = lam > float(lam.max()) * p * np.finfo(np.float64).eps
        self.lam, self.V = lam[rank], V[:, rank]  # (r,), (p, r)
        self.Z = self.V.T @ Cxy  # (r, t)

    def coef(self, bk, alphas, n_targets_batch=None):
        """Raw-unit coefficients (p, t) and intercept (t,) for one alpha per target."""
        # W = V diag(1 / (lam + alpha)) V' Cxy = V (Z / (lam + alpha)), per target
        alphas = _b(bk, alphas)
        t = self.Z.shape[1]
        batch = t if n_targets_batch is None else n_targets_batch
        coef = np.empty((self.p, t))
        for start in range(0, t, batch):
            sl = slice(start, start + batch)
            W = self.V @ (self.Z[:, sl] / (self.lam[:, None] + alphas[None, sl]))
            coef[:, sl] = _np(bk, W / self.sigma[:, None])
        intercept = _np(bk, self.ybar) - _np(bk, self.mu) @ coef
        return coef, intercept

    def transform(self, bk, X):
        """Standardised rows of X (m, p) as a backend array."""
        Xs = (_b(bk, X) - self.mu[None, :]) / self.sigma[None, :]
        if bool(self.const.any()):
            Xs[:, self.const] = 0.0
        return Xs


def _gram_sse(bk, std, val, alphas, n_targets_batch):
    """Validation SSE (n_alphas, t) from the validation fold's statistics alone.

    With training standardisation (mu, sigma, ybar), ``Xv~ = (Xv - mu) / sigma`` and
    ``yv~ = yv - ybar``: ``SSE = yv~'yv~ - 2 u'A + u'Bu`` with ``u = Z / (lam + alpha)``,
    ``A = V' Xv~' yv~`` and ``B = V' Xv~' Xv~ V`` (V: p x r). Cost ``2 p^2 r + n_alphas r^2 t``.
    """
    mu, sig, ybar, nv, s = std.mu, std.sigma, std.ybar, val.n, val.sx
    XtX = (val.xx - s[:, None] * mu[None, :] - mu[:, None] * s[None, :]
           + nv * mu[:, None] * mu[None, :]) / (sig[:, None] * sig[None, :])
    Xty = (val.xy - s[:, None] * ybar[None, :] - mu[:, None] * val.sy[None, :]
           + nv * mu[:, None] * ybar[None, :]) / sig[:, None]
    if bool(std.const.any()):
        XtX[std.const, :] = 0.0
        XtX[:, std.const] = 0.0
        Xty[std.const, :] = 0.0
    yty = val.yy - 2 * ybar * val.sy + nv * ybar ** 2
    B = std.V.T @ XtX @ std.V
    A = std.V.T @ Xty
    del XtX, Xty
    t = A.shape[1]
    batch = t if n_targets_batch is None else n_targets_batch
    sse = np.empty((len(alphas), t))
    for start in range(0, t, batch):
        sl = slice(start, start + batch)
        for i, alpha in enumerate(alphas):
            u = std.Z[:, sl] / (std.lam[:, None] + float(alpha))
            sse[i, sl] = _np(bk, yty[sl] - 2 * (u * A[:, sl]).sum(0) + (u * (B @ u)).sum(0))
    return sse, _np(bk, yty)


def _direct_sse(bk, std, Q, Yt, alphas, n_targets_batch):
    """Validation SSE (n_alphas, t) from projected validation rows ``Q = Xv~ V`` (n_v, r).

    Cost ``n_alphas n_v r t``: cheaper than :func:`_gram_sse` when ``n_v < r``.
    """
    t = Yt.shape[1]
    batch = t if n_targets_batch is None else n_targets_batch
    sse = np.empty((len(alphas), t))
    for start in range(0, t, batch):
        sl = slice(start, start + batch)
        for i, alpha in enumerate(alphas):
            resid = Yt[:, sl] - Q @ (std.Z[:, sl] / (std.lam[:, None] + float(alpha)))
            sse[i, sl] = _np(bk, (resid * resid).sum(0))
    return sse, _np(bk, (Yt * Yt).sum(0))


# ------------------------------------------------------------------------------------------
# data sources: chunks of per-space designs and targets, story by story
# ------------------------------------------------------------------------------------------
class _ArraySource:
    """In-memory designs ``X_list`` (n_samples, p_k), targets Y and group labels."""

    def __init__(self, X_list, Y, groups):
        self.X_list, self.Y = X_list, Y
        labels, first = np.unique(groups, return_index=True)
        self.keys = [labels[i] for i in np.argsort(first)]
        self._rows = {key: np.flatnonzero(groups == key) for key in self.keys}

    def n_rows(self, key):
        return len(self._rows[key])

    def chunks(self, key, with_y=True):
        rows = self._rows[key]
        for start in range(0, len(rows), _CHUNK):
            r = rows[start:start + _CHUNK]
            yield [X[r] for X in self.X_list], (self.Y[r] if with_y else None)


def _make_folds(keys, cv):
    n = len(keys)
    if n < 2:
        raise ValueError(f"Cross-validation over groups needs at least 2 groups (stories), got "
                         f"{n}. Fit on more stories or pass fixed alphas to ridge_fit.")
    if cv is None:
        k = min(5, n)
    elif isinstance(cv, str):
        _check_option("cv", cv, ["stories"], extra="Use an int for k folds of whole stories.")
        k = n
    elif isinstance(cv, numbers.Integral) and not isinstance(cv, bool):
        if not 2 <= cv <= n:
            raise ValueError(f"'cv' must be between 2 and the number of groups ({n}), got {cv}. "
                             "Use cv='stories' for leave-one-story-out.")
        k = int(cv)
    else:
        raise TypeError(f"'cv' must be None, an int or 'stories', got {cv!r}.")
    return [list(keys[i::k]) for i in range(k)]  # round-robin: whole groups per fold


def _check_alphas(alphas):
    arr = np.atleast_1d(np.asarray(alphas, dtype=float))
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or arr.min() <= 0:
        raise ValueError(f"'alphas' must be a non-empty 1-D array of finite values > 0, got "
                         f"{np.asarray(alphas)!r:.120}.")
    return arr


def _fit_core(bk, source, n_spaces, *, alphas, folds, n_targets_batch, scoring="auto",
              fit_intercept=True, standardize=True, log=True):
    """Per-space ridge with per-target alpha chosen by CV over groups, then stacking.

    Returns a dict with ``coefs`` (list of (p_k, t)), ``intercepts`` (K, t), ``alphas``
    (K, t), ``weights`` (t, K) and ``cv_scores`` (K, n_alphas, t; cross-validated R^2).
    """
    K = n_spaces
    fold_of = {key: f for f, keys in enumerate(folds) for key in keys}
    # -- pass 1: statistics per fold and space
    stats = [[_Stats() for _ in range(K)] for _ in folds]
    for key in source.keys:
        for Xs, Y in source.chunks(key):
            for k in range(K):
                stats[fold_of[key]][k].add(bk, Xs[k], Y)
    total = []
    for k in range(K):
        tot = stats[0][k]
        for f in range(1, len(folds)):
            tot = tot.combine(stats[f][k])
        total.append(tot)
    n_val = [sum(source.n_rows(key) for key in keys) for keys in folds]
    if log:
        logger.info("Ridge: %d samples in %d groups, %d folds, %d space(s) with %s columns, %d "
                    "targets.", total[0].n, len(source.keys), len(folds), K,
                    [int(s.sx.shape[0]) for s in total], int(total[0].sy.shape[0]))
    # -- per fold: eigendecompose the training part, score every alpha on the held-out part
    sse = [0.0] * K
    sst = [0.0] * K
    keep = [[None] * K for _ in folds]  # fold decompositions, kept only to stack
    for f, keys in enumerate(folds):
        stds = [_Standardized(bk, total[k].combine(stats[f][k], -1.0),
                              fit_intercept=fit_intercept, standardize=standardize)
                for k in range(K)]
        # cost per alpha: n_val r t (direct) vs r^2 t (from the fold's statistics)
        mode = [scoring if scoring != "auto"
                else ("direct" if n_val[f] < s.V.shape[1] else "gram") for s in stds]
        for k in (k for k in range(K) if mode[k] == "gram"):
            e, c = _gram_sse(bk, stds[k], stats[f][k], alphas, n_targets_batch)
            sse[k], sst[k] = sse[k] + e, sst[k] + c
        direct = [k for k in range(K) if mode[k] == "direct"]
        if direct:
            Q = {k: [] for k in direct}
            Yt = {k: [] for k in direct}
            for key in keys:
                for Xs, Y in source.chunks(key):
                    for k in direct:
                        Q[k].append(stds[k].transform(bk, Xs[k]) @ stds[k].V)
                        Yt[k].append(_b(bk, Y) - stds[k].ybar[None, :])
            for k in direct:
                e, c = _direct_sse(bk, stds[k], bk.concatenate(Q[k], 0),
                                   bk.concatenate(Yt[k], 0), alphas, n_targets_batch)
                sse[k], sst[k] = sse[k] + e, sst[k] + c
            del Q, Yt
        if K > 1:
            keep[f] = stds
        del stds
    best = np.stack([np.asarray(alphas)[np.argmin(e, axis=0)] for e in sse])  # (K, t)
    with np.errstate(divide="ignore", invalid="ignore"):
        cv_scores = np.stack([1 - e / np.where(c > 0, c, np.nan) for e, c in zip(sse, sst)])
    for k in range(K if log else 0):
        at_max = float(np.mean(best[k] == alphas[-1]))
        at_min = float(np.mean(best[k] == alphas[0]))
        logger.info("Space %d: median alpha %.3g; %.0f%% of targets at the largest alpha, %.0f%% "
                    "at the smallest.", k, np.median(best[k]), 100 * at_max, 100 * at_min)
    # -- stacking: convex weights fitted on the cross-validated predictions
    t = best.shape[1]
    if K > 1:
        H = np.zeros((t, K, K))
        g = np.zeros((t, K))
        for f, keys in enumerate(folds):
            models = [keep[f][k].coef(bk, best[k], n_targets_batch) for k in range(K)]
            keep[f] = None
            models = [(_b(bk, c), _b(bk, b)) for c, b in models]
            for key in keys:
                for Xs, Y in source.chunks(key):
                    P = [_b(bk, Xs[k]) @ c + b[None, :] for k, (c, b) in enumerate(models)]
                    Yb = _b(bk, Y)
                    for k in range(K):
                        g[:, k] += _np(bk, (P[k] * Yb).sum(0))
                        for j in range(k, K):
                            H[:, k, j] += _np(bk, (P[k] * P[j]).sum(0))
                            H[:, j, k] = H[:, k, j]
        weights = solve_simplex_lstsq(H, g)
    else:
        weights = np.ones((t, 1))
    # -- refit every space on all the data at its chosen alphas
    coefs, intercepts = [], []
    for k in range(K):
        std = _Standardized(bk, total[k], fit_intercept=fit_intercept, standardize=standardize)
        c, b = std.coef(bk, best[k], n_targets_batch)
        coefs.append(c)
        intercepts.append(b)
        del std
    return {"coefs": coefs, "intercepts": np.stack(intercepts), "alphas": best,
            "weights": weights, "cv_scores": cv_scores}


# ------------------------------------------------------------------------------------------
# pure solvers
# ------------------------------------------------------------------------------------------
def _check_xy(X, Y, *, x_name="X"):
    X = np.asarray(X)
    Y = np.asarray(Y)
    if X.ndim != 2:
        raise ValueError(f"'{x_name}' must have shape (n_samples, n_features), got shape "
                         f"{X.shape}.")
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2:
        raise ValueError(f"'Y' must have shape (n_samples, n_targets), got shape {Y.shape}.")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"'{x_name}' and 'Y' must have the same n_samples, got {X.shape[0]} "
                         f"and {Y.shape[0]}.")
    _check_finite(x_name, X)
    _check_finite("Y", Y)
    return X, Y


def _check_batch(n_targets_batch):
    if n_targets_batch is None:
        return None
    return _check_int("n_targets_batch", n_targets_batch, 1,
                      how_to_fix="Pass None to solve all targets at once.")


@verbose
def ridge_fit(X, Y, alpha, *, fit_intercept=True, standardize=True, n_targets_batch=None,
              backend=None, verbose=None):
    """Ridge regression with a given regularisation per target.

    Solves ``min_w ||y - ybar - Xs w||^2 + alpha ||w||^2`` per target, where ``Xs`` are the
    columns of ``X`` centred (``fit_intercept``) and scaled to unit variance
    (``standardize``) with the statistics of ``X``; equal to scikit-learn's
    ``make_pipeline(StandardScaler(), Ridge(alpha))``.

    Parameters
    ----------
    X : array, shape (n_samples, n_features)
    Y : array, shape (n_samples, n_targets) or (n_samples,)
    alpha : float | array, shape (n_targets,)
        Regularisation, > 0.
    fit_intercept : bool
        Centre X and Y (fit an intercept).
    standardize : bool
        Scale the columns of X to unit variance (population std; constant columns get 0 weight).
    n_targets_batch : int | None
        Targets solved at once (memory control).
    backend : None | "numpy" | "torch" | "torch_cuda"
        himalaya backend (None: CUDA if available, else numpy).
    verbose : bool | str | None

    Returns
    -------
    coef : array, shape (n_features, n_targets)
        Coefficients in the units of ``X``: predictions are ``X @ coef + intercept``.
    intercept : array, shape (n_targets,)
    """
    X, Y = _check_xy(X, Y)
    alpha = np.asarray(alpha, dtype=float)
    alphas = np.broadcast_to(alpha, (Y.shape[1],)) if alpha.ndim == 0 else alpha
    if alphas.shape != (Y.shape[1],):
        raise ValueError(f"'alpha' must be a scalar or have shape (n_targets,) = "
                         f"({Y.shape[1]},), got shape {alpha.shape}.")
    _check_alphas(alphas)
    batch = _check_batch(n_targets_batch)
    with use_ridge_backend(backend) as bk:
        st = _Stats()
        for start in range(0, X.shape[0], _CHUNK):
            st.add(bk, X[start:start + _CHUNK], Y[start:start + _CHUNK])
        std = _Standardized(bk, st, fit_intercept=fit_intercept, standardize=standardize)
        return std.coef(bk, alphas, batch)


@verbose
def solve_ridge_cv_by_groups(X, Y, groups, *, alphas=DEFAULT_ALPHAS, cv=None,
                             n_targets_batch=None, backend=None, verbose=None):
    """Ridge with one alpha per target chosen by cross-validation over groups (stories).

    Parameters
    ----------
    X : array, shape (n_samples, n_features)
        Design (already delayed), standardised internally with training statistics.
    Y : array, shape (n_samples, n_targets)
    groups : array, shape (n_samples,)
        Group (story) of each sample; folds hold whole groups.
    alphas : array, shape (n_alphas,)
        Candidate regularisations (> 0).
    cv : None | int | "stories"
        ``None``: ``min(5, n_groups)`` folds; int: that many folds of whole groups
        (round-robin); ``"stories"``: leave one group out.
    n_targets_batch : int | None
        Targets processed at once.
    backend : None | "numpy" | "torch" | "torch_cuda"
    verbose : bool | str | None

    Returns
    -------
    coef : array, shape (n_features, n_targets)
    intercept : array, shape (n_targets,)
    best_alphas : array, shape (n_targets,)
    cv_scores : array, shape (n_alphas, n_targets)
        Cross-validated R^2 of each alpha (SSE summed over folds).
    """
    X, Y = _check_xy(X, Y)
    res = solve_stacked_ridge_cv(_ArraySource([X], Y, _check_groups(groups, len(Y))), 1,
                                 alphas=alphas, cv=cv, n_targets_batch=n_targets_batch,
                                 backend=backend)
    return res["coefs"][0], res["intercepts"][0], res["alphas"][0], res["cv_scores"][0]


@verbose
def solve_stacked_ridge_cv(source, n_spaces, *, alphas=DEFAULT_ALPHAS, cv=None,
                           n_targets_batch=None, backend=None, scoring="auto", verbose=None):
    """Stacked ridge on a streamed data source: per-space ridge CV, then convex stacking.

    Each feature space gets its own ridge (features standardised with training statistics,
    intercept, one alpha per target chosen by cross-validation over the source's groups); the
    cross-validated predictions of the spaces fit per-target convex weights
    (:func:`~.stacking.solve_simplex_lstsq`), and every space is refitted on all the data at its chosen
    alphas. Memory depends on the widths ``p_k`` and the number of targets, never on the
    number of samples (the source is read chunk by chunk, twice when ``n_spaces > 1``).

    Parameters
    ----------
    source : data source
        ``keys``, ``n_rows(key)``, ``chunks(key, with_y=True)`` (see the module docstring).
    n_spaces : int
        Number of feature spaces ``K`` (designs per chunk).
    alphas : array, shape (n_alphas,)
        Candidate regularisations (> 0), shared by all spaces.
    cv : None | int | "stories"
        Folds over the source's groups: ``None`` -> ``min(5, n_groups)``; int: that many
        folds of whole groups (round-robin); ``"stories"``: leave one group out.
    n_targets_batch : int | None
        Targets processed at once in the solves.
    backend : None | "numpy" | "torch" | "torch_cuda"
        himalaya backend (None: CUDA if present, else numpy).
    scoring : "auto" | "gram" | "direct"
        How validation errors are computed (same result; ``"auto"`` picks the cheaper).
    verbose : bool | str | None

    Returns
    -------
    solution : dict
        ``"coefs"`` (list of K arrays (p_k, n_targets), units of the inputs),
        ``"intercepts"`` (K, n_targets), ``"alphas"`` (K, n_targets), ``"weights"``
        (n_targets, K; convex) and ``"cv_scores"`` (K, n_alphas, n_targets; cross-validated
        R^2).
    """
    alphas = _check_alphas(alphas)
    folds = _make_folds(source.keys, cv)
    batch = _check_batch(n_targets_batch)
    _check_option("scoring", scoring, ("auto", "gram", "direct"))
    with use_ridge_backend(backend) as bk:
        return _fit_core(bk, source, int(n_spaces), alphas=alphas, folds=folds,
                         n_targets_batch=batch, scoring=scoring)


def solve_ridge_cv_batched(X, Y, groups, alphas=DEFAULT_ALPHAS, *, cv="stories",
                           backend="numpy"):
    """Many small independent ridge regressions, each with its own design and alpha by CV.

    Problem ``e`` regresses ``Y[e]`` on its own design ``X[e]`` (n_samples, k) exactly as
    :func:`solve_ridge_cv_by_groups` does (columns standardised and ``Y`` centred with the
    training statistics, intercept, alpha chosen by cross-validation over ``groups``, then
    refitted on all samples): equal to scikit-learn's
    ``make_pipeline(StandardScaler(), Ridge(alpha))`` at the chosen alpha. Used for a
    regression per electrode from its own nearby sources.

    Parameters
    ----------
    X : array, shape (n_problems, n_samples, k)
    Y : array, shape (n_problems, n_samples)
    groups : array, shape (n_samples,)
        At least two distinct values.
    alphas : array, shape (n_alphas,)
    cv : None | int | "stories"
        As in :func:`solve_ridge_cv_by_groups`; the default leaves one group out.
    backend : None | "numpy" | "torch" | "torch_cuda"
        ``"numpy"`` by default: the problems are small.

    Returns
    -------
    coef : array, shape (n_problems, k)
        In the units of X: predictions are ``X[e] @ coef[e] + intercept[e]``.
    intercept : array, shape (n_problems,)
    best_alpha : array, shape (n_problems,)
    """
    X = np.asarray(X)
    Y = np.asarray(Y)
    if X.ndim != 3 or Y.shape != X.shape[:2]:
        raise ValueError(f"'X' must have shape (n_problems, n_samples, k) and 'Y' (n_problems, "
                         f"n_samples), got {X.shape} and {Y.shape}.")
    _check_finite("X", X)
    _check_finite("Y", Y)
    groups = _check_groups(groups, X.shape[1])
    alphas = _check_alphas(alphas)
    n_problems, _, k = X.shape
    coef = np.empty((n_problems, k))
    intercept = np.empty(n_problems)
    best = np.empty(n_problems)
    with use_ridge_backend(backend) as bk:
        for e in range(n_problems):
            source = _ArraySource([X[e]], Y[e][:, None], groups)
            res = _fit_core(bk, source, 1, alphas=alphas, folds=_make_folds(source.keys, cv),
                            n_targets_batch=None, log=False)
            coef[e], intercept[e], best[e] = res["coefs"][0][:, 0], res["intercepts"][0, 0], \
                res["alphas"][0, 0]
    return coef, intercept, best


def _check_groups(groups, n_samples):
    groups = np.asarray(groups)
    if groups.shape != (n_samples,):
        raise ValueError(f"'groups' must have shape (n_samples,) = ({n_samples},), got "
                         f"{groups.shape}.")
    return groups


__all__ = [
    "DEFAULT_ALPHAS",
    "ridge_fit",
    "solve_ridge_cv_batched",
    "solve_ridge_cv_by_groups",
    "solve_stacked_ridge_cv",
]

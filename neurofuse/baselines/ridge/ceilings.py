"""Ridge encoding ceilings (paper §3): stacked ridge for MEG, delayed ridge for fMRI.

Layers, bottom to top:

1. Sufficient statistics. A ridge with an intercept and standardised features needs only
   ``n``, ``sum(x)``, ``X^T X``, ``X^T Y``, ``sum(y)`` and ``sum(y^2)``; these add up over
   stories and over chunks of a story, so designs are built chunk by chunk and never held
   whole. Cross-validation over stories subtracts a fold's statistics from the total.
2. Pure solvers: :func:`ridge_fit` (given alpha per target), :func:`solve_ridge_cv_by_groups`
   (alpha per target by cross-validation over groups of samples, e.g. stories) and
   :func:`solve_simplex_lstsq` (convex stacking weights, exact, vectorised over targets).
3. Estimators with a scikit-learn-like API: :class:`StackedRidge` (Lin et al., 2024: one
   ridge per feature space, then per-target convex weights over the spaces' cross-validated
   predictions) and :class:`BandedRidge` (himalaya's ``BandedRidgeCV``).
4. Ceilings on a dataset store: :func:`fit_meg_ceiling` and :func:`fit_fmri_ceiling` return a
   :class:`RidgeCeiling` whose ``predict_story`` gives a story's predicted MEG
   ``(n_channels, n_times)`` or BOLD ``(n_sources, n_trs)`` (the latter also serves to
   denoise the training fMRI of the joint model, paper §2.6 footnote 2).

Memory. The paper's MEG ceiling (22 training stories of ~12 min at 50 Hz, ~790k samples;
word 768 + phoneme 44 + spectrogram 40 features x 31 delays = 26 412 columns) cannot hold its
design in memory (~84 GB in float32). Here memory depends on the widths ``p_k`` of the
feature spaces and the number of targets ``t``, never on the number of samples: about
``8 (n_folds + 4) (p_k^2 + p_k t)`` bytes per space, plus one chunk of ``_CHUNK`` delayed
rows. The raw word stream is still too wide for that (23 808 delayed columns: 4.5 GB of
float64 Gram per fold, ~30 GB in all, and ~1e14-flop eigendecompositions), so
:func:`fit_meg_ceiling` first projects every stream wider than ``n_components`` (default 64)
on its principal components fitted on the training stories -- a deviation from the paper,
which does not say how it handled the 768-d stream; ``n_components=None`` is exact.
Measured on 2 busy CPU cores (numpy backend): MEG, 306 sensors x 792k samples (22 stories),
widths (1984, 1364, 1240), 5 folds: 423 s, peak RSS 2.0 GiB; fMRI, 8196 sources x 1800 TRs,
852 x 4 columns, 5 folds: 87 s, peak RSS 3.2 GiB.

Numerics. Statistics and solves are float64 (sums over ~1e6 samples lose too much in float32);
the heavy products and eigendecompositions run on himalaya's backend: ``torch_cuda`` when a
CUDA device is present, else ``numpy``. The backend is set once per public call and restored
afterwards (:func:`use_ridge_backend`). Alphas are not rescaled by the number of samples
(as in scikit-learn and himalaya), hence the wide default grid ``logspace(-2, 8, 21)``.
"""

from __future__ import annotations

import contextlib
import itertools
import numbers

import numpy as np

from ..._checks import _check_finite, _check_option, _check_type
from ..._logging import logger, use_log_level, verbose
from ...stimulus.delays import (
    _check_delays,
    _delayed_rows,
    _n_trs,
    delays_from_seconds,
    resample_to_tr,
)

DEFAULT_ALPHAS = np.logspace(-2, 8, 21)
MEG_DELAYS_S = tuple(round(0.02 * i, 2) for i in range(31))  # 0, 20, ..., 600 ms (paper §3)
FMRI_DELAYS_S = (2.0, 4.0, 6.0, 8.0)  # s (paper §3)
_CHUNK = 8192  # rows of delayed design built at a time
_MAX_STACK_SPACES = 10  # exact simplex QP enumerates 2**K - 1 supports


# ------------------------------------------------------------------------------------------
# backend
# ------------------------------------------------------------------------------------------
def _import_himalaya():
    try:
        import himalaya.backend as hb
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("The ridge baselines need himalaya and scikit-learn: install them "
                          "with pip install 'neurofuse[ridge]'.") from err
    return hb


def _auto_backend() -> str:
    try:
        import torch
    except ImportError:
        return "numpy"
    return "torch_cuda" if torch.cuda.is_available() else "numpy"


@contextlib.contextmanager
def use_ridge_backend(backend=None):
    """Set himalaya's backend for the duration of a ``with`` block, then restore it.

    Parameters
    ----------
    backend : None | "numpy" | "torch" | "torch_cuda"
        ``None`` picks ``"torch_cuda"`` when PyTorch sees a CUDA device, else ``"numpy"``.

    Yields
    ------
    module : the himalaya backend module (``asarray``, ``to_numpy``, ``eigh``...).
    """
    hb = _import_himalaya()
    name = _auto_backend() if backend is None else _check_option(
        "backend", backend, ("numpy", "torch", "torch_cuda"))
    previous = hb.get_backend()
    module = hb.set_backend(name, on_error="raise")
    try:
        yield module
    finally:
        hb.set_backend(previous)


def _b(bk, x):
    """A float64 backend array from a numpy or backend array (read-only arrays are copied)."""
    if isinstance(x, np.ndarray):
        x = np.asarray(x, dtype=np.float64)
        if not x.flags.writeable:
            x = x.copy()
    return bk.asarray(x, dtype="float64")


def _eigh(bk, C):
    """Eigendecomposition of a symmetric matrix (ascending eigenvalues, eigenvectors).

    On the numpy backend, matrices up to 4096 columns are decomposed with one BLAS thread:
    the tridiagonal reduction is memory-bound and OpenBLAS threads slow it down (measured on
    2 busy cores: p = 3408, 5.5 s on one thread vs 18.7 s on two; p = 368, 9 ms vs 1-4 s).
    """
    if bk.name != "numpy":
        return bk.eigh(C)
    import scipy.linalg

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        limits = contextlib.nullcontext()
    else:
        limits = threadpool_limits(limits=1 if C.shape[0] <= 4096 else None, user_api="blas")
    with limits:
        return scipy.linalg.eigh(C, driver="evd", check_finite=False, overwrite_a=True)


def _np(bk, x) -> np.ndarray:
    return np.asarray(bk.to_numpy(x), dtype=np.float64)


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
              fit_intercept=True, standardize=True):
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
    for k in range(K):
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
    if not isinstance(n_targets_batch, numbers.Integral) or isinstance(n_targets_batch, bool) \
            or n_targets_batch < 1:
        raise ValueError(f"'n_targets_batch' must be None or a positive int, got "
                         f"{n_targets_batch!r}.")
    return int(n_targets_batch)


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
    model = StackedRidge(alphas=alphas, cv=cv, n_targets_batch=n_targets_batch,
                         backend=backend).fit([X], Y, groups)
    return model.coefs_[0], model.intercepts_[0], model.alphas_[0], model.cv_scores_[0]


def solve_simplex_lstsq(H, g):
    """Per-target convex weights: ``argmin_w w'Hw - 2 g'w`` s.t. ``w >= 0``, ``sum(w) = 1``.

    With ``H = P'P`` and ``g = P'y`` this is ``min ||y - P w||^2`` over the simplex, the
    stacking problem of Lin et al. (2024). Solved exactly by enumerating the ``2^K - 1``
    possible supports (KKT system of each, vectorised over targets) and keeping the best
    feasible point; ``K <= 10``.

    Parameters
    ----------
    H : array, shape (n_targets, K, K)
        Symmetric positive semi-definite.
    g : array, shape (n_targets, K)

    Returns
    -------
    weights : array, shape (n_targets, K)
        Non-negative, each row sums to 1.
    """
    H = np.asarray(H, dtype=float)
    g = np.asarray(g, dtype=float)
    if H.ndim != 3 or H.shape[1] != H.shape[2] or g.shape != H.shape[:2]:
        raise ValueError(f"'H' must have shape (n_targets, K, K) and 'g' (n_targets, K), got "
                         f"{H.shape} and {g.shape}.")
    t, K = g.shape
    if K > _MAX_STACK_SPACES:
        raise ValueError(f"Stacking solves the simplex problem exactly for at most "
                         f"{_MAX_STACK_SPACES} feature spaces, got {K}; use BandedRidge or "
                         "merge feature spaces.")
    scale = np.trace(H, axis1=1, axis2=2) / K
    scale = np.where(scale > 0, scale, 1.0)
    H = H / scale[:, None, None] + 1e-10 * np.eye(K)  # same argmin; strictly convex
    g = g / scale[:, None]
    best_w = np.zeros((t, K))
    best_f = np.full(t, np.inf)
    for m in range(1, K + 1):
        for S in itertools.combinations(range(K), m):
            S = list(S)
            M = np.zeros((t, m + 1, m + 1))
            M[:, :m, :m] = H[:, S][:, :, S]
            M[:, :m, m] = 1.0
            M[:, m, :m] = 1.0
            rhs = np.concatenate([g[:, S], np.ones((t, 1))], axis=1)
            sol = np.linalg.solve(M, rhs[..., None])[..., 0]
            feasible = np.all(sol[:, :m] >= -1e-9, axis=1)
            w = np.zeros((t, K))
            w[:, S] = np.clip(sol[:, :m], 0, None)
            w /= w.sum(1, keepdims=True)
            f = np.einsum("tk,tkl,tl->t", w, H, w) - 2 * np.einsum("tk,tk->t", g, w)
            better = feasible & (f < best_f)
            best_w[better], best_f[better] = w[better], f[better]
    return best_w


# ------------------------------------------------------------------------------------------
# estimators
# ------------------------------------------------------------------------------------------
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
        groups = np.asarray(groups)
        if groups.shape != (Y.shape[0],):
            raise ValueError(f"'groups' must have shape (n_samples,) = ({Y.shape[0]},), got "
                             f"{groups.shape}.")
        return self._fit_source(_ArraySource(X_list, Y, groups), len(X_list), verbose=verbose)

    def _fit_source(self, source, n_spaces, *, verbose=None, _scoring="auto"):
        alphas = _check_alphas(self.alphas)
        folds = _make_folds(source.keys, self.cv)
        batch = _check_batch(self.n_targets_batch)
        with use_ridge_backend(self.backend) as bk, use_log_level(verbose):
            res = _fit_core(bk, source, n_spaces, alphas=alphas, folds=folds,
                            n_targets_batch=batch, scoring=_scoring)
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
        groups = np.asarray(groups)
        if groups.shape != (Y.shape[0],):
            raise ValueError(f"'groups' must have shape (n_samples,) = ({Y.shape[0]},), got "
                             f"{groups.shape}.")
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


# ------------------------------------------------------------------------------------------
# ceilings on a dataset store
# ------------------------------------------------------------------------------------------
class _StoryDesign:
    """How one story's features become the per-space designs of a ceiling.

    ``spaces`` lists, per feature space, the streams (names) it concatenates; ``projections``
    maps a stream to ``(mean (F,), components (F, n_components))``; ``tr`` (if set) averages
    the features over TR windows before delaying.
    """

    def __init__(self, streams, spaces, delays, *, sfreq, tr=None, projections=None):
        self.streams = {k: tuple(v) for k, v in streams.items()}
        self.spaces = [list(s) for s in spaces]
        self.delays = _check_delays(delays)
        self.sfreq, self.tr = float(sfreq), None if tr is None else float(tr)
        self.projections = projections or {}

    def check(self, ds):
        if abs(ds.sfreq - self.sfreq) > 1e-9 * self.sfreq or (
                self.tr is not None and abs(ds.tr - self.tr) > 1e-9 * self.tr):
            raise ValueError(f"The ceiling was fitted at sfreq={self.sfreq:g} Hz"
                             f"{'' if self.tr is None else f', tr={self.tr:g} s'}; the dataset "
                             f"'{ds.path}' has sfreq={ds.sfreq:g} Hz, tr={ds.tr:g} s.")
        for name, span in self.streams.items():
            if tuple(ds.feature_streams.get(name, ())) != span:
                raise ValueError(f"The ceiling was fitted with feature stream {name!r} at "
                                 f"columns {span}; the dataset has {ds.feature_streams}.")

    def stream_matrix(self, ds, story, name):
        a, b = self.streams[name]
        f = np.asarray(ds.features(story)[:, a:b], dtype=np.float32)
        if self.tr is not None:
            f = resample_to_tr(f, ds.sfreq, ds.tr)
        if name in self.projections:
            mean, comps = self.projections[name]
            f = (f - mean) @ comps
        return f

    def matrices(self, ds, story):
        """Undelayed per-space matrices of a story, list of (n_rows, F_k)."""
        mats = []
        for names in self.spaces:
            parts = [self.stream_matrix(ds, story, n) for n in names]
            mats.append(parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1))
        return mats

    def chunks(self, mats):
        n = mats[0].shape[0]
        for start in range(0, n, _CHUNK):
            stop = min(start + _CHUNK, n)
            yield start, stop, [_delayed_rows(m, self.delays, start, stop) for m in mats]

    def widths(self):
        out = []
        for names in self.spaces:
            out.append(len(self.delays) * sum(
                self.projections[n][1].shape[1] if n in self.projections
                else self.streams[n][1] - self.streams[n][0] for n in names))
        return out


def _targets(ds, subject, modality, story) -> np.ndarray:
    """Repeat-averaged data of a story, (n_rows, n_targets) float32."""
    data = ds.meg(subject, story, average=True) if modality == "meg" else \
        ds.fmri(subject, story, average=True)
    return np.ascontiguousarray(np.asarray(data, dtype=np.float32).T)


class _StorySource:
    def __init__(self, ds, subject, modality, stories, design):
        self.ds, self.subject, self.modality = ds, subject, modality
        self.keys, self.design = list(stories), design
        self._n = {}

    def n_rows(self, key):
        if key not in self._n:
            n = self.ds.n_times(key)
            if self.design.tr is not None:
                n = _n_trs(n, self.ds.sfreq, self.ds.tr)
            self._n[key] = n
        return self._n[key]

    def chunks(self, key, with_y=True):
        mats = self.design.matrices(self.ds, key)
        Y = _targets(self.ds, self.subject, self.modality, key) if with_y else None
        if Y is not None and Y.shape[0] != mats[0].shape[0]:
            raise ValueError(f"Story {key!r}: the {self.modality} of {self.subject!r} has "
                             f"{Y.shape[0]} samples but the features give {mats[0].shape[0]}; "
                             "the dataset is inconsistent.")
        for start, stop, Xs in self.design.chunks(mats):
            yield Xs, (Y[start:stop] if Y is not None else None)


def _pearson(Y, Y_pred):
    """Pearson r per column, array (n_targets,); NaN where a column is constant."""
    Y = np.asarray(Y, dtype=np.float64)
    Y_pred = np.asarray(Y_pred, dtype=np.float64)
    Yc = Y - Y.mean(0)
    Pc = Y_pred - Y_pred.mean(0)
    den = np.sqrt((Yc ** 2).sum(0) * (Pc ** 2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (Yc * Pc).sum(0) / den, np.nan)


class RidgeCeiling:
    """A fitted single-subject, single-modality ridge ceiling (paper §3).

    Returned by :func:`fit_meg_ceiling` and :func:`fit_fmri_ceiling`; not built directly.

    Attributes
    ----------
    modality : str
        ``"meg"`` or ``"fmri"``.
    subject : str
    stories : list of str
        Stories the model was fitted on.
    model : StackedRidge | BandedRidge
        The fitted regression on the delayed designs.
    delays : array of int, shape (n_delays,)
        Delays in samples at ``sfreq`` (MEG) or in TRs (fMRI).
    """

    def __init__(self, *, modality, subject, stories, design, model):
        self.modality, self.subject, self.stories = modality, subject, list(stories)
        self._design, self.model = design, model
        self.delays = design.delays

    def __repr__(self):
        return (f"<RidgeCeiling {self.modality} | {self.subject}, {len(self.stories)} training "
                f"stories, {self.n_targets} targets, spaces {self.feature_spaces}>")

    @property
    def n_targets(self) -> int:
        return int(self.model.coefs_[0].shape[1])

    @property
    def feature_spaces(self) -> list:
        """Feature spaces as lists of stream names (MEG: one per stream; fMRI: all in one)."""
        return [list(s) for s in self._design.spaces]

    def design_matrices(self, ds, story) -> list:
        """Delayed per-space designs of a story, list of array (n_rows, p_k)."""
        self._design.check(ds)
        mats = self._design.matrices(ds, story)
        return [_delayed_rows(m, self._design.delays, 0, m.shape[0]) for m in mats]

    def predict_story(self, ds, story) -> np.ndarray:
        """Predict one story.

        Parameters
        ----------
        ds : Dataset
            A dataset with the same sampling, TR and feature streams as the training one.
        story : str

        Returns
        -------
        pred : array, shape (n_channels, n_times) for MEG or (n_sources, n_trs) for fMRI
        """
        self._design.check(ds)
        mats = self._design.matrices(ds, story)
        out = np.empty((mats[0].shape[0], self.n_targets))
        for start, stop, Xs in self._design.chunks(mats):
            out[start:stop] = self.model.predict(Xs)
        return out.T

    def evaluate_story(self, ds, story) -> np.ndarray:
        """Pearson r per target between prediction and repeat-averaged data of one story."""
        pred = self.predict_story(ds, story)
        return _pearson(_targets(ds, self.subject, self.modality, story), pred.T)

    def evaluate(self, ds, stories=None) -> np.ndarray:
        """Pearson r per target over the concatenation of held-out stories.

        Parameters
        ----------
        ds : Dataset
        stories : list of str | None
            Default: the subject's test stories.

        Returns
        -------
        r : array, shape (n_targets,)
        """
        if stories is None:
            stories = [s for s in ds.splits.get("test", [])
                       if ds.has(self.subject, self.modality, s)]
            if not stories:
                raise ValueError(f"Subject {self.subject!r} has no {self.modality} test "
                                 "stories; pass stories=[...].")
        Y = np.concatenate([_targets(ds, self.subject, self.modality, s) for s in stories])
        P = np.concatenate([self.predict_story(ds, s).T for s in stories])
        return _pearson(Y, P)


def _fit_stories(ds, subject, modality, stories):
    _check_option("subject", subject, ds.subjects)
    if modality not in ds.modalities(subject):
        raise ValueError(f"Subject {subject!r} has no {modality} data (it has "
                         f"{ds.modalities(subject)}); pick a {modality} subject.")
    if stories is None:
        splits = ds.splits
        stories = [s for split in ("train", "val") for s in splits.get(split, [])
                   if ds.has(subject, modality, s)]
    else:
        stories = list(_check_type("stories", stories, (list, tuple)))
        for s in stories:
            if not ds.has(subject, modality, s):
                raise ValueError(f"Subject {subject!r} has no {modality} data for story {s!r}.")
    if len(stories) < 2:
        raise ValueError(f"The {modality} ceiling of {subject!r} needs at least 2 training "
                         f"stories for cross-validation, got {stories}.")
    return stories


def _fit_projections(ds, stories, streams, n_components, tr=None):
    """PCA of each stream wider than ``n_components`` on the training stories."""
    if n_components is None:
        return {}
    if not isinstance(n_components, numbers.Integral) or n_components < 1:
        raise ValueError(f"'n_components' must be None or a positive int, got "
                         f"{n_components!r}.")
    out = {}
    for name, (a, b) in streams.items():
        width = b - a
        if width <= n_components:
            continue
        n, s, ss = 0, np.zeros(width), np.zeros((width, width))
        for story in stories:
            f = np.asarray(ds.features(story)[:, a:b], dtype=np.float64)
            if tr is not None:
                f = resample_to_tr(f, ds.sfreq, tr)
            n, s, ss = n + f.shape[0], s + f.sum(0), ss + f.T @ f
        mean = s / n
        cov = ss / n - np.outer(mean, mean)
        lam, vec = np.linalg.eigh(cov)
        order = np.argsort(lam)[::-1][:n_components]
        explained = lam[order].sum() / max(lam.clip(0).sum(), 1e-300)
        logger.info("Stream %r: %d -> %d principal components (%.1f%% of the variance).",
                    name, width, n_components, 100 * explained)
        out[name] = (mean.astype(np.float32), vec[:, order].astype(np.float32))
    return out


@verbose
def fit_meg_ceiling(ds, subject, *, delays_s=MEG_DELAYS_S, stories=None,
                    streams=None, n_components=64, alphas=DEFAULT_ALPHAS, cv=None,
                    banded=False, n_iter=20, n_targets_batch=None, backend=None,
                    verbose=None) -> RidgeCeiling:
    """Fit the MEG ridge ceiling of one subject: stacked ridge per sensor (paper §3).

    Each feature stream is delayed by ``delays_s`` (0, 20, ..., 600 ms) and forms one feature
    space; a ridge per space (per-sensor alpha by cross-validation over stories) is stacked
    with per-sensor convex weights learned on held-out predictions (Lin et al., 2024).

    Parameters
    ----------
    ds : Dataset
        From :func:`neurofuse.data.read_dataset`.
    subject : str
        A subject with MEG.
    delays_s : array-like of float
        Delays in s; whole samples at ``ds.sfreq``.
    stories : list of str | None
        Training stories; default: the subject's train and val stories.
    streams : list of str | None
        Feature streams to use (one space each); default: all of ``ds.feature_streams``.
    n_components : int | None
        Streams wider than this are projected on their first principal components (fitted on
        the training stories) before delaying; ``None`` keeps every feature (memory grows as
        ``(n_features * n_delays)^2``).
    alphas : array, shape (n_alphas,)
    cv : None | int | "stories"
        Folds over stories (None: ``min(5, n_stories)``).
    banded : bool
        Use :class:`BandedRidge` (himalaya's banded ridge) instead of stacking: designs are
        held in memory and the solver needs ``8 n_val n_train`` bytes, so only for short
        recordings.
    n_iter : int
        Random band scalings tried when ``banded``.
    n_targets_batch : int | None
    backend : None | "numpy" | "torch" | "torch_cuda"
    verbose : bool | str | None

    Returns
    -------
    ceiling : RidgeCeiling
        ``ceiling.predict_story(ds, story)`` has shape (n_channels, n_times).
    """
    return _fit_ceiling(ds, subject, "meg", delays_s=delays_s, stories=stories, streams=streams,
                        n_components=n_components, alphas=alphas, cv=cv, banded=banded,
                        n_iter=n_iter, n_targets_batch=n_targets_batch, backend=backend)


@verbose
def fit_fmri_ceiling(ds, subject, *, delays_s=FMRI_DELAYS_S, stories=None, streams=None,
                     n_components=None, alphas=DEFAULT_ALPHAS, cv=None, n_targets_batch=None,
                     backend=None, verbose=None) -> RidgeCeiling:
    """Fit the fMRI ridge ceiling of one subject: one delayed ridge per source (paper §3).

    The feature streams are averaged over each TR window, concatenated, delayed by
    ``delays_s`` (2, 4, 6, 8 s) and regressed on the repeat-averaged BOLD of every source with
    a per-source alpha chosen by cross-validation over stories. Its predictions of the
    training stories can denoise the training fMRI of the joint model (paper §2.6).

    Parameters
    ----------
    ds : Dataset
    subject : str
        A subject with fMRI.
    delays_s : array-like of float
        Delays in s; whole TRs.
    stories, streams, n_components, alphas, cv, n_targets_batch, backend, verbose
        As in :func:`fit_meg_ceiling` (here all streams form one space and no PCA is done by
        default).

    Returns
    -------
    ceiling : RidgeCeiling
        ``ceiling.predict_story(ds, story)`` has shape (n_sources, n_trs).
    """
    return _fit_ceiling(ds, subject, "fmri", delays_s=delays_s, stories=stories,
                        streams=streams, n_components=n_components, alphas=alphas, cv=cv,
                        banded=False, n_iter=None, n_targets_batch=n_targets_batch,
                        backend=backend)


def _fit_ceiling(ds, subject, modality, *, delays_s, stories, streams, n_components, alphas,
                 cv, banded, n_iter, n_targets_batch, backend):
    stories = _fit_stories(ds, subject, modality, stories)
    all_streams = dict(ds.feature_streams)
    if streams is None:
        streams = list(all_streams)
    else:
        streams = list(_check_type("streams", streams, (list, tuple)))
        for s in streams:
            _check_option("streams", s, list(all_streams))
    chosen = {s: all_streams[s] for s in streams}
    tr = ds.tr if modality == "fmri" else None
    delays = delays_from_seconds(delays_s, 1.0 / tr if tr else ds.sfreq)
    projections = _fit_projections(ds, stories, chosen, n_components, tr=tr)
    spaces = [[s] for s in streams] if modality == "meg" else [streams]
    design = _StoryDesign(chosen, spaces, delays, sfreq=ds.sfreq, tr=tr, projections=projections)
    source = _StorySource(ds, subject, modality, stories, design)
    logger.info("%s ceiling of %s: %d stories, delays %s, design widths %s.", modality.upper(),
                subject, len(stories), delays.tolist(), design.widths())
    if banded:
        Xs = [[] for _ in spaces]
        Ys, groups = [], []
        for story in stories:
            for X_chunk, Y_chunk in source.chunks(story):
                for k, X in enumerate(X_chunk):
                    Xs[k].append(X)
                Ys.append(Y_chunk)
                groups.extend([story] * Y_chunk.shape[0])
        model = BandedRidge(alphas, n_iter=n_iter, cv=cv, n_targets_batch=n_targets_batch,
                            backend=backend).fit([np.concatenate(x) for x in Xs],
                                                 np.concatenate(Ys), np.asarray(groups))
    else:
        model = StackedRidge(alphas, cv=cv, n_targets_batch=n_targets_batch, backend=backend)
        model._fit_source(source, len(spaces))
    return RidgeCeiling(modality=modality, subject=subject, stories=stories, design=design,
                        model=model)


__all__ = [
    "DEFAULT_ALPHAS",
    "FMRI_DELAYS_S",
    "MEG_DELAYS_S",
    "BandedRidge",
    "RidgeCeiling",
    "StackedRidge",
    "fit_fmri_ceiling",
    "fit_meg_ceiling",
    "ridge_fit",
    "solve_ridge_cv_by_groups",
    "solve_simplex_lstsq",
    "use_ridge_backend",
]

"""Denoised training fMRI for the joint model: in-sample (the paper's) or cross-fitted ridge.

The paper (§2.6, footnote 2) trains the joint model on the fMRI ridge ceiling's predictions of
the training stories instead of the recordings. Those are *in-sample* predictions: the
ceiling was fitted on the very stories it predicts, so part of their noise, the part that the
delayed stimulus features happen to span, comes back as "signal". A *cross-fitted* denoiser
predicts each training story with a ridge fitted on the other training stories only (K folds
of whole stories), so a story's own recording never shapes its denoised version: not through
the coefficients, not through the choice of alpha (chosen per target by cross-validation
inside the other stories, a nested search that costs only eigendecompositions, since the
sufficient statistics of each story are computed once, :mod:`.solver`).

* :func:`solve_ridge_crossfit`: out-of-fold predictions on any data source (the solver layer);
* :func:`denoise_fmri`: ``{subject: {story: (n_sources, n_trs)}}`` for a dataset store, by
  ``method`` in :data:`FMRI_DENOISE`.
"""

from __future__ import annotations

import numpy as np

from ..._checks import _check_option
from ..._logging import logger, verbose
from .backend import _b, _np, use_ridge_backend
from .solver import (
    DEFAULT_ALPHAS,
    _check_alphas,
    _check_batch,
    _gram_sse,
    _make_folds,
    _Standardized,
    _Stats,
)

#: Training-fMRI denoising methods: the recordings, the ceiling's in-sample fit (paper §2.6),
#: out-of-fold ridge predictions, or chosen by validation loss (:mod:`neurofuse.systems.joint`).
FMRI_DENOISE = ("none", "in-sample", "cross-fitted", "auto")


def check_fmri_denoise(value, name="fmri_denoise"):
    """Validate a denoising option; ``True`` / ``False`` mean ``"in-sample"`` / ``"none"``.

    Parameters
    ----------
    value : bool | str
    name : str
        The parameter's name in error messages.

    Returns
    -------
    method : str
        One of :data:`FMRI_DENOISE`.
    """
    if isinstance(value, (bool, np.bool_)):
        return "in-sample" if value else "none"
    return _check_option(name, value, list(FMRI_DENOISE),
                         extra="(True / False are accepted for 'in-sample' / 'none').")


#: Rows kept in memory by :func:`solve_ridge_crossfit` to use the kernel form (bytes).
_MAX_HELD_BYTES = 2 * 2**30


def _sum_stats(parts):
    """Sum of a list of :class:`_Stats` (a new object; summed, never subtracted, so a
    non-finite group elsewhere cannot reach the result through cancellation)."""
    out = parts[0].combine(parts[1]) if len(parts) > 1 else parts[0].combine(parts[0], 0.0)
    for p in parts[2:]:
        out = out.combine(p)
    return out


@verbose
def solve_ridge_crossfit(source, *, n_folds="stories", inner_cv=None, alphas=DEFAULT_ALPHAS,
                         n_targets_batch=None, backend=None, _form=None, verbose=None):
    """Out-of-fold ridge predictions: each group predicted by a ridge fitted without it.

    The groups (stories) of ``source`` are split into ``n_folds`` folds of whole groups. For
    each fold, a ridge (features standardised with training statistics, intercept, one alpha
    per target chosen by cross-validation over the other folds' groups, ``inner_cv``) is fitted
    on the groups of the other folds only and predicts the fold's groups. A group's targets
    enter no computation that produces its own prediction.

    Parameters
    ----------
    source : data source
        ``keys``, ``n_rows(key)``, ``chunks(key, with_y=True)`` yielding ``([X], Y)`` with one
        feature space (see :mod:`neurofuse.baselines.ridge.solver`).
    n_folds : int | "stories"
        Outer folds of whole groups; ``"stories"``: leave one group out.
    inner_cv : None | int | "stories"
        Folds of the alpha search within each fold's training groups (None:
        ``min(5, n_training_groups)``).
    alphas : array, shape (n_alphas,)
    n_targets_batch : int | None
    backend : None | "numpy" | "torch" | "torch_cuda"
        For the statistics form; with fewer samples than features the ridge is solved in
        kernel form with numpy (the same solution, ``n^3`` instead of ``p^3`` per fit).
    verbose : bool | str | None

    Returns
    -------
    predictions : dict of key -> array, shape (n_rows, n_targets)
        Out-of-fold prediction of every group.
    alphas : array, shape (n_folds, n_targets)
        The alpha chosen for each fold and target.
    """
    alphas = _check_alphas(alphas)
    batch = _check_batch(n_targets_batch)
    keys = list(source.keys)
    folds = _make_folds(keys, n_folds)
    if len(keys) < 3:
        raise ValueError(f"Cross-fitting needs at least 3 groups (stories): 2 to choose alpha "
                         f"by cross-validation in each fold's training part, got {len(keys)}.")
    n_total = sum(source.n_rows(k) for k in keys)
    with use_ridge_backend(backend) as bk:
        form = _form
        stats, arrays = {}, {}
        for key in keys:  # pass 1: each group's rows (kernel form) or statistics, once
            st, xs, ys = _Stats(), [], []
            for Xs, Y in source.chunks(key):
                if len(Xs) != 1:
                    raise ValueError(f"Cross-fitting takes one feature space, got {len(Xs)}.")
                if form is None:
                    # fewer samples than features (minutes of fMRI, 4 x 852 delayed features):
                    # the kernel form costs n^3 instead of p^3 per fit, for the same ridge
                    p = Xs[0].shape[1]
                    form = "dual" if n_total < p and 8 * n_total * (
                        p + Y.shape[1]) <= _MAX_HELD_BYTES else "primal"
                if form == "dual":
                    xs.append(np.asarray(Xs[0], np.float64))
                    ys.append(np.asarray(Y, np.float64))
                else:
                    st.add(bk, Xs[0], Y)
            stats[key] = st
            if form == "dual":
                arrays[key] = (np.concatenate(xs), np.concatenate(ys))
        if form == "dual":
            out, chosen = _crossfit_dual(arrays, folds, inner_cv, alphas)
        else:
            out, chosen = _crossfit_primal(bk, source, stats, folds, inner_cv, alphas, batch)
    return out, np.stack(chosen)


def _crossfit_primal(bk, source, stats, folds, inner_cv, alphas, batch):
    """Cross-fitting from per-group sufficient statistics (eigendecompositions of p x p)."""
    keys = list(stats)
    out, chosen = {}, []
    for f, held in enumerate(folds):
        train = [k for k in keys if k not in held]
        sse = 0.0
        for val in _make_folds(train, inner_cv):
            fit_keys = [k for k in train if k not in val]
            std = _Standardized(bk, _sum_stats([stats[k] for k in fit_keys]))
            e, _ = _gram_sse(bk, std, _sum_stats([stats[k] for k in val]), alphas, batch)
            sse = sse + e
        best = alphas[np.argmin(sse, axis=0)]
        chosen.append(best)
        std = _Standardized(bk, _sum_stats([stats[k] for k in train]))
        coef, intercept = std.coef(bk, best, batch)
        coef, intercept = _b(bk, coef), _b(bk, intercept)
        for key in held:
            parts = [_np(bk, _b(bk, Xs[0]) @ coef + intercept[None, :])
                     for Xs, _ in source.chunks(key, with_y=False)]
            out[key] = np.concatenate(parts, axis=0)
        logger.debug("Cross-fit fold %d: %d training groups, median alpha %.3g.", f,
                     len(train), float(np.median(best)))
    return out, chosen


class _Dual:
    """Ridge in kernel form on training rows X (n, p), Y (n, t): standardised features
    (training mean and SD; constant columns dropped, as :class:`.solver._Standardized`),
    intercept. ``W = Xs' U diag(1 / (s + alpha)) U' Yc`` with ``Xs Xs' = U diag(s) U'``."""

    def __init__(self, X, Y):
        n = X.shape[0]
        self.mu = X.mean(0)
        var = (np.einsum("ij,ij->j", X, X) / n - self.mu ** 2).clip(0, None)
        self.const = var <= 1e-10 * (np.einsum("ij,ij->j", X, X) / n) + 1e-300
        self.sigma = np.sqrt(np.where(self.const, 1.0, var))
        self.Xs = self.transform(X)
        self.ybar = Y.mean(0)
        s, U = np.linalg.eigh(self.Xs @ self.Xs.T)
        self.s, self.U = s.clip(0, None), U
        self.Z = U.T @ (Y - self.ybar)  # (n, t)

    def transform(self, X):
        Xs = (X - self.mu) / self.sigma
        Xs[:, self.const] = 0.0
        return Xs

    def predict(self, X, alphas):
        """Predictions (m, t) at one alpha per target (array (t,)) or one for all (float)."""
        A = self.transform(X) @ self.Xs.T @ self.U  # (m, n)
        alphas = np.asarray(alphas, float)
        div = self.s[:, None] + (alphas[None, :] if alphas.ndim else alphas)
        return A @ (self.Z / div) + self.ybar


def _crossfit_dual(arrays, folds, inner_cv, alphas):
    keys = list(arrays)
    out, chosen = {}, []

    def stack(ks, i):
        return np.concatenate([arrays[k][i] for k in ks])

    for f, held in enumerate(folds):
        train = [k for k in keys if k not in held]
        sse = 0.0
        for val in _make_folds(train, inner_cv):
            fit_keys = [k for k in train if k not in val]
            dual = _Dual(stack(fit_keys, 0), stack(fit_keys, 1))
            Xv, Yv = stack(val, 0), stack(val, 1)
            A = dual.transform(Xv) @ dual.Xs.T @ dual.U  # (n_v, n)
            Yt = Yv - dual.ybar
            e = np.empty((len(alphas), Yv.shape[1]))
            for i, alpha in enumerate(alphas):
                resid = Yt - A @ (dual.Z / (dual.s[:, None] + alpha))
                e[i] = np.einsum("ij,ij->j", resid, resid)
            sse = sse + e
        best = alphas[np.argmin(sse, axis=0)]
        chosen.append(best)
        dual = _Dual(stack(train, 0), stack(train, 1))
        for key in held:
            out[key] = dual.predict(arrays[key][0], best)
        logger.debug("Cross-fit fold %d (kernel form): %d training groups, median alpha %.3g.",
                     f, len(train), float(np.median(best)))
    return out, chosen


def _fmri_subjects(ds):
    return [s for s in ds.subjects if "fmri" in ds.modalities(s)]


@verbose
def denoise_fmri(ds, method="cross-fitted", *, subjects=None, stories=None, n_folds="stories",
                 ceilings=None, ceiling_kwargs=None, verbose=None):
    """Denoised training-story fMRI of every fMRI subject (paper §2.6, footnote 2).

    Parameters
    ----------
    ds : Dataset
        A dataset store with ``train`` stories.
    method : "none" | "in-sample" | "cross-fitted" | bool
        ``"in-sample"`` (``True``): the fMRI ridge ceiling's predictions of the stories it was
        fitted on (its training and validation stories; the paper's); ``"cross-fitted"``:
        each story predicted by a ridge fitted on the *other* training stories only
        (:func:`solve_ridge_crossfit`, alpha chosen inside them); ``"none"`` (``False``): no
        replacement (an empty dict). ``"auto"`` is a training-time choice between these
        (:func:`neurofuse.systems.joint.trainer.fit`), not a denoiser.
    subjects : list of str | None
        fMRI subjects (default: all).
    stories : list of str | None
        Stories to denoise (default: the ``train`` split); cross-fitting folds run over those
        the subject has.
    n_folds : int | "stories"
        Cross-fitting folds of whole stories (default: leave one story out).
    ceilings : dict of str -> RidgeCeiling | None
        In-sample only: already fitted fMRI ceilings per subject (fitted here otherwise).
    ceiling_kwargs : dict | None
        Options of :func:`~neurofuse.baselines.ridge.fit_fmri_ceiling` (delays, streams,
        alphas, ``cv``: the inner alpha search of cross-fitting, backend).
    verbose : bool | str | None

    Returns
    -------
    targets : dict of str -> dict of str -> array, shape (n_sources, n_trs)
        ``{subject: {story: denoised fMRI}}`` (float32), ready for the ``denoised_fmri``
        argument of :func:`neurofuse.systems.joint.trainer.fit`.
    """
    from .ceilings import FMRI_DELAYS_S, _make_design, _StorySource, fit_fmri_ceiling

    method = check_fmri_denoise(method, "method")
    if method == "auto":
        raise ValueError("method='auto' chooses a denoiser by the joint model's validation loss "
                         "while training (neurofuse.systems.joint.trainer.fit); pass 'none', "
                         "'in-sample' or 'cross-fitted' here.")
    if method == "none":
        return {}
    kwargs = dict(ceiling_kwargs or {})
    unknown = sorted(set(kwargs) - {"delays_s", "streams", "n_components", "alphas", "cv",
                                    "n_targets_batch", "backend"})
    if unknown:
        raise ValueError(f"Unknown ceiling_kwargs {unknown}: expected options of "
                         "fit_fmri_ceiling (delays_s, streams, n_components, alphas, cv, "
                         "n_targets_batch, backend).")
    subjects = _fmri_subjects(ds) if subjects is None else list(subjects)
    wanted = list(ds.splits.get("train", [])) if stories is None else list(stories)
    out = {}
    for subject in subjects:
        mine = [s for s in wanted if ds.has(subject, "fmri", s)]
        if not mine:
            continue
        if method == "in-sample":
            ceiling = (ceilings or {}).get(subject) or fit_fmri_ceiling(ds, subject, **kwargs)
            out[subject] = {s: ceiling.predict_story(ds, s).astype(np.float32) for s in mine}
            continue
        if len(mine) < 3:
            raise ValueError(f"Cross-fitted denoising of {subject!r} needs at least 3 fMRI "
                             f"training stories, got {mine}; use method='in-sample' or 'none'.")
        # the ceiling's design (features, delays, TR averaging); the ridge is fitted per fold
        design = _make_design(ds, "fmri", mine, delays_s=kwargs.get("delays_s", FMRI_DELAYS_S),
                              streams=kwargs.get("streams"),
                              n_components=kwargs.get("n_components"))
        preds, _ = solve_ridge_crossfit(_StorySource(ds, subject, "fmri", mine, design),
                                        n_folds=n_folds, inner_cv=kwargs.get("cv"),
                                        alphas=kwargs.get("alphas", DEFAULT_ALPHAS),
                                        n_targets_batch=kwargs.get("n_targets_batch"),
                                        backend=kwargs.get("backend"))
        out[subject] = {s: preds[s].T.astype(np.float32) for s in mine}
        logger.info("Cross-fitted fMRI of %s: %d stories, %s folds.", subject, len(mine),
                    n_folds)
    return out


__all__ = ["FMRI_DENOISE", "check_fmri_denoise", "denoise_fmri", "solve_ridge_crossfit"]

"""Trained prediction of ECoG (paper §5, Fig. 4): a ridge from nearby source estimates
(``"neurofuse"``) and a stacked ridge from the stimulus (``"ridge"``), fold by fold."""

from __future__ import annotations

import math

import numpy as np

from ..._logging import logger, progress_enabled
from ...baselines.ridge import StackedRidge, solve_ridge_cv_batched
from ...stats import pca, pearson_r
from .folds import _contiguous_groups, training_subset

#: Training fractions of Fig. 4 (0 = zero-shot).
PAPER_FRACTIONS = (0.0, 0.1, 0.25, 0.5, 1.0)
METHODS = ("neurofuse", "ridge")


class _DelayedRows:
    """A data source for StackedRidge: delayed stimulus designs and ECoG at chosen samples."""

    def __init__(self, mats, Y, rows, groups, delays, chunk=4096):
        self.mats, self.Y, self.delays, self.chunk = mats, Y, delays, chunk
        labels, first = np.unique(groups, return_index=True)
        self.keys = [labels[i] for i in np.argsort(first)]
        self._rows = {key: np.asarray(rows)[groups == key] for key in self.keys}

    def n_rows(self, key):
        return len(self._rows[key])

    def chunks(self, key, with_y=True):
        from ...stimulus.delays import _delayed_rows

        rows = self._rows[key]
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for run in np.split(rows, breaks):
            for s in range(int(run[0]), int(run[-1]) + 1, self.chunk):
                e = min(s + self.chunk, int(run[-1]) + 1)
                yield ([_delayed_rows(m, self.delays, s, e) for m in self.mats],
                       self.Y[s:e] if with_y else None)


def _project_streams(features, streams, rows, n_components):
    """Per stream (one feature space each): the stream, PCA-projected if wider than
    ``n_components`` (PCA fitted on the feature rows ``rows`` only), as float32 (n_times, F)."""
    mats = []
    for a, b in streams:
        f = np.asarray(features[:, a:b], np.float32)
        if n_components is not None and b - a > n_components:
            res = pca(np.asarray(f[rows], np.float64), n_components)
            f = ((f - res.mean) @ res.components).astype(np.float32)
        mats.append(f)
    return mats


def _stimulus_ridge_predict(features, streams, Y, train, test, *, delays, alphas, inner_folds,
                            n_components, seed):
    """Predictions (n_targets, n_test) of the stimulus stacked ridge for one fold/fraction."""
    from ...stimulus.delays import _delayed_rows

    s, e = test
    if len(train) == 0:  # untrained: random weights on standardised delayed features
        mats = _project_streams(features, streams, np.arange(len(features)), n_components)
        rng = np.random.default_rng(seed)
        pred = np.zeros((Y.shape[1], e - s))
        for m in mats:
            sd = m.std(0)
            m = (m - m.mean(0)) / np.where(sd > 0, sd, 1.0)  # standardised (the stimulus only)
            X = _delayed_rows(m, delays, s, e).astype(np.float64)  # (n_test, F * n_delays)
            W = rng.standard_normal((X.shape[1], Y.shape[1])) / math.sqrt(X.shape[1])
            pred += (X @ W).T
        return pred
    mats = _project_streams(features, streams, train, n_components)
    groups = _contiguous_groups(len(train), inner_folds)
    source = _DelayedRows(mats, Y, train, groups, delays)
    model = StackedRidge(alphas, cv=inner_folds)
    model.fit_source(source, len(mats), verbose=logger.level if logger.level < 20 else False)
    out = np.empty((Y.shape[1], e - s))
    for c in range(s, e, 4096):
        d = min(c + 4096, e)
        out[:, c - s:d - s] = model.predict([_delayed_rows(m, delays, c, d) for m in mats]).T
    return out


def _source_ridge_predict(S, neighbors, Y, train, test, *, alphas, inner_folds):
    """Predictions (n_targets, n_test) of the per-electrode ridge from nearby source estimates.

    ``S`` (n_rows, n_times): predicted sources; ``neighbors`` (n_targets, k) rows of S.
    """
    s, e = test
    if len(train) == 0:  # zero-shot: the nearest source
        return np.asarray(S[neighbors[:, 0], s:e], np.float64)
    groups = _contiguous_groups(len(train), inner_folds)
    out = np.empty((len(neighbors), e - s))
    for a in range(0, len(neighbors), 16):
        nb = neighbors[a:a + 16]
        X = np.transpose(S[nb][:, :, train], (0, 2, 1))  # (b, n_train, k)
        coef, icpt, _ = solve_ridge_cv_batched(X, Y[train, a:a + 16].T, groups, alphas)
        Xt = np.asarray(S[nb][:, :, s:e], np.float64)  # (b, k, n_test)
        out[a:a + 16] = np.einsum("bkn,bk->bn", Xt, coef) + icpt[:, None]
    return out


def predict_fold(sources, neighbors, ecog, features, streams, *, test, train, delays, alphas,
                 inner_folds=3, n_components=64, seed=0, methods=METHODS):
    """Predictions of the test block of one fold by each method, trained on ``train`` only.

    Only ``ecog[:, train]`` is read to fit (the stimulus and the source estimates, which do not
    depend on the ECoG, are read everywhere), so changing the ECoG anywhere outside ``train``
    cannot change the predictions.

    Parameters
    ----------
    sources : array, shape (n_rows, n_times)
        Predicted source time courses (only the rows the electrodes use).
    neighbors : array of int, shape (n_electrodes, k)
        Rows of ``sources`` near each electrode, nearest first.
    ecog : array, shape (n_electrodes, n_times)
    features : array, shape (n_times, n_features)
        Stimulus features of the story.
    streams : list of (int, int)
        Column range of each feature stream (one stacked-ridge feature space each).
    test : (int, int)
        Start and stop of the test block.
    train : array of int
        Training samples (empty: the zero-shot / untrained predictions).
    delays : array of int
        Stimulus delays in samples.
    alphas : array
    inner_folds : int
        Contiguous blocks of the training samples used to choose alphas.
    n_components : int | None
        PCA width of wide streams for the stimulus ridge.
    seed : int
        Seed of the untrained stimulus model.
    methods : sequence of str

    Returns
    -------
    predictions : dict of str -> array, shape (n_electrodes, n_test)
    """
    train = np.asarray(train, np.int64)
    if 0 < len(train) < 2 * inner_folds:
        raise ValueError(f"{len(train)} training samples are too few for {inner_folds}-fold "
                         "alpha selection.")
    s, e = test
    if len(train) and ((train >= s) & (train < e)).any():
        raise ValueError("Training samples overlap the test block.")
    Y = np.ascontiguousarray(np.asarray(ecog, np.float32).T)  # (n_times, n_electrodes)
    out = {}
    for m in methods:
        if m == "neurofuse":
            out[m] = _source_ridge_predict(sources, neighbors, Y, train, test, alphas=alphas,
                                           inner_folds=inner_folds)
        else:
            out[m] = _stimulus_ridge_predict(features, streams, Y, train, test, delays=delays,
                                             alphas=alphas, inner_folds=inner_folds,
                                             n_components=n_components, seed=seed)
    return out


def trained_prediction(sources, neighbors, ecog, features, streams, *, fractions=PAPER_FRACTIONS,
                       folds, delays, alphas, inner_folds=3, n_components=64, seed=0,
                       methods=METHODS):
    """Cross-validated r per electrode for each method and training fraction.

    Parameters
    ----------
    sources, neighbors, ecog, features, streams, delays, alphas, inner_folds, n_components
        As in :func:`predict_fold`.
    fractions : sequence of float
        Training fractions (:func:`training_subset` of each fold's candidates).
    folds : list
        From :func:`make_cv_folds` (its gap must be at least ``max(delays)``).
    seed : int
        Seed of the untrained (fraction 0) stimulus model (``seed + fold``).
    methods : sequence of str

    Returns
    -------
    r : dict of (method, fraction) -> array, shape (n_electrodes,)
        Mean over folds of the per-fold test r.
    per_fold : dict of (method, fraction) -> array, shape (n_folds, n_electrodes)
    """
    from tqdm.auto import tqdm

    per_fold = {(m, float(f)): [] for m in methods for f in fractions}
    bar = {"disable": not progress_enabled(), "leave": False}
    for k, (test, train_all) in enumerate(tqdm(folds, desc="CV folds", **bar)):
        s, e = test
        y_test = np.asarray(ecog[:, s:e], np.float64)
        for f in fractions:
            train = training_subset(train_all, f)
            preds = predict_fold(sources, neighbors, ecog, features, streams, test=test,
                                 train=train, delays=delays, alphas=alphas,
                                 inner_folds=inner_folds, n_components=n_components,
                                 seed=seed + k, methods=methods)
            for m, pred in preds.items():
                per_fold[(m, float(f))].append(np.nan_to_num(pearson_r(pred, y_test)))
            logger.debug("Fold %d, fraction %g: %d training samples.", k, f, len(train))
    per_fold = {key: np.stack(v) for key, v in per_fold.items()}
    return {key: v.mean(axis=0) for key, v in per_fold.items()}, per_fold


__all__ = [
    "METHODS",
    "PAPER_FRACTIONS",
    "predict_fold",
    "trained_prediction",
]

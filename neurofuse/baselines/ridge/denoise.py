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


def _sum_stats(parts):
    """Sum of a list of :class:`_Stats` (a new object; summed, never subtracted, so a
    non-finite group elsewhere cannot reach the result through cancellation)."""
    out = parts[0].combine(parts[1]) if len(parts) > 1 else parts[0].combine(parts[0], 0.0)
    for p in parts[2:]:
        out = out.combine(p)
    return out


@verbose
def solve_ridge_crossfit(source, *, n_folds="stories", inner_cv=None, alphas=DEFAULT_ALPHAS,
                         n_targets_batch=None, backend=None, verbose=None):
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
    out, chosen = {}, []
    with use_ridge_backend(backend) as bk:
        stats = {}
        for key in keys:  # pass 1: each group's sufficient statistics, once
            st = _Stats()
            for Xs, Y in source.chunks(key):
                if len(Xs) != 1:
                    raise ValueError(f"Cross-fitting takes one feature space, got {len(Xs)}.")
                st.add(bk, Xs[0], Y)
            stats[key] = st
        for f, held in enumerate(folds):
            train = [k for k in keys if k not in held]
            inner = _make_folds(train, inner_cv)
            sse = 0.0
            for val in inner:
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
    return out, np.stack(chosen)


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

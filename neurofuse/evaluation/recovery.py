"""Source recovery on simulations (paper §4, Fig. 3): estimates vs ground-truth sources.

For each held-out story with saved ground-truth sources (``ground_truth/sources/<story>``, on
fsaverage), every method's estimate on fsaverage is scored with the temporal r (per source,
over time) and the spatial r (per time point, over sources); each is averaged (mean over
sources / time points, NaNs from constant series skipped), then over stories and, for the
classical inverses, over MEG subjects (each subject's recording gives its own estimate; the
joint model gives one estimate per story).

Each inverse is also scored smoothed with the joint model's own spatial prior, as
``"<inverse>+smooth"`` (:mod:`neurofuse.evaluation.smoothing`): the fair baselines.

With a model, MNE and fMNE are also scored with the model's prediction as their prior mean,
``ŝ = m + K (y − G m)`` (:func:`neurofuse.baselines.inverse.apply_posterior`; ``m`` the
prediction scaled to A·m by the one scalar that best explains each recording, since the
model's units are arbitrary), as ``"neurofuse+MNE"`` and ``"neurofuse+fMNE"``: the Bayesian
combination of what the model learned (``m``) and each subject's test recording (``y``). Their smoothed variants
``"neurofuse+MNE+smooth"`` smooth the update only, ``m + S K (y − G m)``
(:func:`neurofuse.evaluation.smoothing.smooth_update`), since ``m`` is already smooth.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np

from .._logging import logger, verbose
from .metrics import spatial_r, temporal_r
from .smoothing import resolve_smoother, smooth_estimate, smooth_update, smoothed_name
from .source_model import as_source_model, predict_source_rows

NEUROFUSE = "neurofuse"


def _stories_with_sources(ds):
    return {g[len("sources/"):-len(".npy")] for g in ds.ground_truth_names
            if g.startswith("sources/") and g.endswith(".npy")}


def has_truth(ds) -> bool:
    """Whether a dataset has ground-truth sources for at least one test story.

    Source recovery (:func:`source_recovery`) needs them; a recorded (not simulated) store
    has none.
    """
    have = _stories_with_sources(ds)
    return any(s in have for s in ds.splits.get("test", []))


def truth_stories(ds, stories=None):
    """Held-out stories that have ground-truth sources (default: the test split)."""
    have = _stories_with_sources(ds)
    if stories is None:
        stories = [s for s in ds.splits.get("test", []) if s in have]
    stories = list(stories)
    missing = [s for s in stories if s not in have]
    if missing or not stories:
        raise ValueError(f"No ground-truth sources for stories {missing or stories}: source "
                         f"recovery needs a simulated dataset (stories with sources: "
                         f"{sorted(have)}).")
    return stories


def posterior_methods(methods, model) -> list:
    """Names of the inverses :func:`source_recovery` also scores with the model's prior mean.

    Parameters
    ----------
    methods : sequence of str
        The classical inverses asked for.
    model : object | None
        The joint model (None: no prior mean, no such methods).

    Returns
    -------
    names : list of str
        ``"neurofuse+MNE"`` and/or ``"neurofuse+fMNE"``, in the order of ``methods``.
    """
    if model is None:
        return []
    from ..baselines.inverse import POSTERIOR_METHODS, posterior_name

    return [posterior_name(m, NEUROFUSE) for m in methods if m in POSTERIOR_METHODS]


class _Accumulator:
    """Running means of temporal r maps (per source, over finite values) and spatial r."""

    def __init__(self):
        self.temporal, self.finite, self.spatial, self.count = {}, {}, {}, {}

    def add(self, method, estimate, truth):
        t = temporal_r(estimate, truth)
        s = float(np.nanmean(spatial_r(estimate, truth)))
        if method not in self.count:
            self.temporal[method], self.finite[method] = np.zeros_like(t), np.zeros(len(t))
            self.spatial[method], self.count[method] = 0.0, 0
        ok = np.isfinite(t)
        self.temporal[method][ok] += t[ok]
        self.finite[method] += ok
        self.spatial[method] += s
        self.count[method] += 1
        return float(np.nanmean(t)), s

    def result(self, method):
        with np.errstate(invalid="ignore", divide="ignore"):
            t_map = self.temporal[method] / self.finite[method]  # NaN where never finite
        return t_map, float(np.nanmean(t_map)), self.spatial[method] / self.count[method]


@verbose
def source_recovery(ds, *, model=None, methods=("fMNE", "MNE", "dSPM", "sLORETA", "eLORETA"),
                    stories=None, meg_subjects=None, smooth_fwhm="model", keep=None,
                    work_dir=None, verbose=None):
    """Score every method's source estimates against the ground truth (Fig. 3).

    Parameters
    ----------
    ds : neurofuse.data.store.Dataset
        A simulated dataset with ground-truth sources for the held-out stories.
    model : SourceModel | JointModel | None
        The trained joint model, or any :class:`~neurofuse.evaluation.source_model.SourceModel`
        on the dataset's fsaverage sources (method ``"neurofuse"``); None scores only the
        inverses.
    methods : sequence of str
        Classical inverses (:func:`neurofuse.baselines.inverse.run_inverses`). With a model,
        MNE and fMNE among them are also scored with the model's prediction as prior mean
        (``"neurofuse+MNE"``, ``"neurofuse+fMNE"``: :func:`posterior_methods`), inverting the
        same recordings with the same operators.
    stories : list of str | None
        Default: the test stories with ground truth.
    meg_subjects : list of str | None
        Subjects whose MEG the inverses invert (default: all MEG subjects).
    smooth_fwhm : "model" | float | None
        Also score every inverse smoothed post hoc with the joint model's spatial prior, as
        method ``"<inverse>+smooth"``: ``K @ estimate`` with ``K`` =
        :func:`neurofuse.anatomy.source_smoother` on the model's fsaverage vertices (the
        dataset's ``metadata['template']['vertices']`` without a model), the smoother of the
        model's smoothed source layer. ``"model"``: at the model's width
        (``EncoderConfig.source_fwhm``; no smoothed inverses for a plain source layer or
        without a model); a float: at that FWHM in mm; None: none
        (:func:`neurofuse.evaluation.smoothing.resolve_smoother`). The inverses with a prior
        mean ``m`` are smoothed on their update only: ``m + S (estimate − m)``.
    keep : dict | None
        ``{"story": str, "subject": str, "sources": array of int, "seconds": float}``: keep the
        time courses of these fsaverage sources (first ``seconds``) of that story (inverses:
        of that subject) for figures.
    work_dir : path-like | None
        Where inverse estimates are memory-mapped while scored (default: a temporary folder,
        removed afterwards); estimates are never all held in memory at once.
    verbose : bool | str | None

    Returns
    -------
    scores : dict of str -> dict
        Per method (the joint model, the inverses, the inverses with the model's prior mean,
        then the smoothed ones):
        ``{"temporal_r": float, "spatial_r": float, "temporal_r_map": array,
        shape (n_sources_fsaverage,)}``.
    kept : dict
        ``{"truth": array (n_keep, n_samples), method: array (n_keep, n_samples), ...}``
        (empty without ``keep``).
    """
    from ..baselines.inverse import run_inverses

    stories = truth_stories(ds, stories)
    source_model = None if model is None else as_source_model(model)
    posteriors = posterior_methods(methods, source_model)
    if meg_subjects is None:
        meg_subjects = [s for s in ds.subjects if "meg" in ds.modalities(s)]
    smoother = None
    if methods:
        fwhm, smoother = resolve_smoother(
            smooth_fwhm, model=model,
            vertices=ds.metadata.get("template", {}).get("vertices"))
        if smoother is not None:
            logger.info("Inverses also smoothed with the model's source smoother (%g mm FWHM): "
                        "%s", fwhm, ", ".join(smoothed_name(m) for m in [*methods, *posteriors]))
    acc, kept = _Accumulator(), {}
    keep = dict(keep or {})
    if keep:
        n_keep = round(keep.get("seconds", 10.0) * ds.sfreq)
        rows = np.asarray(keep["sources"], int)

    def maybe_keep(method, story, subject, estimate, truth=None):
        if keep and story == keep["story"] and (subject is None or subject == keep["subject"]):
            kept[method] = np.array(estimate[rows, :n_keep], np.float32)
            if truth is not None:
                kept["truth"] = np.array(truth[rows, :n_keep], np.float32)

    tmp = None
    if work_dir is None and methods:
        tmp = tempfile.TemporaryDirectory(prefix="neurofuse-inverses-")
        work_dir = tmp.name
    try:
        for story in stories:
            truth = np.asarray(ds.ground_truth(f"sources/{story}"), np.float32)
            prior, prior_f = None, None
            if source_model is not None:
                est = predict_source_rows(source_model, ds.features(story), sfreq=ds.sfreq)
                t, s = acc.add(NEUROFUSE, est, truth)
                logger.info("%s / %s: temporal r %.3f, spatial r %.3f", NEUROFUSE, story, t, s)
                maybe_keep(NEUROFUSE, story, None, est, truth)
                if posteriors:  # the prior mean of the inverses, memory-mapped while used
                    Path(work_dir).mkdir(parents=True, exist_ok=True)
                    prior_f = Path(work_dir) / f"prior-mean_{story}.npy"
                    np.save(prior_f, np.asarray(est, np.float32), allow_pickle=False)
                    prior = np.load(prior_f, mmap_mode="r")
                del est
            for subject in meg_subjects if methods else ():
                if not ds.has(subject, "meg", story):
                    continue
                scale = {}
                estimates = run_inverses(ds, subject, story, methods=methods,
                                         out_dir=Path(work_dir), prior_mean=prior,
                                         prior_name=NEUROFUSE, fitted_scale=scale)
                for method in [*methods, *posteriors]:
                    t, s = acc.add(method, estimates[method], truth)
                    logger.info("%s / %s / %s: temporal r %.3f, spatial r %.3f", method,
                                subject, story, t, s)
                    maybe_keep(method, story, subject, estimates[method], truth)
                if smoother is not None:
                    for method in [*methods, *posteriors]:
                        name = smoothed_name(method)
                        mm = np.lib.format.open_memmap(
                            Path(work_dir) / f"{subject}_{story}_{name}.npy", mode="w+",
                            dtype=np.float32, shape=estimates[method].shape)
                        if method in posteriors:  # m is smooth already: smooth the update
                            est = smooth_update(estimates[method], prior, smoother,
                                                prior_scale=scale[NEUROFUSE], out=mm)
                        else:
                            est = smooth_estimate(estimates[method], smoother, out=mm)
                        t, s = acc.add(name, est, truth)
                        logger.info("%s / %s / %s: temporal r %.3f, spatial r %.3f", name,
                                    subject, story, t, s)
                        maybe_keep(name, story, subject, est, truth)
                        del est, mm
                del estimates
                for f in Path(work_dir).glob(f"{subject}_{story}_*.npy"):
                    f.unlink()
            if prior_f is not None:
                del prior
                prior_f.unlink()
    finally:
        if tmp is not None:
            tmp.cleanup()
    scores = {}
    for method in acc.count:
        t_map, t, s = acc.result(method)
        scores[method] = {"temporal_r": t, "spatial_r": s, "temporal_r_map": t_map}
    return scores, kept


def cnr_to_json(value):
    """A CNR as ``results.json`` writes it: a float, ``"inf"`` for the noiseless case, None
    when unknown (NaN or None: a store that records no CNR)."""
    if value is None or math.isnan(float(value)):
        return None
    value = float(value)
    return "inf" if math.isinf(value) else value


def recovery_rows(scores, *, meg_cnr, fmri_cnr):
    """``results.json`` rows from :func:`source_recovery` scores (CNR ∞ written "inf")."""
    return [{"method": m, "meg_cnr": cnr_to_json(meg_cnr), "fmri_cnr": cnr_to_json(fmri_cnr),
             "temporal_r": sc["temporal_r"], "spatial_r": sc["spatial_r"]}
            for m, sc in scores.items()]

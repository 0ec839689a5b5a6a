"""Held-out predictive performance (paper §3, Tables 1-2): joint model vs ridge ceilings.

Every score is the Pearson r per target (MEG sensor, fMRI source) between a prediction and the
repeat-averaged recording over the concatenation of held-out stories, the same way
:meth:`neurofuse.baselines.ridge.RidgeCeiling.evaluate` scores the ceilings. Tables report a
subset of targets:

* MEG: the sensors over the temporal lobes (:func:`~neurofuse.evaluation.metrics.temporal_lobe_channels`,
  Table 1);
* EEG (average reference): every electrode;
* fMRI: the top quartile of sources. The paper does not say how that quartile is chosen; here
  it is the top 25 % by *repeatability* of the held-out recording (the correlation between its
  repeated presentations, :func:`neurofuse.data.repeatability.repeatability`), which depends on
  neither model, so the selection favours neither. Without repeats, by the ridge ceiling's r.
"""

from __future__ import annotations

import numpy as np

from .._checks import _check_option
from .._logging import logger, verbose
from .metrics import pearson_r, summarize, temporal_lobe_channels, top_quartile


def _test_stories(ds, subject, modality, stories, split="test"):
    if stories is None:
        stories = [s for s in ds.splits.get(split, []) if ds.has(subject, modality, s)]
    stories = list(stories)
    if not stories:
        raise ValueError(f"Subject {subject!r} has no held-out {modality} stories to score; pass "
                         f"stories=[...] or add {split!r} stories to the dataset.")
    for s in stories:
        if not ds.has(subject, modality, s):
            raise ValueError(f"Subject {subject!r} has no {modality} for story {s!r}.")
    return stories


def _recorded(ds, subject, modality, story):
    if modality == "eeg":
        data = ds.data(subject, "eeg", story, average=True)
    else:
        data = ds.meg(subject, story, average=True) if modality == "meg" else \
            ds.fmri(subject, story, average=True)
    return np.asarray(data, np.float32)  # (n_targets, n_samples)


def heldout_r(predictions, recordings):
    """Pearson r per target over the concatenation of stories.

    Parameters
    ----------
    predictions, recordings : list of array, shape (n_targets, n_samples_k)
        One pair per story; a prediction longer than its recording (e.g. BOLD up to the last
        whole TR) is cut to the recording's length.

    Returns
    -------
    r : array, shape (n_targets,)
    """
    if len(predictions) != len(recordings) or not predictions:
        raise ValueError("'predictions' and 'recordings' must be non-empty lists of the same "
                         f"length, got {len(predictions)} and {len(recordings)}.")
    n = [min(p.shape[1], y.shape[1]) for p, y in zip(predictions, recordings)]
    pred = np.concatenate([np.asarray(p[:, :k]) for p, k in zip(predictions, n)], axis=1)
    true = np.concatenate([np.asarray(y[:, :k]) for y, k in zip(recordings, n)], axis=1)
    return pearson_r(pred, true, axis=1)


def model_prediction_r(model, ds, subject, modality, *, stories=None, sources=None):
    """Held-out r per target of the joint model for one subject and modality.

    Parameters
    ----------
    model : neurofuse.systems.joint.model.JointModel
    ds : neurofuse.data.store.Dataset
    subject : str
    modality : 'meg' | 'eeg' | 'fmri'
    stories : list of str | None
        Default: the subject's test stories.
    sources : dict of str -> array, shape (n_sources_fsaverage, n_times) | None
        Precomputed :func:`~neurofuse.systems.joint.predict.predict_sources` per story (reused
        across subjects); computed when missing.

    Returns
    -------
    r : array, shape (n_targets,)
    """
    from ..systems.joint.predict import predict_bold, predict_eeg, predict_meg, predict_sources

    _check_option("modality", modality, ["meg", "eeg", "fmri"])
    stories = _test_stories(ds, subject, modality, stories)
    sources = {} if sources is None else sources
    preds, recs = [], []
    for story in stories:
        if story not in sources:
            sources[story] = predict_sources(model, ds.features(story), sfreq=ds.sfreq)
        if modality == "meg":
            preds.append(predict_meg(model, subject, sources[story]).get_data())
        elif modality == "eeg":
            preds.append(predict_eeg(model, subject, sources[story]).get_data())
        else:
            preds.append(predict_bold(model, subject, sources[story]))
        recs.append(_recorded(ds, subject, modality, story))
    return heldout_r(preds, recs)


def _selection(ds, subject, modality, stories, ridge_r):
    """Targets the tables average over, and a description of them.

    fMRI: the top quartile by repeatability when the held-out stories were repeated, else by
    the ridge ceiling's r (``ridge_r``), else every source: never by a model's own r, which
    would pick the targets it happens to predict best."""
    if modality == "meg":
        info = ds.info(subject)
        names = set(temporal_lobe_channels(info))
        return np.array([ch in names for ch in info["ch_names"]]), "temporal-lobe sensors"
    if modality == "eeg":
        return np.ones(len(ds.info(subject, "eeg")["ch_names"]), bool), "all electrodes"
    from ..data.repeatability import repeatability

    reps = [ds.fmri(subject, s) for s in stories]
    if all(r.shape[0] >= 2 for r in reps):
        n_rep = min(r.shape[0] for r in reps)
        rel = repeatability(np.concatenate([np.asarray(r[:n_rep]) for r in reps], axis=2))
        return top_quartile(rel), "top-quartile sources (repeatability)"
    if ridge_r is not None:
        return top_quartile(ridge_r), "top-quartile sources (ridge r)"
    return np.ones(reps[0].shape[1], bool), "all sources (no repeats, no ridge r to select by)"


def ridge_selection(maps) -> dict:
    """``{(subject, modality): ridge r}`` from :func:`prediction_table`'s maps (its
    ``select_by``): the targets of a later model-only call are then picked as the ridge's."""
    return {(subject, modality): r for (subject, modality, method), r in maps.items()
            if method == "ridge"}


@verbose
def prediction_table(ds, *, model=None, ceilings=None, stories=None, split="test",
                     select_by=None, verbose=None):
    """The prediction benchmark (paper Tables 1-2): held-out r per subject, model vs ridge.

    Parameters
    ----------
    ds : neurofuse.data.store.Dataset
    model : JointModel | None
        The trained joint model (method ``"neurofuse"``); its subjects that the dataset
        lacks are not scored.
    ceilings : dict of (str, str) -> RidgeCeiling | None
        ``{(subject, modality): ceiling}`` from :func:`~neurofuse.baselines.ridge.fit_meg_ceiling`
        / :func:`~neurofuse.baselines.ridge.fit_fmri_ceiling` (method ``"ridge"``).
    stories : list of str | None
        Held-out stories, each recorded for every subject scored (default: each subject's
        stories of ``split``).
    split : str
        The store's split whose stories are scored when ``stories`` is None (``"test"``;
        ``"val"`` to choose among models, :func:`~neurofuse.evaluation.selection.\
validation_prediction`), each subject on those it has.
    select_by : dict of (str, str) -> array | None
        ``{(subject, "fmri"): ridge r per source}`` (the ``"ridge"`` maps of an earlier call
        with ``ceilings``) to pick the top-quartile fMRI targets by when the held-out stories
        were not repeated and this call has no ceiling for the subject, so that the model's
        rows average over the same sources as the ridge's. Without either, every source is
        averaged over (never a quartile picked by the model's own r).
    verbose : bool | str | None

    Returns
    -------
    rows : list of dict
        ``{"subject", "modality", "method", "r_mean", "r_sd", "n_targets", "targets"}`` per
        subject, modality and method: mean ± sd of r over the selected targets.
    maps : dict of (str, str, str) -> array, shape (n_targets,)
        ``{(subject, modality, method): r}`` over all targets (for topomaps and cortical maps).
    """
    ceilings = dict(ceilings or {})
    if model is None and not ceilings:
        raise ValueError("Nothing to score: pass model=, ceilings= or both.")
    pairs = set(ceilings)
    if model is not None:
        pairs |= {(s, "meg") for s in model.meg_heads} | {(s, "fmri") for s in model.fmri_heads}
        pairs |= {(s, "eeg") for s in getattr(model, "eeg_heads", {})}
    # a model may have subjects the dataset lacks (e.g. scored on a subset): not scored
    pairs = {(s, m) for s, m in pairs if s in ds.subjects and m in ds.modalities(s)}
    order = {s: i for i, s in enumerate(ds.subjects)}
    kind_order = {"meg": 0, "eeg": 1}
    pairs = sorted(pairs, key=lambda p: (kind_order.get(p[1], 2), order.get(p[0], len(order)),
                                         p[0]))
    sources = {}  # the model's source estimates per story, shared by all subjects
    rows, maps = [], {}
    for subject, modality in pairs:
        st = _test_stories(ds, subject, modality, stories, split)
        r = {}
        heads = {"meg": model.meg_heads, "fmri": model.fmri_heads,
                 "eeg": getattr(model, "eeg_heads", {})} if model is not None else {}
        if subject in heads.get(modality, {}):
            r["neurofuse"] = model_prediction_r(model, ds, subject, modality, stories=st,
                                                sources=sources)
        if (subject, modality) in ceilings:
            r["ridge"] = ceilings[(subject, modality)].evaluate(ds, st)
        sel, what = _selection(ds, subject, modality, st,
                               r.get("ridge", (select_by or {}).get((subject, modality))))
        for method, values in r.items():
            maps[(subject, modality, method)] = values
            s = summarize(values[sel])
            rows.append({"subject": subject, "modality": modality, "method": method,
                         "r_mean": s["mean"], "r_sd": s["sd"], "n_targets": s["n"],
                         "targets": what})
            logger.info("%s %s %s: r = %.3f ± %.3f over %d %s", subject, modality, method,
                        s["mean"], s["sd"], s["n"], what)
    return rows, maps

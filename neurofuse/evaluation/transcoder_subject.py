"""Scoring the subject-level transcoder (paper §4.3.3) on held-out runs.

The subject model is applied, with the group model it was trained from, to each held-out
run as a whole (:func:`~neurofuse.systems.transcoder.subject_sources`): its EEG- and
fMRI-estimated sources at full resolution (the data set's grid, the EEG rate) are scored
against the simulator's sources exactly as the group level's
(:func:`~neurofuse.evaluation.transcoder.evaluate_transcoder`), in rows of method
``transcoder-subject``. The subject model transcodes between the two *source* estimates,
not back to the recordings, so these rows carry no fMRI or EEG r.

On a dataset store of recordings there are no true sources (:func:`score_subject_recorded`):
what can be scored is the subject level's own transcoding on the held-out runs, epoched at
their events as in training — the EEG-estimated source transcoded to the fMRI-estimated one
(``fmri_r``) and back (``eeg_r``), both of which the group model computes from the
recordings — beside the same r of the untranscoded estimates (method ``group-estimates``:
what the subject level must improve on).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CONTROL_METHOD", "SUBJECT_METHOD", "SUBJECT_NOTE", "SUBJECT_RECORDED_NOTE",
           "score_subject_recorded", "subject_predictor"]

#: Method name of the subject level's rows.
SUBJECT_METHOD = "transcoder-subject"

#: Method name of the control rows on recordings: the group-level estimates untranscoded.
CONTROL_METHOD = "group-estimates"

#: What the subject level's rows hold on recordings (no ground truth).
SUBJECT_RECORDED_NOTE = (
    "Subject level on recorded data: there are no true sources, so only the subject level's "
    "own transcodings are scored, on the held-out runs, epoch-averaged at their events as in "
    "training: 'fmri_r' is r over epoch time, mean over the voxels of the brain mask (every "
    "voxel without one), between its EEG->fMRI transcoding of the EEG-estimated source and "
    "the fMRI-estimated source (both computed by the group model from the recordings), "
    "'eeg_r' the same for fMRI->EEG against the EEG-estimated source. They are not r against "
    "the recorded fMRI or EEG (the group level's evaluation has those). Rows "
    "'group-estimates' give the same r between the untranscoded estimates: the agreement "
    "the subject level starts from.")

#: What the subject level's rows hold.
SUBJECT_NOTE = ("Subject level: the subject model (with the group model it was trained from) "
                "applied to each whole held-out run; its EEG- and fMRI-estimated sources at "
                "full resolution are scored against the true sources. It transcodes between "
                "the two source estimates, not back to EEG or fMRI: no fMRI or EEG r, and no "
                "learned HRF or lead field (the group model's are in its own evaluation).")


def subject_predictor(model, meta, ds, group=None):
    """The subject level as a predictor of sources for ``evaluate_transcoder``.

    Parameters
    ----------
    model : SubjectTranscoder
        A loaded subject-level model.
    meta : dict
        Its ``model.json`` content.
    ds : EEGfMRIDataset
        The simulated data set it was trained on.
    group : path-like | None
        The group model folder it was trained from (None: the one its ``model.json``
        records).

    Returns
    -------
    predict : callable
        ``predict(ds, run) -> {"sources": {"eeg": ..., "fmri": ...}}``, each (n_sources,
        n_times): the subject level's EEG- and fMRI-estimated sources at the source voxels,
        at the EEG rate. ``predict.group`` is the group folder used.
    """
    import numpy as np

    from ..systems.transcoder import subject_sources
    from .transcoder_pipeline import _data_for, _group_model

    if not getattr(ds, "has_truth", True):
        raise ValueError(f"The subject level's sources are scored against true sources, which "
                         f"the store '{ds.path}' (recordings) does not have: use "
                         "score_subject_recorded.")
    group = _group_folder(meta, group)
    gmodel, gmeta = _group_model(Path(group).expanduser())
    data = _data_for(gmodel, gmeta, ds)
    _check_split(meta, data, ds)
    vox = ds.truth("source_voxels")
    n = data.n_trs * data.n_per_tr

    def predict(ds_, run):
        raw = ds.read_run(run, mmap=True)
        e, f = subject_sources(model, gmodel, data, raw["eeg"][:, :n],
                               raw["fmri"][..., :data.n_trs])
        rows = {k: v.reshape(-1, v.shape[-1])[vox] for k, v in (("eeg", e), ("fmri", f))}
        if n < ds.config.n_times:  # never for whole-TR runs; kept for safety
            rows = {k: np.pad(v, ((0, 0), (0, ds.config.n_times - n))) for k, v in rows.items()}
        return {"sources": rows}

    predict.group = str(group)
    predict.data = data
    return predict


def _onsets_ok(raw):
    return raw.get("onset") is not None and len(raw["onset"]) > 0


def score_subject_recorded(ds, model, meta, group=None, *, scenario=None, level=0.95):
    """The subject level's transcodings on a store's held-out runs (no ground truth).

    Parameters
    ----------
    ds : StoreRuns
        The dataset store's runs the subject model was trained on.
    model : SubjectTranscoder
    meta : dict
        Its ``model.json`` content.
    group : path-like | None
        Its group model folder (None: the one ``meta`` records).
    scenario : str | None
        The rows' ``scenario`` (None: ``"<store folder> <subject>"``).
    level : float
        Of the intervals.

    Returns
    -------
    rows : list of dict
        Two rows (:func:`~neurofuse.evaluation.transcoder.summarize_scores`), methods
        :data:`SUBJECT_METHOD` and :data:`CONTROL_METHOD`, with ``level`` ``'subject'``,
        ``fmri_voxels``, ``fmri_mask`` and ``against``; see :data:`SUBJECT_RECORDED_NOTE`.
        Held-out runs without events are left out (logged); ``n_runs`` counts those scored.
    group : str
        The group folder used.
    """
    import numpy as np

    from .._logging import logger
    from ..stats import pearson_r
    from ..systems.transcoder.data import normalize
    from ..systems.transcoder.subject import subject_transcode, upsample_space
    from ..systems.transcoder.subject_fit import SubjectDataConfig, run_averages
    from .transcoder import summarize_scores
    from .transcoder_pipeline import _data_for, _group_model, _held_out, _scored_voxels

    group = _group_folder(meta, group)
    gmodel, gmeta = _group_model(Path(group).expanduser())
    data = _data_for(gmodel, gmeta, ds)
    _check_split(meta, data, ds)
    cfg = SubjectDataConfig.from_dict(meta["data"]["settings"])
    grid = tuple(ds.config.grid_shape)
    keep, voxels = _scored_voxels(ds)
    scores = {SUBJECT_METHOD: [], CONTROL_METHOD: []}
    for run in _held_out(ds):
        raw = ds.read_run(run, mmap=True)
        if not _onsets_ok(raw):
            logger.info("Held-out run %r has no event to epoch at: not scored.", run)
            continue
        avg_e, avg_f, n = run_averages(gmodel, data, raw, ds.config.sfreq, cfg)
        e_in, f_in, _ = normalize(upsample_space(avg_e, data.pool, grid), avg_f)
        out = subject_transcode(model, e_in, f_in, block=cfg.block)
        rows = {k: v.reshape(-1, v.shape[-1])[keep] for k, v in
                (("e", e_in), ("f", f_in), ("e2f", out["eeg2fmri"]), ("f2e", out["fmri2eeg"]))}
        with np.errstate(invalid="ignore", divide="ignore"):
            pairs = {SUBJECT_METHOD: (pearson_r(rows["e2f"], rows["f"]),
                                      pearson_r(rows["f2e"], rows["e"])),
                     CONTROL_METHOD: (pearson_r(rows["e"], rows["f"]),) * 2}
        for method, (fm, ee) in pairs.items():
            scores[method].append({"fmri_r": _mean(fm), "eeg_r": _mean(ee), "source_r": {}})
        logger.info("%s (%d epochs): subject level EEG->fMRI r %s, fMRI->EEG r %s; "
                    "untranscoded %s", run, n, scores[SUBJECT_METHOD][-1]["fmri_r"],
                    scores[SUBJECT_METHOD][-1]["eeg_r"], scores[CONTROL_METHOD][-1]["fmri_r"])
    if not scores[SUBJECT_METHOD]:
        raise ValueError(f"No held-out run of '{ds.path}' has an event to epoch at: the "
                         "subject level is scored on epoch averages (as it is trained).")
    scenario = f"{ds.path.name} {ds.subject}" if scenario is None else scenario
    out = []
    for method, sc in scores.items():
        for row in summarize_scores(sc, scenario=scenario, method=method, level=level):
            row.update(level="subject", fmri_voxels=int(keep.sum()), fmri_mask=voxels,
                       against="group-level source estimates (epoch averages)")
            out.append(row)
    return out, str(group)


def _mean(r):
    import numpy as np

    return float(np.nanmean(r)) if np.isfinite(r).any() else None


def _group_folder(meta, group):
    group = meta.get("data", {}).get("group_model") if group is None else group
    if group is None:
        raise ValueError("'group' is needed: this subject model's model.json does not record "
                         "the group model it was trained from (fitted before it did); pass "
                         "that group model folder (--group).")
    return group


def _check_split(meta, data, ds):
    if list(meta["data"]["test_runs"]) != list(data.test_runs):
        raise ValueError(f"The subject model held out {meta['data']['test_runs']} but the data "
                         f"set '{ds.path}' holds out {data.test_runs}: pass the data set it "
                         "was trained on.")

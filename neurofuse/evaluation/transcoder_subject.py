"""Scoring the subject-level transcoder (paper §4.3.3) on held-out runs.

The subject model is applied, with the group model it was trained from, to each held-out
run as a whole (:func:`~neurofuse.systems.transcoder.subject_sources`): its EEG- and
fMRI-estimated sources at full resolution (the data set's grid, the EEG rate) are scored
against the simulator's sources exactly as the group level's
(:func:`~neurofuse.evaluation.transcoder.evaluate_transcoder`), in rows of method
``transcoder-subject``. The subject model transcodes between the two *source* estimates,
not back to the recordings, so these rows carry no fMRI or EEG r.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["SUBJECT_METHOD", "SUBJECT_NOTE", "subject_predictor"]

#: Method name of the subject level's rows.
SUBJECT_METHOD = "transcoder-subject"

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
        raise ValueError(f"The subject level is scored on simulated data only: the store "
                         f"'{ds.path}' has no subject-level fit (not supported on stores yet).")
    group = meta.get("data", {}).get("group_model") if group is None else group
    if group is None:
        raise ValueError("'group' is needed: this subject model's model.json does not record "
                         "the group model it was trained from (fitted before it did); pass "
                         "that group model folder (--group).")
    gmodel, gmeta = _group_model(Path(group).expanduser())
    data = _data_for(gmodel, gmeta, ds)
    if list(meta["data"]["test_runs"]) != list(data.test_runs):
        raise ValueError(f"The subject model held out {meta['data']['test_runs']} but the data "
                         f"set '{ds.path}' holds out {data.test_runs}: pass the data set it "
                         "was trained on.")
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

"""One study, end to end: ridge ceilings, joint model, inverses, scores.

:func:`evaluate_study` runs every step on an existing dataset store and keeps what each
step produced in its output folder, so an interrupted run resumes where it stopped. Any store
the joint model can train on will do: source recovery (the joint model and the classical
inverses, plain and smoothed with the model's prior, against ground-truth sources) runs only
on a store with ground-truth sources for its test stories (a simulation), and is skipped with
a logged note otherwise; the ridge ceilings and the held-out prediction scores run on every
store (MEG only, fMRI only or both).

===================== ============================================================================
``ridge/``            ridge ceilings' held-out r per target (``scores.npz``) and the fMRI
                      ceilings' predictions of the training stories (``denoised.npz``, the
                      joint model's denoised training fMRI, paper §2.6 footnote 2)
``fit/``              the joint model's training run (:func:`neurofuse.systems.joint.trainer.fit`;
                      resumed from its last checkpoint); absent when a fitted ``model`` is given
``scored-model.json`` which joint model the scores below are of: a SHA-256 of its
                      weights and config, and where it came from
``recovery.npz``      temporal r maps and summary scores of every method (Fig. 3), the
                      inverses smoothed with the model's prior (``"<inverse>+smooth"``)
                      and MNE / fMNE with the model's prediction as prior mean
                      (``"neurofuse+MNE"``, ``"neurofuse+fMNE"``) included
``timecourses.npz``   ground truth and estimates at a few sources, for figures
===================== ============================================================================

The scores of the joint model are cached for the model they were computed with: a run on a
folder that holds another model's (one trained there, or another given ``model``) stops with
an error instead of mixing the two; the ridge ceilings, which do not depend on the model, are
always reused.

The demo (:func:`neurofuse.evaluation.demo.run_demo`) and the simulation benchmark
(:func:`neurofuse.evaluation.benchmark.run_simulation_benchmark`) are built on it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import numpy as np

from .._io import atomic_path, make_dir, write_json
from .._logging import logger, verbose
from .fit_reuse import _check_done_fit, _wanted_fit
from .prediction import prediction_table, ridge_selection
from .recovery import (
    NEUROFUSE,
    has_truth,
    posterior_methods,
    recovery_rows,
    source_recovery,
    truth_stories,
)
from .smoothing import model_source_fwhm, smoothed_name

#: Classical inverses scored against the joint model (appendix C).
INVERSE_METHODS = ("fMNE", "MNE", "dSPM", "sLORETA", "eLORETA")

#: The demo's study: the ``demo`` preset (2 MEG + 2 fMRI subjects, ten 2-minute stories) on
#: the ``oct5`` source space (2052 sources; the paper's ``oct6`` has 8196), so that training,
#: ridge and inverses fit in 15 minutes on 2 CPU cores.
DEMO_STUDY = {"preset": "demo", "spacing": "oct5"}

#: Training set-up of the demo: the ``demo`` training preset
#: (:data:`neurofuse.systems.joint.trainer.FIT_PRESETS`, also ``neurofuse joint fit demo``),
#: which holds every setting: batch, epochs, curriculum and fMRI denoising.
DEMO_FIT = {"preset": "demo"}


@dataclasses.dataclass
class StudyEvaluation:
    """Everything :func:`evaluate_study` measured on one simulated study.

    Attributes
    ----------
    source_recovery : list of dict
        ``results.json`` rows: method, meg_cnr, fmri_cnr, temporal_r, spatial_r.
    prediction : list of dict
        ``results.json`` rows: subject, modality, method, r_mean, r_sd (+ n_targets, targets).
    temporal_r_maps : dict of str -> array, shape (n_sources_fsaverage,)
        Per method, temporal r of source recovery per fsaverage source.
    prediction_maps : dict of (str, str, str) -> array, shape (n_targets,)
        ``(subject, modality, method)`` -> held-out r per sensor / source.
    timecourses : dict of str -> array, shape (n_keep, n_samples)
        ``"truth"`` and estimates at :attr:`timecourse_sources` (first seconds of a story).
    timecourse_sources : array of int
        fsaverage source indices of :attr:`timecourses`.
    timecourse_meta : dict
        ``{"story", "subject"}`` the time courses come from.
    history : Path | None
        The training log (``history.csv``).
    model_dir : Path | None
        The trained model.
    fsaverage_vertices : list of array | None
        Vertex numbers of the fsaverage source space (for cortical maps).
    smooth_fwhm : float | None
        FWHM (mm) of the smoother of the ``"<inverse>+smooth"`` methods (None: none scored).
    """

    source_recovery: list
    prediction: list
    temporal_r_maps: dict
    prediction_maps: dict
    timecourses: dict
    timecourse_sources: np.ndarray
    timecourse_meta: dict
    history: Path | None = None
    model_dir: Path | None = None
    fsaverage_vertices: list | None = None
    smooth_fwhm: float | None = None

    def results(self) -> dict:
        """The ``results.json`` content of this study."""
        return {"source_recovery": list(self.source_recovery), "prediction": list(self.prediction)}


def _save_npz(path, arrays, *, what):
    path = Path(path)
    with atomic_path(path, what=what) as tmp, open(tmp, "wb") as fid:
        np.savez(fid, **arrays)
    return path


def _load_npz(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _key(*parts):
    return "|".join(parts)


def pick_timecourse_sources(truth, n=3, *, n_lh=None):
    """A few strongly driven, well separated fsaverage sources to show time courses of.

    The highest-variance source of each hemisphere, then the next highest at least 500
    source indices away from those already picked.

    Parameters
    ----------
    truth : array, shape (n_sources, n_times)
    n : int
    n_lh : int | None
        Number of left-hemisphere sources (the first rows); default half of them (as in the
        ``oct`` source spaces). A store's are ``len(metadata['template']['vertices'][0])``.

    Returns
    -------
    sources : array of int, shape (n,)
    """
    var = np.asarray(truth, np.float64).var(axis=1)
    half = len(var) // 2 if n_lh is None else int(n_lh)
    order = np.argsort(-var)
    picked = [int(np.argmax(var[:half])), half + int(np.argmax(var[half:]))][:n]
    for i in order:
        if len(picked) >= n:
            break
        if all(abs(int(i) - p) >= 500 for p in picked):
            picked.append(int(i))
    return np.asarray(picked[:n], int)


# ------------------------------------------------------------------------------- steps


#: Modalities the ridge ceilings and the joint model score.
SCORED_MODALITIES = ("meg", "fmri", "eeg")


def _ridge_step(ds, out):
    """Fit every ceiling; keep held-out r per target and the fMRI training predictions."""
    from ..baselines.ridge import fit_fmri_ceiling, fit_meg_ceiling

    scores_f, denoised_f = out / "ridge" / "scores.npz", out / "ridge" / "denoised.npz"
    if scores_f.is_file() and denoised_f.is_file():
        logger.info("Ridge ceilings: reusing %s", scores_f.parent)
    else:
        ceilings = {}
        for subject in ds.subjects:
            for modality in ds.modalities(subject):
                if modality not in SCORED_MODALITIES:
                    logger.info("Ridge ceilings: %s's %s skipped (ceilings are fitted for %s)",
                                subject, modality, ", ".join(SCORED_MODALITIES))
                    continue
                if modality == "fmri":
                    ceilings[(subject, modality)] = fit_fmri_ceiling(ds, subject)
                else:  # sensors: MEG, EEG
                    ceilings[(subject, modality)] = fit_meg_ceiling(ds, subject,
                                                                    modality=modality)
        if not ceilings:
            raise ValueError(f"The dataset '{ds.path}' has no MEG, EEG or fMRI subject to fit "
                             f"ridge ceilings and the joint model on (its subjects' modalities: "
                             f"{ {s: ds.modalities(s) for s in ds.subjects} }); evaluate needs "
                             "at least one MEG, EEG or fMRI subject.")
        rows, maps = prediction_table(ds, ceilings=ceilings)
        denoised = {}
        for (subject, modality), ceiling in ceilings.items():
            if modality == "fmri":
                for story in ds.subject_stories(subject, "fmri"):
                    if story in ds.splits.get("train", []):
                        denoised[_key(subject, story)] = ceiling.predict_story(ds, story) \
                            .astype(np.float32)
        _save_npz(denoised_f, denoised, what="ridge fMRI predictions")
        _save_npz(scores_f, {_key(*k): v for k, v in maps.items()}, what="ridge scores")
        write_json(out / "ridge" / "rows.json", rows)
    rows = json.loads((out / "ridge" / "rows.json").read_text())
    maps = {tuple(k.split("|")): v for k, v in _load_npz(scores_f).items()}
    in_sample = {}  # the ceilings' in-sample fit of the training stories (paper footnote 2)
    for k, v in _load_npz(denoised_f).items():
        subject, story = k.split("|")
        in_sample.setdefault(subject, {})[story] = v
    return rows, maps, in_sample


SCORED_MODEL = "scored-model.json"
_TRAINED_HERE = "fit"


def _model_digest(model):
    """SHA-256 of a joint model's weights, buffers and configuration."""
    from safetensors.torch import save

    flat = {k: v.detach().cpu().contiguous() for k, v in model.flat_state().items()}
    h = hashlib.sha256(save(flat))
    h.update(json.dumps(model.config_dict(), sort_keys=True,
                        default=lambda o: np.asarray(o).tolist()).encode())
    return h.hexdigest()


def _scored_model(out):
    """``{"source", "sha256"}`` of the model whose scores ``out`` holds (None: none yet)."""
    record = out / SCORED_MODEL
    if record.is_file():
        return json.loads(record.read_text())
    if (out / "fit").exists() or (out / "recovery.npz").is_file():
        # a folder of a run made before the record existed: the model was trained there
        sha = None
        if (out / "fit" / "done.json").is_file():
            from ..systems.joint.model import JointModel

            sha = _model_digest(JointModel.load(out / "fit" / "model"))
        return {"source": _TRAINED_HERE, "sha256": sha}
    return None


def _describe(source, out, *, done=True):
    if source == _TRAINED_HERE:
        return (f"the joint model trained there ({out / 'fit'})" if done
                else "a newly trained joint model")
    return f"the model {source}"


def _claim_out(out, *, source, sha256=None):
    """Refuse ``out`` if it holds another model's scores; else record this model's.

    ``sha256`` None (before training): only a folder holding a given model's scores is
    refused.
    """
    prev = _scored_model(out)
    if prev is not None and (prev["source"] != source if sha256 is None
                             else prev["sha256"] != sha256):
        if source == _TRAINED_HERE:
            how = ("To train and score a new model, choose another output folder; to resume "
                   f"that evaluation, pass model='{prev['source']}' (--model).")
        else:
            how = "To score it, choose another output folder" + (
                f"; to score the model trained there, pass model='{out / 'fit'}' (--model)"
                if prev["source"] == _TRAINED_HERE and prev["sha256"] else "") + "."
        raise ValueError(f"The output folder '{out}' holds the evaluation of "
                         f"{_describe(prev['source'], out)}: scoring "
                         f"{_describe(source, out, done=False)} there as well would mix the "
                         f"scores of two models. {how}")
    if sha256 is not None and not (out / SCORED_MODEL).is_file():
        # the same model as a legacy folder's keeps its source ("fit": trained there)
        write_json(out / SCORED_MODEL, {"source": prev["source"] if prev else source,
                                        "sha256": sha256})


def _given_model(model):
    """``(JointModel, model folder | None, history.csv | None)`` of the ``model`` argument."""
    from ..systems.joint.model import JointModel

    if isinstance(model, JointModel):
        return model, None, None
    if not isinstance(model, (str, Path)):
        raise TypeError("'model' must be a fitted joint model's folder (the output folder of "
                        "'neurofuse joint fit' or its model/), a JointModel or None, got "
                        f"{type(model).__name__}.")
    path = Path(model).expanduser()
    if not (path / "model.json").is_file() and (path / "model" / "model.json").is_file():
        path = path / "model"  # the output folder of `neurofuse joint fit`
    if not (path / "model.json").is_file():
        raise FileNotFoundError(f"'model' is '{model}', which holds no joint model (no "
                                "model.json): pass the output folder of 'neurofuse joint fit' "
                                "or its model/ subfolder.")
    history = path.parent / "history.csv"
    return JointModel.load(path), path.resolve(), history if history.is_file() else None


def _fit_step(ds, out, *, fit_config, fmri_denoise, in_sample, device):
    from ..systems.joint.model import JointModel
    from ..systems.joint.trainer import fit

    train, encoder = _wanted_fit(fit_config, fmri_denoise)
    fit_dir = out / "fit"
    done = fit_dir / "done.json"
    if not done.is_file():
        resume = (fit_dir / "checkpoints" / "latest").is_file()
        fit(ds, fit_dir, train_config=train, encoder_kwargs=encoder, resume=resume,
            device=device, known_fmri_targets={"in-sample": in_sample})
        write_json(done, {"train": train.to_dict(), "encoder": encoder,
                          "denoised_fmri": train.fmri_denoise})
    else:
        _check_done_fit(done, {"train": train.to_dict(), "encoder": encoder})
        logger.info("Joint model: reusing %s", fit_dir)
    return JointModel.load(fit_dir / "model"), fit_dir


def study_cnr(ds) -> dict:
    """``{modality: CNR}`` of a study: the first subject's of each modality."""
    cnr = {}
    for s in ds.subjects:
        for m, v in ds.cnr(s).items():
            cnr.setdefault(m, float(v))
    return cnr


def _smoothing_width(model, smooth_fwhm):
    """The FWHM (mm) :func:`source_recovery` smooths the inverses at (None: not at all)."""
    return model_source_fwhm(model) if smooth_fwhm == "model" else smooth_fwhm


def _smoothed_methods(methods, model, smooth_fwhm):
    """Names of the smoothed inverses :func:`source_recovery` will score (the inverses with
    the model's prior mean included)."""
    return ([smoothed_name(m) for m in [*methods, *posterior_methods(methods, model)]]
            if _smoothing_width(model, smooth_fwhm) is not None else [])


def _recovery_step(ds, out, model, *, methods, smooth_fwhm, keep, meg_cnr, fmri_cnr):
    rec_f, tc_f = out / "recovery.npz", out / "timecourses.npz"
    order = [NEUROFUSE, *methods, *posterior_methods(methods, model),
             *_smoothed_methods(methods, model, smooth_fwhm)]
    cached = set()
    if rec_f.is_file() and tc_f.is_file():
        cached = {k[len("scores|"):] for k in _load_npz(rec_f) if k.startswith("scores|")}
    if cached and set(order) <= cached:
        logger.info("Source recovery: reusing %s", rec_f)
    else:
        if cached:  # e.g. a folder of a run made before the smoothed inverses existed
            logger.info("Source recovery: %s lacks %s; scoring every method again", rec_f,
                        ", ".join(m for m in order if m not in cached))
        scores, kept = source_recovery(ds, model=model, methods=methods, keep=keep,
                                       smooth_fwhm=smooth_fwhm, work_dir=out / "inverses")
        arrays = {}
        for m, sc in scores.items():
            arrays[f"map|{m}"] = sc["temporal_r_map"]
            arrays[f"scores|{m}"] = np.array([sc["temporal_r"], sc["spatial_r"]])
        _save_npz(tc_f, {**kept, "__sources__": np.asarray(keep["sources"])},
                  what="source time courses")
        _save_npz(rec_f, arrays, what="source recovery scores")
        try:
            (out / "inverses").rmdir()
        except OSError:
            pass
    arrays = _load_npz(rec_f)
    scores = {k[len("scores|"):]: {"temporal_r": float(v[0]), "spatial_r": float(v[1])}
              for k, v in arrays.items() if k.startswith("scores|")}
    maps = {k[len("map|"):]: v for k, v in arrays.items() if k.startswith("map|")}
    kept = _load_npz(tc_f)
    sources = kept.pop("__sources__")
    # neurofuse first, then the inverses in the order asked, those with the model's prior
    # mean, then the smoothed ones
    scores = {m: scores[m] for m in order if m in scores}
    return recovery_rows(scores, meg_cnr=meg_cnr, fmri_cnr=fmri_cnr), maps, kept, sources


@verbose
def evaluate_study(data, out, *, model=None, fit_config=None, methods=INVERSE_METHODS,
                   smooth_fwhm="model", fmri_denoise=None, device=None, progress=None,
                   verbose=None) -> StudyEvaluation:
    """Ridge ceilings, joint model, classical inverses and all scores on one study.

    Parameters
    ----------
    data : path-like | Dataset
        A dataset store with MEG, EEG and/or fMRI subjects and train, val and test stories: a
        simulated study (:func:`neurofuse.simulation.simulate_study`) or recorded data. Source
        recovery needs ground-truth sources for the test stories (a simulation); without
        them it is skipped with a logged note, and the ridge ceilings and held-out
        prediction scores still run.
    out : path-like
        Output folder (created); what is already there from an interrupted run of the same
        joint model is reused, and a folder holding another model's scores is refused.
    model : path-like | JointModel | None
        Score this fitted joint model instead of training one: the output folder of
        ``neurofuse joint fit`` (:func:`neurofuse.systems.joint.trainer.fit`, e.g. trained on a
        GPU machine) or its ``model/`` subfolder, or a model object (moved to the CPU). It
        must fit the dataset (:func:`neurofuse.systems.joint.model.check_model_fits`: same
        features, subjects, channels and sources); it is scored exactly as a model trained
        here would be. None: train one in ``out/fit``.
    fit_config : str | path-like | dict | None
        Joint-model training set-up (:func:`neurofuse.systems.joint.trainer.load_fit_config`);
        default :data:`DEMO_FIT`. Not with ``model``.
    methods : sequence of str
        Classical inverses to compare (subset of :data:`INVERSE_METHODS`). Without MEG
        subjects none runs; fMNE is left out (with a logged note) when no subject has fMRI
        of the test stories.
    smooth_fwhm : "model" | float | None
        Also score every inverse smoothed with the joint model's spatial prior, as
        ``"<inverse>+smooth"`` (the fair baselines,
        :func:`~neurofuse.evaluation.recovery.source_recovery`): ``"model"`` at the width
        of the model's smoothed source layer (its ``source_fwhm``; none for a plain
        layer), a float at that FWHM in mm, None not at all.
    fmri_denoise : None | "none" | "in-sample" | "cross-fitted" | "auto" | bool
        The joint model's training fMRI (``TrainConfig.fmri_denoise``): the recordings, the
        fMRI ridge ceiling's in-sample predictions of the training stories (paper §2.6,
        footnote 2; ``True``), out-of-fold ridge predictions (each story predicted by a ridge
        fitted on the other training stories only), or the one of these chosen by pilot
        trainings' validation loss (:mod:`neurofuse.systems.joint.denoising`). None: the
        fit config's (the demo's: none; the paper's: in-sample). Validation and scores always use the
        recordings. No effect with ``model``.
    device : str | None
        Training device (default: CUDA when available). No effect with ``model`` (scoring
        runs on the CPU).
    progress : callable | None
        Called with the name of each step as it starts (e.g. to advance a progress bar).
    verbose : bool | str | None

    Returns
    -------
    evaluation : StudyEvaluation
    """
    from ..data.store import read_dataset

    if fmri_denoise is not None:  # before any work
        from ..baselines.ridge import check_fmri_denoise

        fmri_denoise = check_fmri_denoise(fmri_denoise)
    if smooth_fwhm is not None and not (isinstance(smooth_fwhm, str) and smooth_fwhm == "model"):
        from .._checks import _check_positive

        if isinstance(smooth_fwhm, str):
            raise ValueError(f"'smooth_fwhm' must be 'model', a width in mm or None, got "
                             f"{smooth_fwhm!r}.")
        smooth_fwhm = _check_positive("smooth_fwhm", smooth_fwhm)
    ds = data if hasattr(data, "splits") else read_dataset(data)
    truth = has_truth(ds)
    if not truth:  # said now, not after the training
        logger.warning("Source recovery skipped: the dataset '%s' has no ground-truth sources "
                       "for its test stories (only a simulation has them). The ridge ceilings "
                       "and the held-out prediction scores still run.", ds.path)
    out = Path(out).expanduser()
    step = progress or (lambda name: None)
    given = model_dir = history = None
    if model is not None:
        from ..systems.joint.model import check_model_fits

        if fit_config is not None:
            raise ValueError("Pass either 'model' (score a fitted joint model) or 'fit_config' "
                             "(train one), not both.")
        given, model_dir, history = _given_model(model)
        check_model_fits(given, ds, name="model")
        given.cpu()
    make_dir(out, what="evaluation output folder")
    if given is None and (out / "fit" / "done.json").is_file():  # refused before any work
        train, encoder = _wanted_fit(DEMO_FIT if fit_config is None else fit_config,
                                     fmri_denoise)
        _check_done_fit(out / "fit" / "done.json",
                        {"train": train.to_dict(), "encoder": encoder})
    # before any work (training included), refuse a folder that holds another model's scores
    if given is None:
        _claim_out(out, source=_TRAINED_HERE)
    else:
        _claim_out(out, source=str(model_dir or "given as a JointModel object"),
                   sha256=_model_digest(given))
    fit_config = DEMO_FIT if fit_config is None else fit_config
    cnr = study_cnr(ds)
    meg_cnr, fmri_cnr = cnr.get("meg", math.nan), cnr.get("fmri", math.nan)

    step("ridge ceilings")
    ridge_rows, ridge_maps, in_sample = _ridge_step(ds, out)
    if given is None:
        step("joint model")
        model, fit_dir = _fit_step(ds, out, fit_config=fit_config, fmri_denoise=fmri_denoise,
                                   in_sample=in_sample, device=device)
        model.cpu()
        model_dir, history = fit_dir / "model", fit_dir / "history.csv"
        _claim_out(out, source=_TRAINED_HERE, sha256=_model_digest(model))
    else:
        model = given
    step("source recovery")
    story = subject = None
    rec_rows, t_maps, kept, sources = [], {}, {}, np.zeros(0, int)
    if truth:
        stories = truth_stories(ds)
        story = stories[0]
        meg_subjects = [s for s in ds.subjects if "meg" in ds.modalities(s)]
        subject = meg_subjects[0] if meg_subjects else None
        keep = {"story": story, "subject": subject,
                "sources": pick_timecourse_sources(ds.ground_truth(f"sources/{story}"),
                                                   n_lh=_n_lh(ds)),
                "seconds": 10.0}
        rec_rows, t_maps, kept, sources = _recovery_step(
            ds, out, model, methods=_runnable_methods(ds, methods, meg_subjects, stories),
            smooth_fwhm=smooth_fwhm, keep=keep, meg_cnr=meg_cnr, fmri_cnr=fmri_cnr)
    step("prediction scores")
    model_rows, model_maps = prediction_table(ds, model=model,
                                              select_by=ridge_selection(ridge_maps))
    pred_rows = _merge_prediction(ds, model_rows, ridge_rows)
    return StudyEvaluation(
        source_recovery=rec_rows, prediction=pred_rows, temporal_r_maps=t_maps,
        prediction_maps={**ridge_maps, **model_maps}, timecourses=kept,
        timecourse_sources=sources, timecourse_meta={"story": story, "subject": subject},
        history=history, model_dir=model_dir,
        fsaverage_vertices=[np.asarray(v) for v in model.vertices] if model.vertices else None,
        smooth_fwhm=(_smoothing_width(model, smooth_fwhm)
                     if any(r["method"].endswith("+smooth") for r in rec_rows) else None))


def _n_lh(ds):
    """Left-hemisphere sources of the store's template (None when it does not say)."""
    vertices = ds.metadata.get("template", {}).get("vertices")
    return len(vertices[0]) if vertices else None


def _runnable_methods(ds, methods, meg_subjects, stories):
    """The inverses that can run: none without MEG; fMNE only with fMRI of every story."""
    methods = list(methods)
    if not meg_subjects:
        if methods:
            logger.info("No classical inverses: the dataset has no MEG subject to invert.")
        return []
    if "fMNE" in methods:
        lacking = [st for st in stories if not any(ds.has(s, "fmri", st) for s in ds.subjects)]
        if lacking:
            logger.info("fMNE left out: no subject has fMRI of test stories %s for its prior.",
                        lacking)
            methods.remove("fMNE")
    return methods


def _merge_prediction(ds, model_rows, ridge_rows):
    """Rows MEG subjects first, in dataset order; neurofuse before ridge for each."""
    order = {s: i for i, s in enumerate(ds.subjects)}
    return sorted([*model_rows, *ridge_rows],
                  key=lambda r: ({"meg": 0, "eeg": 1}.get(r["modality"], 2),
                                 order.get(r["subject"], len(order)),
                                 r["subject"], r["method"] != NEUROFUSE))


__all__ = ["DEMO_FIT", "DEMO_STUDY", "INVERSE_METHODS", "StudyEvaluation", "evaluate_study",
           "pick_timecourse_sources"]

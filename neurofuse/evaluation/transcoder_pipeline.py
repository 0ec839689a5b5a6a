"""System D end to end: fit or load the transcoder, score it beside the baselines, report.

:func:`evaluate_transcoder_folder` is what ``neurofuse transcoder evaluate`` runs on one
simulated data set: it trains the group-level transcoder on the training runs (or loads a
given model), predicts every held-out run with it (:func:`model_predictor`), runs the physics
baseline and MNE / dSPM / eLORETA with the true lead field, scores all of them against both
source truths (:func:`~neurofuse.evaluation.transcoder.evaluate_transcoder`), measures the
HRF and lead field the model implicitly learned (:func:`learned_responses`) and writes
``results.json`` and ``report.html``. :func:`run_transcoder_demo` does it for two scenarios
of the small grid.
"""

from __future__ import annotations

import html
import time
from pathlib import Path

import numpy as np

from .._checks import _check_option
from .._logging import logger, verbose
from .transcoder import BASELINES, evaluate_transcoder

__all__ = ["evaluate_transcoder_folder", "learned_responses", "model_predictor",
           "run_transcoder_demo", "score_recorded", "summary_line", "untrained_control"]

#: Why a store of recordings gets only the transcoding scores.
NO_TRUTH_NOTE = ("Recorded data: only the transcodings are scored (EEG->fMRI against the "
                 "recorded fMRI, fMRI->EEG against the recorded EEG, on the held-out runs). "
                 "Source, HRF and lead-field scores and the MNE / dSPM / eLORETA / physics "
                 "baselines need ground truth (sources, lead field, HRF): simulate with "
                 "'neurofuse transcoder simulate'. The fMRI r is over the voxels of the "
                 "store's brain mask when it has one (rows' 'fmri_mask').")

#: The data set size and fit set-up of ``neurofuse transcoder demo`` (2 CPU cores, minutes).
DEMO_FIT = {"preset": "tiny", "train": {"epochs": 4}, "data": {"n_val": 0}}
DEMO_SCENARIOS = ("noise_free", "snr10")


def _group_model(model):
    from ..systems.transcoder import load_model
    from ..systems.transcoder.model import MODEL_FORMAT

    if isinstance(model, tuple):  # (Transcoder, meta): a model in memory
        return model
    model, meta = load_model(model, return_meta=True)
    if meta.get("format") != MODEL_FORMAT:
        raise ValueError(f"'model' must be a group-level transcoder folder ({MODEL_FORMAT!r}), "
                         f"got a {meta.get('format')!r}; pass the 'model' folder of "
                         "'neurofuse transcoder fit' (a subject-level model is scored by "
                         "evaluate_transcoder_folder).")
    return model, meta


def _data_for(model, meta, ds):
    """The model's group-level reduction of ``ds`` (whole runs), checked against the model."""
    from ..systems.transcoder import TranscoderData

    d = meta["data"]
    settings = {**d["settings"], "fmri_pool": list(d["fmri_pool"]), "chunk_trs": None,
                "chunk_step": None, "n_val": 0, "cache": False}
    data = TranscoderData(ds, d["steps_per_tr"], settings)
    cfg = model.config
    if data.n_channels != cfg.n_channels or tuple(data.volume_shape) != tuple(cfg.volume_shape):
        raise ValueError(
            f"'model' was trained on {cfg.n_channels} channels and a pooled grid of "
            f"{tuple(cfg.volume_shape)}, but the data set '{ds.path}' gives {data.n_channels} "
            f"channels and {tuple(data.volume_shape)}; pass a model fitted on a data set of the "
            "same size preset.")
    return data


def model_predictor(model, ds):
    """The transcoder as a predictor for :func:`~neurofuse.evaluation.transcoder.evaluate_transcoder`.

    Parameters
    ----------
    model : path-like
        A group-level model folder (``fit``'s ``out/model``).
    ds : EEGfMRIDataset | StoreRuns
        A simulated data set, or a dataset store's runs
        (:class:`~neurofuse.systems.transcoder.store.StoreRuns`).

    Returns
    -------
    predict : callable
        ``predict(ds, run) -> dict``: ``fmri`` (n_x, n_y, n_z, n_trs) the EEG→fMRI
        transcoding on the data set's grid (pooled grid interpolated trilinearly); ``eeg``
        (n_channels, n_times) the fMRI→EEG transcoding at the EEG rate (linear in time);
        ``sources`` ``{'eeg', 'fmri'}`` -> (n_sources, n_times), the EEG- and fMRI-decoded
        source volumes at the source voxels, at the EEG rate. A store has no source voxels:
        there ``sources`` are the decoded volumes on the model's pooled grid at its source
        rate, (n_gx, n_gy, n_gz, n_trs * steps_per_tr). Units are the model's (normalised
        data): only correlations are meaningful.
    """
    from ..systems.transcoder import transcode
    from ..systems.transcoder.subject import upsample_space, upsample_time

    model, meta = _group_model(model)
    data = _data_for(model, meta, ds)
    sim = ds.config
    grid, pool = tuple(sim.grid_shape), tuple(data.pool)
    spp = data.n_per_tr // data.steps_per_tr
    if not getattr(ds, "has_truth", True):  # a store: no source voxels, no source space
        def predict_volumes(ds_, run):
            eeg, fmri, _ = data.load((run, 0), purpose="test")
            out = transcode(model, eeg, fmri)
            return {"fmri": upsample_space(out["eeg2fmri"], pool, grid),
                    "eeg": upsample_time(out["fmri2eeg"], spp, sim.n_times),
                    "sources": {"eeg": out["eeg_sources"], "fmri": out["fmri_sources"]}}

        predict_volumes.data = data
        return predict_volumes
    vox = ds.truth("source_voxels")

    def to_sources(vol):  # (gx, gy, gz, n_steps) -> (n_sources, n_times)
        full = upsample_space(vol, pool, grid)
        return upsample_time(full.reshape(-1, full.shape[-1])[vox], spp, sim.n_times)

    def predict(ds_, run):
        eeg, fmri, _ = data.load((run, 0), purpose="test")
        out = transcode(model, eeg, fmri)
        return {"fmri": upsample_space(out["eeg2fmri"], pool, grid),
                "eeg": upsample_time(out["fmri2eeg"], spp, sim.n_times),
                "sources": {"eeg": to_sources(out["eeg_sources"]),
                            "fmri": to_sources(out["fmri_sources"])}}

    predict.data = data
    return predict


def learned_responses(model, ds, *, n_trs=16):
    """The HRF and lead field the model implicitly learned: its encoders' impulse responses.

    Parameters
    ----------
    model : path-like | tuple
        A group-level model folder, or ``(Transcoder, meta)`` (``meta``: its ``model.json``
        content, e.g. an untrained control from :func:`untrained_control`).
    ds : EEGfMRIDataset
    n_trs : int
        Length of the HRF window, TRs.

    Returns
    -------
    responses : dict
        ``hrf_learned`` and ``hrf_true`` (n_trs,): the fMRI encoder's response (minus its
        response to zero) at one voxel holding sources to a unit impulse there in the first
        group step, at the TRs, and the
        simulator's canonical HRF sampled the same way (slice offset 0); ``hrf_r`` their
        Pearson r. ``leadfield_r`` (n_voxels,): per pooled voxel holding sources, r over the
        channels between the EEG encoder's impulse response and the true lead field summed
        over the voxel's sources; ``leadfield_r_median``. A sign flip of the learned source
        space flips both r.
    """
    import torch

    from ..simulation.eeg_fmri.fmri import sample_bold
    from ..stats import pearson_r

    model, meta = _group_model(model)
    data = _data_for(model, meta, ds)
    sim, cfg = ds.config, model.config
    s = cfg.steps_per_tr
    spp = data.n_per_tr // s
    gshape = tuple(cfg.volume_shape)
    label = np.ravel_multi_index(
        tuple(np.unravel_index(ds.truth("source_voxels"), tuple(sim.grid_shape))[a]
              // data.pool[a] for a in range(3)), gshape)
    cells = np.unique(label)
    centre = np.unravel_index(cells[len(cells) // 2], gshape)  # a voxel holding sources
    with torch.no_grad():
        x = torch.zeros(1, *gshape, n_trs * s)
        base = model.fmri_encoder(x)[(0, *centre)]
        x[(0, *centre, 0)] = 1.0
        hrf = (model.fmri_encoder(x)[(0, *centre)] - base).numpy().astype(float)
    drive = np.zeros((1, n_trs * data.n_per_tr))
    drive[0, :spp] = 1.0 / spp  # the group step's block average of a unit impulse
    true = sample_bold(drive, sim.sfreq, sim.tr, np.zeros(1), sim.hrf)[0, 0]
    lf = ds.truth("leadfield")  # (n_channels, n_sources)
    true_lf = np.stack([lf[:, label == c].sum(1) for c in cells], 1)  # (n_channels, n_cells)
    with torch.no_grad():
        zero = model.eeg_encoder(torch.zeros(1, *gshape, 1))[0, :, 0]
        imp = torch.zeros(len(cells), *gshape, 1)
        imp.view(len(cells), -1)[torch.arange(len(cells)), torch.as_tensor(cells)] = 1.0
        learned_lf = (model.eeg_encoder(imp)[:, :, 0] - zero).numpy().T.astype(float)
    lf_r = pearson_r(learned_lf, true_lf, axis=0)
    hrf_r = float(pearson_r(hrf[None], true[None])[0])
    hrf_r = hrf_r if np.isfinite(hrf_r) else None  # a flat (dead) response has no r
    return {"hrf_learned": hrf, "hrf_true": true, "hrf_r": hrf_r, "leadfield_r": lf_r,
            "leadfield_r_median": _finite(np.nanmedian(lf_r)) if np.isfinite(lf_r).any()
            else None, "tr": sim.tr}


def _fmt(r):
    return "n/a" if r is None else f"{r:.2f}"


def _finite(x):
    return float(x) if np.isfinite(x) else None


def untrained_control(model, seed=0):
    """A freshly initialised model of the same sizes and data reduction (a control).

    Parameters
    ----------
    model : path-like
        A group-level model folder.
    seed : int
        Torch seed of the initialisation.

    Returns
    -------
    control : tuple of (Transcoder, dict)
        The untrained model (eval mode) and the trained one's ``model.json`` content; pass it
        to :func:`learned_responses` to see what impulse responses the architecture gives
        before training.
    """
    import torch

    from ..systems.transcoder import Transcoder

    trained, meta = _group_model(model)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        control = Transcoder(trained.config).eval()
    return control, meta


#: Transcoder settings that do not change the trained model (but the loop's: see
#: :func:`~neurofuse.evaluation.fit_reuse._loop_rules`): never compared on reuse.
_FREE = (("data", "cache"),)


def _wanted_fit(fit_config, device):
    """``(config, record)``: the set-up ``fit`` trains with (``device`` overriding its
    ``train.device``) and the settings a finished fit records (``fit/done.json``): its
    ``train``, ``model`` (defaults included, but the sizes from the data) and ``data``."""
    from ..systems.transcoder import load_fit_config
    from ..systems.transcoder.config import TranscoderConfig
    from ..systems.transcoder.trainer import _FROM_DATA
    from .fit_reuse import _with_defaults

    train, model_kwargs, data_cfg = load_fit_config(fit_config)
    config = fit_config
    if device is not None:  # --device overrides the set-up's TrainConfig.device
        train = type(train).from_dict({**train.to_dict(), "device": device})
        config = {"preset": "paper", "train": train.to_dict(), "model": model_kwargs,
                  "data": data_cfg.to_dict()}
    model = {k: v for k, v in _with_defaults(TranscoderConfig, model_kwargs).items()
             if k not in _FROM_DATA}
    return config, {"train": train.to_dict(), "model": model, "data": data_cfg.to_dict()}


def _fit_record(fit_dir):
    """The settings a finished fit in ``fit_dir`` was trained with: its ``done.json``, or for
    a folder written before it, what the training loop's ``config.json`` records (the same
    sections; ``data`` under ``settings``). None when it records neither."""
    import json

    from ..systems.transcoder.trainer import _FROM_DATA

    if (fit_dir / "done.json").is_file():
        return json.loads((fit_dir / "done.json").read_text())
    if not (fit_dir / "config.json").is_file():
        return None
    run = json.loads((fit_dir / "config.json").read_text())
    return {"train": run.get("train") or {},
            "model": {k: v for k, v in (run.get("model") or {}).items() if k not in _FROM_DATA},
            "data": (run.get("data") or {}).get("settings") or {}}


def _check_fit(out, fit_config, device):
    """Refuse, before any work, to reuse a finished transcoder fit in ``out/fit`` trained
    under other settings than ``fit_config`` (and ``device``) ask for; return the set-up to
    fit with and what to record."""
    from ..systems.transcoder.task import TranscoderTask
    from .fit_reuse import _check_fit_record, _loop_rules

    config, record = _wanted_fit(fit_config, device)
    fit_dir = Path(out) / "fit"
    prev = _fit_record(fit_dir) if (fit_dir / "model" / "model.json").is_file() else None
    if prev is not None:
        rules = _loop_rules(TranscoderTask)
        _check_fit_record(prev, record, folder=fit_dir,
                          what=f"The transcoder in '{fit_dir}'",
                          **{**rules, "free": [*rules["free"], *_FREE]})
    return config, record


def _fit_or_load(ds, out, model, fit_config, device):
    if model is not None:
        return Path(model).expanduser()
    from .._io import write_json
    from ..systems.transcoder import fit

    config, record = _check_fit(out, fit_config, device)
    fit_dir = Path(out) / "fit"
    if (fit_dir / "model" / "model.json").is_file():
        logger.info("Using the transcoder already fitted in %s", fit_dir)
        return fit_dir / "model"
    resume = (fit_dir / "checkpoints").is_dir()
    fit(ds, fit_dir, config=config, resume=resume)
    write_json(fit_dir / "done.json", record, what="finished fit's settings")
    return fit_dir / "model"


def _held_out(ds):
    runs = list(ds.manifest["split"]["test"])
    if not runs:
        raise ValueError(f"The store '{ds.path}' has no held-out (test) run of subject "
                         f"{ds.subject!r} to score; prepare it with some stories in the 'test' "
                         "split (splits=..., --splits RUN=test).")
    return runs


def score_recorded(ds, predict, *, runs=None, scenario=None, level=0.95):
    """Transcoding scores of recorded runs (no ground truth): fMRI r and EEG r per run.

    Parameters
    ----------
    ds : StoreRuns
        A dataset store's EEG–fMRI runs.
    predict : callable
        From :func:`model_predictor`.
    runs : list of str | None
        Runs to score (None: the held-out ``test`` runs).
    scenario : str | None
        The rows' ``scenario`` (None: ``"<store folder> <subject>"``).
    level : float
        Of the intervals.

    Returns
    -------
    rows : list of dict
        One row (:func:`~neurofuse.evaluation.transcoder.summarize_scores`), method
        ``transcoder``: ``fmri_r`` the mean over runs of the mean over voxels of r over time
        between the EEG→fMRI transcoding and the recorded fMRI (voxels constant in either
        left out; only the voxels of the store's brain mask, ``ds.brain_mask``, when it has
        one), ``eeg_r`` the same over channels for fMRI→EEG; ``source_r`` None;
        ``fmri_voxels`` the voxels scored (``fmri_mask``: ``'brain mask'`` or
        ``'all voxels'``).
    """
    from ..stats import pearson_r
    from .transcoder import summarize_scores

    runs = _held_out(ds) if runs is None else list(runs)
    keep, voxels = _scored_voxels(ds)
    scores = []
    for run in runs:
        pred, rec = predict(ds, run), ds.read_run(run)
        n_trs = rec["fmri"].shape[-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            fmri_r = pearson_r(np.asarray(pred["fmri"]).reshape(-1, n_trs)[keep],
                               np.asarray(rec["fmri"], np.float64).reshape(-1, n_trs)[keep])
            eeg_r = pearson_r(pred["eeg"], np.asarray(rec["eeg"], np.float64))
        scores.append({"fmri_r": _finite(np.nanmean(fmri_r)) if np.isfinite(fmri_r).any()
                       else None,
                       "eeg_r": _finite(np.nanmean(eeg_r)) if np.isfinite(eeg_r).any()
                       else None, "source_r": {}})
        logger.info("%s: EEG->fMRI r %s, fMRI->EEG r %s", run, _fmt(scores[-1]["fmri_r"]),
                    _fmt(scores[-1]["eeg_r"]))
    scenario = f"{ds.path.name} {ds.subject}" if scenario is None else scenario
    rows = summarize_scores(scores, scenario=scenario, method="transcoder", level=level)
    for row in rows:
        row["fmri_voxels"], row["fmri_mask"] = int(keep.sum()), voxels
    return rows


def summary_line(results) -> str:
    """One line: per scenario, the transcoder's and MNE's EEG source r (latent truth); on
    recorded data (no source scores) the transcoder's fMRI and EEG r."""
    if not any(r["source_r"] is not None for r in results["rows"]):  # recorded data
        return "; ".join(f"{r['scenario']} {r['method']} fMRI r {_fmt(r['fmri_r'])}, EEG r "
                         f"{_fmt(r['eeg_r'])} ({r['n_runs']} held-out runs)"
                         for r in results["rows"]) + "."
    parts = []
    for row in results["rows"]:
        if (row["method"] in ("transcoder", "transcoder-subject", "MNE")
                and row["source_from"] == "eeg"
                and row["source_truth"] == "latent" and row["source_r"] is not None):
            parts.append(f"{row['scenario']} {row['method']} {row['source_kind']} source r "
                         f"{row['source_r']:.3f}")
    return "; ".join(parts) + "."


@verbose
def evaluate_transcoder_folder(data, out, *, model=None, fit_config="demo", methods=None,
                               source_truth=("latent", "erp"), against="clean", device=None,
                               subject=None, group=None, report=True, verbose=None):
    """Fit (or load) the transcoder, score it and the baselines on the held-out runs, report.

    On a dataset store of recordings (no ground truth) only the transcodings are scored
    (:func:`score_recorded`; ``results["note"]`` says why), without baselines or learned
    responses.

    Parameters
    ----------
    data : path-like | EEGfMRIDataset | StoreRuns
        A simulated data set (``neurofuse transcoder simulate``), or a dataset store with
        ``eeg`` and ``fmri-volume`` runs (e.g. ``neurofuse data prepare eeg-fmri-bids``).
    out : path-like
        Output folder: ``fit/`` (when fitting; resumed if interrupted), ``results.json``,
        ``report.html``.
    model : path-like | None
        A model folder to score instead of fitting one: group level, or subject level
        (``fit_subject``'s; scored on the sources only, see
        :mod:`~neurofuse.evaluation.transcoder_subject`).
    fit_config : str | path-like | dict
        Training set-up when fitting (see :func:`~neurofuse.systems.transcoder.load_fit_config`).
    methods : sequence of str | None
        Baselines among ``('physics', 'MNE', 'dSPM', 'eLORETA')`` (None: all of them on
        simulated data, none on a store, where they would need the true lead field).
    source_truth : str | sequence of str
        ``'latent'`` (``X``) and/or ``'erp'`` (``X * d``); rows carry a ``source_truth`` key.
    against : 'clean' | 'observed'
        Truth of the transcoded fMRI and EEG (a store has only ``'observed'``).
    device : str | None
        Training device (overrides the set-up's).
    subject : str | None
        The store's subject (None: its only one with EEG and fMRI).
    group : path-like | None
        For a subject-level ``model``: the group model it was trained from (None: the one
        its ``model.json`` records).
    report : bool
        Write ``report.html``.
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    results : dict
        ``rows`` (the benchmark schema, see
        :func:`~neurofuse.evaluation.transcoder.evaluate_transcoder`), ``learned`` (from
        :func:`learned_responses`, arrays as lists, with ``untrained_hrf_r`` and
        ``untrained_leadfield_r_median`` of :func:`untrained_control`; None on a store),
        ``model``, ``dataset``, ``seconds``; on a store also ``subject`` and ``note``.
    """
    from .._io import make_dir
    from ..systems.transcoder import open_eeg_fmri

    _check_option("against", against, ["clean", "observed"])
    ds = open_eeg_fmri(data, subject)
    recorded = not getattr(ds, "has_truth", True)
    if recorded and methods:
        raise ValueError(f"'methods' {list(methods)} need the true lead field, which the store "
                         f"'{ds.path}' (recordings) does not have; leave 'methods' out.")
    if recorded:
        _held_out(ds)  # before any training
    methods = BASELINES if methods is None else methods
    out = make_dir(out, what="evaluation folder")
    t0 = time.perf_counter()
    model_dir = _fit_or_load(ds, out, model, fit_config, device)
    t_fit = time.perf_counter() - t0
    subject_level = _is_subject(model_dir)
    if subject_level:
        return _evaluate_subject(ds, out, model_dir, group, methods, source_truth, against,
                                 report, t0)
    predict = model_predictor(model_dir, ds)
    if recorded:
        logger.info(NO_TRUTH_NOTE)
        results = {"dataset": str(ds.path), "subject": ds.subject, "model": str(model_dir),
                   "rows": score_recorded(ds, predict), "learned": None,
                   "note": NO_TRUTH_NOTE,
                   "seconds": {"fit": round(t_fit, 1),
                               "total": round(time.perf_counter() - t0, 1)}}
        return _write_results(out, results, report, fit_dirs=[out / "fit"])
    rows = evaluate_transcoder(ds, transcoder=predict, methods=methods,
                               source_truth=source_truth, against=against)
    learned = learned_responses(model_dir, ds)
    control = learned_responses(untrained_control(model_dir), ds)
    learned["untrained_hrf_r"] = control["hrf_r"]  # what the architecture gives untrained
    learned["untrained_leadfield_r_median"] = control["leadfield_r_median"]
    results = {"dataset": str(ds.path), "model": str(model_dir), "rows": rows,
               "learned": {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                           for k, v in learned.items()},
               "seconds": {"fit": round(t_fit, 1),
                           "total": round(time.perf_counter() - t0, 1)}}
    return _write_results(out, results, report, fit_dirs=[out / "fit"])


def _is_subject(model_dir):
    import json

    from ..systems.transcoder.subject import SUBJECT_FORMAT

    fname = Path(model_dir) / "model.json"
    return fname.is_file() and json.loads(fname.read_text()).get("format") == SUBJECT_FORMAT


def _evaluate_subject(ds, out, model_dir, group, methods, source_truth, against, report, t0):
    """evaluate_transcoder_folder for a subject-level model folder."""
    from ..systems.transcoder import load_model
    from .transcoder_subject import SUBJECT_METHOD, SUBJECT_NOTE, subject_predictor

    model, meta = load_model(model_dir, return_meta=True)
    if not getattr(ds, "has_truth", True):  # recordings: the subject level's own transcodings
        from .transcoder_subject import SUBJECT_RECORDED_NOTE, score_subject_recorded

        rows, group = score_subject_recorded(ds, model, meta, group)
        logger.info(SUBJECT_RECORDED_NOTE)
        results = {"dataset": str(ds.path), "subject": ds.subject, "model": str(model_dir),
                   "group_model": group, "level": "subject", "rows": rows, "learned": None,
                   "note": SUBJECT_RECORDED_NOTE,
                   "seconds": {"fit": 0.0, "total": round(time.perf_counter() - t0, 1)}}
        return _write_results(out, results, report)
    predict = subject_predictor(model, meta, ds, group)
    rows = evaluate_transcoder(ds, transcoder=predict, methods=methods,
                               source_truth=source_truth, against=against)
    for row in rows:
        row["level"] = "subject" if row["method"] == "transcoder" else None
        if row["method"] == "transcoder":
            row["method"] = SUBJECT_METHOD
    results = {"dataset": str(ds.path), "model": str(model_dir), "group_model": predict.group,
               "level": "subject", "rows": rows, "learned": None, "note": SUBJECT_NOTE,
               "seconds": {"fit": 0.0, "total": round(time.perf_counter() - t0, 1)}}
    return _write_results(out, results, report)


def _write_results(out, results, report, *, fit_dirs=()):
    """Write ``out/results.json`` (and ``out/report.html`` when ``report``); return
    ``results``."""
    from .._io import write_json

    write_json(Path(out) / "results.json", results, what="results")
    if report:
        write_report(Path(out) / "report.html", [results], fit_dirs=fit_dirs)
    return results


def write_report(path, results, *, fit_dirs=(), title="neurofuse transcoder (system D)"):
    """``report.html``: Fig. 4/5-style r per method and scenario, learned responses, tables.

    Parameters
    ----------
    path : path-like
        Output ``.html``.
    results : list of dict
        From :func:`evaluate_transcoder_folder`, one per scenario.
    fit_dirs : sequence of path-like
        Fit folders whose ``history.csv`` to plot (missing ones skipped).
    title : str

    Returns
    -------
    path : Path
    """
    from ..viz.report import make_report, rows_to_html
    from ..viz.transcoder import plot_learned_responses, plot_r_by_method, plot_training

    rows = [r for res in results for r in res["rows"]]
    sections = {"Summary": [("Scores", plot_r_by_method(rows),
                             "Mean r over held-out runs with 95 % intervals (Fisher z over "
                             "runs). Source r against the latent source X (top) and the "
                             "ERP-convolved X*d (bottom); methods with the true lead field.")],
                "Source recovery": [], "Training curves": [], "Tables": []}
    for res in results:
        scen = res["rows"][0]["scenario"] if res["rows"] else "?"
        ln = res["learned"]
        if ln is None:  # recorded data: nothing to compare the encoders with
            sections["Source recovery"].append((f"No ground truth ({scen})",
                                                f"<p>{html.escape(res['note'])}</p>"))
            continue
        sections["Source recovery"].append((
            f"Learned HRF and lead field ({scen})", plot_learned_responses(ln),
            f"Encoders' impulse responses against the truth: HRF r = {_fmt(ln['hrf_r'])}, "
            f"median lead-field r over voxels = {_fmt(ln['leadfield_r_median'])} (the same "
            f"architecture untrained: {_fmt(ln.get('untrained_hrf_r'))}, "
            f"{_fmt(ln.get('untrained_leadfield_r_median'))})."))
    for fit_dir in fit_dirs:
        hist = Path(fit_dir) / "history.csv"
        if hist.is_file():
            sections["Training curves"].append((f"Training ({Path(fit_dir).parent.name})",
                                                plot_training(hist)))
    cols = ("scenario", "method", "source_truth", "source_from", "source_kind", "source_r",
            "fmri_r", "eeg_r", "n_runs")
    sections["Tables"].append(("Rows", rows_to_html(rows, cols)))
    return make_report(path, title=title, sections={k: v for k, v in sections.items() if v})


@verbose
def run_transcoder_demo(out="neurofuse-transcoder-demo", *, scenarios=DEMO_SCENARIOS,
                        size="demo", n_runs=6, fit_config=None, methods=BASELINES,
                        verbose=None):
    """Simulate two scenarios of the small grid, fit the transcoder on each, score, report.

    Parameters
    ----------
    out : path-like
        Output folder: ``<scenario>/data``, ``<scenario>/eval`` and ``report.html``
        (everything resumes).
    scenarios : sequence of str
        Scenario presets.
    size : str
        Simulator size preset.
    n_runs : int
        Runs per scenario (the last one held out).
    fit_config : str | dict | None
        Training set-up; None: :data:`DEMO_FIT` (the ``tiny`` networks, 4 epochs).
    methods : sequence of str
        Baselines.
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    result : dict
        ``results`` (one per scenario), ``report`` (path), ``summary`` (one line),
        ``seconds``.
    """
    from .._io import make_dir
    from ..simulation.eeg_fmri import make_config, simulate_dataset

    t0 = time.perf_counter()
    out = make_dir(out, what="demo folder")
    fit_config = DEMO_FIT if fit_config is None else fit_config
    results = []
    for scen in scenarios:
        ds = simulate_dataset(out / scen / "data", make_config(scen, size), n_runs, n_test=1)
        results.append(evaluate_transcoder_folder(ds, out / scen / "eval", fit_config=fit_config,
                                                  methods=methods, report=False))
    report = write_report(out / "report.html", results,
                          fit_dirs=[out / s / "eval" / "fit" for s in scenarios])
    summary = " | ".join(summary_line(r) for r in results)
    return {"results": results, "report": str(report), "summary": summary,
            "seconds": round(time.perf_counter() - t0, 1)}


def _scored_voxels(ds):
    """The voxels the fMRI r is computed over: ``(keep, label)``, ``keep`` a bool array of
    shape (n_voxels,) in the grid's C order, ``label`` ``'brain mask'`` (the store's
    ``ds.brain_mask``) or ``'all voxels'`` (no mask stored)."""
    mask = getattr(ds, "brain_mask", None)
    if mask is None:
        logger.info("The store has no brain mask: the fMRI r is over every voxel.")
        return np.ones(int(np.prod(ds.config.grid_shape)), bool), "all voxels"
    return np.asarray(mask, bool).ravel(), "brain mask"

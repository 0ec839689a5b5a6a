"""The main job, ``neurofuse demo``: simulate, train, compare, report.

:func:`run_demo` simulates the ``demo`` study on the embedded fsaverage anatomy (2 MEG + 2
fMRI subjects, ten 2-minute stories), then :func:`~neurofuse.evaluation.pipeline.evaluate_study`
fits the ridge ceilings, trains the joint model, runs the classical inverses and scores
everything; :func:`make_study_report` lays the result out in ``report.html`` and
``results.json``. Interrupted, it resumes where it stopped.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np

from .._io import make_dir, write_json
from .._logging import logger, progress_enabled, verbose
from .pipeline import DEMO_FIT, DEMO_STUDY, INVERSE_METHODS, evaluate_study
from .recovery import NEUROFUSE
from .smoothing import smoothed_name

#: The demo's ECoG test (paper §5): new simulated subjects with implanted grids and strips
#: hearing a new story of the same simulated world (shorter than the paper's 30 minutes).
DEMO_ECOG = {"n_subjects": 1, "story_minutes": 6.0, "cnr": 1.0}

DEMO_STEPS = ("simulate", "ridge ceilings", "joint model", "source recovery",
              "prediction scores", "ECoG", "report")


def _fmt(v):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def summary_line(results: dict) -> str:
    """One line with the headline numbers of a ``results.json``."""
    rec = {r["method"]: r for r in results.get("source_recovery", [])}
    parts = []
    for m in (NEUROFUSE, "fMNE", smoothed_name("fMNE"), f"{NEUROFUSE}+fMNE"):
        if m in rec:
            parts.append(f"{m} temporal r {_fmt(rec[m]['temporal_r'])} / spatial r "
                         f"{_fmt(rec[m]['spatial_r'])}")
    by = {}
    for row in results.get("prediction", []):
        by.setdefault((row["modality"], row["method"]), []).append(row["r_mean"])
    for modality in ("meg", "eeg", "fmri"):  # EEG only where the study has EEG subjects
        vals = {m: np.nanmean(by[(modality, m)]) for m in (NEUROFUSE, "ridge")
                if (modality, m) in by}
        if vals:
            parts.append(f"{modality.upper()} r " + " vs ".join(
                f"{m} {_fmt(float(v))}" for m, v in vals.items()))
    if "ecog" in results:
        zs = results["ecog"]["zero_shot"]
        parts.append(f"ECoG zero-shot significant {zs['n_significant']}/{zs['n_electrodes']}")
    return "; ".join(parts)


def _recovery_html(evaluation):
    """What the source recovery compared, or why it did not run."""
    methods = [r["method"] for r in evaluation.source_recovery]
    if not methods:
        return ("The dataset has no ground-truth sources for its test stories (it is not a "
                "simulation), so source recovery was not scored; ")
    smoothed = [m for m in methods if m.endswith("+smooth")]
    posterior = [m for m in methods if m.startswith(f"{NEUROFUSE}+")
                 and not m.endswith("+smooth")]
    text = ("the classical inverses (appendix C) inverted each MEG subject's recording of the "
            "test stories" if len(methods) > 1 else "")
    if posterior:
        text += (", also with the joint model's prediction m as their prior mean, "
                 f"m + K (y − G m) ({', '.join(posterior)})")
    if smoothed:
        width = getattr(evaluation, "smooth_fwhm", None)
        text += (", and were scored again smoothed with the joint model's own source smoother"
                 f"{f' ({width:g} mm FWHM)' if width else ''} "
                 f"({', '.join(smoothed)}: the same spatial prior as the model)")
    return text + ("; " if text else "")


def _summary_html(ds, evaluation, results, extra=""):
    s = ds.summary()
    subs = s["subjects"]
    n_meg = sum("meg" in v["modalities"] for v in subs.values())
    n_fmri = sum("fmri" in v["modalities"] for v in subs.values())
    n_eeg = sum("eeg" in v["modalities"] for v in subs.values())
    splits = {}
    for st in s["stories"].values():
        splits.setdefault(st["split"], []).append(st["duration"])
    story_txt = ", ".join(f"{len(d)} {k} ({sum(d) / 60:.0f} min)" for k, d in splits.items())
    cnrs = {m: v for sub in subs.values() for m, v in sub["cnr"].items()}
    n_src = next((v["n_sources_fsaverage"] for v in subs.values()
                  if v.get("n_sources_fsaverage")), None)
    cnr_txt = ", ".join(f"{m.upper()} CNR {v}" for m, v in cnrs.items())
    simulated = str(ds.metadata.get("generator", "")).startswith("neurofuse.simulation")
    what = ("A simulated naturalistic study on the embedded fsaverage anatomy" if simulated
            else f"The dataset {Path(ds.path).name}")
    return (
        f"<p>{html.escape(what)}"
        f"{f' ({n_src} fsaverage sources)' if n_src else ''}: "
        f"{n_meg} MEG{f', {n_eeg} EEG' if n_eeg else ''} and {n_fmri} fMRI subjects, "
        f"{len(s['stories'])} stories "
        f"({html.escape(story_txt)}){f', {html.escape(cnr_txt)}' if cnr_txt else ''}. The "
        "joint model was trained on the training stories; the ridge ceilings were fitted per "
        f"subject; {html.escape(_recovery_html(evaluation))}"
        "every score is on held-out test stories.</p>"
        f"<p><b>{html.escape(summary_line(results))}</b></p>{extra}")


@verbose
def make_study_report(evaluation, ds, out_html, *, title="neurofuse demo", extra_sections=None,
                      verbose=None) -> Path:
    """The HTML report of one evaluated study (sections of :data:`neurofuse.viz.REPORT_SECTIONS`).

    Parameters
    ----------
    evaluation : StudyEvaluation
        From :func:`~neurofuse.evaluation.pipeline.evaluate_study`.
    ds : Dataset
        The evaluated dataset.
    out_html : path-like
    title : str
    extra_sections : dict | None
        More ``{section: [(title, content[, caption]), ...]}`` (e.g. "ECoG").
    verbose : bool | str | None

    Returns
    -------
    path : Path
    """
    from ..viz import (
        make_report,
        plot_recovery_bars,
        plot_sensor_topomaps,
        plot_source_map,
        plot_time_courses,
        plot_training_curves,
    )

    results = evaluation.results()
    sections = {"Summary": [("Overview", _summary_html(ds, evaluation, results))]}
    if evaluation.source_recovery:
        sections["Source recovery"] = [(
            "Source recovery vs ground truth", plot_recovery_bars(evaluation.source_recovery),
            ("Mean Pearson r between estimated and ground-truth sources on the test stories: "
            "over time within each source (temporal) and over sources at each time point "
            "(spatial), as in the paper's Fig. 3."))]
    maps = []
    vert = evaluation.fsaverage_vertices
    pm = evaluation.prediction_maps
    fmri_subjects = sorted({k[0] for k in pm if k[1] == "fmri"}, key=ds.subjects.index)
    meg_subjects = sorted({k[0] for k in pm if k[1] == "meg"}, key=ds.subjects.index)
    if fmri_subjects:
        sub = fmri_subjects[0]
        r = {m: pm[(sub, "fmri", m)] for m in (NEUROFUSE, "ridge") if (sub, "fmri", m) in pm}
        vmax = max(float(np.nanmax(np.abs(v))) for v in r.values())
        for m, v in r.items():
            maps.append((f"fMRI prediction r, {sub}, {m}",
                         plot_source_map(v, ds.vertices(sub), vmin=-vmax, vmax=vmax,
                                         title=f"{sub}: held-out BOLD r ({m})",
                                         cbar_label="Pearson r"),
                         ("Per-source r between predicted and recorded BOLD of the test stories "
                         "(the subject's sources share fsaverage5's vertex numbers).")))
    if vert is not None and evaluation.temporal_r_maps:
        shown = [m for m in (NEUROFUSE, "fMNE", smoothed_name("fMNE"))
                 if m in evaluation.temporal_r_maps]
        vmax = max(float(np.nanmax(np.abs(evaluation.temporal_r_maps[m]))) for m in shown)
        for m in shown:
            maps.append((f"Temporal r of source recovery, {m}",
                         plot_source_map(evaluation.temporal_r_maps[m], vert, vmin=-vmax,
                                         vmax=vmax, title=f"Source recovery: temporal r ({m})",
                                         cbar_label="Pearson r"),
                         ("Per-source r over time between the estimate and the ground truth on "
                         "fsaverage (test stories; inverses averaged over MEG subjects).")))
    if maps:
        sections["Cortical maps"] = maps
    if meg_subjects:
        sub = meg_subjects[0]
        info = ds.info(sub)
        r = {m: pm[(sub, "meg", m)] for m in (NEUROFUSE, "ridge") if (sub, "meg", m) in pm}
        vmax = max(float(np.nanmax(np.abs(v))) for v in r.values())
        sections["MEG sensor topomaps"] = [
            (f"MEG prediction r, {sub}, {m}",
             plot_sensor_topomaps(v, info, vmin=-vmax, vmax=vmax,
                                  title=f"{sub}: held-out MEG r ({m})"),
             "Per-sensor r between predicted and recorded MEG of the test stories.")
            for m, v in r.items()]
    tc = evaluation.timecourses
    if "truth" in tc:
        est = {m: tc[m] for m in (NEUROFUSE, f"{NEUROFUSE}+fMNE", "fMNE", smoothed_name("fMNE"),
                                  "MNE") if m in tc}
        meta = evaluation.timecourse_meta
        sections["Source time courses"] = [(
            "Ground truth vs estimates",
            plot_time_courses(tc["truth"], est, np.arange(len(tc["truth"])), ds.sfreq,
                              source_names=[f"fsaverage source {int(s)}"
                                            for s in evaluation.timecourse_sources]),
            f"First 10 s of test story {meta['story']}; inverses of {meta['subject']}'s MEG.")]
    if evaluation.history is not None and Path(evaluation.history).is_file():
        sections["Training curves"] = [(
            "Joint model training", plot_training_curves(evaluation.history),
            ("Training and validation loss, validation correlations; the dashed line marks the "
            "epoch where the MEG-first curriculum switches the fMRI loss on."))]
    for name, items in (extra_sections or {}).items():
        sections[name] = list(sections.get(name, [])) + list(items)
    return make_report(out_html, title=title, sections=sections, results=results)


def demo_ecog(study_dir, model_dir, out, *, n_subjects, story_minutes, cnr, layout=None,
              validation=None):
    """Simulate ECoG in the study's world and validate the model on it; reuse what exists.

    ``layout`` goes to :func:`~neurofuse.simulation.ecog.simulate_ecog`, ``validation`` (a
    dict) to :func:`~neurofuse.evaluation.ecog.run_ecog_validation`.

    Returns what :func:`neurofuse.evaluation.ecog.run_ecog_validation` returns (figures are
    redrawn from ``ecog/results.json`` and ``ecog/electrodes.json`` when reused).
    """
    import json

    from ..data.ecog import ECOG_MANIFEST
    from ..simulation.ecog import simulate_ecog
    from .ecog import run_ecog_validation

    data = Path(out) / "ecog-data"
    if not (data / ECOG_MANIFEST).is_file():
        simulate_ecog(study_dir, data, n_subjects=n_subjects, story_minutes=story_minutes,
                      cnr=cnr, layout=layout, overwrite=True)
    dest = Path(out) / "ecog"
    if (dest / "results.json").is_file() and (dest / "electrodes.json").is_file():
        logger.info("ECoG validation: reusing %s", dest)
        elec = json.loads((dest / "electrodes.json").read_text())
        return {"results": json.loads((dest / "results.json").read_text()),
                "electrodes": elec["electrodes"], "settings": elec.get("settings"),
                "figures": None, "out": dest}
    return run_ecog_validation(model_dir, data, dest, overwrite=True, **(validation or {}))


@verbose
def run_demo(out="neurofuse-demo", *, study=None, fit_config=None, ecog=True, n_jobs=None,
             device=None, verbose=None) -> dict:
    """Run the demo: simulate the ``demo`` study, train, compare, write the report.

    Parameters
    ----------
    out : path-like
        Output folder: ``data/`` (the simulated study), ``fit/`` (the trained model and its
        log), ``ridge/``, ``recovery.npz``, ``results.json`` and ``report.html``. An
        interrupted demo resumes from what is there.
    study : str | path-like | dict | StudyConfig
        The simulated study (default :data:`DEMO_STUDY`).
    fit_config : str | path-like | dict | None
        Training set-up; default :data:`~neurofuse.evaluation.pipeline.DEMO_FIT`.
    ecog : bool | dict
        Also run the ECoG validation (``ecog-data/`` and ``ecog/``) and add its section and
        its ``"ecog"`` results; a dict overrides :data:`DEMO_ECOG`.
    n_jobs : int | None
        Parallel jobs for the forward models.
    device : str | None
        Training device.
    verbose : bool | str | None

    Returns
    -------
    results : dict
        The ``results.json`` content, with ``"report"`` and ``"summary"`` added.
    """
    from tqdm.auto import tqdm

    from ..data.store import read_dataset
    from ..simulation.study import simulated_study

    out = make_dir(out, what="demo output folder")
    bar = tqdm(total=len(DEMO_STEPS), desc="demo", unit="step", disable=not progress_enabled(),
               position=0, leave=True)

    started = []

    def step(name):  # advance the bar past the previous step, name the current one
        if started:
            bar.update(1)
        started.append(name)
        bar.set_description(f"demo: {name}")

    try:
        step("simulate")
        data = simulated_study(DEMO_STUDY if study is None else study, out / "data",
                               n_jobs=n_jobs)
        ds = read_dataset(data)
        evaluation = evaluate_study(ds, out, fit_config=fit_config or DEMO_FIT,
                                    methods=INVERSE_METHODS, device=device, progress=step)
        extra = {}
        results = evaluation.results()
        if ecog:
            step("ECoG")
            settings = {**DEMO_ECOG, **(ecog if isinstance(ecog, dict) else {})}
            validation = demo_ecog(data, evaluation.model_dir, out, **settings)
            results["ecog"] = validation["results"]
            from ..viz import ecog_report_items

            extra["ECoG"] = ecog_report_items(validation)
        else:
            step("ECoG")
        step("report")
        write_json(out / "results.json", results, what="results")
        report = make_study_report(evaluation, ds, out / "report.html", extra_sections=extra)
        bar.update(1)
    finally:
        bar.close()
    line = summary_line(results)
    logger.info("Demo results: %s", line)
    return {**results, "report": str(report), "summary": line}


__all__ = ["DEMO_ECOG", "DEMO_STUDY", "demo_ecog", "make_study_report", "run_demo",
           "summary_line"]

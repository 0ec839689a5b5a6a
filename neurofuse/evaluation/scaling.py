"""The data-scaling benchmark (issue 15, item 5), ``neurofuse joint benchmark scaling``.

How do source recovery (temporal and spatial r against the ground truth) and held-out MEG /
fMRI r of the joint model, and of every classical inverse and smoothed inverse, change as
the training data grows: minutes of training stories per subject × numbers of MEG and fMRI
subjects?

One study is simulated once, at the largest grid point (the most training stories and
subjects; MEG CNR 1, fMRI CNR 0.3, the demo's noise), in ``OUT/study/``. Every grid point is a
*subset* of it, ``OUT/points/meg-<m>_fmri-<f>_train-<n>/data/``: its first ``n`` training
stories, its first ``m`` MEG and first ``f`` fMRI subjects, and all of its validation, test
and anchor stories (a dataset store whose manifest lists only those, its files links into
``OUT/study/``). So every point has the same world (seed: anatomy, ground-truth encoder,
noise), the same subjects where they overlap and the *same test stories*, noise included:
simulating each point on its own would not, because the stories of a study are drawn in the
order train, val, test (:meth:`~neurofuse.simulation.study.StudyConfig.story_plan`), so the
test stories would change with ``n_train``. The classical inverses use no training data:
on the same subjects they score the same at every point (a flat line in the plot).

On each point :func:`~neurofuse.evaluation.pipeline.evaluate_study` fits the ridge
ceilings, trains the joint model and runs every inverse; its folder resumes, and a finished
point (``point.json``) is not evaluated again. ``OUT/results.json`` is rewritten atomically
after every point and ``OUT/report.html`` shows r against training minutes.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

from .._checks import _check_int, _check_option
from .._io import atomic_dir, make_dir, write_json
from .._logging import logger, progress_enabled, verbose
from .pipeline import DEMO_STUDY, INVERSE_METHODS, evaluate_study

#: Grids of :func:`run_scaling_benchmark`: the study (its story length, source space and
#: world; the numbers of training stories and subjects come from the grid), the training
#: set-up, the numbers of training stories and the ``(MEG, fMRI)`` subject counts.
#:
#: * ``tiny``: tests (a minute on 2 cores): 24-s stories, the ``tiny`` fit.
#: * ``demo``: the demo's study and fit, 2 + 2 subjects, 2, 4 and 6 two-minute training
#:   stories (the last point is the demo's amount of data); about 20 minutes on 2 cores.
#: * ``cpu``: the largest grid for about an hour on 2 CPU cores: the demo's study and fit,
#:   2, 4 and 8 two-minute training stories (about 4, 8 and 16 minutes per subject) × 1 + 1,
#:   2 + 2 and 4 + 4 subjects (see :func:`projected_minutes`).
#: * ``paper``: for a GPU: the paper's study (12-minute stories, ``oct6``) and fit, 2, 5, 10
#:   and 21 training stories (about 24 minutes to 4 hours per subject) × 2 + 2 and 5 + 8
#:   subjects (the paper's 13).
SCALES = {
    "tiny": {"study": {"preset": "tiny", "spacing": "oct5"}, "fit": "tiny",
             "n_train": (2, 3), "subjects": ((1, 1), (2, 1))},
    "demo": {"study": dict(DEMO_STUDY), "fit": "demo",
             "n_train": (2, 4, 6), "subjects": ((2, 2),)},
    "cpu": {"study": dict(DEMO_STUDY), "fit": "demo",
            "n_train": (2, 4, 8), "subjects": ((1, 1), (2, 2), (4, 4))},
    "paper": {"study": {"preset": "paper"}, "fit": "paper",
              "n_train": (2, 5, 10, 21), "subjects": ((2, 2), (5, 8))},
}

#: The noise of every point: the demo's (MEG CNR 1, fMRI CNR 0.3).
SCALING_CNR = {"meg_cnr": 1.0, "fmri_cnr": 0.3}

#: Measured cost of one point of the demo's size (6 two-minute training stories, 2 MEG +
#: 2 fMRI subjects, ``demo`` fit) on 2 idle CPU cores, in minutes: the simulation benchmark's
#: 44.5 minutes for six such conditions (docs/simulation-benchmark.md) is about 7.4 minutes
#: each, of which training is about 5.5 (the ``demo`` fit's 50 epochs).
DEMO_POINT_MINUTES = {"train": 5.5, "other": 1.9}

_MANIFEST = "neurofuse-dataset.json"


def point_name(n_meg, n_fmri, n_train) -> str:
    """Folder name of one grid point, e.g. ``meg-2_fmri-2_train-4``."""
    return f"meg-{n_meg}_fmri-{n_fmri}_train-{n_train}"


def check_grid(n_train, subjects):
    """Validate a scaling grid; return it as ``(sorted n_train tuple, subject pairs tuple)``.

    Parameters
    ----------
    n_train : sequence of int
        Numbers of training stories (each >= 1, no repeats).
    subjects : sequence of (int, int)
        ``(n_meg_subjects, n_fmri_subjects)`` pairs, each count >= 1, no repeats.

    Returns
    -------
    n_train : tuple of int
    subjects : tuple of (int, int)
    """
    fix = "e.g. n_train=(2, 4, 8), subjects=((1, 1), (2, 2))"
    if isinstance(n_train, (str, bytes)) or not hasattr(n_train, "__iter__"):
        raise TypeError(f"'n_train' must be a sequence of numbers of training stories ({fix}), "
                        f"got {type(n_train).__name__} ({n_train!r:.60}).")
    n_train = [_check_int("n_train", n, 1, how_to_fix="Each grid point needs at least one "
                          "training story.") for n in n_train]
    if not n_train:
        raise ValueError(f"'n_train' is empty: give at least one number of training stories "
                         f"({fix}).")
    if len(set(n_train)) != len(n_train):
        raise ValueError(f"'n_train' repeats a value: {n_train}; list each number of training "
                         "stories once.")
    if isinstance(subjects, (str, bytes)) or not hasattr(subjects, "__iter__"):
        raise TypeError(f"'subjects' must be a sequence of (n_meg_subjects, n_fmri_subjects) "
                        f"pairs ({fix}), got {type(subjects).__name__} ({subjects!r:.60}).")
    pairs = []
    for pair in subjects:
        if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
            raise ValueError(f"'subjects' must hold (n_meg_subjects, n_fmri_subjects) pairs "
                             f"({fix}), got {pair!r:.60}.")
        pairs.append((_check_int("n_meg_subjects", pair[0], 1, how_to_fix="The inverses and "
                                 "the joint model need MEG subjects."),
                      _check_int("n_fmri_subjects", pair[1], 1, how_to_fix="The joint model "
                                 "and fMNE need fMRI subjects.")))
    if not pairs:
        raise ValueError(f"'subjects' is empty: give at least one (n_meg_subjects, "
                         f"n_fmri_subjects) pair ({fix}).")
    if len(set(pairs)) != len(pairs):
        raise ValueError(f"'subjects' repeats a pair: {pairs}; list each one once.")
    return tuple(sorted(n_train)), tuple(pairs)


def projected_minutes(scale="cpu", *, n_train=None, subjects=None, story_duration=None,
                      demo_point=None) -> float:
    """Projected wall time (minutes, 2 CPU cores) of a grid of the demo's fit.

    Training time grows with the amount of data: each point costs
    ``demo_point["train"] × (n_train × story_duration × (m + f)) / (6 × 120 s × 4)`` plus
    ``demo_point["other"] × (m + f) / 4`` (simulation share, ridge ceilings, inverses).

    Parameters
    ----------
    scale : str
        A key of :data:`SCALES`, whose grid is used where the arguments below are None.
    n_train, subjects : sequence | None
        The grid (:func:`check_grid`).
    story_duration : float | None
        Mean story length (s); default the scale's study's.
    demo_point : dict | None
        ``{"train": minutes, "other": minutes}`` of one demo-sized point; default
        :data:`DEMO_POINT_MINUTES`.

    Returns
    -------
    minutes : float
    """
    from ..simulation.study import StudyConfig

    _check_option("scale", scale, list(SCALES))
    spec = SCALES[scale]
    n_train, subjects = check_grid(spec["n_train"] if n_train is None else n_train,
                                   spec["subjects"] if subjects is None else subjects)
    if story_duration is None:
        story_duration = StudyConfig.resolve(spec["study"]).story_duration
    cost = DEMO_POINT_MINUTES if demo_point is None else demo_point
    total = 0.0
    for m, f in subjects:
        for n in n_train:
            total += cost["train"] * n * story_duration * (m + f) / (6 * 120.0 * 4)
            total += cost["other"] * (m + f) / 4
    return total


# ------------------------------------------------------------------------- subset stores


def _full_config(study, n_train, subjects, seed):
    from ..simulation.study import StudyConfig

    base = StudyConfig.resolve(study).to_dict()
    if seed is not None:
        base["seed"] = seed
    return StudyConfig.from_dict({
        **base, **SCALING_CNR, "n_train": max(n_train),
        "n_meg_subjects": max(m for m, _ in subjects),
        "n_fmri_subjects": max(f for _, f in subjects)})


def _full_study(path, config, n_jobs):
    """Simulate the largest point's study at ``path`` or reuse the one there (same config)."""
    from ..simulation.study import simulate_study

    manifest = path / _MANIFEST
    if manifest.is_file():
        with open(manifest) as fid:
            found = json.load(fid).get("metadata", {}).get("config")
        # compare as JSON (tuples become lists)
        if json.loads(json.dumps(found)) != json.loads(json.dumps(config.to_dict())):
            raise ValueError(
                f"'{path}' holds another study than this grid needs (another scale, grid, "
                "seed or study config): scoring the two together would mix worlds. Choose "
                "another output folder, or rerun with the arguments that made it.")
        logger.info("Scaling benchmark: reusing the study in %s", path)
        return path
    logger.info("Scaling benchmark: simulating the study of the largest grid point (%d "
                "training stories, %d MEG + %d fMRI subjects) in %s", config.n_train,
                config.n_meg_subjects, config.n_fmri_subjects, path)
    return simulate_study(config, path, overwrite=True, n_jobs=n_jobs)


def _link(target, link):
    """A relative symbolic link ``link`` -> ``target`` (its folder resolved, as ``target`` is)."""
    os.symlink(os.path.relpath(target, Path(link).parent.resolve()), link,
               target_is_directory=Path(target).is_dir())


def subset_store(full, out, *, n_train, n_meg_subjects, n_fmri_subjects):
    """A dataset store holding part of a simulated study, its files links into it.

    Parameters
    ----------
    full : path-like
        A simulated study (:func:`~neurofuse.simulation.study.simulate_study`).
    out : path-like
        The subset store to create (atomically; it must not exist).
    n_train : int
        Keep the first ``n_train`` training stories (every validation, test and anchor story
        is kept).
    n_meg_subjects, n_fmri_subjects : int
        Keep the first MEG-only and the first fMRI-only subjects (in the study's order),
        with their names; other subjects (paired MEG + volume, EEG) are left out.

    Returns
    -------
    out : Path
        The store; its ``metadata['subset']`` says what was kept, of what.
    """
    from ..data.store import read_dataset

    full = Path(full).expanduser().resolve()
    ds = read_dataset(full)
    with open(full / _MANIFEST) as fid:
        m = json.load(fid)
    train = ds.splits.get("train", [])
    meg = [s for s in ds.subjects if ds.modalities(s) == ["meg"]]
    fmri = [s for s in ds.subjects if ds.modalities(s) == ["fmri"]]
    for name, want, have, what in (("n_train", n_train, train, "training stories"),
                                   ("n_meg_subjects", n_meg_subjects, meg, "MEG subjects"),
                                   ("n_fmri_subjects", n_fmri_subjects, fmri, "fMRI subjects")):
        _check_int(name, want, 1)
        if want > len(have):
            raise ValueError(f"'{name}' is {want} but the study '{full}' has only {len(have)} "
                             f"{what}; simulate a larger study or ask for fewer.")
    drop = set(train[n_train:])
    keep_subjects = meg[:n_meg_subjects] + fmri[:n_fmri_subjects]
    m["stories"] = {k: v for k, v in m["stories"].items() if k not in drop}
    subjects = {}
    for s in keep_subjects:
        sub = dict(m["subjects"][s])
        sub["stories"] = {mod: [st for st in sts if st not in drop]
                          for mod, sts in sub["stories"].items()}
        sub["n_repeats"] = {mod: {st: n for st, n in reps.items() if st not in drop}
                            for mod, reps in sub.get("n_repeats", {}).items()}
        subjects[s] = sub
    m["subjects"] = subjects
    m["ground_truth"] = {k: v for k, v in m.get("ground_truth", {}).items()
                         if not any(k == f"sources/{st}.npy" for st in drop)}
    m.setdefault("metadata", {})["subset"] = {
        "of": str(full), "n_train": n_train, "train_stories": train[:n_train],
        "subjects": keep_subjects}
    out = Path(out).expanduser()
    with atomic_dir(out, what="subset dataset store") as tmp:
        for entry in full.iterdir():
            if entry.name in (_MANIFEST, "subjects") or entry.name.startswith("."):
                continue
            _link(entry, tmp / entry.name)
        (tmp / "subjects").mkdir()
        for s in keep_subjects:
            _link(full / "subjects" / s, tmp / "subjects" / s)
        with open(tmp / _MANIFEST, "w") as fid:
            json.dump(m, fid, indent=1)
    read_dataset(out)  # checks the manifest against the files
    return out


def _train_minutes(ds):
    return round(sum(ds.n_times(st) for st in ds.splits.get("train", [])) / ds.sfreq / 60, 3)


# ---------------------------------------------------------------------------- benchmark


@verbose
def run_scaling_benchmark(out, *, scale="cpu", n_train=None, subjects=None, study=None,
                          fit_config=None, methods=INVERSE_METHODS, smooth_fwhm="model",
                          seed=None, n_jobs=None, device=None, report=True,
                          verbose=None) -> dict:
    """Source recovery and held-out prediction as the training data grows (issue 15, item 5).

    Parameters
    ----------
    out : path-like
        Output folder: ``study/`` (the simulated study of the largest point),
        ``points/<name>/`` per grid point (its subset store ``data/``, everything
        :func:`~neurofuse.evaluation.pipeline.evaluate_study` keeps, and ``point.json`` once
        finished), ``results.json`` and ``report.html``. A rerun resumes: finished points are
        read back (refused if ``point.json`` records another fit, ``methods`` or
        ``smooth_fwhm``), an interrupted one resumes its training.
    scale : "tiny" | "demo" | "cpu" | "paper"
        The grid, study and fit of :data:`SCALES`; the arguments below override parts of it.
    n_train : sequence of int | None
        Numbers of training stories per point (the training minutes per subject are their
        durations).
    subjects : sequence of (int, int) | None
        ``(n_meg_subjects, n_fmri_subjects)`` per point.
    study : str | path-like | dict | None
        Study preset, file or dict (:meth:`~neurofuse.simulation.study.StudyConfig.resolve`;
        its story length, source space, world...); its numbers of training stories and
        subjects are the grid's, its CNRs :data:`SCALING_CNR`.
    fit_config : str | path-like | dict | None
        Joint-model training set-up (:func:`neurofuse.systems.joint.trainer.load_fit_config`).
    methods : sequence of str
        Classical inverses.
    smooth_fwhm : "model" | float | None
        Also score every inverse smoothed with the model's spatial prior
        (``"<inverse>+smooth"``), see :func:`~neurofuse.evaluation.pipeline.evaluate_study`.
    seed : int | None
        Overrides the study's seed.
    n_jobs : int | None
        Parallel jobs for the forward models.
    device : str | None
        Training device.
    report : bool
        Also write ``report.html``.
    verbose : bool | str | None

    Returns
    -------
    results : dict
        As written to ``results.json``: ``"source_recovery"`` rows ``{"n_meg_subjects",
        "n_fmri_subjects", "n_train", "train_minutes", "method", "temporal_r", "spatial_r",
        "meg_cnr", "fmri_cnr"}``, ``"prediction"`` rows (those of ``evaluate_study`` with the
        same grid keys first) and ``"grid"`` (scale, study, fit, n_train, subjects).
    """
    from tqdm.auto import tqdm

    from ..data.store import read_dataset
    from .fit_reuse import _check_done_fit, _wanted_fit

    _check_option("scale", scale, list(SCALES))
    spec = SCALES[scale]
    n_train, subjects = check_grid(spec["n_train"] if n_train is None else n_train,
                                   spec["subjects"] if subjects is None else subjects)
    study = spec["study"] if study is None else study
    fit_config = spec["fit"] if fit_config is None else fit_config
    config = _full_config(study, n_train, subjects, seed)  # checks the study before any work
    out = make_dir(out, what="scaling benchmark output folder")
    full = _full_study(out / "study", config, n_jobs)
    grid = {"scale": scale, "study": study if isinstance(study, (str, dict)) else str(study),
            "fit": fit_config if isinstance(fit_config, (str, dict)) else str(fit_config),
            "n_train": list(n_train), "subjects": [list(p) for p in subjects],
            **SCALING_CNR}
    points = [(m, f, n) for m, f in subjects for n in n_train]
    results = {"source_recovery": [], "prediction": [], "grid": grid}
    # what a finished point was scored with: a rerun with other settings must not reuse it
    settings = _json_like({"fit": grid["fit"], "methods": list(methods),
                           "smooth_fwhm": smooth_fwhm})
    bar = tqdm(points, desc="scaling", unit="point", disable=not progress_enabled())
    for m, f, n in bar:
        name = point_name(m, f, n)
        bar.set_description(f"scaling: {name}")
        folder = out / "points" / name
        done = folder / "point.json"
        if done.is_file():
            with open(done) as fid:
                rows = json.load(fid)
            found = rows.get("settings")
            if (folder / "fit" / "done.json").is_file():  # a preset named alike may change
                train, encoder = _wanted_fit(fit_config, None)  # as evaluate_study's
                _check_done_fit(folder / "fit" / "done.json",
                                {"train": train.to_dict(), "encoder": encoder},
                                what=f"The finished grid point '{folder}'",
                                fix="reusing it would mix set-ups in one curve. Remove that "
                                    "point's folder to train and score it again.")
                # the fit's own settings matched: the name it was asked by (a preset since
                # renamed, a file) is not compared
                found = None if found is None else {**found, "fit": settings["fit"]}
            _check_point_settings(done, found, settings)
            logger.info("%s: reusing %s", name, done)
        else:
            data = folder / "data"
            if not (data / _MANIFEST).is_file():
                subset_store(full, data, n_train=n, n_meg_subjects=m, n_fmri_subjects=f)
            ds = read_dataset(data)
            ev = evaluate_study(ds, folder, fit_config=fit_config, methods=methods,
                                smooth_fwhm=smooth_fwhm, device=device)
            keys = {"n_meg_subjects": m, "n_fmri_subjects": f, "n_train": n,
                    "train_minutes": _train_minutes(ds)}
            rows = {"source_recovery": [{**keys, **r} for r in ev.source_recovery],
                    "prediction": [{**keys, **r} for r in ev.prediction],
                    "settings": settings}
            write_json(done, rows, what="grid point results")
        results["source_recovery"] += rows["source_recovery"]
        results["prediction"] += rows["prediction"]
        write_json(out / "results.json", results, what="scaling benchmark results")
        logger.info("%s done: %s", name, ", ".join(
            f"{r['method']} {r['temporal_r']:.3f}/{r['spatial_r']:.3f}"
            for r in rows["source_recovery"]))
    bar.close()
    if report:
        _write_report(out, results, grid, len(points))
    return results


def _json_like(value):
    """``value`` as it reads back from JSON (tuples become lists, paths strings)."""
    return json.loads(json.dumps(value, default=str))


def _check_point_settings(done, found, wanted):
    """Refuse to reuse a finished point scored with other settings than this run's."""
    if found is None:  # written before point.json recorded its settings
        logger.warning("%s does not record the fit, methods and smoothing it was scored with "
                       "(an older neurofuse): reused as it is.", done)
        return
    differ = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
    if differ:
        what = "; ".join(f"{k}: {found.get(k)!r} there, {wanted.get(k)!r} now" for k in differ)
        raise ValueError(
            f"The finished grid point '{done.parent}' was scored with other settings than "
            f"this run asks for ({what}): reusing it would mix set-ups in one curve. Choose "
            "another output folder, or rerun with the settings that made it.")


def _write_report(out, results, grid, n_points):
    from ..viz import make_report, plot_scaling_curves

    text = (f"<p>Scale <code>{html.escape(str(grid['scale']))}</code>: {n_points} grid "
            f"points, {len(grid['n_train'])} amounts of training stories "
            f"({', '.join(map(str, grid['n_train']))}) × {len(grid['subjects'])} subject sets "
            f"(MEG + fMRI: {', '.join(f'{m} + {f}' for m, f in grid['subjects'])}); study "
            f"<code>{html.escape(json.dumps(grid['study']))}</code>, fit "
            f"<code>{html.escape(json.dumps(grid['fit']))}</code>, MEG CNR "
            f"{grid['meg_cnr']:g}, fMRI CNR {grid['fmri_cnr']:g}. One simulated world; every "
            "point is a subset of the largest one's study, so the test stories are the same "
            "at every point. The classical inverses use no training data: their lines are "
            "flat for a given set of subjects.</p>")
    sections = {
        "Summary": [("Data-scaling benchmark", text)],
        "Source recovery": [("Source recovery and prediction vs training minutes",
                             plot_scaling_curves(results),
                             "Temporal and spatial r of source recovery against the ground "
                             "truth, and mean held-out r of the joint model and the ridge "
                             "ceilings (MEG: temporal-lobe sensors; fMRI: top-quartile "
                             "sources), per minutes of training stories per subject; one row "
                             "of panels per set of subjects.")],
    }
    make_report(out / "report.html", title="neurofuse data-scaling benchmark",
                sections=sections, results=results)


__all__ = ["DEMO_POINT_MINUTES", "SCALES", "SCALING_CNR", "check_grid", "point_name",
           "projected_minutes", "run_scaling_benchmark", "subset_store"]

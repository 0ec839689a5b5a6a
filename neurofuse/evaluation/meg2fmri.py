"""System C on held-out subjects: the cGAN beside the mean slice, ridge, physics and itself fed
shuffled MEG (issue 13).

:func:`evaluate_meg2fmri` runs the whole comparison on a store with paired ``meg`` +
``fmri-volume`` subjects (e.g. ``neurofuse simulate study meg2fmri-demo``):

1. **Pairs** (:func:`~neurofuse.systems.meg2fmri.pairing.pair_subject`, paper §3.2), each
   subject's slice chosen on its ``train`` stories only. Held-out subjects (the paper holds
   out two) give the *test* pairs from their ``test`` stories; the other subjects give
   *train* pairs (``train`` stories), *validation* pairs (``val`` stories: the cGAN's model
   selection) and *calibration* pairs (``test`` stories: the physics baseline's one scale).
2. **Methods**, all trained on the training subjects only: ``cgan`` (the paper's model),
   ``mean_slice``, ``ridge`` (MEG vector → pixels), ``physics`` (MEG → MNE → envelope → HRF →
   voxels, :mod:`neurofuse.systems.meg2fmri.physics`) and ``cgan_shuffled`` (the cGAN fed
   another test event's MEG: if it scores as well, its output does not depend on the MEG).
3. **Scores** (:mod:`neurofuse.evaluation.images`): MSE and SSIM as the paper computes them,
   and the activation r: per event, the r over pixels of the method's activation (its slice
   minus its own mean over the subject's test events) with the target's (the slice minus the
   subject's mean test slice); 0 for a method whose slices do not vary (the mean slice). On
   simulations also the r of the method's activation with the *ground-truth* BOLD change of
   the event's slice (noise and drift free, minus its subject mean).

Whole volumes and sequences of volumes (``pairing={"target": "volume"}`` or
``"sequence"``; :class:`~neurofuse.systems.meg2fmri.config.PairingConfig`) go through the
same steps: the 3-D cGAN, the mean training volume (the ``mean_slice`` row), ridge to every
voxel, physics cut as the targets, the shuffled control, scored in 3-D
(:mod:`neurofuse.evaluation.images`, ``image_ndim`` 3 or 4).

Each step's output is written under ``out`` and reused when the run is repeated (an
interrupted run resumes; the cGAN resumes from its checkpoints).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .._io import atomic_path, make_dir, write_json
from .._logging import logger, verbose
from ..stats import pearson_r
from .images import mse, scores, ssim

__all__ = ["DEMO_STUDY", "METHODS", "PAPER_SCORES", "evaluate_meg2fmri", "run_meg2fmri_demo",
           "summary_line", "write_report"]

#: The simulated world of ``neurofuse meg2fmri demo``.
DEMO_STUDY = "meg2fmri-demo"

#: Methods scored, in the order of the results table.
METHODS = ("cgan", "mean_slice", "ridge", "physics", "cgan_shuffled")
#: The paper's held-out scores (Table 1).
PAPER_SCORES = {"mse": 0.046, "ssim": 0.622}
_SPLITS = ("train", "val", "calib", "test")
#: Axes of one target per pairing target (the ``image_ndim`` of the metrics).
_IMAGE_NDIM = {"slice": 2, "volume": 3, "sequence": 4}


#: Model settings that come from the pairs, never from a set-up.
_FROM_DATA = ("n_features", "image_shape", "n_frames")


def _fit_record(fit_config):
    """The cGAN settings ``fit_config`` trains with, as recorded (``settings.json``
    ``fit``): ``train`` and ``model`` (defaults included, but the sizes from the pairs)."""
    from ..systems.meg2fmri.model import CganConfig
    from ..systems.meg2fmri.trainer import _resolve_config
    from .fit_reuse import _with_defaults

    train, model = _resolve_config(fit_config)
    return {"train": train.to_dict(),
            "model": {k: v for k, v in _with_defaults(CganConfig, model).items()
                      if k not in _FROM_DATA}}


def _check_settings(out, settings, fit_config):
    """Refuse to reuse an output folder written with other settings (its cached steps).

    ``settings.json`` records them, with the cGAN's training settings resolved (``fit``:
    a preset whose content changed is not the same set-up); only those that change the
    trained model are compared (:func:`~neurofuse.evaluation.fit_reuse._check_fit_record`).
    A folder written before ``fit`` was recorded is compared on what its cGAN fit's
    ``config.json`` records (nothing when the fit had not started)."""
    from ..systems.meg2fmri.task import CganTask
    from .fit_reuse import _check_fit_record, _loop_rules

    path = out / "settings.json"
    fit = _fit_record(fit_config)
    settings = json.loads(json.dumps({**settings, "fit_config": fit_config, "fit": fit},
                                     default=str))
    if not path.is_file():
        write_json(path, settings)
        return
    before = json.loads(path.read_text())
    changed = sorted(k for k in set(before) | set(settings)
                     if k not in ("fit_config", "fit") and before.get(k) != settings.get(k))
    if changed:
        raise ValueError(f"'{out}' holds an evaluation run with other settings (" + "; ".join(
            f"{k}: {before.get(k)!r} there, {settings.get(k)!r} now" for k in changed)
            + "); its cached pairs and predictions would be mixed with this one. Pass "
            "another 'out' folder, or delete this one.")
    prev, run = before.get("fit"), out / "cgan" / "config.json"
    if prev is None and run.is_file():  # a folder from before the record
        run = json.loads(run.read_text())
        prev = {"train": run.get("train"),
                "model": {k: v for k, v in (run.get("model") or {}).items()
                          if k not in _FROM_DATA}}
    if prev is not None:
        _check_fit_record(prev, fit, folder=out / "cgan",
                          what=f"The cGAN of the evaluation in '{out}'",
                          fix=f"its predictions would be another model's than the one asked "
                              f"for. Remove '{out}' to evaluate again, or pass another "
                              "'out' folder.", **_loop_rules(CganTask))


def _paired_subjects(ds):
    return [s for s in ds.subjects if {"meg", "fmri-volume"} <= set(ds.modalities(s))]


def _split_subjects(ds, held_out):
    from .._checks import _check_option

    subjects = _paired_subjects(ds)
    if len(subjects) < 3:
        raise ValueError(f"The store '{ds.path}' has {len(subjects)} subjects with both 'meg' and "
                         "'fmri-volume' data; the evaluation needs at least 3 (held-out and two "
                         "or more training subjects). Simulate e.g. 'meg2fmri-demo'.")
    if held_out is None:
        held_out = subjects[-2:]
    held_out = [held_out] if isinstance(held_out, str) else list(held_out)
    for s in held_out:
        _check_option("held_out entry", s, subjects)
    train = [s for s in subjects if s not in held_out]
    if not held_out or len(train) < 2:
        raise ValueError(f"'held_out' must leave at least 2 of the {len(subjects)} paired "
                         f"subjects for training, got {held_out}.")
    return train, held_out


def _pairs(ds, out, train_subjects, held_out, event, config):
    """Pair every subject once; save the four splits under out/pairs/."""
    from ..systems.meg2fmri.paired import concatenate_paired, read_paired
    from ..systems.meg2fmri.pairing import pair_subject

    folder = Path(out) / "pairs"
    files = {s: folder / f"{s}.npz" for s in _SPLITS}
    if all(f.is_file() for f in files.values()):
        return {s: read_paired(f) for s, f in files.items()}
    splits = ds.splits
    stories = {k: [s for s in splits.get(k, [])] for k in ("train", "val", "test")}
    if not stories["train"] or not stories["test"]:
        raise ValueError(f"The store needs 'train' and 'test' stories, got splits "
                         f"{ {k: len(v) for k, v in stories.items()} }.")
    onsets = {s: ds.events(s, event) for s in ds.stories}
    sets = {k: [] for k in _SPLITS}
    for subject in train_subjects + held_out:
        wanted = stories["test"] if subject in held_out else (
            stories["train"] + stories["val"] + stories["test"])
        paired = pair_subject(ds, subject, onsets, config, stories=wanted,
                              train_stories=stories["train"])
        if subject in held_out:
            sets["test"].append(paired)
        else:
            for split, key in (("train", "train"), ("val", "val"), ("calib", "test")):
                part = paired.select(stories=stories[key]) if stories[key] else None
                if part is not None and len(part):
                    sets[split].append(part)
    make_dir(folder, what="paired-data folder")
    result = {}
    for split in _SPLITS:
        if not sets[split]:
            if split in ("train", "test"):
                raise ValueError(f"No {split} pairs: the {split} stories hold no '{event}' "
                                 "events with a whole MEG epoch and fMRI window.")
            sets[split] = [sets["train"][0].take(np.zeros(0, np.int64))]
        result[split] = concatenate_paired(sets[split])
        result[split].save(files[split])
    logger.info("Pairs: %s.", ", ".join(f"{k} {len(v)}" for k, v in result.items()))
    return result


def _truth_images(ds, pairs, config):
    """Ground-truth BOLD change images of the test events, or None without ground truth."""
    from ..simulation.paired_volume import true_bold_change
    from ..systems.meg2fmri.physics import event_targets

    out = np.zeros(pairs.Y.shape)
    for subject, story in sorted(set(zip(pairs.subject, pairs.story))):
        idx = np.flatnonzero((pairs.subject == subject) & (pairs.story == story))
        try:
            change = true_bold_change(ds, subject, story)
        except ValueError as err:
            logger.info("No ground-truth BOLD change (%s): activation r against the truth "
                        "is not computed.", err)
            return None
        out[idx] = event_targets(change, pairs.slice[idx], pairs.volume[idx], config)
    return out


def _physics(ds, pairs, mean, config):
    """Physics predictions of the calibration and test events (None without ground truth)."""
    from ..simulation.paired_volume import read_volume_truth
    from ..systems.meg2fmri.physics import PhysicsSlices, event_targets, physics_change

    images = {}
    for split, p in pairs.items():
        images[split] = np.zeros(p.Y.shape)
        for subject, story in sorted(set(zip(p.subject, p.story))):
            idx = np.flatnonzero((p.subject == subject) & (p.story == story))
            try:
                source_map = read_volume_truth(ds, subject)["map"]
                change = physics_change(ds, subject, story, source_map)
            except ValueError as err:
                logger.info("No physics baseline (%s).", err)
                return None
            images[split][idx] = event_targets(change, p.slice[idx], p.volume[idx], config)
    model = PhysicsSlices(mean).fit(images["calib"], pairs["calib"].Y)
    logger.info("Physics baseline: scale %.4g fitted on %d calibration events.", model.scale_,
                len(pairs["calib"]))
    return model.predict(images["test"])


def _subject_means(images, subjects):
    """(n_events, h, w): for each event, the mean of ``images`` over its subject's events."""
    means = np.empty(images.shape, np.float64)
    for s in np.unique(subjects):
        idx = subjects == s
        means[idx] = images[idx].mean(axis=0, dtype=np.float64)
    return means


def _method_scores(pred, test, target_mean, truth, truth_mean, image_ndim=2):
    """MSE, SSIM, activation r (and r with the true change) of one method's test slices.

    A method's activation is its slice minus its *own* mean over the subject's test events,
    the target's its slice minus the subject's mean test slice: an offset common to all of a
    method's slices (the anatomy it draws) is not activation. A method whose slices do not
    vary within a subject (the mean slice) predicts no activation: its r is 0 by convention.
    """
    pred_mean = _subject_means(pred, test.subject)
    flat = np.all(np.abs(pred - pred_mean) <= 1e-7 * max(1.0, float(np.abs(pred).max())))
    if flat:  # no activation: r is 0, not "undefined for every image" (no warning)
        row = {"mse": mse(pred, test.Y, image_ndim=image_ndim),
               "ssim": ssim(pred, test.Y, image_ndim=image_ndim), "activation_r": 0.0}
    else:
        row = scores(pred, test.Y, target_mean, pred_mean=pred_mean, image_ndim=image_ndim)
    r_truth = None
    if truth is not None:
        n = len(pred)
        r = pearson_r((pred - pred_mean).reshape(n, -1), (truth - truth_mean).reshape(n, -1))
        r_truth = 0.0 if flat else (float(np.nanmean(r)) if np.isfinite(r).any()
                                    else float("nan"))
    return row, r_truth


@verbose
def evaluate_meg2fmri(data, out, *, held_out=None, event="word", pairing=None, fit_config="demo",
                      physics=True, seed=0, verbose=None) -> dict:
    """Score the MEG2fMRI cGAN and its baselines on held-out subjects.

    Parameters
    ----------
    data : path-like | Dataset
        A store with subjects holding continuous ``meg`` and ``fmri-volume`` and per-story
        event onsets (``Dataset.events``), e.g. a simulated ``meg2fmri-demo`` study.
    out : path-like
        Output folder (created): ``pairs/``, ``cgan/``, ``predictions.npz`` and
        ``results.json``; what an interrupted run left there is reused.
    held_out : list of str | None
        Test subjects; default the last two paired subjects (the paper holds out two).
    event : str
        The event table whose onsets make the pairs (``"word"`` or ``"sentence"`` in the
        simulated world).
    pairing : PairingConfig | dict | None
        Pairing settings (:class:`~neurofuse.systems.meg2fmri.config.PairingConfig`); its
        ``target`` (``"slice"``, ``"volume"``, ``"sequence"``) says what is generated.
    fit_config : str | dict | path-like
        cGAN training set-up (:func:`~neurofuse.systems.meg2fmri.trainer.load_fit_config`).
    physics : bool
        Compute the physics baseline (needs the subjects' forward models and, on simulations,
        the saved source → voxel maps).
    seed : int
        Seed of the shuffled-MEG control.
    verbose : bool | str | None

    Returns
    -------
    results : dict
        ``rows`` (one ``{"method", "mse", "ssim", "activation_r"}`` per method), ``truth_r``
        ({method: r with the true BOLD change} on simulations), ``paper`` (the paper's
        scores; for slices), ``n_pairs`` per split, ``held_out``, ``train_subjects``,
        ``pairing``, and ``target`` for volume and sequence runs.
    """
    from ..data import Dataset, read_dataset
    from ..systems.meg2fmri.baselines import RidgeSlices, mean_slice, shuffle_rows
    from ..systems.meg2fmri.config import PairingConfig
    from ..systems.meg2fmri.trainer import fit
    from ..systems.meg2fmri.model import load_model, synthesize

    ds = data if isinstance(data, Dataset) else read_dataset(data)
    out = make_dir(out, what="evaluation output folder")
    if pairing is None:
        pairing = PairingConfig()
    elif isinstance(pairing, dict):
        pairing = PairingConfig.from_dict(pairing)
    train_subjects, held_out = _split_subjects(ds, held_out)
    _check_settings(out, {"data": str(ds.path), "held_out": held_out, "event": event,
                          "pairing": pairing.to_dict(), "seed": seed}, fit_config)
    pairs = _pairs(ds, out, train_subjects, held_out, event, pairing)
    train, val, test = pairs["train"], pairs["val"], pairs["test"]
    image_ndim = _IMAGE_NDIM[pairing.target]
    # Whole volumes are large: record fewer generated inputs, less often, during training.
    n_snap, snap_every = (8, 1) if pairing.target == "slice" else (4, 5)

    pred_file = out / "predictions.npz"
    if pred_file.is_file():
        with np.load(pred_file, allow_pickle=False) as z:
            preds = {k: z[k] for k in z.files}
    else:
        preds = {}
    if "cgan" not in preds:
        fit(train.X, train.Y, out / "cgan", X_val=val.X if len(val) else None,
            Y_val=val.Y if len(val) else None, config=fit_config,
            snapshot_inputs=test.X[:n_snap], snapshot_every=snap_every,
            resume=(out / "cgan" / "checkpoints").is_dir())
        model = load_model(out / "cgan" / "model")
        preds["cgan"] = synthesize(model, test.X)
        preds["cgan_shuffled"] = synthesize(model, test.X[shuffle_rows(len(test), seed)])
    mean = mean_slice(train.Y)
    preds["mean_slice"] = np.broadcast_to(mean, test.Y.shape).astype(np.float32)
    if "ridge" not in preds:
        preds["ridge"] = RidgeSlices().fit(train.X, train.Y, train.subject).predict(test.X)
    if physics and "physics" not in preds and len(pairs["calib"]):
        ph = _physics(ds, {"calib": pairs["calib"], "test": test}, mean, pairing)
        if ph is not None:
            preds["physics"] = ph
    with atomic_path(pred_file, what="predictions") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **preds)

    target_mean = _subject_means(test.Y, test.subject)
    truth = _truth_images(ds, test, pairing)
    truth_mean = None if truth is None else _subject_means(truth, test.subject)
    rows, truth_r = [], {}
    for method in METHODS:
        if method not in preds:
            logger.info("Method %s was not run.", method)
            continue
        row, r_truth = _method_scores(preds[method], test, target_mean, truth, truth_mean,
                                      image_ndim)
        rows.append({"method": method, **row})
        if r_truth is not None:
            truth_r[method] = r_truth
    results = {
        "rows": rows, "truth_r": truth_r, "paper": dict(PAPER_SCORES),
        "n_pairs": {k: len(v) for k, v in pairs.items()}, "held_out": held_out,
        "train_subjects": train_subjects, "event": event, "pairing": pairing.to_dict(),
    }
    if pairing.target != "slice":  # the slice results keep their keys as they were
        results["target"] = pairing.target
    write_json(out / "results.json", results, what="results")
    logger.info("MEG2fMRI results: %s", json.dumps(rows))
    write_report(out / "report.html", results, test, preds, out / "cgan")
    return results


def _row(results, method):
    return next((r for r in results["rows"] if r["method"] == method), None)


def summary_line(results) -> str:
    """Plain-language verdict of a results dict: does the cGAN beat the mean slice, and does its
    output depend on the MEG?

    Parameters
    ----------
    results : dict
        As returned by :func:`evaluate_meg2fmri`.

    Returns
    -------
    line : str
    """
    cgan, mean = _row(results, "cgan"), _row(results, "mean_slice")
    shuffled = _row(results, "cgan_shuffled")
    if cgan is None or mean is None:
        return "The cGAN or the mean-slice baseline was not scored."
    # Volumes and sequences (beyond the paper) have no paper score to stand beside.
    kind = {"volume": "volume", "sequence": "sequence"}.get(results.get("target"), "slice")
    paper = (f" (paper: MSE {PAPER_SCORES['mse']} / SSIM {PAPER_SCORES['ssim']})"
             if kind == "slice" else f" ({kind}s)")
    parts = [f"cGAN MSE {cgan['mse']:.4f} / SSIM {cgan['ssim']:.3f} / activation r "
             f"{cgan['activation_r']:.3f}{paper}; mean {kind} MSE {mean['mse']:.4f} / SSIM "
             f"{mean['ssim']:.3f}"]
    beats = cgan["mse"] < mean["mse"] and cgan["ssim"] > mean["ssim"]
    parts.append(f"the cGAN beats the mean training {kind} on both MSE and SSIM" if beats else
                 f"the cGAN does NOT beat the mean training {kind} on both MSE and SSIM")
    if shuffled is not None:
        gap = shuffled["mse"] - cgan["mse"]
        depends = gap > 0 and cgan["activation_r"] > shuffled["activation_r"]
        parts.append(
            f"with shuffled MEG its MSE is {shuffled['mse']:.4f} and activation r "
            f"{shuffled['activation_r']:.3f}: "
            + ("its output depends on the MEG" if depends else
               "its scores do not show that its output depends on the MEG"))
    return "; ".join(parts) + "."


def _display(images):
    """(n, h, w) slices as they are; volumes and sequences as the middle axial slice of their
    first frame."""
    images = np.asarray(images)
    if images.ndim == 5:
        images = images[:, 0]  # (n, X, Y, Z): the first frame
    if images.ndim == 4:
        images = images[..., images.shape[-1] // 2]  # (n, X, Y)
    return images


def write_report(path, results, test, preds, fit_dir=None):
    """The evaluation's ``mne.Report``: verdict, slices per method, slices over training, tables.

    Parameters
    ----------
    path : path-like
        Output ``.html``.
    results : dict
        From :func:`evaluate_meg2fmri`.
    test : PairedSet
        The test pairs.
    preds : dict of str to array, shape (n_test, h, w)
        Each method's slices (or (n_test, [n_frames,] n_x, n_y, n_z): drawn as the middle
        axial slice of the first frame).
    fit_dir : path-like | None
        The cGAN's fit folder (its snapshots are drawn when present).

    Returns
    -------
    path : Path
    """
    import html

    from ..viz import make_report, plot_slice_grid, plot_slice_snapshots

    rows = {"target": _display(test.Y)}
    rows.update({m: _display(preds[m]) for m in METHODS if m in preds})
    items = [("Targets and predictions, held-out subjects",
              plot_slice_grid(rows, title="Held-out events: target and each method"),
              "Columns: the first held-out events; rows: the real slice, then each method.")]
    snap = Path(fit_dir) / "snapshots.safetensors" if fit_dir is not None else None
    if snap is not None and snap.is_file():
        from ..systems.meg2fmri.task import read_snapshots

        epochs, images = read_snapshots(snap)
        n_rec, n_in = images.shape[:2]
        flat = _display(images.reshape(n_rec * n_in, *images.shape[2:]))
        images = flat.reshape(n_rec, n_in, *flat.shape[1:])  # (n_rec, n_in, h, w)
        items.append(("cGAN slices over training",
                      plot_slice_snapshots(epochs, images, _display(test.Y[:images.shape[1]]),
                                           title="Generated slices over training"),
                      "The generator's slices for fixed held-out inputs after each epoch."))
    summary = [("Verdict", f"<p>{html.escape(summary_line(results))}</p>")]
    return make_report(path, title="neurofuse meg2fmri evaluate",
                       sections={"Summary": summary, "Synthesized slices": items},
                       results={"rows": results["rows"],
                                "activation_r_against_true_bold": [
                                    {"method": k, "r": v} for k, v in results["truth_r"].items()]})


@verbose
def run_meg2fmri_demo(out="neurofuse-meg2fmri-demo", *, study=None, fit_config="paper",
                      n_jobs=None, verbose=None) -> dict:
    """Simulate system C's world and run :func:`evaluate_meg2fmri` on it.

    Parameters
    ----------
    out : path-like
        Output folder: ``data/`` (the simulated study) and everything
        :func:`evaluate_meg2fmri` writes. An interrupted demo resumes from what is there.
    study : str | path-like | dict | StudyConfig | None
        The simulated study (default :data:`DEMO_STUDY`).
    fit_config : str | dict | path-like
        cGAN training set-up (default the paper's, ``"paper"``: 125 epochs, about 2 min on
        2 CPU cores for this world).
    n_jobs : int | None
        Parallel jobs for the forward models.
    verbose : bool | str | None

    Returns
    -------
    results : dict
        As :func:`evaluate_meg2fmri`, with ``"report"`` and ``"summary"`` added.
    """
    from ..simulation.study import simulated_study

    out = make_dir(out, what="demo output folder")
    data = simulated_study(DEMO_STUDY if study is None else study, out / "data", n_jobs=n_jobs)
    results = evaluate_meg2fmri(data, out, fit_config=fit_config)
    return {**results, "report": str(out / "report.html"), "summary": summary_line(results)}

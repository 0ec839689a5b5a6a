"""The ECoG validation run (paper §5, Fig. 4): zero-shot and trained prediction of every
subject's ECoG from a model's source estimates, their statistics, ``results.json`` and figures.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..._checks import _check_int, _check_option, _check_positive
from ..._io import atomic_dir, write_json
from ..._logging import logger, progress_enabled, verbose
from ...anatomy.cortex import fsaverage_source_positions
from ...physics.envelope import envelope as hilbert_envelope
from ..metrics import top_quartile
from ..source_model import as_source_model, predict_source_rows
from .folds import make_cv_folds
from .geometry import nearest_sources
from .prediction import METHODS, PAPER_FRACTIONS, trained_prediction
from .statistics import (
    circular_shift_test,
    fdr_significant,
    identification_shift_test,
    segment_identification,
)


# ============================================================================ the validation
def _num(x):
    """A float for JSON, None when not finite."""
    x = float(x)
    return x if math.isfinite(x) else None


def _top25(values):
    values = np.asarray(values, float)
    mask = top_quartile(values)
    return float(values[mask].mean()) if mask.any() else float("nan")


def _subject_batches(n_rows, n_times, max_bytes):
    """Split subjects (with n_rows source rows each) into batches under a memory budget."""
    batches, cur, size = [], [], 0
    for i, n in enumerate(n_rows):
        b = 4 * n * n_times
        if cur and size + b > max_bytes:
            batches.append(cur)
            cur, size = [], 0
        cur.append(i)
        size += b
    if cur:
        batches.append(cur)
    return batches


@verbose
def run_ecog_validation(model, data, out, *, fractions=PAPER_FRACTIONS, n_folds=3,
                        test_seconds=None, gap_seconds=2.0, n_neighbors=10, delays_s=None,
                        n_components=64, alphas=None, inner_folds=3, n_permutations=1000,
                        min_shift_seconds=0.0, alternative="greater", n_trials=1000,
                        identification_test="shift", n_null=200,
                        segment_seconds=60.0, alpha=0.05, envelope=None, story=None,
                        subjects=None, methods=METHODS, figures=True, seed=0, overwrite=False,
                        max_memory_gb=1.0, verbose=None) -> dict:
    """Zero-shot and trained prediction of ECoG from a model's source estimates (paper §5).

    See :mod:`neurofuse.evaluation.ecog` for the analyses and their statistics.

    Parameters
    ----------
    model : SourceModel | JointModel | SourceEncodingModel | path-like
        Any :class:`~neurofuse.evaluation.source_model.SourceModel`, a trained joint model (or
        its folder, or the ``out`` folder of ``neurofuse joint fit``), or a ground-truth encoder (a
        simulated study's ``ground_truth/encoding``: the ceiling).
    data : EcogDataset | path-like
        An ECoG dataset (:func:`neurofuse.data.ecog.read_ecog_dataset`).
    out : path-like
        Output folder (created atomically): ``results.json``, ``electrodes.json`` (per
        electrode: position, nearest source, r, p, identification, trained r) and
        ``figures/*.png``.
    fractions : sequence of float
        Training fractions (0 = zero-shot).
    n_folds : int
        Cross-validation folds (contiguous test blocks).
    test_seconds : float | None
        Test block length; None: story duration / n_folds (10 min of a 30-min story).
    gap_seconds : float
        Samples this close to a test block are never used for training (>= max delay).
    n_neighbors : int
        Nearby sources per electrode for the trained source-based ridge.
    delays_s : sequence of float | None
        Stimulus delays of the stacked ridge; None: the MEG ceiling's 0-600 ms in 20-ms steps.
    n_components : int | None
        PCA width of wide feature streams for the stacked ridge (None: no PCA).
    alphas : array | None
        Ridge regularisations; None: ``neurofuse.baselines.ridge.DEFAULT_ALPHAS``.
    inner_folds : int
        Contiguous blocks of the training samples for choosing alphas.
    n_permutations : int
        Circular shifts of the permutation test.
    min_shift_seconds : float
        Smallest circular shift (0: every non-zero shift, the exact test; see
        :func:`circular_shift_test`).
    alternative : 'greater' | 'two-sided'
        Of the permutation test: ``'greater'`` (default) counts positive correlations only.
    n_trials : int
        Trials per electrode of the segment identification (the reported accuracy).
    identification_test : 'shift' | 'binomial'
        Significance of the identification: ``'shift'`` (default) from
        :func:`identification_shift_test`, ``'binomial'`` the paper's binomial test over the
        trials (invalid: its trials are not independent).
    n_null : int
        Null lags of the shift test.
    segment_seconds : float
        Segment length of the identification (one minute).
    alpha : float
        FDR level of both tests (Benjamini-Hochberg across all electrodes).
    envelope : bool | None
        Use the Hilbert envelope of the predicted sources (for high-gamma-envelope ECoG);
        None: when the dataset's ``signal`` field mentions an envelope.
    story : str | None
        The ECoG story; None: the dataset's only story.
    subjects : list of str | None
        Subjects to evaluate (default: all).
    methods : sequence of str
        Among ``'neurofuse'`` and ``'ridge'``.
    figures : bool
        Draw and save the figures (Fig. 4).
    seed : int
        Seed of the permutations, segment draws and the untrained ridge.
    overwrite : bool
        Replace an existing ``out``.
    max_memory_gb : float
        Budget for predicted source time courses held at once (subjects are batched).
    verbose : bool | str | int | None

    Returns
    -------
    validation : dict
        ``"results"``: the content of ``results.json`` (``{"zero_shot": {"n_electrodes",
        "n_significant", "n_identification_significant"}, "trained": [{"method",
        "train_fraction", "top25_r"}, ...]}``); ``"electrodes"``: per-electrode records (as in
        ``electrodes.json``); ``"figures"``: dict name -> matplotlib Figure (empty if
        ``figures=False``); ``"out"``: the output Path.
    """
    import time

    from tqdm.auto import tqdm

    from ...baselines.ridge import DEFAULT_ALPHAS, MEG_DELAYS_S
    from ...data.ecog import EcogDataset, read_ecog_dataset
    from ...stimulus.delays import delays_from_seconds

    t0 = time.perf_counter()
    ds = data if isinstance(data, EcogDataset) else read_ecog_dataset(data)
    predictor = as_source_model(model)
    if abs(ds.sfreq - predictor.sfreq) > 1e-6 * predictor.sfreq:
        raise ValueError(f"The ECoG dataset is sampled at {ds.sfreq:g} Hz but the model at "
                         f"{predictor.sfreq:g} Hz: resample the ECoG and features to "
                         f"{predictor.sfreq:g} Hz when loading them.")
    if ds.n_features != predictor.n_features:
        raise ValueError(f"The ECoG dataset's stimulus has {ds.n_features} features per sample but "
                         f"the model expects {predictor.n_features}: extract the feature streams "
                         "the model was trained on.")
    if story is None:
        if len(ds.stories) != 1:
            raise ValueError(f"The ECoG dataset has {len(ds.stories)} stories {ds.stories}: pass "
                             "story=... to choose one.")
        story = ds.stories[0]
    _check_option("story", story, ds.stories)
    subjects = [s for s in ds.subjects if story in ds.subject_stories(s)] if subjects is None \
        else [_check_option("subjects", s, ds.subjects) for s in subjects]
    if not subjects:
        raise ValueError(f"No subject has ECoG for story {story!r}.")
    methods = [_check_option("methods", m, METHODS) for m in methods]
    _check_option("identification_test", identification_test, ("shift", "binomial"))
    fractions = [float(f) for f in fractions]
    for f in fractions:
        if not 0.0 <= f <= 1.0:
            raise ValueError(f"'fractions' must be in [0, 1], got {f}.")
    sfreq = ds.sfreq
    n_times = ds.n_times(story)
    delays = delays_from_seconds(MEG_DELAYS_S if delays_s is None else delays_s, sfreq)
    gap = math.ceil(_check_positive("gap_seconds", gap_seconds, allow_zero=True) * sfreq)
    if gap < delays.max():
        raise ValueError(f"'gap_seconds' ({gap_seconds} s) must be at least the longest stimulus "
                         f"delay ({delays.max() / sfreq:g} s), or delayed training features would "
                         "reach into the test minutes.")
    test_samples = None if test_seconds is None else round(
        _check_positive("test_seconds", test_seconds) * sfreq)
    folds = make_cv_folds(n_times, n_folds=n_folds, test_samples=test_samples, gap_samples=gap)
    segment = round(_check_positive("segment_seconds", segment_seconds) * sfreq)
    min_shift = max(1, round(_check_positive("min_shift_seconds", min_shift_seconds,
                                             allow_zero=True) * sfreq))
    alphas = DEFAULT_ALPHAS if alphas is None else np.asarray(alphas, float)
    n_neighbors = _check_int("n_neighbors", n_neighbors, 1)
    out = Path(out).expanduser()
    if out.exists() and not overwrite:
        raise FileExistsError(f"The output location '{out}' already exists. Choose a new folder or "
                              "pass overwrite=True (--overwrite) to replace it.")

    src_pos, src_hemi = fsaverage_source_positions(predictor.vertices)
    if len(src_pos) != predictor.n_sources:
        raise ValueError(f"The model has {predictor.n_sources} sources but its fsaverage source "
                         f"space has {len(src_pos)} vertices.")
    features = np.asarray(ds.features(story), np.float32)
    streams = [tuple(v) for v in ds.feature_streams.values()]
    geo = {}
    for sub in subjects:
        el = ds.electrodes(sub)
        idx, dist = nearest_sources(el.pos_fsaverage, src_pos, k=n_neighbors,
                                    points_hemi=np.asarray(el.hemi), source_hemi=src_hemi)
        geo[sub] = (el, idx, dist)
    if envelope is None:
        envelope = any("envelope" in ds.signal(s).lower() for s in subjects)
    logger.info("ECoG validation: %d subjects, %d electrodes, story %r (%.1f min), %d folds, "
                "fractions %s%s.", len(subjects), sum(len(g[0]) for g in geo.values()), story,
                n_times / sfreq / 60, n_folds, fractions, ", envelope" if envelope else "")

    records, r_cv = [], {(m, f): [] for m in methods for f in fractions}
    zs_r, zs_p, id_acc, id_p = [], [], [], []
    batches = _subject_batches([len(np.unique(geo[s][1])) for s in subjects], n_times,
                               _check_positive("max_memory_gb", max_memory_gb) * 2**30)
    bar = {"disable": not progress_enabled(), "leave": False}
    for batch in tqdm(batches, desc="ECoG subjects", **bar):
        subs = [subjects[i] for i in batch]
        rows = np.unique(np.concatenate([geo[s][1].ravel() for s in subs]))
        S = predict_source_rows(predictor, features, rows)  # (n_rows, n_times)
        if envelope:
            S = hilbert_envelope(np.asarray(S, np.float64), axis=1).astype(np.float32)
        for sub in subs:
            el, idx, dist = geo[sub]
            nb = np.searchsorted(rows, idx)  # rows of S
            ecog = np.asarray(ds.ecog(sub, story), np.float32)
            zero = S[nb[:, 0]]
            r, p = circular_shift_test(zero, ecog, n_permutations=n_permutations,
                                       min_shift=min_shift, alternative=alternative,
                                       seed=np.random.default_rng([seed, 1, len(records)]))
            acc, pb = segment_identification(zero, ecog, segment=segment, n_trials=n_trials,
                                             seed=np.random.default_rng([seed, 2, len(records)]))
            if identification_test == "shift":
                acc_all, ps = identification_shift_test(
                    zero, ecog, segment=segment, n_null=n_null,
                    seed=np.random.default_rng([seed, 3, len(records)]))
            else:
                acc_all, ps = np.full(len(el), np.nan), np.full(len(el), np.nan)
            p_id = ps if identification_test == "shift" else pb
            r_sub, _ = trained_prediction(S, nb, ecog, features, streams, fractions=fractions,
                                          folds=folds, delays=delays, alphas=alphas,
                                          inner_folds=inner_folds, n_components=n_components,
                                          seed=seed, methods=methods)
            for key, v in r_sub.items():
                r_cv[key].append(v)
            zs_r.append(r)
            zs_p.append(p)
            id_acc.append(acc)
            id_p.append(p_id)
            for e in range(len(el)):
                records.append({
                    "subject": sub, "name": el.names[e], "hemi": el.hemi[e],
                    "group": el.group[e] if el.group else None,
                    "pos_fsaverage": np.round(el.pos_fsaverage[e], 6).tolist(),
                    "source": int(idx[e, 0]), "source_distance_mm": float(dist[e, 0] * 1e3),
                    "r": float(r[e]), "p": float(p[e]),
                    "identification_accuracy": float(acc[e]),
                    "identification_p": _num(p_id[e]),
                    "identification_p_binomial": float(pb[e]),
                    "identification_accuracy_all_pairs": _num(acc_all[e]),
                    "identification_p_shift": _num(ps[e]),
                    "trained_r": {m: {f"{f:g}": float(r_sub[(m, f)][e]) for f in fractions}
                                  for m in methods},
                })
            logger.info("%s: zero-shot r median %.3f (max %.3f); identification accuracy median "
                        "%.2f.", sub, np.median(r), np.max(r), np.median(acc))
        del S
    sig = fdr_significant(np.concatenate(zs_p), alpha)
    id_sig = fdr_significant(np.concatenate(id_p), alpha)
    for rec, s1, s2 in zip(records, sig, id_sig):
        rec["significant"] = bool(s1)
        rec["identification_significant"] = bool(s2)
    results = {
        "zero_shot": {"n_electrodes": len(records), "n_significant": int(sig.sum()),
                      "n_identification_significant": int(id_sig.sum())},
        "trained": [{"method": m, "train_fraction": f,
                     "top25_r": _top25(np.concatenate(r_cv[(m, f)]))}
                    for m in methods for f in fractions],
    }
    settings = {"story": story, "subjects": subjects, "n_folds": n_folds,
                "test_seconds": (folds[0][0][1] - folds[0][0][0]) / sfreq,
                "gap_seconds": gap / sfreq, "n_neighbors": n_neighbors,
                "delays_s": (delays / sfreq).tolist(), "n_components": n_components,
                "inner_folds": inner_folds, "n_permutations": n_permutations,
                "min_shift_seconds": min_shift / sfreq, "alternative": alternative,
                "n_trials": n_trials, "identification_test": identification_test,
                "n_null": n_null, "segment_seconds": segment / sfreq, "alpha": alpha,
                "envelope": bool(envelope), "seed": seed,
                "model": getattr(predictor, "kind", type(predictor).__name__)}
    figs = {}
    if figures:
        from ...viz.ecog import ecog_figures

        figs = ecog_figures(results, records)
    with atomic_dir(out, overwrite=overwrite, what="ECoG validation") as tmp:
        write_json(tmp / "results.json", results)
        write_json(tmp / "electrodes.json", {"settings": settings, "electrodes": records})
        if figs:
            (tmp / "figures").mkdir()
            for name, fig in figs.items():
                fig.savefig(tmp / "figures" / f"{name}.png", dpi=110)
    logger.info("ECoG validation done in %.1f s: %d/%d electrodes significant zero-shot, %d by "
                "identification -> %s", time.perf_counter() - t0, results["zero_shot"]
                ["n_significant"], len(records), results["zero_shot"]
                ["n_identification_significant"], out)
    return {"results": results, "electrodes": records, "figures": figs, "settings": settings,
            "out": out}


__all__ = ["run_ecog_validation"]

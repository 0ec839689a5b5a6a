"""The simulation benchmark (paper §4, Fig. 3; §3, Tables 1-2), ``neurofuse joint benchmark simulation``.

The same simulated world (same seed: anatomy, stimuli, ground-truth encoder) is recorded at
every combination of MEG CNR (default ∞, 1, 0.1) and fMRI CNR (default ∞, 0.3); for each, the
joint model is trained, the ridge ceilings are fitted and every classical inverse is run on the
same test stories (:func:`~neurofuse.evaluation.pipeline.evaluate_study`). Each condition lives
in its own folder ``conditions/meg-<cnr>_fmri-<cnr>/`` and is skipped when already complete, so
the benchmark resumes after an interruption; ``results.json`` is rewritten after every
condition.

Joint-model variants (``variants``, :mod:`neurofuse.evaluation.variants`: e.g. the fMRI
denoisers ``in-sample`` and ``cross-fitted``, the adaptive source prior ``mixture``) are
trained in ``conditions/<name>/variants/<variant>/`` and scored on the same condition (same
data, ridge ceilings and inverses) as extra methods ``"neurofuse[<variant>]"``.
"""

from __future__ import annotations

import html
import math

from .._checks import _check_positive
from .._io import make_dir, write_json
from .._logging import logger, progress_enabled, verbose
from .pipeline import DEMO_FIT, DEMO_STUDY, INVERSE_METHODS, evaluate_study
from .recovery import cnr_to_json
from .variants import resolve_variants

#: Noise levels of the paper's Fig. 3.
MEG_CNRS = (math.inf, 1.0, 0.1)
FMRI_CNRS = (math.inf, 0.3)


def condition_name(meg_cnr, fmri_cnr) -> str:
    """Folder name of one noise condition, e.g. ``meg-inf_fmri-0.3``."""
    from ..viz.figures import format_cnr

    return f"meg-{format_cnr(meg_cnr)}_fmri-{format_cnr(fmri_cnr)}"


def _with_cnr(rows, meg_cnr, fmri_cnr):
    return [{**{k: r[k] for k in ("subject", "modality", "method")},
             "meg_cnr": cnr_to_json(meg_cnr), "fmri_cnr": cnr_to_json(fmri_cnr),
             **{k: v for k, v in r.items()
                                           if k not in ("subject", "modality", "method")}}
            for r in rows]


@verbose
def run_simulation_benchmark(out, *, study=None, fit_config=None, meg_cnrs=MEG_CNRS,
                             fmri_cnrs=FMRI_CNRS, methods=INVERSE_METHODS, smooth_fwhm="model",
                             variants=None, variant_conditions=None, seed=None,
                             n_jobs=None, device=None, report=True, verbose=None) -> dict:
    """Source recovery and prediction across noise levels (Fig. 3, Tables 1-2).

    Parameters
    ----------
    out : path-like
        Output folder: ``conditions/<name>/`` per noise level (its dataset ``data/`` and
        everything :func:`~neurofuse.evaluation.pipeline.evaluate_study` keeps),
        ``results.json`` and ``report.html``.
    study : str | path-like | dict | None
        Study preset, file or dict (:meth:`~neurofuse.simulation.study.StudyConfig.resolve`);
        default: the demo's, :data:`~neurofuse.evaluation.pipeline.DEMO_STUDY`. Its CNRs are
        replaced by each condition's.
    fit_config : str | path-like | dict | None
        Joint-model training set-up (default: the demo's).
    meg_cnrs, fmri_cnrs : sequence of float
        Noise levels (``inf``: noiseless).
    methods : sequence of str
        Classical inverses.
    smooth_fwhm : "model" | float | None
        Also score every inverse smoothed with the joint model's spatial prior, as extra
        methods ``"<inverse>+smooth"`` (e.g. ``"fMNE+smooth"``; the fair baselines of issue
        15): at the width of the model's smoothed source layer (``"model"``; the ``demo``
        preset's 15 mm), at a given FWHM in mm, or not (None). See
        :func:`~neurofuse.evaluation.pipeline.evaluate_study`.
    variants : None | str | sequence of str | dict
        Joint-model variants also trained and scored on each condition, as methods
        ``"neurofuse[<name>]"`` (source recovery and held-out prediction): names of
        :data:`~neurofuse.evaluation.variants.JOINT_VARIANTS` (``"in-sample"``,
        ``"cross-fitted"``: the fMRI denoisers; ``"mixture"``: the adaptive source prior) or
        a dict ``{name: {"train": {...}, "encoder": {...}}}`` merged over ``fit_config``
        (:func:`~neurofuse.evaluation.variants.evaluate_variants`). Each is fitted in
        ``conditions/<condition>/variants/<name>/`` (resumed and reused like the main fit) and
        scored on the condition's data, ridge ceilings and inverses, which it never changes.
        Only the joint model's own rows: no inverse with a variant's prior mean, and the
        smoothed inverses stay at the main model's width. None: none.
    variant_conditions : sequence of (float, float) | None
        ``(meg_cnr, fmri_cnr)`` of the conditions the variants run on (each fit costs a main
        fit's time), e.g. ``[(1.0, 0.3)]``; None: every condition.
    seed : int | None
        Overrides the study's seed (the same for every condition).
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
        ``{"source_recovery": [...], "prediction": [...]}`` as written to ``results.json``;
        prediction rows also carry ``meg_cnr`` and ``fmri_cnr``. With variants, also
        ``"variants": {name: override}`` and ``"validation"``: per condition with variants,
        the main model's and each variant's validation prediction and the one it chooses
        (:func:`~neurofuse.evaluation.selection.validation_choice`; no test story, no ground
        truth).
    """
    from tqdm.auto import tqdm

    from ..data.store import read_dataset
    from ..simulation.study import StudyConfig, simulate_study
    from .recovery import NEUROFUSE
    from .selection import validation_choice
    from .variants import evaluate_variants, variant_fit_config

    variants = resolve_variants(variants)  # before any work
    for override in variants.values():  # merged set-ups validated now, not after a fit
        variant_fit_config(DEMO_FIT if fit_config is None else fit_config, override)
    out = make_dir(out, what="benchmark output folder")
    base = StudyConfig.resolve(DEMO_STUDY if study is None else study).to_dict()
    if seed is not None:
        base["seed"] = seed
    conditions = [(_check_positive("meg_cnrs", float(m), allow_inf=True),
                   _check_positive("fmri_cnrs", float(f), allow_inf=True))
                  for m in meg_cnrs for f in fmri_cnrs]
    if not conditions:
        raise ValueError("'meg_cnrs' and 'fmri_cnrs' must each list at least one CNR.")
    variant_at = _variant_conditions(variant_conditions, conditions) if variants else set()
    if variant_conditions is not None and not variants:
        logger.warning("'variant_conditions' has no effect without 'variants'.")
    results = {"source_recovery": [], "prediction": []}
    if variants:
        results["variants"] = variants
    bar = tqdm(conditions, desc="benchmark", unit="condition", disable=not progress_enabled())
    for meg_cnr, fmri_cnr in bar:
        name = condition_name(meg_cnr, fmri_cnr)
        bar.set_description(f"benchmark: {name}")
        cond = out / "conditions" / name
        data = cond / "data"
        if not (data / "neurofuse-dataset.json").is_file():
            config = StudyConfig.from_dict({**base, "meg_cnr": meg_cnr, "fmri_cnr": fmri_cnr})
            simulate_study(config, data, overwrite=True, n_jobs=n_jobs)
        ds = read_dataset(data)  # one store object for the evaluation and its variants
        ev = evaluate_study(ds, cond, fit_config=fit_config, methods=methods,
                            smooth_fwhm=smooth_fwhm, device=device)
        rec, pred = ev.source_recovery, ev.prediction
        if (meg_cnr, fmri_cnr) in variant_at:
            v_rec, v_pred = evaluate_variants(ds, cond, variants, fit_config=fit_config,
                                              device=device)
            rec, pred = [*rec[:1], *v_rec, *rec[1:]], [*pred, *v_pred]
            choice = validation_choice(ds, {
                NEUROFUSE: cond / "fit", **{v: cond / "variants" / v / "fit" for v in variants}})
            results.setdefault("validation", []).append(
                {"meg_cnr": cnr_to_json(meg_cnr), "fmri_cnr": cnr_to_json(fmri_cnr), **choice})
        results["source_recovery"] += rec
        results["prediction"] += _with_cnr(pred, meg_cnr, fmri_cnr)
        write_json(out / "results.json", results, what="benchmark results")
        logger.info("%s done: %s", name, ", ".join(
            f"{r['method']} {r['temporal_r']:.3f}/{r['spatial_r']:.3f}"
            for r in rec))
    bar.close()
    if report:
        from ..viz import make_report, plot_recovery_bars

        sections = {
            "Summary": [("Simulation benchmark", (
                f"<p>Study <code>{html.escape(str(study or DEMO_STUDY))}</code>; {len(conditions)} noise conditions "
                "(MEG CNR x fMRI CNR). Per condition: the joint model trained on the training "
                "stories, ridge ceilings per subject, classical inverses of every MEG subject "
                "on the test stories, also smoothed with the joint model's own source smoother "
                "(methods '&lt;inverse&gt;+smooth': the same spatial prior as the model). Scores "
                "against the simulation's ground truth.</p>" + _variants_html(variants)))],
            "Source recovery": [("Source recovery vs ground truth",
                                 plot_recovery_bars(results["source_recovery"]),
                                 ("Mean temporal and spatial r per method and noise level "
                                 "(paper Fig. 3)."))],
        }
        make_report(out / "report.html", title="neurofuse simulation benchmark",
                    sections=sections, results=results)
    return results


def _variant_conditions(variant_conditions, conditions):
    """The ``(meg_cnr, fmri_cnr)`` conditions the variants run on (checked)."""
    if variant_conditions is None:
        return set(conditions)
    chosen = set()
    for pair in variant_conditions:
        try:
            meg, fmri = pair
            pair = (_check_positive("variant_conditions", float(meg), allow_inf=True),
                    _check_positive("variant_conditions", float(fmri), allow_inf=True))
        except (TypeError, ValueError):
            raise ValueError(f"'variant_conditions' must hold (meg_cnr, fmri_cnr) pairs, e.g. "
                             f"[(1.0, 0.3)], got {pair!r}.") from None
        if pair not in conditions:
            raise ValueError(f"'variant_conditions' holds {pair}, which is not a condition of "
                             f"this benchmark ({conditions}): add its CNRs to 'meg_cnrs' and "
                             "'fmri_cnrs' or drop it.")
        chosen.add(pair)
    return chosen


def _variants_html(variants):
    if not variants:
        return ""
    items = "".join(f"<li><code>{html.escape(f'neurofuse[{name}]')}</code>: "
                    f"<code>{html.escape(str(override))}</code></li>"
                    for name, override in variants.items())
    return ("<p>Joint-model variants, each trained with these changes to the main model's "
            f"set-up and scored on the same data, ridge ceilings and inverses:</p><ul>{items}</ul>")


__all__ = ["FMRI_CNRS", "MEG_CNRS", "condition_name", "run_simulation_benchmark"]

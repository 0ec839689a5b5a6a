"""Does the joint model still beat the classical inverses on worlds it was not shaped for?

Issue 15, item 2: the demo's study (same seed, scale and training set-up) is simulated in each
alternative world of :data:`neurofuse.simulation.encoding.world.WORLDS` (another length scale
of the tuning fields, parcel patches, nonlinear responses, spontaneous activity, region HRFs)
at the demo's noise (MEG CNR 1, fMRI CNR 0.3); on each, the joint model is trained and scored
beside every classical inverse and every smoothed inverse on the same test stories
(:func:`neurofuse.evaluation.benchmark.run_simulation_benchmark`). Beside the fixed 15-mm
prior of the demo's model, each world also trains and scores the joint-model variants of
``--variants`` (default ``mixture``: the adaptive source prior, issue 15 item 3; names of
:data:`neurofuse.evaluation.variants.JOINT_VARIANTS`, ``--variants`` alone for none) on the
same data, ridge ceilings and inverses, as methods ``neurofuse[<variant>]``. Prints one JSON
object:
``{"rows": [{"world", "method", "temporal_r", "spatial_r"}, ...], "prediction": [...],
"source_priors": {world: {method: prior as trained}}, "seconds": {...}, ...}`` (a learned
mixture's widths and weights, from each model's ``model.json``).

Each world lives in ``WORK/<world>/`` and resumes: a finished world is read back, a fitted
model is reused, so an interrupted run (or one rerun after a new method lands) redoes only
what is missing.

    python benchmarks/bench_worlds.py --work W > benchmarks/results/worlds.json     # ~2-3 h (two fits per world)
    python benchmarks/bench_worlds.py --work W --worlds short5 nonlinear
    python benchmarks/bench_worlds.py --work W --variants mixture cross-fitted
    python benchmarks/bench_worlds.py --work W --collect    # only the worlds already finished
    python benchmarks/bench_worlds.py --work W --worlds nonlinear \
        --merge benchmarks/results/worlds.json > new.json   # rerun some, keep the others

``--merge FILE`` starts from an earlier output: the worlds run now replace theirs (every row,
prediction, prior and timing of that world), the other worlds are kept as they were, in
their order; ``variants`` are joined. Results measured in different sessions then sit in one
file: say which in the docs.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

#: The alternative worlds benchmarked by default (``linear15`` is the main benchmark's world).
DEFAULT_WORLDS = ("short5", "long20", "patches", "nonlinear", "spontaneous", "hrf_vary")
#: Joint-model variants scored beside the main model by default: the adaptive source prior.
DEFAULT_VARIANTS = ("mixture",)


def main(argv=None):
    from neurofuse.evaluation.benchmark import run_simulation_benchmark
    from neurofuse.evaluation.pipeline import DEMO_STUDY
    from neurofuse.evaluation.variants import JOINT_VARIANTS
    from neurofuse.simulation.encoding.world import WORLDS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, type=Path, help="working folder (resumable)")
    parser.add_argument("--worlds", nargs="+", default=list(DEFAULT_WORLDS),
                        choices=sorted(WORLDS), help="worlds to run")
    parser.add_argument("--meg-cnr", type=float, default=1.0)
    parser.add_argument("--fmri-cnr", type=float, default=0.3)
    parser.add_argument("--variants", nargs="*", default=list(DEFAULT_VARIANTS),
                        choices=sorted(JOINT_VARIANTS),
                        help="joint-model variants also trained and scored on each world "
                             "(none: --variants alone)")
    parser.add_argument("--collect", action="store_true",
                        help="compute nothing: gather the worlds whose results.json is written")
    parser.add_argument("--merge", type=Path, default=None,
                        help="an earlier output whose other worlds are kept")
    parser.add_argument("--fit", default="demo",
                        help="training preset or .toml/.json file (default: the demo's; "
                             "demo-alpha0.1 for stops 27-28's, demo-alpha1 before); with "
                             "--collect, the set-up the worlds' fits must have been made with")
    args = parser.parse_args(argv)
    if args.merge is not None:  # checked before hours of computing
        earlier = json.loads(args.merge.read_text())
        if earlier.get("benchmark") != "worlds":
            parser.error(f"--merge: '{args.merge}' is not bench_worlds.py's output (its "
                         f"'benchmark' is {earlier.get('benchmark')!r}, expected 'worlds')")
        try:
            _check_same_setup(earlier, {"study": DEMO_STUDY, "fit": args.fit,
                                        "meg_cnr": args.meg_cnr, "fmri_cnr": args.fmri_cnr})
        except ValueError as err:
            parser.error(str(err))

    rows, prediction, validation, seconds, variants, priors = [], [], [], {}, {}, {}
    for world in args.worlds:
        t0 = time.perf_counter()
        if args.collect:
            done = args.work / world / "results.json"
            if not done.is_file():
                continue
            try:  # the label "fit" must say what the collected worlds were fitted with
                _check_fitted_with(args.work / world, args.fit)
            except ValueError as err:
                parser.error(f"--collect: {err}")
            res = json.loads(done.read_text())
        else:
            res = run_simulation_benchmark(
                args.work / world, study={**DEMO_STUDY, "world": world},
                meg_cnrs=[args.meg_cnr], fmri_cnrs=[args.fmri_cnr], fit_config=args.fit,
                variants=args.variants or None, report=False, verbose="warning")
        if not args.collect:
            seconds[world] = round(time.perf_counter() - t0, 1)
        rows += [{"world": world, **{k: r[k] for k in ("method", "temporal_r", "spatial_r")}}
                 for r in res["source_recovery"]]
        prediction += [{"world": world, **r} for r in res["prediction"]]
        validation += [{"world": world, **v} for v in res.get("validation", [])]
        variants.update(res.get("variants", {}))  # what the rows hold (--collect: as run)
        priors[world] = _source_priors(args.work / world)
    out = {"benchmark": "worlds", "study": DEMO_STUDY, "fit": args.fit,
           "meg_cnr": args.meg_cnr, "fmri_cnr": args.fmri_cnr,
           "variants": variants, "rows": rows, "source_priors": priors,
           "prediction": prediction, "validation": validation, "seconds": seconds,
           "machine": {"platform": platform.platform(), "processor": platform.processor()}}
    if args.merge is not None:
        out = merge_worlds(earlier, out, source=str(args.merge))
    print(json.dumps(out, indent=1))


def _check_same_setup(earlier, now):
    for key in ("meg_cnr", "fmri_cnr", "study", "fit"):
        if earlier.get(key) != now[key]:
            raise ValueError(f"--merge: the earlier output has {key} {earlier.get(key)!r}, "
                             f"this run {now[key]!r}: the worlds would not be comparable. "
                             "Merge only runs of the same set-up.")


def merge_worlds(earlier, now, *, source=None):
    """``earlier`` bench_worlds output with the worlds of ``now`` replaced (or added).

    Rows, prediction and validation rows, source priors and timings of a world in ``now``
    replace all of that world's in ``earlier`` (a world ``now`` collected without timing
    keeps its earlier one); the other worlds are kept, in ``earlier``'s order, then the new
    worlds; ``variants`` are joined (a name both define differently is refused: the kept rows
    would be relabelled). ``merged`` records each merge: the file, the worlds replaced and the
    earlier run's machine."""
    _check_same_setup(earlier, now)
    clash = sorted(n for n in set(earlier.get("variants", {})) & set(now["variants"])
                   if earlier["variants"][n] != now["variants"][n])
    if clash:
        raise ValueError(f"--merge: variant(s) {clash} are defined otherwise in the earlier "
                         "output than now: the kept worlds' rows would carry the new "
                         "definition. Rerun those worlds too, or rename the variant.")
    new = list(dict.fromkeys(r["world"] for r in now["rows"]))
    order = list(dict.fromkeys([r["world"] for r in earlier["rows"]] + new))

    def rows(key):
        kept = [r for r in earlier.get(key, []) if r["world"] not in new] + now.get(key, [])
        return sorted(kept, key=lambda r: order.index(r["world"]))  # stable: keeps row order

    merged = earlier.get("merged", []) + [{"from": source, "worlds_replaced": new,
                                          "earlier_machine": earlier.get("machine")}]
    return {**earlier, "machine": now["machine"], "merged": merged,
            "variants": {**earlier.get("variants", {}), **now["variants"]},
            "rows": rows("rows"), "prediction": rows("prediction"),
            "validation": rows("validation"),
            "source_priors": {w: (now["source_priors"] if w in new else
                                  earlier.get("source_priors", {})).get(w, {})
                              for w in order},
            "seconds": {**earlier.get("seconds", {}), **now["seconds"]}}


def _check_fitted_with(folder, fit):
    """Refuse a world whose main fit was made with another set-up than ``fit``."""
    from neurofuse.evaluation.fit_reuse import _check_done_fit, _wanted_fit

    train, encoder = _wanted_fit(fit, None)
    for done in sorted(folder.glob("conditions/*/fit/done.json")):
        _check_done_fit(done, {"train": train.to_dict(), "encoder": encoder},
                        what=f"The world in '{folder}'",
                        fix=f"it was not fitted with --fit {fit!r}; name its set-up with "
                            "--fit.")


def _source_priors(folder):
    """``{method: source prior as trained}`` of the finished joint-model fits in a world's
    folder (``model.json``'s record: e.g. a learned mixture's widths and weights)."""
    out = {}
    for model in sorted(folder.glob("conditions/*/fit/model/model.json")) + sorted(
            folder.glob("conditions/*/variants/*/fit/model/model.json")):
        prior = json.loads(model.read_text()).get("source_prior")
        if prior is not None and (model.parents[1] / "done.json").is_file():  # finished fits
            parts = model.relative_to(folder).parts
            out["neurofuse" if parts[2] == "fit" else f"neurofuse[{parts[3]}]"] = prior
    return out


if __name__ == "__main__":
    main()

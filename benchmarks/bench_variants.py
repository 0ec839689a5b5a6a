"""What does a change to the joint model's fit do, on data already evaluated?

Issue 15: joint-model variants (:data:`neurofuse.evaluation.variants.JOINT_VARIANTS`, e.g.
``meg-only``, the ablation without the fMRI term) and refits that differ only by their seed,
trained and scored on a finished evaluation's own data, ridge ceilings and test stories
(:func:`neurofuse.evaluation.variants.evaluate_variants`): a scaling point
(``W/<scale>/points/<name>/``) or a world's condition (``W/<world>/conditions/<cnr>/``).
``--override NAME=JSON`` adds variants of one's own. Each variant lives in
``EVALUATION/variants/<name>/`` and is reused when finished; the main fit and its scores are
left as they are. The variants change the main fit's own set-up (its ``fit/done.json``)
unless ``--fit`` names another.

    python benchmarks/bench_variants.py --evaluation W/cpu/points/meg-2_fmri-2_train-12 \\
        --seeds 1 2 --variants meg-only > variants.json

Prints one JSON object: ``{"evaluation", "fit", "variants": {name: override},
"source_recovery": [...], "prediction": [...], "main": {...}, "validation": {...},
"chosen": name, "validation_prediction": {...}, "chosen_by_prediction": name,
"seconds"}``: ``source_recovery`` and ``prediction`` are the variants' rows
(methods ``neurofuse[<name>]``); ``main`` holds the evaluation's own rows for comparison
(``point.json``, or the condition's rows of the benchmark's ``results.json``) where there is
one; ``validation`` the kept epoch's validation loss of the main fit (``neurofuse``) and
of each seed refit, and ``chosen`` the lowest of them (both with ``--seeds`` only): choosing
among refits of one set-up by it uses no test story and no ground truth. Named variants
change the set-up, so their validation losses are not compared. What every set-up is asked
to do is compared instead: ``validation_prediction`` holds the main model's and each
variant's mean r on the validation stories' recordings per modality and their mean, and
``chosen_by_prediction`` the highest (:func:`neurofuse.evaluation.selection
.validation_choice`; a fit that trained on the validation stories is scored, not chosen):
the rule that chose the ``demo`` preset's ``alpha_fmri``, again without the test.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def _without_targets(rows: list) -> list:
    """Prediction rows without their long ``targets`` descriptions."""
    return [{k: v for k, v in r.items() if k != "targets"} for r in rows]


def _main_rows(folder: Path) -> dict | None:
    """The evaluation's own rows: a scaling point's ``point.json``, or the rows of this
    condition in its benchmark's ``results.json`` (``W/conditions/<cnr>/`` → ``W/``), without
    the variants the benchmark scored."""
    from neurofuse.evaluation.benchmark import condition_name

    for name in ("point.json", "results.json"):
        found = folder / name
        if found.is_file():
            res = json.loads(found.read_text())
            return {"file": name, "source_recovery": res.get("source_recovery", []),
                    "prediction": _without_targets(res.get("prediction", []))}
    bench = folder.parent.parent / "results.json"
    if folder.parent.name != "conditions" or not bench.is_file():
        return None
    res = json.loads(bench.read_text())

    def mine(rows):  # CNR inf is written "inf", which float() reads
        return [r for r in rows if "[" not in r["method"] and condition_name(
            float(r["meg_cnr"]), float(r["fmri_cnr"])) == folder.name]

    return {"file": "../../results.json", "source_recovery": mine(res["source_recovery"]),
            "prediction": _without_targets(mine(res["prediction"]))}


def main(argv=None):
    from neurofuse.data.store import read_dataset
    from neurofuse.evaluation.selection import validation_choice
    from neurofuse.evaluation.variants import (JOINT_VARIANTS, evaluate_variants,
                                               kept_validation_loss, resolve_variants,
                                               seed_variants, variant_fit_config)

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluation", required=True, type=Path,
                        help="a finished evaluation folder holding data/ (the store), ridge/ "
                             "and fit/: a scaling point or a world's condition")
    parser.add_argument("--variants", nargs="*", default=[], choices=sorted(JOINT_VARIANTS),
                        help="named variants to train and score")
    parser.add_argument("--seeds", nargs="*", type=int, default=[],
                        help="refits of the main set-up with these seeds (variants seed<N>)")
    parser.add_argument("--override", nargs="*", default=[], metavar="NAME=JSON",
                        help='variants of your own: a name and the settings it changes, e.g. '
                             '\'meg-only-seed1={"train": {"alpha_fmri": 0, "seed": 1}}\'')
    parser.add_argument("--fit", default=None,
                        help="the training set-up the variants change: a preset or "
                             ".toml/.json file (default: the main fit's own, from "
                             "EVALUATION/fit/done.json)")
    parser.add_argument("--device", default=None, help="training device (default: auto)")
    args = parser.parse_args(argv)

    folder = args.evaluation.expanduser()
    missing = [n for n in ("data", "ridge", "fit") if not (folder / n).exists()]
    if missing:
        parser.error(f"--evaluation: '{folder}' has no {', '.join(missing)}: pass a finished "
                     "scaling point (W/<scale>/points/<name>) or world condition "
                     "(W/<world>/conditions/<cnr>).")
    variants = {name: JOINT_VARIANTS[name] for name in args.variants}

    def add(name, override, where):
        if name in variants:
            parser.error(f"{where}: the variant name {name!r} is given twice; rename one.")
        variants[name] = override

    for text in args.override:
        name, sep, spec = text.partition("=")
        if not sep:
            parser.error(f"--override: expected NAME=JSON, got {text!r}.")
        try:
            add(name.strip(), json.loads(spec), "--override")
        except json.JSONDecodeError as err:
            parser.error(f"--override: {text!r} is not NAME=JSON ({err}).")
    try:
        seeds = seed_variants(args.seeds)
    except ValueError as err:
        parser.error(f"--seeds: {err}")
    for name, override in seeds.items():
        add(name, override, "--seeds")
    if not variants:
        parser.error("nothing to do: give --variants, --seeds and/or --override.")
    fit = args.fit
    if fit is None:  # the main fit's own set-up: the variants change only what they name
        done = folder / "fit" / "done.json"
        if not done.is_file():
            parser.error(f"--evaluation: '{done}' is missing (the main fit has not finished); "
                         "let it finish, or name the set-up with --fit.")
        record = json.loads(done.read_text())
        fit = {"train": record["train"], "encoder": record["encoder"]}
    validation = {}
    if seeds:  # the main fit's number first: a fit that cannot be compared is said up front
        try:
            validation["neurofuse"] = kept_validation_loss(folder / "fit")
        except (OSError, ValueError) as err:
            parser.error(f"--seeds: the main fit cannot be compared: {err}")

    try:  # names, sections and fields checked before any work
        variants = resolve_variants(variants)
        for override in variants.values():
            variant_fit_config(fit, override)
    except (TypeError, ValueError) as err:
        parser.error(f"--override/--fit: {err}")
    t0 = time.perf_counter()
    ds = read_dataset(folder / "data")
    rec, pred = evaluate_variants(ds, folder, variants, fit_config=fit, device=args.device,
                                  verbose="warning")
    for name in seeds:
        validation[name] = kept_validation_loss(folder / "variants" / name / "fit")
    choice = validation_choice(ds, {"neurofuse": folder / "fit",
                                    **{n: folder / "variants" / n / "fit" for n in variants}})
    print(json.dumps({
        "evaluation": str(folder), "fit": fit, "variants": variants,
        "source_recovery": rec,
        "prediction": _without_targets(pred),
        "main": _main_rows(folder), "validation": validation,
        "chosen": min(validation, key=validation.get) if len(validation) > 1 else None,
        "validation_prediction": choice["scores"],
        "chosen_by_prediction": choice["chosen"],
        "seconds": round(time.perf_counter() - t0, 1)}, indent=1))


if __name__ == "__main__":
    main()

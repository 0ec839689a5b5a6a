"""How much of System B's score is its training seed's, on the validation subject. Prints JSON.

The held-out table (``bench_eeg2meg.py``) compares one fit of each variant, and the full model
and its ablations differ there by up to 0.02 mean band r. This refits variants of the same
set-up with other seeds (``TrainConfig.seed``: the initialisation, the batch order and the
diffusion noise) on the world and pretrained encoder of a ``bench_eeg2meg.py`` work folder and
scores each fit on the **validation** subjects with
:func:`bench_eeg2meg_sampling.score_split` (per-band Pearson r of the mean of K = 64 five-step
samples, how a trained generator generates, and of one DDIM run from ``z_T = 0``). Seed 0 is
the benchmark's own fit (``WORK/eval/fits/<variant>``, read here, never written: its record
must match); the other seeds are fitted into ``WORK/seeds/seed<s>/`` through the pipeline's
own fit step (a rerun resumes them). The test subjects are never read::

    PYTHONPATH=. python benchmarks/bench_eeg2meg.py --work W > ...   # world, encoder, seed 0
    PYTHONPATH=. python benchmarks/bench_eeg2meg_seeds.py --work W \\
        > benchmarks/results/eeg2meg_seeds.json

A variant is an ablation's name (``pipeline.ABLATIONS``) or one with settings changed,
``NAME+FIELD=VALUE[+...]`` (``GeneratorConfig`` or ``TrainConfig`` fields but the seed and
the epochs, values read as JSON, else as text), e.g. ``generator+band_pad=constant`` or
``no_diffusion+monitor=val_rec``; such a variant is fitted with every seed, seed 0 included,
into ``WORK/seeds/<variant>/seed<s>/``.

``summary`` gives each variant's mean and standard deviation over the seeds and, per seed,
its difference from the full model fitted with the same seed (``minus_generator``; for a
variant with changed settings, from the full model with the same changes, where that is
one of the variants: ``baseline`` names it).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

CANDIDATES = ("mean_eta1_s5", "ddim_zero_s5")
K = 64


def main(argv=None):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import numpy as np
    from _eeg2meg_validation import (check_kept, command, machine, parser, score_fit,
                                     variant_rows)
    from bench_eeg2meg import fit_spec

    from neurofuse._io import write_json
    from neurofuse.evaluation.eeg2meg_pipeline import ABLATIONS, _check_fit, _fit_step

    p = parser(__doc__, "a bench_eeg2meg.py work folder (its world/ and eval/)")
    p.add_argument("--variants", nargs="+", default=["generator", "no_bsc"],
                   help="generator variants, NAME or NAME+FIELD=VALUE[+...] (default: "
                   "generator no_bsc, the held-out table's lowest and highest)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2],
                   help="training seeds (default 0 1 2; 0 is the benchmark's own fit)")
    p.add_argument("--fit", default="demo", help="the benchmark's --fit (default: demo)")
    p.add_argument("--epochs", type=int, default=None, help="the benchmark's --epochs")
    args = p.parse_args(argv)

    world, bench = args.work / "world", args.work / "eval"
    encoder = bench / "pretrain" / "encoder" / "model"
    if not ((world / "neurofuse-dataset.json").is_file() and (encoder / "model.json").is_file()):
        raise SystemExit(f"No world or pretrained encoder in {args.work}: run "
                         f"benchmarks/bench_eeg2meg.py --work {args.work} first.")
    changed = {v: _variant(v, ABLATIONS) for v in args.variants}  # before any work
    t0, rows, detail = time.perf_counter(), [], {}
    for variant in args.variants:
        method, model, train = changed[variant]
        for seed in args.seeds:
            config = fit_spec(args.fit, args.n_test_subjects, args.epochs, seed)
            if train:
                config["train"] = {**config.get("train", {}), **train}
            if model:
                config["model"] = model
            name = f"{variant}_seed{seed}"
            done = args.work / "seeds" / "scores" / f"{name}.json"
            own = seed == 0 and not (model or train)  # the benchmark's own fit
            out = bench if own else args.work / "seeds" / (
                f"{variant}/seed{seed}" if model or train else f"seed{seed}")
            fitted = out / "fits" / method
            if own:  # the benchmark's fit: refused if trained under other settings
                _check_fit(bench, method, encoder=encoder, fit_config=config)
                if not (fitted / "done.json").is_file():
                    raise SystemExit(f"{fitted} is not finished: run "
                                     "benchmarks/bench_eeg2meg.py first, or leave seed 0 out.")
            else:  # fitted, resumed, or (finished) reused under the same settings
                _fit_step(world, out, method, encoder=encoder, fit_config=config,
                          resume=True)
            record = json.loads((fitted / "done.json").read_text())
            # a score is reused only for the same settings and the same finished fit
            asked = {"variant": variant, "seed": seed, "fit": config,
                     "n_test_subjects": args.n_test_subjects, "fit_record": record}
            if done.is_file():  # on the fit's record (its resolved settings), not on the
                # preset's name, which may have changed (demo -> demo-reflect, stop 34)
                check_kept(done, {k: v for k, v in asked.items() if k != "fit"})
            else:
                # a record from before train.monitor (stop 34) monitored the total
                kept_by = record.get("monitored", record["val_loss"])
                write_json(done, {**asked, **score_fit(world, fitted, kept_by, CANDIDATES,
                                                       (K,))},
                           what="seed score")
            detail[name] = json.loads(done.read_text())
            rows += [{**r, "variant": variant, "seed": seed}
                     for r in variant_rows(name, detail[name])]
    score = {(r["variant"], r["seed"]): r["mean_r"] for r in rows
             if r["generation"] == CANDIDATES[0] and r["k"] == K}
    summary = []
    for variant in args.variants:
        values = [score[variant, s] for s in args.seeds]
        row = {"variant": variant, "seeds": args.seeds, "mean_r": values,
               "mean": float(np.mean(values)),
               "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None}
        base = _baseline(variant, args.variants)
        if base is not None:
            diff = [score[variant, s] - score[base, s] for s in args.seeds]
            row["minus_generator"] = {"baseline": base, "per_seed": diff,
                                      "mean": float(np.mean(diff)),
                                      "sd": float(np.std(diff, ddof=1))
                                      if len(diff) > 1 else None}
        summary.append(row)
    out = {"benchmark": "eeg2meg_seeds", "command": command("bench_eeg2meg_seeds.py", argv),
           "split": "val", "fit": args.fit, "score": f"{CANDIDATES[0]} K{K}",
           "summary": summary, "rows": rows, "detail": detail,
           "this_call_seconds": round(time.perf_counter() - t0, 1), "machine": machine()}
    json.dump(out, sys.stdout, indent=1)
    print()


def _baseline(variant, variants):
    """The full model ``variant`` differs from in one thing, if it is among ``variants``: a
    changed full model's is ``generator``, an ablation's the full model with its changes
    (``no_sfm+band_pad=constant``: ``generator+band_pad=constant``)."""
    name, plus, changes = variant.partition("+")
    base = "generator" if name == "generator" else "generator" + plus + changes
    return base if base != variant and base in variants else None


def _variant(text, ablations):
    """``(ablation, model changes, train changes)`` of a ``--variants`` entry,
    ``NAME[+FIELD=VALUE...]``."""
    import dataclasses

    from neurofuse.systems.eeg2meg.config import GeneratorConfig
    from neurofuse.systems.eeg2meg.trainer import TrainConfig

    name, *changes = text.split("+")
    if name not in ablations:
        raise SystemExit(f"--variants: {text!r} must start with one of {list(ablations)}, "
                         f"got {name!r}.")
    fields = {f.name for f in dataclasses.fields(GeneratorConfig)}
    # the seed and the epochs are the script's own (--seeds, --epochs)
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"seed", "epochs"}
    model, train = {}, {}
    for change in changes:
        key, sep, value = change.partition("=")
        if not sep or key not in fields | train_fields:
            raise SystemExit(f"--variants: {change!r} in {text!r} must be FIELD=VALUE with "
                             "FIELD a GeneratorConfig or TrainConfig field (not seed or "
                             "epochs: --seeds, --epochs), e.g. band_pad=constant.")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        (model if key in fields else train)[key] = parsed
    clash = sorted(set(model) & set(ablations[name]))
    if clash:  # the pipeline applies the ablation's own settings last
        raise SystemExit(f"--variants: {text!r} changes {clash}, which {name!r} itself sets "
                         f"({ablations[name]}); start from another variant.")
    if model:  # checked now, not after the first fits
        GeneratorConfig.from_dict({**ablations[name], **model})
    if train:
        TrainConfig.from_dict(train)
    return name, model, train


if __name__ == "__main__":
    main()

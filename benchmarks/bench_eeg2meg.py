"""System B (pretrained EEG→MEG generator) against the physics transfer and a lagged ridge, with
the paper's ablations, on held-out subjects of a simulated paired world. Prints one JSON object.

It simulates a paired EEG + MEG world (``--world`` preset with ``--n-subjects`` paired subjects,
the last ``--n-test-subjects`` held out, one validating, the rest training; EEG-only subjects
with a new task for the cross-dataset test), pretrains the LaBraM encoder on a separate EEG-only
world (the demo's pretraining; ``--pretrain-epochs`` changes its length,
``--pretrain-subjects`` its world's size), fits the full
generator and each ablation with ``--fit``, and runs
:func:`neurofuse.evaluation.eeg2meg_pipeline.evaluate_eeg2meg`. Rows, in the issue's schema:
``{"method", "band", "pearson", "rmse", "nmi", "ssim"}`` (methods ``generator``,
``no_pretrained``, ``no_sfm``, ``no_bsc``, ``no_diffusion``, ``physics``, ``ridge``) and
``{"method", "task", "accuracy", "f1"}`` (plus ``eeg_only`` and ``real_meg``; accuracy and F1
are means over the held-out subjects of each subject's pooled 10 × 10-fold CV accuracy, with
``accuracy_sd`` across subjects, ``n_trials``, ``n_correct``, ``chance`` and ``p_value``, an
exact binomial test of all held-out trials against chance), and the cross-dataset and
source-imaging rows. With one held-out subject (40-60 trials per task) decoding could not be
told from chance even with real MEG; three held-out subjects (the default: seven paired
subjects, three train as before) give 120-180 test trials per task. Nothing here is tuned
on the results; the world is never tuned to the model.

    PYTHONPATH=. python benchmarks/bench_eeg2meg.py --work /tmp/bbench \\
        > benchmarks/results/eeg2meg.json

The paper trained 1000 epochs on a GPU; on 2 CPU cores this is a small-data, short-training
check (see ``settings`` in the output), not the paper's scale: ``--fit paper`` on a GPU is.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path


def fit_spec(preset, n_test_subjects, epochs=None, seed=0):
    """The generator set-up this benchmark fits (``--fit``, ``--n-test-subjects``,
    ``--epochs``), trained with ``seed`` (0: the preset's own, as here)."""
    spec = {"preset": preset, "data": {"n_test_subjects": n_test_subjects}}
    train = {**({"epochs": epochs} if epochs is not None else {}),
             **({"seed": seed} if seed else {})}
    return {**spec, "train": train} if train else spec


def main(argv=None):
    from neurofuse.evaluation.eeg2meg_pipeline import METHODS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True, type=Path, help="work folder (kept; resumes)")
    p.add_argument("--world", default="demo", help="world size preset (default: demo)")
    p.add_argument("--n-subjects", type=int, default=7, help="paired subjects (default 7)")
    p.add_argument("--n-test-subjects", type=int, default=3,
                   help="held-out paired subjects (default 3)")
    p.add_argument("--n-eeg-only-subjects", type=int, default=2,
                   help="EEG-only subjects of the cross-dataset test (default 2)")
    p.add_argument("--n-trials", type=int, default=20, help="trials per class (default 20)")
    p.add_argument("--fit", default="demo", help="generator preset or file (default: demo)")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.add_argument("--pretrain-epochs", type=int, default=None,
                   help="override the demo pretraining's epochs (stops 21-30: 4)")
    p.add_argument("--pretrain-subjects", type=int, default=None,
                   help="EEG-only subjects of the pretraining world (demo: 2)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--n-runs", type=int, default=10, help="decoding CV repetitions")
    args = p.parse_args(argv)

    import torch

    from neurofuse.evaluation.eeg2meg_pipeline import (DEMO, _world_config, evaluate_eeg2meg,
                                                       summary_line)
    from neurofuse.simulation.eeg_meg import simulate_eeg_meg_world

    t0 = time.perf_counter()
    world = args.work / "world"
    config = _world_config({
        "preset": args.world, "n_subjects": args.n_subjects, "n_trials": args.n_trials,
        "n_eeg_only_subjects": args.n_eeg_only_subjects})
    if not (world / "neurofuse-dataset.json").is_file():
        simulate_eeg_meg_world(world, config, overwrite=True)
    else:  # resuming: the kept world must be the one asked for (e.g. not a 5-subject one)
        from neurofuse.data.store import read_dataset
        from neurofuse.simulation.eeg_meg import EEGMEGWorldConfig

        kept = EEGMEGWorldConfig.from_json(read_dataset(world).metadata["world"])
        if kept != config:
            raise SystemExit(f"{world} holds another world ({kept}); use a new --work folder "
                             "or delete it.")
    fit = fit_spec(args.fit, args.n_test_subjects, args.epochs)
    pretrain = {k: json.loads(json.dumps(DEMO[k])) for k in ("pretrain_world", "pretrain")}
    if args.pretrain_epochs is not None:
        pretrain["pretrain"]["config"]["epochs"] = args.pretrain_epochs
    if args.pretrain_subjects is not None:
        pretrain["pretrain_world"]["n_eeg_only_subjects"] = args.pretrain_subjects
    res = evaluate_eeg2meg(world, args.work / "eval", fit_config=fit, methods=args.methods,
                           pretrain=pretrain, n_runs=args.n_runs)
    rows = [{k: r[k] for k in ("method", "band", "pearson", "rmse", "nmi", "ssim")}
            for r in res["signal"]]
    rows += [{k: r[k] for k in ("method", "task", "accuracy", "f1", "accuracy_sd", "n_subjects",
                                "n_trials", "n_correct", "chance", "p_value")}
             for r in res["decoding"]]
    out = {
        "benchmark": "eeg2meg",
        "command": "python benchmarks/bench_eeg2meg.py " + " ".join(
            argv if argv is not None else sys.argv[1:]),
        "settings": {"world": args.world, "n_subjects": args.n_subjects,
                     "n_test_subjects": args.n_test_subjects,
                     "n_eeg_only_subjects": args.n_eeg_only_subjects,
                     "n_trials": args.n_trials, "fit": fit, "pretrain": pretrain,
                     "subjects": res["subjects"],
                     **res["settings"]},
        "rows": rows,
        "cross_dataset": res["cross_dataset"],
        "decoding_by_subject": res["decoding_by_subject"],
        "source_imaging": res["source_imaging"],
        "signal_detail": res["signal"],
        "verdict": summary_line(res),
        "total_seconds": round(time.perf_counter() - t0, 1),
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
    }
    json.dump(out, sys.stdout, indent=1, default=float)
    print()


if __name__ == "__main__":
    main()

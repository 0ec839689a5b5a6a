"""How long must the joint model train before early stopping may end it? Prints one JSON object.

On small training sets the demo's fit sits on a validation plateau (held-out MEG r ~0.35)
for a while before it learns what generalises; with patience 6 it stopped there (the data-
scaling benchmark's 2- and 4-story points, epochs 13 and 14). This script trains the demo's
set-up (``--fit``, default the ``demo`` preset; ``demo-alpha1`` for the committed results,
measured before its fMRI weight changed) on each given store for its
``max_epochs`` **without** early stopping, then replays the demo's stopping rule on each
recorded validation curve for several ``min_epochs``
(:func:`~neurofuse.training.loop.replay_early_stopping`: training up to the stop does not
depend on the rule, so the replay is exact). Only validation numbers are used (no ground
truth). The chosen ``min_epochs`` is the smallest candidate whose kept epoch is, on every
store, within ``--tol`` of the validation loss of the epoch the whole run keeps (the best
of its fMRI phase: the MEG-first epochs' loss has no fMRI term and is not comparable).

    neurofuse joint benchmark scaling --out S --scale demo      # simulates S/study
    python benchmarks/bench_min_epochs.py --work W --study S/study --fit demo-alpha1 \\
        > benchmarks/results/min_epochs.json                   # 2-6 stories, 2 + 2 subjects
    python benchmarks/bench_min_epochs.py --work W --data STORE [STORE ...]

Each store's fit lives in ``W/<point>/`` and resumes.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import platform
import time
from pathlib import Path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True, type=Path, help="folder for the fits (resumable)")
    p.add_argument("--data", type=Path, nargs="+", default=[], help="dataset stores")
    p.add_argument("--study", type=Path, default=None,
                   help="a simulated study (e.g. the scaling benchmark's S/study) to take "
                        "subset stores of, with --n-train training stories each")
    p.add_argument("--n-train", type=int, nargs="+", default=[2, 3, 4, 5, 6],
                   help="training stories of the subset stores of --study (default 2-6)")
    p.add_argument("--subjects", type=int, nargs=2, default=[2, 2], metavar=("MEG", "FMRI"),
                   help="MEG-only and fMRI-only subjects of the subset stores (default 2 2)")
    p.add_argument("--candidates", type=int, nargs="+", default=[0, 10, 20, 30, 40, 50],
                   help="min_epochs values to replay (default 0 10 20 30 40 50)")
    p.add_argument("--fit", default="demo",
                   help="training preset or .toml/.json file (default: the demo's; "
                        "demo-alpha1 for benchmarks/results/min_epochs.json, stop 24)")
    p.add_argument("--tol", type=float, default=0.01,
                   help="validation-loss tolerance of the choice (default 0.01)")
    args = p.parse_args(argv)

    import torch

    from neurofuse.data.store import read_dataset
    from neurofuse.systems.joint.trainer import TrainConfig, fit, load_fit_config
    from neurofuse.training.loop import replay_early_stopping

    if not args.data and args.study is None:
        p.error("give the stores (--data) or a study to take subsets of (--study)")
    data_list = list(args.data)
    if args.study is not None:
        from neurofuse.evaluation.scaling import point_name, subset_store

        for n in args.n_train:
            store = args.work / "stores" / point_name(*args.subjects, n)
            if not store.is_dir():
                subset_store(args.study, store, n_train=n, n_meg_subjects=args.subjects[0],
                             n_fmri_subjects=args.subjects[1])
            data_list.append(store)
    train, encoder = load_fit_config(args.fit)
    full = TrainConfig.from_dict({**train.to_dict(), "patience": train.max_epochs})
    stores, seconds = {}, {}
    for data in data_list:
        name = data.parent.name if data.name == "data" else data.name
        out = args.work / name
        t0 = time.perf_counter()
        history = out / "history.csv"
        config = out / "config.json"
        if config.is_file() and json.loads(config.read_text())["train"] != full.to_dict():
            p.error(f"--work: '{out}' holds a fit of another training set-up than --fit "
                    f"{args.fit!r} (no early stopping): give another --work or --fit.")
        if not history.is_file() or len(_rows(history)) < full.max_epochs:
            fit(read_dataset(data), out, train_config=full, encoder_kwargs=encoder,
                resume=(out / "checkpoints" / "latest").is_file(), verbose="warning")
            seconds[name] = round(time.perf_counter() - t0, 1)
        rows = _rows(history)
        monitor = [float(r["val_total"]) for r in rows]
        phases = [float(r["alpha_fmri"]) for r in rows]
        ds = read_dataset(data)  # as the joint task: stop in the fMRI phase, or any time
        has_fmri = any("fmri" in ds.modalities(s) for s in ds.subjects)  # without fMRI
        may_stop = [a == train.alpha_fmri or not has_fmri for a in phases]
        replays = {}
        for m in args.candidates:
            rule = {**dataclasses.asdict(train.loop_config()), "min_epochs": m}
            rep = replay_early_stopping(monitor, config=rule, phases=phases, may_stop=may_stop)
            kept = rows[rep["best_epoch"] - 1]
            replays[str(m)] = {**rep, "val_meg_r": float(kept["val_meg_r"]),
                               "val_fmri_r": _float(kept.get("val_fmri_r"))}
        # the whole run's kept epoch: no early stopping at all
        whole = replay_early_stopping(
            monitor, config={**dataclasses.asdict(train.loop_config()), "patience": None},
            phases=phases)
        stores[name] = {"data": str(data), "epochs_recorded": len(rows),
                        "fit_seconds": round(sum(float(r["seconds"]) for r in rows), 1),
                        "no_early_stopping": whole, "replays": replays}
    chosen = next((m for m in args.candidates
                   if all(s["replays"][str(m)]["best"] <= s["no_early_stopping"]["best"]
                          + args.tol for s in stores.values())), None)
    print(json.dumps({
        "benchmark": "min_epochs", "fit": args.fit, "patience": train.patience,
        "max_epochs": train.max_epochs, "monitor": "val_total (validation loss)",
        "tol": args.tol, "chosen_min_epochs": chosen, "stores": stores,
        "seconds": seconds, "machine": {"python": platform.python_version(),
                                        "torch": torch.__version__,
                                        "threads": torch.get_num_threads(),
                                        "processor": platform.processor() or platform.machine()},
    }, indent=2))


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _float(value):
    return float(value) if value not in (None, "") else None


if __name__ == "__main__":
    main()

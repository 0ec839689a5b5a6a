"""System B's codebook and training length, chosen on the validation subject. Prints JSON.

The demo generator's 128-code quantiser collapsed onto ~34 codes within 16 epochs (its batch
perplexity, in ``history.csv``), and a linear probe had shown the quantiser to be where the
condition lost most of its information (docs/eeg2meg.md). This fits the stops 22-29 demo
set-up (preset ``demo-cb128``) with each variant's overrides on the paired world of a
``bench_eeg2meg.py`` work folder, with its pretrained encoder, into ``WORK/codebook/<name>/``
(a rerun resumes finished fits), and scores the **validation** subjects' synthetic MEG with
:func:`bench_eeg2meg_sampling.score_split` (the evaluation's per-band Pearson r): one DDIM run
from ``z_T = 0`` (5 steps) and the mean of K = 16 / 64 five-step samples (K = 64: how a
trained generator generates by default). The test subjects are never read, so the choice
leaves the benchmark's held-out numbers untouched::

    PYTHONPATH=. python benchmarks/bench_eeg2meg.py --work W > ...   # the world and encoder
    PYTHONPATH=. python benchmarks/bench_eeg2meg_codebook.py --work W \\
        > benchmarks/results/eeg2meg_codebook.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

#: name -> overrides of the ``demo-cb128`` preset (dead-code thresholds are assignments per
#: batch: ~11,200 tokens over 128 codes is ~88 each, over 2048 ~5.5).
VARIANTS = {
    "cb128": {},
    "cb128_restart": {"model": {"dead_code_threshold": 2.0}},
    "cb512": {"model": {"codebook_size": 512}},
    "cb2048": {"model": {"codebook_size": 2048}},
    "cb2048_restart": {"model": {"codebook_size": 2048, "dead_code_threshold": 1.0}},
    "cb2048_epochs40": {"model": {"codebook_size": 2048},
                        "train": {"epochs": 40, "patience": 5}},
    "cb2048_restart_epochs40": {"model": {"codebook_size": 2048, "dead_code_threshold": 1.0},
                                "train": {"epochs": 40, "patience": 5}},
}
CANDIDATES = ("ddim_zero_s5", "mean_eta1_s5")
#: The set-up the variants change: the demo preset of stops 22-29.
BASE = "demo-cb128"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True, type=Path,
                   help="a bench_eeg2meg.py work folder (its world/ and eval/pretrain/)")
    p.add_argument("--n-test-subjects", type=int, default=3,
                   help="held-out subjects of that benchmark (default 3; never read here)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = p.parse_args(argv)

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_eeg2meg_sampling import score_split

    from neurofuse._io import write_json
    from neurofuse.systems.eeg2meg import fit
    from neurofuse.systems.eeg2meg.data import PairedEpochs
    from neurofuse.systems.eeg2meg.model import load_generator

    world, encoder = args.work / "world", args.work / "eval" / "pretrain" / "encoder"
    for path in (world, encoder):
        if not path.is_dir():
            raise SystemExit(f"{path} not found: run benchmarks/bench_eeg2meg.py --work "
                             f"{args.work} first (it simulates the world and pretrains).")
    t0, rows = time.perf_counter(), []
    for name in args.variants:
        folder = args.work / "codebook" / name
        done = folder / "val.json"
        asked = {"overrides": VARIANTS[name], "base_preset": BASE,
                 "n_test_subjects": args.n_test_subjects}
        if done.is_file():  # a finished variant is reused only under the same settings
            kept = json.loads(done.read_text())
            differ = {k: (kept.get(k), v) for k, v in asked.items() if kept.get(k) != v}
            if differ:
                raise SystemExit(f"{folder} was scored under other settings (there, now: "
                                 f"{differ}); use a new --work folder or delete it.")
        else:
            config = {"preset": BASE,
                      "data": {"n_test_subjects": args.n_test_subjects}, **VARIANTS[name]}
            t1 = time.perf_counter()
            history = fit(world, folder / "fit", encoder=encoder, config=config, resume=True,
                          verbose="warning")
            fit_seconds = time.perf_counter() - t1
            model, meta = load_generator(folder / "fit" / "model", return_meta=True)
            data = PairedEpochs(world, meta["data"]["config"])
            scores = score_split(model, meta, data, "val", list(CANDIDATES), k=(16, 64),
                                 reference=CANDIDATES[0])
            best = min(range(len(history)), key=lambda i: history[i]["val_loss"])
            write_json(done, {
                "variant": name, **asked, "subjects": scores["subjects"],
                "n_epochs": scores["n_epochs"], "epochs_run": len(history),
                "epoch_kept": best + 1,
                "val_perplexity": [round(h["val_perplexity"], 1) for h in history],
                "fit_seconds": round(fit_seconds, 1), "scores": scores["results"]},
                what="codebook variant")
        res = json.loads(done.read_text())
        for cand, by_k in res["scores"].items():
            for k, s in by_k.items():
                if k.startswith("K"):
                    rows.append({"variant": name, "generation": cand, "k": int(k[1:]),
                                 "mean_r": s["mean_r"], "pearson": s["pearson"],
                                 "mean_rmse": s["mean_rmse"]})
        print(name, {f"{r['generation']} K{r['k']}": round(r["mean_r"], 4)
                     for r in rows if r["variant"] == name}, file=sys.stderr, flush=True)
    out = {"benchmark": "eeg2meg_codebook",
           "command": "python benchmarks/bench_eeg2meg_codebook.py " + " ".join(
               argv if argv is not None else sys.argv[1:]),
           "split": "val", "base_preset": BASE, "variants": VARIANTS, "rows": rows,
           "detail": {name: json.loads((args.work / "codebook" / name / "val.json")
                                       .read_text()) for name in args.variants},
           "total_seconds": round(time.perf_counter() - t0, 1),
           "machine": {"python": platform.python_version(), "torch": torch.__version__,
                       "threads": torch.get_num_threads()}}
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()

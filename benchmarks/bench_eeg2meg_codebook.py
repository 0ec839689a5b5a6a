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

import json
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
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _eeg2meg_validation import (check_kept, command, machine, monitored_values, parser,
                                     score_fit, variant_rows)

    p = parser(__doc__, "a bench_eeg2meg.py work folder (its world/ and eval/pretrain/)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = p.parse_args(argv)

    from neurofuse._io import write_json
    from neurofuse.systems.eeg2meg import fit

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
            check_kept(done, asked)
        else:
            config = {"preset": BASE,
                      "data": {"n_test_subjects": args.n_test_subjects}, **VARIANTS[name]}
            t1 = time.perf_counter()
            history = fit(world, folder / "fit", encoder=encoder, config=config, resume=True,
                          verbose="warning")
            fit_seconds = time.perf_counter() - t1
            write_json(done, {
                "variant": name, **asked,
                **score_fit(world, folder / "fit", monitored_values(history, config),
                            CANDIDATES, (16, 64)),
                "val_perplexity": [round(h["val_perplexity"], 1) for h in history],
                "fit_seconds": round(fit_seconds, 1)}, what="codebook variant")
        rows += variant_rows(name, json.loads(done.read_text()))
    out = {"benchmark": "eeg2meg_codebook",
           "command": command("bench_eeg2meg_codebook.py", argv),
           "split": "val", "base_preset": BASE, "variants": VARIANTS, "rows": rows,
           "detail": {name: json.loads((args.work / "codebook" / name / "val.json")
                                       .read_text()) for name in args.variants},
           "total_seconds": round(time.perf_counter() - t0, 1),
           "machine": machine()}
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()

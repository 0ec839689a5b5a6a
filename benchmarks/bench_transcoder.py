"""System D (cyclic EEG↔fMRI transcoder) against the physics baseline and MNE / dSPM /
eLORETA given the true lead field. Prints one JSON object.

For each of the paper's three scenarios (``noise_free``, ``interleave5_noise_free``,
``snr10``) it simulates a data set of the simulator's ``demo`` size (12-mm grid, 2-min runs)
with ``--n-runs`` runs (the last ``--n-test`` held out), trains the group-level transcoder on
the training runs with ``--fit`` and runs
:func:`neurofuse.evaluation.transcoder_pipeline.evaluate_transcoder_folder`: rows
``{"scenario", "method", "fmri_r", "eeg_r", "source_r", "source_kind"}`` (+ ``source_from``,
``source_truth`` latent / erp, 95 % intervals over the held-out runs, ``n_runs``), and the
HRF and lead field the model learned. The paper's claim under test: the transcoder's EEG
source recovery beats MNE given the true lead field. Nothing here is tuned on the results;
the simulator is never tuned to the model.

    PYTHONPATH=. python benchmarks/bench_transcoder.py --work /tmp/dbench \
        > benchmarks/results/transcoder.json

(the committed file: ``--n-runs 6 --n-test 2 --fit demo-cli``, i.e. the defaults). The paper
trained on 300 runs; this is a small-data check on 2 CPU cores, not the paper's scale.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

SCENARIOS = ("noise_free", "interleave5_noise_free", "snr10")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True, type=Path, help="work folder (kept; resumes)")
    p.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    p.add_argument("--size", default="demo", help="simulator size preset (default: demo)")
    p.add_argument("--n-runs", type=int, default=6, help="runs per scenario (default 6)")
    p.add_argument("--n-test", type=int, default=2, help="held-out runs (default 2)")
    p.add_argument("--fit", default="demo-cli",
                   help="training preset or file; 'demo-cli': what 'neurofuse transcoder "
                        "demo' trains (tiny networks, 4 epochs)")
    args = p.parse_args(argv)

    import torch

    from neurofuse.evaluation.transcoder_pipeline import (
        DEMO_FIT,
        evaluate_transcoder_folder,
        summary_line,
    )
    from neurofuse.simulation.eeg_fmri import make_config, simulate_dataset

    fit_config = DEMO_FIT if args.fit == "demo-cli" else args.fit
    t_all = time.perf_counter()
    rows, learned, verdicts, seconds = [], {}, [], {}
    for scen in args.scenarios:
        t0 = time.perf_counter()
        ds = simulate_dataset(args.work / scen / "data", make_config(scen, args.size),
                              args.n_runs, n_test=args.n_test)
        res = evaluate_transcoder_folder(ds, args.work / scen / "eval", fit_config=fit_config)
        rows += res["rows"]
        learned[scen] = {k: res["learned"][k] for k in (
            "hrf_r", "leadfield_r_median", "untrained_hrf_r", "untrained_leadfield_r_median")}
        verdicts.append(summary_line(res))
        seconds[scen] = round(time.perf_counter() - t0, 1)
    out = {
        "benchmark": "transcoder",
        "command": "python benchmarks/bench_transcoder.py " + " ".join(
            argv if argv is not None else sys.argv[1:]),
        "settings": {"size": args.size, "n_runs": args.n_runs, "n_test": args.n_test,
                     "fit": fit_config},
        "rows": rows, "learned": learned, "verdict": verdicts, "seconds": seconds,
        "total_seconds": round(time.perf_counter() - t_all, 1),
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
    }
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()

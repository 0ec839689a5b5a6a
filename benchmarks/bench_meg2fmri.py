"""System C (MEG2fMRI cGAN) against its baselines on held-out subjects. Prints one JSON object.

For each world seed, simulates system C's demo world (``meg2fmri-demo``: six subjects with
paired MEG and fMRI volumes, four 60-s stories) and runs
:func:`neurofuse.evaluation.meg2fmri.evaluate_meg2fmri` on it: the paper's pairing (with the
target slice chosen on training events only), the cGAN trained on four subjects with the
paper's schedule (125 epochs), scored on the last two subjects' test-story events beside

* ``mean_slice``: the mean training slice, whatever the MEG;
* ``ridge``: ridge regression from the MEG vector to the pixels (alpha by validation);
* ``physics``: MEG → MNE inverse → envelope → HRF → voxels, no training (one scale fitted on
  calibration events);
* ``cgan_shuffled``: the trained cGAN fed another event's MEG (a derangement).

Metrics as the paper computes them (MSE, SSIM with the target's data range), the activation
r (slice minus the subject's mean slice, against the target's) and, on a simulation, the r of
each activation with the true BOLD change. The worlds are the demo's with other seeds: the
model is never scored on a world it was tuned on, and nothing here was tuned on any world.

``--selection event`` adds, on the first world, the paper's per-event slice choice (the target
slice picked by correlation with the very MEG it is predicted from) to show what that leak
does to the scores.

    python benchmarks/bench_meg2fmri.py --work /tmp/m2f > benchmarks/results/meg2fmri.json
    python benchmarks/bench_meg2fmri.py --work W --seeds 0 --fit-config demo     # quicker
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path


def _world(work, seed):
    from neurofuse.evaluation.meg2fmri import DEMO_STUDY
    from neurofuse.simulation.study import simulated_study

    return simulated_study({"preset": DEMO_STUDY, "seed": seed}, work / f"world-seed{seed}")


def _entry(results, seconds):
    from neurofuse.evaluation.meg2fmri import summary_line

    keep = ("rows", "truth_r", "n_pairs", "held_out", "train_subjects")
    return {**{k: results[k] for k in keep}, "verdict": summary_line(results),
            "seconds": round(seconds, 1)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True, type=Path, help="work folder (kept; reused)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1],
                   help="world seeds; the first world's rows are the headline (default: 0 1)")
    p.add_argument("--fit-config", default="paper",
                   help="cGAN training preset or file (default: paper, 125 epochs)")
    p.add_argument("--selection", nargs="*", default=["event"], choices=["event"],
                   help="extra slice-selection variants on the first world (default: event; "
                        "pass --selection with nothing to skip)")
    args = p.parse_args(argv)

    from neurofuse.evaluation.meg2fmri import PAPER_SCORES, evaluate_meg2fmri

    work = args.work.expanduser()
    work.mkdir(parents=True, exist_ok=True)
    worlds = []
    for seed in args.seeds:
        data = _world(work, seed)
        t0 = time.perf_counter()
        res = evaluate_meg2fmri(data, work / f"eval-seed{seed}", fit_config=args.fit_config)
        worlds.append({"seed": seed, **_entry(res, time.perf_counter() - t0)})
    variants = []
    for selection in args.selection:
        t0 = time.perf_counter()
        res = evaluate_meg2fmri(_world(work, args.seeds[0]), work / f"eval-{selection}",
                                fit_config=args.fit_config,
                                pairing={"slice_selection": selection})
        variants.append({"seed": args.seeds[0], "slice_selection": selection,
                         **_entry(res, time.perf_counter() - t0)})
    first = worlds[0]
    out = {
        "benchmark": "meg2fmri",
        "command": "python benchmarks/bench_meg2fmri.py " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "world": "meg2fmri-demo", "fit_config": args.fit_config,
        "rows": first["rows"], "paper": PAPER_SCORES, "truth_r": first["truth_r"],
        "verdict": first["verdict"], "worlds": worlds, "slice_selection_variants": variants,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

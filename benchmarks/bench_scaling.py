"""Where, as training data grows, does the joint model overtake the classical inverses?

Issue 15, item 5: source recovery (temporal and spatial r against the ground truth) and
held-out MEG / fMRI r of the joint model and of every classical and smoothed inverse, over a
grid of training minutes per subject × numbers of MEG and fMRI subjects, in one simulated
world at the demo's noise (MEG CNR 1, fMRI CNR 0.3), every point on the same test stories
(:func:`neurofuse.evaluation.scaling.run_scaling_benchmark`). Prints one JSON object:
``{"rows": [{"n_meg_subjects", "n_fmri_subjects", "n_train", "train_minutes", "method",
"temporal_r", "spatial_r"}, ...], "prediction": [...], "seconds": ..., "projected_minutes":
{...}, ...}`` (``seconds``: this run's, points read back cost none; ``projected_minutes``: of
the ``demo`` and ``cpu`` grids, None when the grid or study is given).

The run lives in ``WORK/<scale>/`` and resumes: finished grid points are read back.

    python benchmarks/bench_scaling.py --work W --scale tiny                  # minutes
    python benchmarks/bench_scaling.py --work W --scale demo --figure docs/figures/scaling-demo.png
    python benchmarks/bench_scaling.py --work W > benchmarks/results/scaling.json   # ~1 h
    python benchmarks/bench_scaling.py --work W --scale paper --device cuda   # GPU, hours
    python benchmarks/bench_scaling.py --work W --collect      # the finished points only
    python benchmarks/bench_scaling.py --work W2 --world nonlinear --n-train 6 12 --subjects 2x2

The last runs part of a grid in another world: ``--world`` (a name of
:data:`neurofuse.simulation.encoding.world.WORLDS`, in the scale's study) or ``--study`` (a
preset or .toml/.json StudyConfig), ``--n-train`` and ``--subjects`` override the scale's, as
``neurofuse joint benchmark scaling`` does. A work folder holds one study: give each world its
own.

``--collect`` computes nothing: it prints the points finished so far (``WORK/<scale>/
results.json``, rewritten after every point) with ``"points_done"`` and ``"points_planned"``,
so an interrupted grid can be reported for what it holds; the same command without it
resumes the grid.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path


def main(argv=None):
    from neurofuse.cli.joint import subject_pair
    from neurofuse.evaluation.scaling import SCALES, projected_minutes, run_scaling_benchmark

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, type=Path, help="working folder (resumable)")
    parser.add_argument("--scale", default="cpu", choices=sorted(SCALES))
    parser.add_argument("--device", default=None, help="training device (default: auto)")
    parser.add_argument("--no-report", action="store_true", help="skip report.html")
    parser.add_argument("--figure", type=Path, default=None,
                        help="also save the scaling curves as an image (e.g. PNG) here")
    parser.add_argument("--collect", action="store_true",
                        help="compute nothing: report the grid points finished so far")
    world = parser.add_mutually_exclusive_group()
    world.add_argument("--world", default=None,
                       help="an alternative world (e.g. nonlinear) in the scale's study")
    world.add_argument("--study", default=None,
                       help="study preset or .toml/.json StudyConfig whose story length, "
                            "source space and world to use (default: the scale's)")
    parser.add_argument("--n-train", type=int, nargs="+", default=None,
                        help="numbers of training stories (default: the scale's)")
    parser.add_argument("--subjects", type=subject_pair, nargs="+", default=None,
                        metavar="MxF", help="MEG x fMRI subject counts, e.g. 2x2 4x4 "
                                            "(default: the scale's)")
    parser.add_argument("--fit", default=None,
                        help="training preset or .toml/.json file (default: the scale's; "
                             "demo-alpha1 for the grids measured before stop 27)")
    args = parser.parse_args(argv)

    study = args.study
    custom = any(v is not None for v in (args.world, args.study, args.n_train, args.subjects))
    if args.world is not None:
        study = {**SCALES[args.scale]["study"], "world": args.world}
    if args.collect and (custom or args.fit is not None):
        parser.error("--collect reads the grid a run recorded: --world, --study, --n-train, "
                     "--subjects and --fit belong to the run that computes it.")
    t0 = time.perf_counter()
    if args.collect:
        found = args.work / args.scale / "results.json"
        if not found.is_file():
            parser.error(f"--collect: no '{found}': no point of the {args.scale!r} grid has "
                         "finished in that work folder (run without --collect to compute).")
        res = json.loads(found.read_text())
        seconds = None
    else:
        res = run_scaling_benchmark(args.work / args.scale, scale=args.scale,
                                    study=study, n_train=args.n_train,
                                    subjects=args.subjects, device=args.device,
                                    fit_config=args.fit,
                                    report=not args.no_report, verbose="warning")
        seconds = round(time.perf_counter() - t0, 1)
    grid = res["grid"]
    planned = len(grid["subjects"]) * len(grid["n_train"])
    done = len({(r["n_meg_subjects"], r["n_fmri_subjects"], r["n_train"])
                for r in res["source_recovery"]})
    if args.figure is not None:
        from neurofuse.viz.scaling import plot_scaling_curves

        fig = plot_scaling_curves(res)
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.figure, dpi=110, bbox_inches="tight")
    keys = ("n_meg_subjects", "n_fmri_subjects", "n_train", "train_minutes", "method",
            "temporal_r", "spatial_r")
    print(json.dumps({
        "benchmark": "scaling", "scale": args.scale, "grid": grid,
        "points_done": done, "points_planned": planned,
        "rows": [{k: r[k] for k in keys} for r in res["source_recovery"]],
        "prediction": [{k: v for k, v in r.items() if k != "targets"}
                       for r in res["prediction"]],
        "seconds": seconds,
        # the projection is of the scales' own grids: none for a grid of one's own
        "projected_minutes": None if custom else {s: round(projected_minutes(s), 1)
                                                  for s in ("demo", "cpu")},
        "machine": {"platform": platform.platform(), "processor": platform.processor()}},
        indent=1))


if __name__ == "__main__":
    main()

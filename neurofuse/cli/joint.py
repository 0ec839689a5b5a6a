"""``neurofuse joint``: the joint MEG-fMRI encoding model (system A).

Commands: ``fit``, ``predict``, ``evaluate``, ``demo``, ``benchmark simulation``,
``benchmark scaling``, ``ecog``.
"""

from __future__ import annotations

from pathlib import Path

from ._utils import (LazyChoices, add_command, add_device, add_force, add_group, add_resume, cnr,
                     option, passed)

NAME = "joint"
HELP = "the joint MEG-fMRI encoding model: fit, predict, evaluate, demo, benchmark, ecog"


def _cmd_fit(args):
    from .._resources import ignore_limits
    from ..training.distributed import cleanup_distributed, init_distributed
    from ..systems.joint.task import JointTask
    from ..systems.joint.trainer import TrainConfig, fit, load_fit_config

    train, encoder = load_fit_config(args.config)
    if "epochs" in args:
        train = TrainConfig.from_dict({**train.to_dict(), "max_epochs": args.epochs})
    if "fmri_denoise" in args:  # training fMRI: none, in-sample, cross-fitted, auto
        train = TrainConfig.from_dict({**train.to_dict(), "fmri_denoise": args.fmri_denoise})
    ctx = init_distributed(getattr(args, "device", None))  # a torchrun process joins its group
    try:
        with ignore_limits("force" in args):
            history = fit(args.data, args.out, train_config=train, encoder_kwargs=encoder,
                          device=ctx.device, **passed(args, "resume"))
    finally:
        cleanup_distributed()
    if ctx.rank == 0 and history:
        last = history[-1]
        # model/ holds the best epoch of the final curriculum phase (losses of the two phases
        # are not comparable).
        final = [r for r in history if r["alpha_fmri"] == last["alpha_fmri"]]
        best = min(final, key=JointTask.monitor)
        print(f"Trained {last['epoch']} epochs; best epoch {best['epoch']} "
              f"(validation MEG r {best.get('val_meg_r', float('nan')):.3f}"
              + (f", fMRI r {best['val_fmri_r']:.3f}" if "val_fmri_r" in best else "")
              + f"). Model: {Path(args.out) / 'model'}; log: {Path(args.out) / 'history.csv'}")


def _cmd_predict(args):
    from .._resources import ignore_limits
    from ..systems.joint.predict import write_predictions

    with ignore_limits("force" in args):
        written = write_predictions(args.model, args.stimulus, args.out,
                                    **passed(args, "sfreq", "subjects", "overwrite"))
    for path in written:
        print(path)


def _cmd_evaluate(args):
    from .._io import write_json
    from .._resources import ignore_limits
    from ..data.store import read_dataset
    from ..evaluation.demo import make_study_report, summary_line
    from ..evaluation.pipeline import evaluate_study

    ds = read_dataset(args.data)  # any store; without ground truth, source recovery is skipped
    out = Path(args.out).expanduser()
    with ignore_limits("force" in args):
        if "model" not in args:  # the joint model is trained last: refuse it now if too big
            from ..evaluation.pipeline import DEMO_FIT
            from ..systems.joint.resources import check_fit_dataset
            from ..systems.joint.trainer import load_fit_config

            train, encoder = load_fit_config(getattr(args, "fit_config", DEMO_FIT))
            check_fit_dataset(ds, train, encoder)
        evaluation = evaluate_study(ds, out, **passed(args, "model", "fit_config", "methods",
                                                      "smooth_fwhm", "fmri_denoise", "device"))
    results = evaluation.results()
    write_json(out / "results.json", results, what="results")
    report = make_study_report(evaluation, ds, out / "report.html",
                               title="neurofuse joint evaluate")
    print(f"neurofuse joint evaluate: {summary_line(results)}. Report: {report}; results: "
          f"{out / 'results.json'}")


def _cmd_demo(args):
    from ..evaluation.demo import run_demo

    res = run_demo(**passed(args, "out", "fit_config", "n_jobs", "device"))
    print(f"neurofuse demo: {res['summary']}. Report: {res['report']}; results: "
          f"{Path(res['report']).with_name('results.json')}")


def _cmd_benchmark(args):
    from ..evaluation.benchmark import run_simulation_benchmark
    from ..viz.figures import format_cnr

    res = run_simulation_benchmark(args.out, **passed(
        args, "study", "fit_config", "meg_cnrs", "fmri_cnrs", "methods", "smooth_fwhm",
        "variants", "variant_conditions", "seed", "n_jobs", "device"))
    width = max([15, *(len(r["method"]) for r in res["source_recovery"])])
    print(f"{'method':<{width}} {'MEG CNR':>8} {'fMRI CNR':>8} {'temporal r':>11} "
          f"{'spatial r':>10}")
    for r in res["source_recovery"]:
        print(f"{r['method']:<{width}} {format_cnr(r['meg_cnr']):>8} "
              f"{format_cnr(r['fmri_cnr']):>8} {r['temporal_r']:>11.3f} {r['spatial_r']:>10.3f}")
    print(f"Results: {Path(args.out) / 'results.json'}; report: {Path(args.out) / 'report.html'}")


def _cmd_scaling(args):
    from ..evaluation.scaling import run_scaling_benchmark

    res = run_scaling_benchmark(args.out, **passed(
        args, "scale", "n_train", "subjects", "study", "fit_config", "methods", "smooth_fwhm",
        "seed", "n_jobs", "device"))
    print(f"{'MEG':>3} {'fMRI':>4} {'train min':>9} {'method':<15} {'temporal r':>10} "
          f"{'spatial r':>9}")
    for r in res["source_recovery"]:
        print(f"{r['n_meg_subjects']:>3} {r['n_fmri_subjects']:>4} {r['train_minutes']:>9.1f} "
              f"{r['method']:<15} {r['temporal_r']:>10.3f} {r['spatial_r']:>9.3f}")
    print(f"Results: {Path(args.out) / 'results.json'}; report: {Path(args.out) / 'report.html'}")


def cnr_pair(text):
    """``--variant-conditions``: ``MEG,FMRI`` CNRs of one condition, e.g. ``1,0.3``."""
    import argparse

    meg, sep, fmri = text.partition(",")
    try:
        if not sep:
            raise argparse.ArgumentTypeError("")
        return (cnr(meg), cnr(fmri))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected MEG,FMRI CNRs, each a positive number or 'inf' (e.g. 1,0.3), got "
            f"{text!r}") from None


def subject_pair(text):
    """``--subjects``: ``MxF``, e.g. ``2x2`` for 2 MEG + 2 fMRI subjects."""
    import argparse

    meg, sep, fmri = text.strip().lower().partition("x")
    try:
        pair = (int(meg), int(fmri)) if sep else None
    except ValueError:
        pair = None
    if pair is None or min(pair) < 1:
        raise argparse.ArgumentTypeError(
            f"expected MEGxFMRI subject counts, each >= 1 (e.g. 2x2), got {text!r}")
    return pair


def _cmd_ecog(args):
    from ..evaluation.ecog import run_ecog_validation

    v = run_ecog_validation(args.model, args.data, args.out, **passed(
        args, "alternative", "identification_test", "seed", "segment_seconds", "n_permutations",
        "n_trials", "overwrite"))
    zs, rows = v["results"]["zero_shot"], v["results"]["trained"]
    print(f"Zero-shot: {zs['n_significant']} of {zs['n_electrodes']} electrodes significant; "
          f"segment identification significant for {zs['n_identification_significant']}.")
    print(f"{'method':<10} {'train fraction':>14} {'top-25% r':>10}")
    for r in rows:
        print(f"{r['method']:<10} {r['train_fraction']:>14g} {r['top25_r']:>10.3f}")
    print(f"Results: {Path(args.out) / 'results.json'}")


_INVERSES = LazyChoices("neurofuse.evaluation.pipeline:INVERSE_METHODS")


def smooth_fwhm(text):
    """``--smooth-fwhm``: ``model``, ``none`` or a width in mm."""
    import argparse
    import math

    low = text.strip().lower()
    if low == "model":
        return "model"
    if low == "none":
        return None
    try:
        value = float(low)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"expected 'model', 'none' or a positive width in mm, got {text!r}")
    return value


def _add_smooth(p):
    option(p, "--smooth-fwhm", type=smooth_fwhm, metavar="MM|model|none",
           help="also score every inverse smoothed with the joint model's spatial prior, as "
                "'<inverse>+smooth': at the width of the model's smoothed source layer "
                "(model, the default; none for a plain layer), at MM mm FWHM, or not (none)")
_VARIANTS = LazyChoices("neurofuse.evaluation.variants:JOINT_VARIANTS")
_DENOISE = LazyChoices("neurofuse.baselines.ridge.denoise:FMRI_DENOISE")


def add_demo(sub):
    """``demo``: under ``neurofuse joint`` and, as the README's set-up command, at the top."""
    p = add_command(sub, "demo", _cmd_demo, target="neurofuse.evaluation.demo:run_demo",
                    help="the main job: simulate, train, compare with ridge and classical "
                         "inverses, write report.html")
    option(p, "--out", help="output folder")
    option(p, "--fit", dest="fit_config", help="training preset or .toml/.json file (default: "
           "the demo's, a small model that trains in minutes on 2 CPU cores)")
    add_device(p)
    option(p, "--n-jobs", type=int, help="parallel jobs for forward models")
    return p


def add_parser(subparsers):
    """Register ``neurofuse joint`` and its commands."""
    sub = add_group(subparsers, NAME, help=HELP, doc=__doc__, dest="joint_command")

    p = add_command(sub, "fit", _cmd_fit, target="neurofuse.systems.joint.trainer:fit",
                    help="train the joint MEG-fMRI model on a dataset (DDP under torchrun)")
    p.add_argument("config", help="preset (paper, demo, demo-alpha0.1, demo-alpha1, tiny) or a "
                                  ".toml/.json file with [train] and [encoder] tables")
    p.add_argument("--data", required=True, help="dataset folder (from simulate or prepare)")
    p.add_argument("--out", required=True, help="output folder: model/, checkpoints/, "
                                                "history.csv")
    add_resume(p)
    option(p, "--epochs", type=int, keyword=False, help="override the config's max_epochs")
    option(p, "--fmri-denoise", choices=_DENOISE, keyword=False, help="override the config's "
           "training fMRI denoising (TrainConfig.fmri_denoise)")
    add_device(p)
    add_force(p)

    p = add_command(sub, "predict", _cmd_predict,
                    target="neurofuse.systems.joint.predict:write_predictions",
                    help="source estimates and predicted data for a stimulus")
    p.add_argument("model", help="model folder (fit's OUT/model)")
    p.add_argument("--stimulus", required=True, help=".npy features, shape (n_times, d_stim)")
    p.add_argument("--out", required=True, help="output folder")
    option(p, "--sfreq", type=float, help="sampling rate of the features (checked)")
    option(p, "--subjects", nargs="*", help="subjects to predict MEG/EEG/BOLD for (default all)")
    option(p, "--overwrite", action="store_true", help="replace existing predictions")
    add_force(p)

    p = add_command(sub, "evaluate", _cmd_evaluate,
                    target="neurofuse.evaluation.pipeline:evaluate_study",
                    help="ridge ceilings, the joint model, classical inverses and every score "
                         "on a dataset store: results.json and report.html")
    p.add_argument("--data", required=True, help="a dataset store with MEG, EEG and/or fMRI "
                   "subjects (neurofuse simulate study, data prepare, or your own); source "
                   "recovery runs only where it has ground-truth sources (a simulation) and "
                   "is skipped otherwise")
    p.add_argument("--out", required=True, help="output folder: ridge/, fit/ (the joint "
                   "model, trained or resumed there unless --model is given), results.json, "
                   "report.html; what an interrupted run of the same model left is reused")
    option(p, "--model", metavar="PATH", help="score this fitted joint model instead of "
           "training one: the output folder of 'neurofuse joint fit' (or its model/), e.g. "
           "trained on a GPU machine; it must fit the dataset (features, subjects, channels, "
           "sources)")
    option(p, "--fit", dest="fit_config", help="training preset or .toml/.json file "
           "(default: the demo's; not with --model)")
    option(p, "--methods", nargs="+", choices=_INVERSES, help="classical inverses to compare "
           "(default: all)")
    _add_smooth(p)
    option(p, "--fmri-denoise", choices=_DENOISE, help="training fMRI: raw (none), the fMRI "
           "ridge ceiling's in-sample fit (the paper's), out-of-fold ridge predictions "
           "(cross-fitted) or chosen by validation loss (auto); default: the fit config's")
    option(p, "--no-fmri-denoise", dest="fmri_denoise", action="store_const", const="none",
           help="same as --fmri-denoise none")
    add_device(p)
    add_force(p)

    add_demo(sub)

    p = sub.add_parser("benchmark", help="reproduce the paper's benchmarks",
                       description="Reproduce the paper's benchmarks.")
    bsub = p.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    b = add_command(bsub, "simulation", _cmd_benchmark,
                    target="neurofuse.evaluation.benchmark:run_simulation_benchmark",
                    help="source recovery (Fig. 3) and prediction (Tables 1-2) across MEG x "
                         "fMRI noise levels")
    b.add_argument("--out", required=True, help="output folder (resumes what is there)")
    option(b, "--study", help="study preset (demo, paper, tiny) or .toml/.json StudyConfig "
           "(default: the demo's study, preset demo on oct5 sources)")
    option(b, "--fit", dest="fit_config", help="training preset or .toml/.json file "
           "(default: the demo's)")
    option(b, "--meg-cnr", dest="meg_cnrs", type=cnr, nargs="+", help="MEG CNRs")
    option(b, "--fmri-cnr", dest="fmri_cnrs", type=cnr, nargs="+", help="fMRI CNRs")
    option(b, "--methods", nargs="+", choices=_INVERSES, help="classical inverses to compare "
           "(default: all)")
    _add_smooth(b)
    option(b, "--variants", nargs="+", choices=_VARIANTS, help="joint-model variants also "
           "trained and scored on each condition's data, ridge ceilings and inverses, as "
           "methods 'neurofuse[NAME]': in-sample, cross-fitted (the fMRI denoisers), mixture "
           "(the adaptive source prior), epochs150 (room for 150 epochs, same stopping "
           "rule), meg-only (no fMRI term: what the model owes to fMRI); each costs a main "
           "fit's time or more")
    option(b, "--variant-conditions", type=cnr_pair, nargs="+", metavar="MEG,FMRI",
           help="only these conditions get the variants, e.g. 1,0.3 (default: every one)")
    option(b, "--seed", type=int, help="override the study's seed")
    add_device(b)
    option(b, "--n-jobs", type=int, help="parallel jobs for forward models")

    b = add_command(bsub, "scaling", _cmd_scaling,
                    target="neurofuse.evaluation.scaling:run_scaling_benchmark",
                    help="source recovery and held-out prediction of the joint model and "
                         "every inverse as training minutes and subjects grow")
    b.add_argument("--out", required=True, help="output folder (resumes what is there)")
    option(b, "--scale", choices=LazyChoices("neurofuse.evaluation.scaling:SCALES"),
           help="the grid: tiny "
           "(tests), demo (the demo's subjects, 4-12 training minutes), cpu (about an hour on "
           "2 cores), paper (a GPU job: 13 subjects, up to 4 h of stories each)")
    option(b, "--n-train", type=int, nargs="+", help="numbers of training stories (overrides "
           "the scale's)")
    option(b, "--subjects", type=subject_pair, nargs="+", metavar="MxF", help="MEG x fMRI "
           "subject counts, e.g. 1x1 2x2 4x4 (overrides the scale's)")
    option(b, "--study", help="study preset or .toml/.json StudyConfig whose story length, "
           "source space and world to use (default: the scale's)")
    option(b, "--fit", dest="fit_config", help="training preset or .toml/.json file "
           "(default: the scale's)")
    option(b, "--methods", nargs="+", choices=_INVERSES, help="classical inverses to compare "
           "(default: all)")
    _add_smooth(b)
    option(b, "--seed", type=int, help="override the study's seed")
    add_device(b)
    option(b, "--n-jobs", type=int, help="parallel jobs for forward models")

    p = add_command(sub, "ecog", _cmd_ecog,
                    target="neurofuse.evaluation.ecog:run_ecog_validation",
                    help="validate source estimates on ECoG: zero-shot, segment "
                         "identification, trained prediction vs stimulus ridge")
    p.add_argument("--model", required=True, help="model folder (fit's OUT/model or OUT), or "
                                                  "a simulated study's ground_truth/encoding")
    p.add_argument("--data", required=True, help="ECoG dataset (neurofuse simulate ecog or "
                                                 "data prepare podcast)")
    p.add_argument("--out", required=True, help="output folder: results.json, "
                                                "electrodes.json, figures/")
    option(p, "--alternative", choices=["greater", "two-sided"],
           help="zero-shot test direction")
    option(p, "--identification-test", choices=["shift", "binomial"],
           help="segment-identification test: against shifted copies or the paper's "
                "binomial test (anti-conservative: overlapping trials)")
    option(p, "--segment-seconds", type=float,
           help="segment length of the identification test, s")
    option(p, "--n-permutations", type=int, help="circular shifts of the zero-shot test")
    option(p, "--n-trials", type=int, help="segment-identification trials per electrode")
    option(p, "--seed", type=int, help="seed of permutations and segments")
    option(p, "--overwrite", action="store_true", help="replace an existing output folder")
    return sub

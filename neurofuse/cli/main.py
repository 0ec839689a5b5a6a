"""Command-line interface. Each subcommand parses its arguments and calls one library function."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from .. import __version__
from .._logging import set_log_level


def _add_verbosity(p):
    p.add_argument("-v", "--verbose", action="count", default=1,
                   help="more output (-v: progress and info, the default; -vv: debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")


def _level(args):
    if args.quiet:
        return "warning"
    return "debug" if args.verbose >= 2 else "info"


def _cmd_simulate(args):
    from ..simulation.study import StudyConfig, simulate_study

    overrides = {}
    for key in ("seed", "meg_cnr", "fmri_cnr"):
        val = getattr(args, key)
        if val is not None:
            overrides[key] = val
    config = StudyConfig.resolve(args.config)
    if overrides:
        config = StudyConfig.from_dict({**config.to_dict(), **overrides})
    out = simulate_study(config, args.out, overwrite=args.overwrite, n_jobs=args.n_jobs)
    _print_summary(out)


def _print_summary(path):
    from ..data.store import read_dataset

    summary = read_dataset(path).summary()
    print(format_summary(summary, path))


def format_summary(summary: dict, path) -> str:
    """A human-readable description of a dataset summary (from ``Dataset.summary()``)."""
    lines = [(f"Dataset {path}  (schema v{summary['schema_version']}, "
             f"sfreq {summary['sfreq']:g} Hz, TR {summary['tr']:g} s)")]
    stories = summary["stories"]
    by_split = {}
    for name, st in stories.items():
        by_split.setdefault(st["split"], []).append((name, st["duration"]))
    lines.append(f"Stories: {len(stories)}")
    for split, items in by_split.items():
        durs = [d for _, d in items]
        lines.append(f"  {split:<6} {len(items):>3} stories, {sum(durs) / 60:7.1f} min "
                     f"({min(durs):.0f}-{max(durs):.0f} s each)")
    lines.append(f"Subjects: {len(summary['subjects'])}")
    for name, sub in summary["subjects"].items():
        cnr = ", ".join(f"{m} CNR {v}" for m, v in sub["cnr"].items())
        n = ", ".join(f"{m}: {k} stories" for m, k in sub["n_stories"].items())
        chans = f"{sub['n_channels']} channels, " if sub.get("n_channels") else ""
        lines.append(f"  {name}  {'+'.join(sub['modalities']):<8} {chans}"
                     f"{sub['n_sources']} sources; {n}; {cnr}")
    for mod, dur in summary.get("total_duration", {}).items():
        lines.append(f"Total {mod} recording (all subjects and repeats): {dur / 3600:.2f} h")
    return "\n".join(lines)


def _cmd_info(args):
    from ..data.store import read_dataset

    ds = read_dataset(args.dataset)
    summary = ds.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(summary, ds.path))


def _cmd_anatomy(args):
    from ..anatomy.summary import describe_template

    desc = describe_template(spacing=args.spacing, montage=args.montage)
    if args.json:
        print(json.dumps(desc, indent=2))
    else:
        for key, val in desc.items():
            print(f"{key:>24}: {val}")


def _cmd_demo(args):
    from ..evaluation.demo import run_demo

    res = run_demo(args.out, fit_config=args.fit, n_jobs=args.n_jobs, device=args.device)
    print(f"neurofuse demo: {res['summary']}. Report: {res['report']}; results: "
          f"{Path(res['report']).with_name('results.json')}")


def _parse_splits(items):
    """``story=split`` pairs or one JSON file -> dict (None when not given)."""
    if not items:
        return None
    if len(items) == 1 and "=" not in items[0]:
        return json.loads(Path(items[0]).expanduser().read_text())
    out = {}
    for item in items:
        story, sep, split = item.partition("=")
        if not sep:
            raise ValueError(f"--splits expects STORY=SPLIT pairs or one JSON file, got {item!r}.")
        out[story] = split
    return out


def _parse_pairs(option, items, kind):
    """``KEY=VALUE`` pairs -> dict (None when not given)."""
    if not items:
        return None
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{option} expects KEY=VALUE pairs, got {item!r}.")
        try:
            out[key] = kind(value)
        except ValueError:
            raise ValueError(f"{option}: {item!r} does not have a valid {kind.__name__} value.") \
                from None
    return out


def _none_or_float(text):
    return None if text.lower() == "none" else float(text)


def _cmd_prepare(args):
    from .._logging import logger

    if args.kind == "lebel":
        from ..data.lebel import prepare_lebel

        out = prepare_lebel(args.root, args.out, subjects=args.subjects, stories=args.stories,
                            voxel_to_source=args.voxel_to_source, language_model=args.lm,
                            layer=args.layer, context_tokens=args.context_tokens,
                            splits=_parse_splits(args.splits), tr=args.tr,
                            resample_tr=args.resample_tr, sound_start=args.sound_start,
                            trim_start=args.trim_start, trim_end=args.trim_end,
                            tolerance=args.tolerance,
                            repeatability=None if args.repeatability == "none" else args.repeatability,
                            device=args.device, overwrite=args.overwrite, work_dir=args.work_dir,
                            keep_work=args.keep_work)
    elif args.kind == "meg-bids":
        from ..data.bids_meg import prepare_meg_bids

        out = prepare_meg_bids(args.root, args.out, subjects=args.subjects, task=args.task,
                               stories=args.stories, splits=_parse_splits(args.splits),
                               preprocessing=args.preprocessing, onsets=args.onsets,
                               event_id=_parse_pairs("--event-id", args.event_id, int),
                               stim_channel=args.stim_channel, language_model=args.lm,
                               layer=args.layer, context_tokens=args.context_tokens,
                               stimuli_dir=args.stimuli_dir, subjects_dir=args.subjects_dir,
                               trans=_parse_pairs("--trans", args.trans, str),
                               spacing=args.spacing,
                               repeatability=None if args.repeatability == "none" else args.repeatability,
                               device=args.device, n_jobs=args.n_jobs, overwrite=args.overwrite,
                               work_dir=args.work_dir, keep_work=args.keep_work, verbose=True)
    elif args.kind == "podcast":
        from ..data.podcast import prepare_podcast

        onset = args.onset if args.onset == "auto" else float(args.onset)
        out = prepare_podcast(args.root, args.out, subjects=args.subjects, signal=args.signal,
                              band=tuple(args.band), sfreq=args.sfreq, language_model=args.lm,
                              layer=args.layer, context_tokens=args.context_tokens,
                              electrode_types=tuple(args.electrode_types), space=args.space,
                              onset=onset, onset_event=args.onset_event, task=args.task,
                              audio=args.audio, transcript=args.transcript, phones=args.phones,
                              tolerance=args.tolerance, max_gap=args.max_gap,
                              overwrite=args.overwrite, work_dir=args.work_dir,
                              keep_work=args.keep_work, device=args.device, verbose=True)
        print(f"ECoG dataset written to {out}")
        return
    logger.debug("prepared %s", out)
    _print_summary(out)


def _add_prepare_args(p):
    """Options every `neurofuse prepare` kind shares: features, work folder, verbosity."""
    p.add_argument("--lm", default="gpt2", help="language model for the word features: a local "
                   "folder or a model in the local Hugging Face cache (never downloaded; "
                   "default gpt2)")
    p.add_argument("--layer", type=int, default=7, help="hidden layer of the word features (7)")
    p.add_argument("--context-tokens", type=int, default=20,
                   help="tokens of preceding context per word (20)")
    p.add_argument("--device", help="where to run the language model (default cpu)")
    p.add_argument("--work-dir", help="intermediate results, for resuming (default OUT.work)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    p.add_argument("--keep-work", action="store_true", help="keep the work folder after success")
    _add_verbosity(p)
    p.set_defaults(func=_cmd_prepare)


def _cmd_merge(args):
    from ..data.merge import merge_datasets

    out = merge_datasets(args.stores, args.out, stories=args.stories,
                         splits=_parse_splits(args.splits), subject_prefixes=args.prefix,
                         check_features=not args.no_check_features, atol=args.atol,
                         rtol=args.rtol, ground_truth=not args.no_ground_truth,
                         overwrite=args.overwrite)
    _print_summary(out)


def _cmd_ecog(args):
    from ..evaluation.ecog import run_ecog_validation

    v = run_ecog_validation(args.model, args.data, args.out, alternative=args.alternative,
                            identification_test=args.identification_test, seed=args.seed,
                            segment_seconds=args.segment_seconds,
                            n_permutations=args.n_permutations, n_trials=args.n_trials,
                            overwrite=args.overwrite)
    zs, rows = v["results"]["zero_shot"], v["results"]["trained"]
    print(f"Zero-shot: {zs['n_significant']} of {zs['n_electrodes']} electrodes significant; "
          f"segment identification significant for {zs['n_identification_significant']}.")
    print(f"{'method':<10} {'train fraction':>14} {'top-25% r':>10}")
    for r in rows:
        print(f"{r['method']:<10} {r['train_fraction']:>14g} {r['top25_r']:>10.3f}")
    print(f"Results: {Path(args.out) / 'results.json'}")


def _cmd_simulate_ecog(args):
    from ..simulation.ecog import simulate_ecog

    out = simulate_ecog(args.study, args.out, n_subjects=args.n_subjects,
                        story_minutes=args.story_minutes, cnr=args.cnr, seed=args.seed,
                        overwrite=args.overwrite)
    print(f"ECoG dataset written to {out}")


def _cmd_benchmark(args):
    from ..evaluation.benchmark import run_simulation_benchmark

    res = run_simulation_benchmark(args.out, study=args.study, fit_config=args.fit,
                                   meg_cnrs=args.meg_cnr, fmri_cnrs=args.fmri_cnr,
                                   methods=args.methods, seed=args.seed, n_jobs=args.n_jobs,
                                   device=args.device)
    from ..viz.figures import format_cnr

    print(f"{'method':<10} {'MEG CNR':>8} {'fMRI CNR':>8} {'temporal r':>11} {'spatial r':>10}")
    for r in res["source_recovery"]:
        print(f"{r['method']:<10} {format_cnr(r['meg_cnr']):>8} {format_cnr(r['fmri_cnr']):>8} "
              f"{r['temporal_r']:>11.3f} {r['spatial_r']:>10.3f}")
    print(f"Results: {Path(args.out) / 'results.json'}; report: {Path(args.out) / 'report.html'}")


def _cmd_fit(args):
    import os

    import torch

    from ..training.trainer import fit, load_fit_config

    train, encoder = load_fit_config(args.config)
    if args.epochs is not None:
        from ..training.trainer import TrainConfig

        train = TrainConfig.from_dict({**train.to_dict(), "max_epochs": args.epochs})
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:  # started by torchrun
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    try:
        history = fit(args.data, args.out, train_config=train, encoder_kwargs=encoder,
                      resume=args.resume, device=args.device)
    finally:
        if distributed:
            torch.distributed.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0 and history:
        last = history[-1]
        # model/ holds the best epoch of the final curriculum phase (losses of the two phases
        # are not comparable).
        final = [r for r in history if r["alpha_fmri"] == last["alpha_fmri"]]
        best = min(final, key=lambda r: r.get("val_total", r["train_total"]))
        print(f"Trained {last['epoch']} epochs; best epoch {best['epoch']} "
              f"(validation MEG r {best.get('val_meg_r', float('nan')):.3f}"
              + (f", fMRI r {best['val_fmri_r']:.3f}" if "val_fmri_r" in best else "")
              + f"). Model: {Path(args.out) / 'model'}; log: {Path(args.out) / 'history.csv'}")


def _cmd_predict(args):
    from ..models.predict import write_predictions

    written = write_predictions(args.model, args.stimulus, args.out, sfreq=args.sfreq,
                                subjects=args.subjects, overwrite=args.overwrite)
    for path in written:
        print(path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neurofuse",
        description="Cortical source activity at millisecond and millimetre resolution from a "
                    "joint MEG-fMRI encoding model.",
    )
    parser.add_argument("--version", action="version", version=f"neurofuse {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("simulate", help="simulate a naturalistic MEG+fMRI study with ground truth")
    p.add_argument("config", help="preset (demo, paper, tiny) or a .toml/.json StudyConfig file")
    p.add_argument("--out", required=True, help="dataset folder to create")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    p.add_argument("--seed", type=int, help="override the config's seed")
    p.add_argument("--meg-cnr", type=_cnr, help="override the MEG CNR (a number or 'inf')")
    p.add_argument("--fmri-cnr", type=_cnr, help="override the fMRI CNR (a number or 'inf')")
    p.add_argument("--n-jobs", type=int, default=None, help="parallel jobs for forward models")
    _add_verbosity(p)
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("info", help="describe a dataset (subjects, modalities, stories, CNRs)")
    p.add_argument("dataset", help="dataset folder")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_verbosity(p)
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("anatomy", help="describe the embedded template anatomy and sensors")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--spacing", default="oct6", help="source space (default oct6)")
    p.add_argument("--montage", default="standard_1020", help="EEG montage (MNE built-in)")
    _add_verbosity(p)
    p.set_defaults(func=_cmd_anatomy)

    p = sub.add_parser("fit", help="train the joint MEG-fMRI model on a dataset")
    p.add_argument("config", help="preset (paper, demo, tiny) or a .toml/.json file with "
                                  "[train] and [encoder] tables")
    p.add_argument("--data", required=True, help="dataset folder (from simulate or prepare)")
    p.add_argument("--out", required=True, help="output folder: model/, checkpoints/, history.csv")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run exactly")
    p.add_argument("--epochs", type=int, help="override max_epochs")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: CUDA when available)")
    _add_verbosity(p)
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("predict", help="source estimates and predicted data for a stimulus")
    p.add_argument("model", help="model folder (fit's OUT/model)")
    p.add_argument("--stimulus", required=True, help=".npy features, shape (n_times, d_stim)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--sfreq", type=float, help="sampling rate of the features (checked)")
    p.add_argument("--subjects", nargs="*", help="subjects to predict MEG/BOLD for (default all)")
    p.add_argument("--overwrite", action="store_true")
    _add_verbosity(p)
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("prepare", help="turn a real study on disk into a dataset store")
    psub = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    b = psub.add_parser("lebel", help="LeBel et al. 2023 fMRI (OpenNeuro ds003020)")
    b.add_argument("root", help="the ds003020 folder (with derivative/ and stimuli/)")
    b.add_argument("--out", required=True, help="dataset folder to create")
    b.add_argument("--subjects", nargs="+", help="e.g. UTS01 UTS02 (default: all)")
    b.add_argument("--stories", nargs="+", help="default: every story with an .hf5 file")
    b.add_argument("--voxel-to-source", help="folder with one voxel->source mapping folder per "
                                             "subject (default: data already on the surface)")
    b.add_argument("--splits", nargs="+", help="STORY=SPLIT pairs or a JSON file (default: "
                                               "wheretheressmoke=test, others train)")
    b.add_argument("--tr", type=float, default=2.0045, help="TR of the .hf5 data (2.0045 s)")
    b.add_argument("--resample-tr", type=_none_or_float, default=2.0,
                   help="resample the volumes onto this TR (default 2.0; 'none' keeps --tr)")
    b.add_argument("--sound-start", type=float, default=10.0,
                   help="audio starts this many s after the first volume (10)")
    b.add_argument("--trim-start", type=int, default=10, help="volumes trimmed at the start (10)")
    b.add_argument("--trim-end", type=int, default=10, help="volumes trimmed at the end (10)")
    b.add_argument("--tolerance", type=float, help="length tolerance in s (default one TR)")
    b.add_argument("--repeatability", choices=["repeat", "split-half", "none"], default="repeat",
                   help="estimator of the stored per-source repeatability")
    _add_prepare_args(b)

    b = psub.add_parser("meg-bids", help="a BIDS MEG study of story listening, with the "
                                         "paper's preprocessing (tSSS, filters, ICA, 50 Hz)")
    b.add_argument("root", help="the BIDS dataset folder (stimuli in ROOT/stimuli/<story>.wav "
                                "and <story>.TextGrid unless --stimuli-dir)")
    b.add_argument("--out", required=True, help="dataset folder to create")
    b.add_argument("--subjects", nargs="+", help="BIDS subject labels (default: all)")
    b.add_argument("--task", help="BIDS task (default: every task)")
    b.add_argument("--stories", nargs="+", help="default: every story found in the events")
    b.add_argument("--splits", nargs="+", help="STORY=SPLIT pairs or a JSON file")
    b.add_argument("--preprocessing", help=".toml/.json of MEGPreprocessing settings "
                                           "(default: the paper's)")
    b.add_argument("--onsets", choices=["auto", "annotations", "stim"], default="auto",
                   help="where story onsets come from (default: events, else the trigger channel)")
    b.add_argument("--event-id", nargs="+", help="STORY=CODE trigger codes")
    b.add_argument("--stim-channel", help="trigger channel (default: MNE's choice)")
    b.add_argument("--stimuli-dir", help="folder with <story>.wav and <story>.TextGrid")
    b.add_argument("--subjects-dir", help="FreeSurfer subjects (default: fsaverage template)")
    b.add_argument("--trans", nargs="+", help="SUBJECT=FILE head<->MRI transforms")
    b.add_argument("--spacing", default="oct6", help="source space (oct6: 8196 sources)")
    b.add_argument("--repeatability", choices=["repeat", "split-half", "none"], default="repeat",
                   help="estimator of the stored per-sensor repeatability")
    b.add_argument("--n-jobs", type=int, default=None, help="parallel jobs for forward models")
    _add_prepare_args(b)

    b = psub.add_parser("podcast", help="the 'Podcast' ECoG dataset (OpenNeuro ds005574) -> an "
                                        "ECoG dataset for `neurofuse ecog`")
    b.add_argument("root", help="the ds005574 folder")
    b.add_argument("--out", required=True, help="ECoG dataset folder to create")
    b.add_argument("--subjects", nargs="+", help="sub-01 or 01 ... (default: all)")
    b.add_argument("--signal", choices=["highgamma", "broadband", "ecogprep"], default="highgamma",
                   help="high-gamma envelope (default), broadband, or the authors' derivative")
    b.add_argument("--band", type=float, nargs=2, default=[70.0, 200.0], metavar=("LOW", "HIGH"),
                   help="high-gamma band in Hz (70 200)")
    b.add_argument("--sfreq", type=float, default=50.0, help="output rate (50 Hz)")
    b.add_argument("--electrode-types", nargs="+", default=["ECOG"],
                   help="channel types to keep (ECOG; also SEEG, DBS)")
    b.add_argument("--space", default="MNI152NLin2009aSym", help="electrode coordinate space")
    b.add_argument("--onset", default="auto", help="podcast onset in the recording: 'auto' "
                   "(events.tsv if present, else 0) or seconds")
    b.add_argument("--onset-event", help="which event marks the onset when there are several")
    b.add_argument("--task", default="podcast", help="BIDS task (podcast)")
    b.add_argument("--audio", help="audio file (default stimuli/podcast.wav)")
    b.add_argument("--transcript", help="word timings (default stimuli/podcast_transcript.csv)")
    b.add_argument("--phones", help="phone alignment (TextGrid or table); default: none, the "
                                    "phoneme stream is zeros")
    b.add_argument("--tolerance", type=float, default=2.0,
                   help="how much shorter than the audio a recording may be, s (2)")
    b.add_argument("--max-gap", type=float, default=30.0,
                   help="longest stretch without words in the transcript, s (30)")
    _add_prepare_args(b)

    p = sub.add_parser("merge", help="combine dataset stores (e.g. your MEG and LeBel's fMRI) "
                                     "into one, cropping shared stories to a common window")
    p.add_argument("stores", nargs="+", help="dataset folders to merge")
    p.add_argument("--out", required=True, help="merged dataset folder to create")
    p.add_argument("--stories", nargs="+", help="stories to keep (default: all)")
    p.add_argument("--splits", nargs="+", help="STORY=SPLIT pairs or a JSON file (default: the "
                                               "stores' splits, which must agree)")
    p.add_argument("--prefix", nargs="+", help="one subject-name prefix per store (for clashes)")
    p.add_argument("--no-check-features", action="store_true",
                   help="do not check that shared stories' features agree")
    p.add_argument("--atol", type=float, default=1e-3, help="feature agreement tolerance (abs)")
    p.add_argument("--rtol", type=float, default=1e-3, help="feature agreement tolerance (rel)")
    p.add_argument("--no-ground-truth", action="store_true", help="drop ground-truth arrays")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    _add_verbosity(p)
    p.set_defaults(func=_cmd_merge)

    p = sub.add_parser("ecog", help="validate source estimates on ECoG: zero-shot, segment "
                                    "identification, trained prediction vs stimulus ridge")
    p.add_argument("--model", required=True, help="model folder (fit's OUT/model or OUT), or a "
                                                  "simulated study's ground_truth/encoding")
    p.add_argument("--data", required=True, help="ECoG dataset (simulate-ecog or prepare podcast)")
    p.add_argument("--out", required=True, help="output folder: results.json, electrodes.json, "
                                                "figures/")
    p.add_argument("--alternative", choices=["greater", "two-sided"], default="greater",
                   help="zero-shot test direction (default: positive r only)")
    p.add_argument("--identification-test", choices=["shift", "binomial"], default="shift",
                   help="segment-identification test: against shifted copies (default) or the "
                        "paper's binomial test (anti-conservative: overlapping trials)")
    p.add_argument("--segment-seconds", type=float, default=60.0,
                   help="segment length of the identification test (60 s)")
    p.add_argument("--n-permutations", type=int, default=1000,
                   help="circular shifts of the zero-shot test (1000)")
    p.add_argument("--n-trials", type=int, default=1000,
                   help="segment-identification trials per electrode (1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of permutations and segments")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    _add_verbosity(p)
    p.set_defaults(func=_cmd_ecog)

    p = sub.add_parser("simulate-ecog", help="simulate ECoG of new subjects hearing a new story, "
                                             "from a simulated study's ground truth")
    p.add_argument("--study", required=True, help="a simulated study (neurofuse simulate)")
    p.add_argument("--out", required=True, help="ECoG dataset folder to create")
    p.add_argument("--n-subjects", type=int, default=3, help="ECoG subjects (3)")
    p.add_argument("--story-minutes", type=float, default=30.0, help="new story length (30)")
    p.add_argument("--cnr", type=_cnr, default=1.0, help="electrode CNR over responsive cortex")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    _add_verbosity(p)
    p.set_defaults(func=_cmd_simulate_ecog)

    p = sub.add_parser("demo", help="the main job: simulate, train, compare with ridge and "
                                    "classical inverses, write report.html")
    p.add_argument("--out", default="neurofuse-demo", help="output folder (default ./neurofuse-demo)")
    p.add_argument("--fit", help="training preset or .toml/.json file (default: the demo's, "
                                 "a small model that trains in minutes on 2 CPU cores)")
    p.add_argument("--device", help="training device (default: CUDA when available)")
    p.add_argument("--n-jobs", type=int, default=None, help="parallel jobs for forward models")
    _add_verbosity(p)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("benchmark", help="reproduce the paper's benchmarks")
    bsub = p.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    from ..evaluation.pipeline import INVERSE_METHODS

    b = bsub.add_parser("simulation", help="source recovery (Fig. 3) and prediction (Tables "
                                           "1-2) across MEG x fMRI noise levels")
    b.add_argument("--out", required=True, help="output folder (resumes what is there)")
    b.add_argument("--study", help="study preset (demo, paper, tiny) or .toml/.json "
                                   "StudyConfig (default: the demo's study, preset demo on "
                                   "oct5 sources)")
    b.add_argument("--fit", help="training preset or .toml/.json file (default: the demo's)")
    b.add_argument("--meg-cnr", type=_cnr, nargs="+", default=[math.inf, 1.0, 0.1],
                   help="MEG CNRs (default: inf 1 0.1)")
    b.add_argument("--fmri-cnr", type=_cnr, nargs="+", default=[math.inf, 0.3],
                   help="fMRI CNRs (default: inf 0.3)")
    b.add_argument("--methods", nargs="+", default=list(INVERSE_METHODS),
                   choices=list(INVERSE_METHODS), help="classical inverses to compare")
    b.add_argument("--seed", type=int, help="override the study's seed")
    b.add_argument("--device", help="training device (default: CUDA when available)")
    b.add_argument("--n-jobs", type=int, default=None, help="parallel jobs for forward models")
    _add_verbosity(b)
    b.set_defaults(func=_cmd_benchmark)
    return parser


def _cnr(text):
    try:
        val = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number or 'inf', got {text!r}") from None
    if not (val > 0) or math.isnan(val):
        raise argparse.ArgumentTypeError(f"expected a positive number or 'inf', got {text!r}")
    return val


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    set_log_level(_level(args))
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("neurofuse: interrupted; nothing half-written was left behind.", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as exc:
        if _level(args) == "debug":
            raise
        print(f"neurofuse {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

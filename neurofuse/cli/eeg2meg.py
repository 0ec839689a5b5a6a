"""``neurofuse eeg2meg``: the pretrained EEG→MEG generator and its paired world (system B).

Commands: ``simulate`` (a paired EEG + MEG world with EEG-only subjects, into a store),
``pretrain`` (the LaBraM encoder by masked patch modelling on EEG disjoint from the paired
data), ``import-encoder`` (a user's local LaBraM checkpoint in its place), ``fit`` (the
generator on a store's training subjects), ``synthesize`` (MEG from EEG epochs: a FIF file
with the real 306-channel info), ``evaluate`` (the generator, its ablations, the physics
transfer and ridge on held-out subjects: results.json and report.html), ``demo``.
"""

from __future__ import annotations

from pathlib import Path

from ._utils import add_command, add_group, add_resume, option, passed

NAME = "eeg2meg"
HELP = ("EEG->MEG generator (system B): simulate, pretrain, import-encoder, fit, synthesize, "
        "evaluate, demo")


def _cmd_simulate(args):
    from ..simulation.eeg_meg import EEGMEGWorldConfig, simulate_eeg_meg_world

    overrides = passed(args, "seed", "n_subjects", "n_eeg_only_subjects", "n_trials",
                       "cnr_eeg", "cnr_meg")
    cfg = EEGMEGWorldConfig.from_preset(args.preset, **overrides)
    path = simulate_eeg_meg_world(args.out, cfg, **passed(args, "overwrite"))
    print(f"Simulated {cfg.n_subjects} paired and {cfg.n_eeg_only_subjects} EEG-only subjects "
          f"({', '.join(cfg.tasks)}; EEG-only: {', '.join(cfg.eeg_only_tasks)}): {path}")


def _store_eeg(data, subjects=None, *, exclude_meg=False):
    import numpy as np

    from ..data.store import read_dataset

    ds = read_dataset(data)
    arrays = []
    for sub in ds.subjects:
        if subjects and sub not in subjects:
            continue
        if "eeg" not in ds.modalities(sub) or (exclude_meg and "meg" in ds.modalities(sub)):
            continue
        arrays += [np.asarray(ds.epochs(sub, "eeg", n), dtype=np.float32)
                   for n in ds.epoch_names(sub, "eeg")]
    if not arrays:
        raise ValueError(f"No EEG epochs to pretrain on in '{data}'"
                         + (" (subjects with MEG are left out: they are paired data)"
                            if exclude_meg else "") + ".")
    return arrays


def _cmd_pretrain(args):
    from ..systems.eeg2meg.pretrain import pretrain_encoder

    arrays = _store_eeg(args.data, getattr(args, "subjects", None), exclude_meg=True)
    config = {"epochs": args.epochs} if "epochs" in args else None
    path = pretrain_encoder(arrays, args.out, **passed(args, "encoder_config", "resume",
                                                       "device"), config=config)
    print(f"Pretrained encoder on {sum(len(a) for a in arrays)} EEG epochs: {path}")


def _cmd_import_encoder(args):
    from ..systems.eeg2meg.pretrain import import_labram_checkpoint

    path = import_labram_checkpoint(args.checkpoint, args.out, **passed(
        args, "patch_size", "conv_stride", "conv_groups", "n_heads", "layout", "overwrite"))
    print(f"Imported the LaBraM checkpoint as an encoder folder: {path} (pass it to "
          "fit/evaluate --encoder)")


def _cmd_fit(args):
    from ..systems.eeg2meg.trainer import fit

    history = fit(args.data, args.out, encoder=args.encoder, config=args.config,
                  **passed(args, "resume"))
    if history:
        last = history[-1]
        val = f"; validation loss {last['val_loss']:.4f}" if "val_loss" in last else ""
        print(f"Trained {last['epoch']} epochs: training loss {last['train_loss']:.4f}{val}. "
              f"Model: {Path(args.out) / 'model'}; log: {Path(args.out) / 'history.csv'}")


def _cmd_synthesize(args):
    import mne

    from .._io import atomic_path
    from ..data.store import read_dataset
    from ..systems.eeg2meg.model import synthesize

    if str(args.eeg).endswith(".fif"):
        epochs = mne.read_epochs(args.eeg, verbose="error")
    else:
        ds = read_dataset(args.eeg)
        if "subject" not in args or "task" not in args:
            raise ValueError("With a store as EEG, pass --subject and --task (the epoch set).")
        epochs = ds.to_mne_epochs(args.subject, "eeg", args.task)
    meg = synthesize(args.model, epochs, as_epochs=True, **passed(args, "seed", "device",
                                                                "n_samples"))
    if not str(args.out).endswith("-epo.fif"):
        raise ValueError(f"'--out' must end in -epo.fif (MNE's epochs file name), got "
                         f"{args.out!r}.")
    with atomic_path(args.out, what="synthetic MEG") as tmp:
        meg.save(tmp, overwrite=True, verbose="error")
    print(f"Synthesized {len(meg)} MEG epochs ({len(meg.ch_names)} channels): {args.out}")


def _cmd_evaluate(args):
    from ..evaluation.eeg2meg_pipeline import evaluate_eeg2meg, summary_line

    results = evaluate_eeg2meg(args.data, args.out, **passed(
        args, "encoder", "fit_config", "methods", "n_runs", "source_imaging", "resume"))
    print(f"{summary_line(results)}. Report: {Path(args.out) / 'report.html'}; results: "
          f"{Path(args.out) / 'results.json'}")


def _cmd_demo(args):
    from ..evaluation.eeg2meg_pipeline import run_eeg2meg_demo, summary_line

    out = getattr(args, "out", "neurofuse-eeg2meg-demo")
    results = run_eeg2meg_demo(out)
    print(f"{summary_line(results)} ({results['seconds']:.0f} s). Report: "
          f"{Path(out) / 'report.html'}")


def add_parser(subparsers):
    """Register ``neurofuse eeg2meg`` and its commands."""
    from ._utils import LazyChoices

    sub = add_group(subparsers, NAME, help=HELP, doc=__doc__, dest="eeg2meg_command")
    presets = LazyChoices("neurofuse.simulation.eeg_meg.config:PRESETS")
    methods = LazyChoices("neurofuse.evaluation.eeg2meg_pipeline:METHODS")

    p = add_command(sub, "simulate", _cmd_simulate,
                    target="neurofuse.simulation.eeg_meg.world:simulate_eeg_meg_world",
                    help="simulate a paired EEG + MEG world (and EEG-only subjects) into a "
                         "store")
    p.add_argument("preset", choices=presets, help="size preset: tiny, demo or paper")
    p.add_argument("--out", required=True, help="store folder")
    for flag, typ, what in (("--seed", int, "activity and noise seed"),
                            ("--n-subjects", int, "paired subjects"),
                            ("--n-eeg-only-subjects", int, "EEG-only subjects"),
                            ("--n-trials", int, "trials per class"),
                            ("--cnr-eeg", float, "EEG contrast-to-noise ratio"),
                            ("--cnr-meg", float, "MEG contrast-to-noise ratio")):
        option(p, flag, type=typ, keyword=False, help=what)
    option(p, "--overwrite", action="store_true", help="replace an existing store")

    p = add_command(sub, "pretrain", _cmd_pretrain,
                    target="neurofuse.systems.eeg2meg.pretrain:pretrain_encoder",
                    help="pretrain the LaBraM encoder (masked patch modelling) on a store's "
                         "EEG-only subjects")
    p.add_argument("--data", required=True, help="store with EEG epochs (subjects with MEG "
                                                 "are left out)")
    p.add_argument("--out", required=True, help="output folder: model/, checkpoints/")
    option(p, "--encoder", dest="encoder_config", help="LaBraM preset (small, base, ...)")
    option(p, "--epochs", type=int, keyword=False, help="pretraining epochs")
    option(p, "--subjects", nargs="+", keyword=False, help="only these subjects")
    option(p, "--device", help="torch device")
    add_resume(p)

    p = add_command(sub, "import-encoder", _cmd_import_encoder,
                    target="neurofuse.systems.eeg2meg.pretrain:import_labram_checkpoint",
                    help="a local LaBraM checkpoint (.pth/.safetensors) as an encoder folder, "
                         "in place of pretraining")
    p.add_argument("checkpoint", help="local checkpoint file (nothing is downloaded)")
    p.add_argument("--out", required=True, help="output folder: model/")
    option(p, "--patch-size", type=int, help="samples per patch it was trained with")
    option(p, "--conv-stride", type=int, help="stride of its first patch convolution")
    option(p, "--conv-groups", type=int, keyword=False,
           help="groups of its patch convolutions' GroupNorms (not stored in weights; "
                "LaBraM's 4 when it divides the channels)")
    option(p, "--n-heads", type=int, keyword=False,
           help="attention heads, for a checkpoint without q/k norms (not inferable)")
    option(p, "--layout", choices=("auto", "labram", "braindecode", "neurofuse"),
           help="key layout")
    option(p, "--overwrite", action="store_true", help="replace an existing out/model")

    p = add_command(sub, "fit", _cmd_fit, target="neurofuse.systems.eeg2meg.trainer:fit",
                    help="train the generator on a store's paired training subjects")
    p.add_argument("config", help="preset (paper, demo, demo-reflect, demo-cb128, tiny) or a "
                                  ".toml/.json file")
    p.add_argument("--data", required=True, help="store with paired eeg/meg epoch sets")
    p.add_argument("--encoder", required=True,
                   help="pretrained encoder folder (neurofuse eeg2meg pretrain or "
                        "import-encoder), or a LaBraM "
                        "preset with model encoder='scratch'")
    p.add_argument("--out", required=True, help="output folder")
    add_resume(p)

    p = add_command(sub, "synthesize", _cmd_synthesize,
                    target="neurofuse.systems.eeg2meg.model:synthesize",
                    help="synthesize MEG epochs (FIF, real 306-channel info) from EEG epochs")
    p.add_argument("model", help="generator folder (fit's OUT/model)")
    p.add_argument("--eeg", required=True, help="EEG epochs: an -epo.fif file or a store")
    option(p, "--subject", keyword=False, help="subject, with a store")
    option(p, "--task", keyword=False, help="epoch set, with a store")
    p.add_argument("--out", required=True, help="output -epo.fif file")
    option(p, "--seed", type=int, help="sampler seed (default: reproducible, seed 0 per batch)")
    option(p, "--n-samples", type=int,
           help="stochastic samples averaged (default: the model's posterior_samples; 0: one "
                "DDIM run from z_T = 0)")
    option(p, "--device", help="torch device")

    p = add_command(sub, "evaluate", _cmd_evaluate,
                    target="neurofuse.evaluation.eeg2meg_pipeline:evaluate_eeg2meg",
                    help="the generator, its ablations, physics and ridge on held-out subjects:"
                         " results.json and report.html")
    p.add_argument("--data", required=True, help="store with paired eeg/meg epoch sets")
    p.add_argument("--out", required=True, help="output folder (finished steps are reused)")
    option(p, "--encoder", help="pretrained encoder folder (default: pretrain one)")
    option(p, "--fit", dest="fit_config", help="training preset or .toml/.json file")
    option(p, "--methods", nargs="+", choices=methods, help="methods to score")
    option(p, "--n-runs", type=int, help="decoding CV repetitions (paper: 10)")
    option(p, "--no-source-imaging", dest="source_imaging", action="store_false",
           help="skip dSPM source imaging (it needs forwards and true sources: simulations)")

    p = add_command(sub, "demo", _cmd_demo,
                    target="neurofuse.evaluation.eeg2meg_pipeline:run_eeg2meg_demo",
                    help="world -> pretraining -> generator -> scores beside physics and ridge")
    option(p, "--out", keyword=False, help="output folder")
    return sub

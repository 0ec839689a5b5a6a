"""``neurofuse meg2fmri``: MEG→fMRI slice synthesis with a conditional GAN (system C).

Commands: ``prepare`` (pair MEG events with fMRI slices), ``fit``, ``synthesize`` (NIfTI),
``evaluate`` (held-out subjects, beside the mean slice, ridge, physics and shuffled MEG),
``demo``.

Whole volumes and sequences of volumes (beyond the paper): ``--target volume`` or
``--target sequence --frames N [--frame-stride S]`` on ``prepare`` and ``evaluate``; ``fit``
and ``synthesize`` follow the shape of the paired set (3-D networks, 4-D NIfTI files on the
grid's affine).
"""

from __future__ import annotations

import json
from pathlib import Path

from ._utils import add_command, add_device, add_group, add_resume, option, passed

NAME = "meg2fmri"
HELP = "MEG->fMRI slice cGAN (MEG2fMRI): prepare, fit, synthesize, evaluate, demo"


def _pairing(args):
    out = None
    if "pairing" in args:
        text = args.pairing
        path = Path(text).expanduser()
        out = json.loads(path.read_text()) if path.is_file() else json.loads(text)
    # --target / --frames / --frame-stride override the same fields of --pairing.
    extra = {key: getattr(args, dest) for key, dest in (
        ("target", "target"), ("n_frames", "frames"), ("frame_stride", "frame_stride"))
        if dest in args}
    return {**(out or {}), **extra} if extra else out


def _add_target_options(p):
    option(p, "--target", keyword=False, choices=("slice", "volume", "sequence"),
           help="what each event is paired with: a resized slice (the paper, default), the "
                "whole volume on the native grid, or a sequence of volumes")
    option(p, "--frames", type=int, keyword=False, help="volumes per event with --target "
           "sequence (PairingConfig.n_frames)")
    option(p, "--frame-stride", type=int, keyword=False, help="volumes between frames with "
           "--target sequence (default 1)")


def _cmd_prepare(args):
    from ..data import read_dataset
    from ..systems.meg2fmri import PairingConfig, concatenate_paired, pair_subject

    ds = read_dataset(args.data)
    config = PairingConfig.from_dict(_pairing(args) or {})
    subjects = getattr(args, "subjects", None) or [
        s for s in ds.subjects if {"meg", "fmri-volume"} <= set(ds.modalities(s))]
    event = getattr(args, "event", "word")
    onsets = {s: ds.events(s, event) for s in ds.stories}
    stories = getattr(args, "stories", None)
    paired = concatenate_paired([pair_subject(ds, s, onsets, config, stories=stories)
                                 for s in subjects])
    path = paired.save(args.out)
    print(f"Paired {len(paired)} events of {len(subjects)} subjects: {path}")


def _cmd_fit(args):
    import dataclasses

    from ..systems.meg2fmri import fit, read_paired
    from ..systems.meg2fmri.trainer import load_fit_config

    config, model_config = args.config, None
    if "device" in args:  # --device overrides the config's TrainConfig.device
        config, model_config = load_fit_config(args.config)
        config = dataclasses.replace(config, device=args.device)
    train = read_paired(args.train)
    val = read_paired(args.val) if "val" in args else None
    history = fit(train.X, train.Y, args.out, X_val=None if val is None else val.X,
                  Y_val=None if val is None else val.Y, config=config,
                  model_config=model_config, **passed(args, "resume"))
    if history:
        last = history[-1]
        print(f"Trained {last['epoch']} epochs"
              + (f"; last validation MSE {last['val_mse']:.4f}" if "val_mse" in last else "")
              + f". Model: {Path(args.out) / 'model'}; log: {Path(args.out) / 'history.csv'}")


def _cmd_synthesize(args):
    import gzip

    import numpy as np

    from .._io import atomic_path, make_dir
    from ..data import read_dataset
    from ..systems.meg2fmri import read_paired, synthesize
    from ..systems.meg2fmri.export import slices_to_nifti

    pairs = read_paired(args.pairs)
    images = synthesize(args.model, pairs.X, **passed(args, "device"))
    ds = read_dataset(args.data) if "data" in args else None
    out = make_dir(args.out, what="NIfTI output folder")

    def write(path, img):
        with atomic_path(path, what="NIfTI image") as tmp:
            Path(tmp).write_bytes(gzip.compress(img.to_bytes()))
        print(path)

    if images.ndim > 3:  # whole volumes (n, X, Y, Z) or sequences (n, F, X, Y, Z)
        from ..systems.meg2fmri import PairingConfig
        from ..systems.meg2fmri.export import volumes_to_nifti

        cfg = PairingConfig.from_dict(pairs.config)
        for subject in pairs.subjects:
            idx = np.flatnonzero(pairs.subject == subject)
            affine = ds.affine(subject, "fmri-volume") if ds is not None else np.eye(4)
            if images.ndim == 4:  # one 4-D file per subject, one volume per event
                write(out / f"{subject}_synthesized.nii.gz",
                      volumes_to_nifti(images[idx], affine))
                continue
            tr = None if ds is None else ds.tr * cfg.frame_stride
            for i in idx:  # one 4-D file per event, its frames in time
                write(out / f"{subject}_event-{i:04d}_synthesized.nii.gz",
                      volumes_to_nifti(images[i], affine, tr=tr))
        return
    for subject in pairs.subjects:
        for z in np.unique(pairs.slice[pairs.subject == subject]):
            idx = np.flatnonzero((pairs.subject == subject) & (pairs.slice == z))
            if ds is not None:
                affine = ds.affine(subject, "fmri-volume")
                shape = ds.spatial_shape(subject, "fmri-volume")
            else:  # no store: slices in their own pixel grid
                affine, shape = np.eye(4), pairs.Y.shape[1:] + (1,)
            path = out / f"{subject}_slice-{int(z):02d}_synthesized.nii.gz"
            write(path, slices_to_nifti(images[idx], affine, shape, int(z)))


def _cmd_evaluate(args):
    from ..evaluation.meg2fmri import evaluate_meg2fmri, summary_line

    results = evaluate_meg2fmri(args.data, args.out, pairing=_pairing(args), **passed(
        args, "held_out", "event", "fit_config", "physics", "seed"))
    print(f"neurofuse meg2fmri evaluate: {summary_line(results)} Report: "
          f"{Path(args.out) / 'report.html'}; results: {Path(args.out) / 'results.json'}")


def _cmd_demo(args):
    from ..evaluation.meg2fmri import run_meg2fmri_demo

    res = run_meg2fmri_demo(**passed(args, "out", "fit_config", "n_jobs"))
    print(f"neurofuse meg2fmri demo: {res['summary']} Report: {res['report']}")


def add_parser(subparsers):
    """Register ``neurofuse meg2fmri`` and its commands."""
    sub = add_group(subparsers, NAME, help=HELP, doc=__doc__, dest="meg2fmri_command")

    p = add_command(sub, "prepare", _cmd_prepare,
                    target="neurofuse.systems.meg2fmri.pairing:pair_subject",
                    help="pair MEG events with fMRI slices (paper §3.2) into one .npz")
    p.add_argument("--data", required=True, help="dataset with 'meg' and 'fmri-volume' "
                                                 "subjects and event onsets")
    p.add_argument("--out", required=True, help="output .npz (a paired set)")
    option(p, "--subjects", nargs="+", keyword=False, help="subjects (default: every subject "
           "with both modalities)")
    option(p, "--stories", nargs="+", help="stories to pair (default: all with events)")
    option(p, "--event", keyword=False, help="event table of the store (default: word)")
    option(p, "--pairing", keyword=False, help="PairingConfig fields as JSON text or a .json "
           "file, e.g. '{\"slice_selection\": \"event\"}'")
    _add_target_options(p)

    p = add_command(sub, "fit", _cmd_fit, target="neurofuse.systems.meg2fmri.trainer:fit",
                    help="train the cGAN on paired sets (slices, or volumes/sequences: "
                         "the 3-D networks)")
    p.add_argument("config", help="preset (paper, demo, tiny) or a .toml/.json file with "
                                  "[train] and [model] tables")
    p.add_argument("--train", required=True, help="training pairs (.npz from prepare)")
    option(p, "--val", keyword=False, help="validation pairs (.npz), for model selection")
    p.add_argument("--out", required=True, help="output folder: model/, checkpoints/, "
                                                "history.csv")
    add_resume(p)
    add_device(p, help="training device: cpu, cuda, cuda:1 ... (default: the config's "
                       "TrainConfig.device, else a CUDA GPU when available, else the CPU)",
               keyword=False)

    p = add_command(sub, "synthesize", _cmd_synthesize,
                    target="neurofuse.systems.meg2fmri.model:synthesize",
                    help="generate slices for paired MEG vectors, written as NIfTI")
    p.add_argument("model", help="model folder (fit's OUT/model)")
    p.add_argument("--pairs", required=True, help="paired set (.npz) whose MEG to use")
    option(p, "--data", keyword=False, help="the store the pairs came from (gives each "
           "subject's volume affine; without it the slices get an identity affine)")
    p.add_argument("--out", required=True, help="output folder for the .nii.gz files")
    add_device(p, help="where to run the generator: cpu, cuda, cuda:1 ... (default: the CPU)")

    p = add_command(sub, "evaluate", _cmd_evaluate,
                    target="neurofuse.evaluation.meg2fmri:evaluate_meg2fmri",
                    help="score the cGAN and its baselines on held-out subjects: "
                         "results.json and report.html")
    p.add_argument("--data", required=True, help="dataset with paired subjects (e.g. "
                                                 "neurofuse simulate study meg2fmri-demo)")
    p.add_argument("--out", required=True, help="output folder (resumes what is there)")
    option(p, "--held-out", nargs="+", help="test subjects")
    option(p, "--event", help="event table whose onsets make the pairs")
    option(p, "--pairing", keyword=False, help="PairingConfig fields as JSON text or a .json "
           "file")
    _add_target_options(p)
    option(p, "--fit", dest="fit_config", help="training preset or .toml/.json file")
    option(p, "--no-physics", dest="physics", action="store_false",
           help="skip the physics baseline")
    option(p, "--seed", type=int, help="seed of the shuffled-MEG control")

    p = add_command(sub, "demo", _cmd_demo,
                    target="neurofuse.evaluation.meg2fmri:run_meg2fmri_demo",
                    help="simulate the meg2fmri-demo world, train, compare, write report.html")
    option(p, "--out", help="output folder")
    option(p, "--fit", dest="fit_config", help="training preset or .toml/.json file")
    option(p, "--n-jobs", type=int, help="parallel jobs for forward models")
    return sub

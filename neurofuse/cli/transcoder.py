"""``neurofuse transcoder``: the cyclic EEG↔fMRI transcoder and its simulator (system D).

Commands: ``simulate`` (a simultaneous EEG–fMRI data set, resumable), ``fit`` (group level,
or ``--level subject`` from a group model), ``transcode`` (one run: estimated sources as
``mne.VolSourceEstimate`` and NIfTI, transcoded EEG as .npy and fMRI as NIfTI), ``evaluate``
(the transcoder beside the physics baseline and MNE / dSPM / eLORETA with the true lead
field: results.json and report.html), ``demo``.

``fit``, ``transcode`` and ``evaluate`` also take a dataset store with ``eeg`` and
``fmri-volume`` runs (``neurofuse data prepare eeg-fmri-bids``; ``--subject`` picks one);
there ``evaluate`` scores only the transcodings: recordings have no ground truth.
"""

from __future__ import annotations

from pathlib import Path

from ._utils import add_command, add_device, add_group, add_resume, option, passed

NAME = "transcoder"
HELP = "EEG<->fMRI cyclic transcoder (system D): simulate, fit, transcode, evaluate, demo"


def _cmd_simulate(args):
    from ..simulation.eeg_fmri import make_config, simulate_dataset

    overrides = {"seed": args.seed} if "seed" in args else {}
    cfg = make_config(getattr(args, "scenario", "noise_free"), args.preset, **overrides)
    ds = simulate_dataset(args.out, cfg, getattr(args, "n_runs", 6),
                          **passed(args, "n_test"))
    split = ds.manifest["split"]
    print(f"Simulated {len(ds.runs)} runs ({len(split['train'])} train, {len(split['test'])} "
          f"test) of {cfg.grid_shape} voxels, {ds.manifest['n_sources']} sources: {ds.path}")


def _open(args):
    from ..systems.transcoder import open_eeg_fmri

    return open_eeg_fmri(args.data, getattr(args, "subject", None))


def _cmd_fit(args):
    import dataclasses

    ds = _open(args)
    level = getattr(args, "level", "group")
    if level == "subject":
        from ..systems.transcoder import fit_subject


        if "group" not in args:
            raise ValueError("'--group' is required with '--level subject': pass the group "
                             "model folder (OUT/model of 'neurofuse transcoder fit').")
        if "device" in args:
            raise ValueError("'--device' is not supported with '--level subject' yet; set "
                             "'device' in the [train] table of CONFIG instead.")
        history = fit_subject(ds, args.group, args.out, config=args.config,
                              **passed(args, "resume"))
    else:
        from ..systems.transcoder import fit, load_fit_config

        config = args.config
        if "device" in args:  # --device overrides the set-up's TrainConfig.device
            train, model_kwargs, data_cfg = load_fit_config(args.config)
            config = {"preset": "paper",
                      "train": dataclasses.replace(train, device=args.device).to_dict(),
                      "model": model_kwargs, "data": data_cfg.to_dict()}
        history = fit(ds, args.out, config=config, **passed(args, "resume"))
    if history:
        last = history[-1]
        val = f"; validation loss {last['val_loss']:.4f}" if "val_loss" in last else ""
        print(f"Trained {last['epoch']} epochs ({level} level): training loss "
              f"{last['train_loss']:.4f}{val}. Model: {Path(args.out) / 'model'}; log: "
              f"{Path(args.out) / 'history.csv'}")


def _run_name(ds, text):
    names = list(ds.runs)
    if text in names:
        return text
    try:
        i = int(text)
    except ValueError:
        i = None
    if i is not None and f"run-{i:03d}" in names:
        return f"run-{i:03d}"
    raise ValueError(f"'--run' must be a run of '{ds.path}' (a number or one of "
                     f"{names[:3]}{' ...' if len(names) > 3 else ''}), got {text!r}; "
                     f"test runs: {ds.manifest['split']['test']}.")


def _write_series(vol, affine, step, fname):
    import numpy as np

    from ..baselines.inverse.volume import estimate_to_nifti

    shape = vol.shape[:3]
    estimate_to_nifti(np.asarray(vol).reshape(-1, vol.shape[-1]), np.arange(np.prod(shape)),
                      shape, affine, tr=step, fname=fname)


def _transcode_recorded(ds, predict, pred, run, out):
    """A store's run: fMRI on its grid, EEG as .npy, sources on the model's pooled grid."""
    import numpy as np

    from .._io import save_npy

    data, tr = predict.data, ds.config.tr
    affine = np.asarray(ds.manifest["grid"]["affine"], float)
    pool = np.asarray(data.pool, float)
    pooled = affine.copy()  # pooled voxel i: voxels [i p, (i + 1) p), centre i p + (p - 1) / 2
    pooled[:3, :3] = affine[:3, :3] * pool
    pooled[:3, 3] = affine[:3, :3] @ ((pool - 1) / 2) + affine[:3, 3]
    written = []
    for path, vol in pred["sources"].items():
        fname = out / f"{run}_sources-from-{path}.nii.gz"
        _write_series(vol, pooled, tr / data.steps_per_tr, fname)
        written.append(str(fname))
    fname = out / f"{run}_eeg-from-fmri.npy"
    save_npy(fname, np.asarray(pred["eeg"], np.float32), what="transcoded EEG")
    written.append(str(fname))
    fname = out / f"{run}_fmri-from-eeg.nii.gz"
    _write_series(pred["fmri"], affine, tr, fname)
    written.append(str(fname))
    return written


def _cmd_transcode(args):
    import numpy as np

    from .._io import make_dir, save_npy
    from ..evaluation.transcoder import write_source_estimate
    from ..evaluation.transcoder_pipeline import model_predictor

    ds = _open(args)
    run = _run_name(ds, args.run)
    predict = model_predictor(args.model, ds)
    pred = predict(ds, run)
    out = make_dir(args.out, what="transcoded output folder")
    if not getattr(ds, "has_truth", True):
        print("\n".join(_transcode_recorded(ds, predict, pred, run, out)))
        return
    written = []
    for path, est in pred["sources"].items():
        stem = out / f"{run}_sources-from-{path}"
        write_source_estimate(est, ds, stem, kind="stc")
        written.append(f"{stem}-vl.stc")
        write_source_estimate(est, ds, f"{stem}.nii.gz", kind="nifti")
        written.append(f"{stem}.nii.gz")
    save_npy(out / f"{run}_eeg-from-fmri.npy", np.asarray(pred["eeg"], np.float32),
             what="transcoded EEG")
    written.append(str(out / f"{run}_eeg-from-fmri.npy"))
    fmri = pred["fmri"].reshape(-1, pred["fmri"].shape[-1])[ds.truth("source_voxels")]
    fname = out / f"{run}_fmri-from-eeg.nii.gz"
    _write_fmri(ds, fmri, fname)
    written.append(str(fname))
    print("\n".join(written))


def _write_fmri(ds, fmri, fname):
    import numpy as np

    from ..baselines.inverse.volume import estimate_to_nifti

    grid = ds.manifest["grid"]
    estimate_to_nifti(fmri, ds.truth("source_voxels"), grid["shape"],
                      np.asarray(grid["affine"]), tr=ds.config.tr, fname=fname)


def _cmd_evaluate(args):
    from ..evaluation.transcoder_pipeline import evaluate_transcoder_folder, summary_line

    kw = passed(args, "model", "fit_config", "methods", "against", "device", "subject",
                "group")
    if "source_truth" in args:
        kw["source_truth"] = args.source_truth
    results = evaluate_transcoder_folder(args.data, args.out, **kw)
    print(f"neurofuse transcoder evaluate: {summary_line(results)} Report: "
          f"{Path(args.out) / 'report.html'}; results: {Path(args.out) / 'results.json'}")


def _cmd_demo(args):
    from ..evaluation.transcoder_pipeline import run_transcoder_demo

    res = run_transcoder_demo(**passed(args, "out", "fit_config", "n_runs", "size"))
    print(f"neurofuse transcoder demo ({res['seconds']:.0f} s): {res['summary']} Report: "
          f"{res['report']}")


def _add_subject(p, keyword=False):
    option(p, "--subject", keyword=keyword,
           help="the store's subject (default: its only one with EEG and fMRI)")


def add_parser(subparsers):
    """Register ``neurofuse transcoder`` and its commands."""
    from ._utils import LazyChoices

    sub = add_group(subparsers, NAME, help=HELP, doc=__doc__, dest="transcoder_command")
    scenarios = LazyChoices("neurofuse.simulation.eeg_fmri.config:SCENARIOS")
    sizes = LazyChoices("neurofuse.simulation.eeg_fmri.config:SIZES")

    p = add_command(sub, "simulate", _cmd_simulate,
                    target="neurofuse.simulation.eeg_fmri.dataset:simulate_dataset",
                    help="simulate a simultaneous EEG-fMRI data set (paper §4.2); run again "
                         "to resume")
    p.add_argument("preset", choices=sizes, help="size preset: tiny, demo or paper")
    p.add_argument("--out", required=True, help="data set folder")
    option(p, "--scenario", keyword=False, choices=scenarios,
           help="noise_free (default), interleave5_noise_free or snr10")
    option(p, "--seed", type=int, keyword=False, help="simulation seed (EEGfMRIConfig.seed)")
    option(p, "--n-runs", type=int, keyword=False, help="total runs (default 6; paper 319)")
    option(p, "--n-test", type=int, help="held-out runs (the last ones)")

    p = add_command(sub, "fit", _cmd_fit, target="neurofuse.systems.transcoder.trainer:fit",
                    help="train the transcoder on a data set's training runs")
    p.add_argument("config", help="preset (paper, demo, tiny) or a .toml/.json file")
    p.add_argument("--data", required=True, help="data set (neurofuse transcoder simulate) "
                                                 "or dataset store with eeg and fmri-volume")
    p.add_argument("--out", required=True, help="output folder: model/, checkpoints/, "
                                                "history.csv")
    _add_subject(p)
    option(p, "--level", keyword=False, choices=("group", "subject"),
           help="group (default) or subject (needs --group)")
    option(p, "--group", keyword=False, help="group model folder, for --level subject")
    add_resume(p)
    add_device(p, help="training device: cpu, cuda, cuda:1 ... (default: the config's)",
               keyword=False)

    p = add_command(sub, "transcode", _cmd_transcode,
                    target="neurofuse.evaluation.transcoder_pipeline:model_predictor",
                    help="transcode one run: sources (.stc, .nii.gz), EEG (.npy), fMRI "
                         "(.nii.gz)")
    p.add_argument("model", help="group model folder (fit's OUT/model)")
    p.add_argument("--data", required=True, help="data set")
    p.add_argument("--run", required=True, help="run number or name (e.g. 5 or run-005; a "
                                                "store's story)")
    p.add_argument("--out", required=True, help="output folder")
    _add_subject(p)

    p = add_command(sub, "evaluate", _cmd_evaluate,
                    target="neurofuse.evaluation.transcoder_pipeline:evaluate_transcoder_folder",
                    help="score the transcoder, physics, MNE, dSPM and eLORETA on held-out "
                         "runs: results.json and report.html")
    p.add_argument("--data", required=True, help="data set or dataset store (on a store: "
                                                 "transcodings only, no ground truth)")
    p.add_argument("--out", required=True, help="output folder (a fit in OUT/fit resumes)")
    _add_subject(p, keyword=True)
    option(p, "--model", help="score this model instead of fitting one (group level, or "
                              "subject level: sources only)")
    option(p, "--group", help="for a subject-level --model: its group model (default: the "
                              "one its model.json records)")
    option(p, "--fit", dest="fit_config", help="training preset or .toml/.json file")
    option(p, "--methods", nargs="+", help="baselines among physics MNE dSPM eLORETA")
    option(p, "--source-truth", nargs="+", keyword=False, choices=("latent", "erp"),
           help="source truths to score against (default: both)")
    option(p, "--against", choices=("clean", "observed"), help="truth of fMRI and EEG")
    add_device(p, help="training device when fitting (default: the config's)")

    p = add_command(sub, "demo", _cmd_demo,
                    target="neurofuse.evaluation.transcoder_pipeline:run_transcoder_demo",
                    help="two scenarios of the small grid: simulate, fit, evaluate, report")
    option(p, "--out", help="output folder")
    option(p, "--fit", dest="fit_config", help="training preset or .toml/.json file")
    option(p, "--n-runs", type=int, help="runs per scenario (the last held out)")
    option(p, "--size", choices=sizes, help="simulator size preset")
    return sub

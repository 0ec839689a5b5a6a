"""Which source-layer prior recovers the simulated sources? Prints one JSON object.

Trains the joint model on one simulated study (the demo's unless ``--data`` is given) once per
variant and scores each on the held-out stories:

* source recovery against the ground truth (temporal and spatial r, paper Fig. 3), beside
  fMNE's on the same stories (``--no-fmne`` skips it);
* held-out MEG and fMRI r per subject (Tables 1-2 style);
* the validation loss: the only number of these a user without ground truth can see, and
  the one :data:`neurofuse.systems.joint.trainer.FIT_PRESETS` ``"demo"`` was chosen by.

Variants are ``name=fwhm`` (``none`` for the paper's unsmoothed source layer; ``mixture`` for
the learned mixture of widths, ``source_prior='mixture'``, whose chosen weights are reported
under ``source_prior``), optionally with
``+denoise`` (train on the fMRI ridge ceilings' predictions, the paper's footnote 2, which
needs ``--ridge DIR/ridge`` from a demo or benchmark run). Every variant starts from the same
seed and otherwise uses the demo's training set-up (:data:`~neurofuse.evaluation.pipeline.DEMO_FIT`).

    python benchmarks/bench_source_prior.py --work /tmp/prior                    # ~25 min
    python benchmarks/bench_source_prior.py --work W --variants none 15 --epochs 20
    python benchmarks/bench_source_prior.py --work W --variants none --diagnostics
    python benchmarks/bench_source_prior.py --work W --data WORLD --variants 0 5 10 15 20 30 mixture
    python benchmarks/bench_source_prior.py --work W --data WORLD --variants 15 --patience 1000
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path


def _variant(spec):
    fwhm, _, extra = spec.partition("+")
    if extra not in ("", "denoise"):
        raise argparse.ArgumentTypeError(f"variant {spec!r}: expected FWHM_MM, 'none', "
                                         "'mixture' or 'mixture-training', or one of these "
                                         "followed by '+denoise'")
    if fwhm == "none":
        return spec, None, extra == "denoise"
    if fwhm in ("mixture", "mixture-training"):
        return spec, fwhm, extra == "denoise"
    try:
        return spec, float(fwhm), extra == "denoise"
    except ValueError:
        raise argparse.ArgumentTypeError(f"variant {spec!r}: {fwhm!r} is not a number of mm or "
                                         "'none'") from None


def _diagnostics(ds, model):
    """Where the model's sources go wrong: post-hoc smoothing, and MNE of its own MEG."""
    import numpy as np
    import scipy.sparse

    from neurofuse.anatomy import source_smoother
    from neurofuse.baselines import inverse as inv
    from neurofuse.evaluation.metrics import temporal_r
    from neurofuse.systems.joint.predict import predict_sources

    story = ds.splits["test"][0]
    subject = next(s for s in ds.subjects if "meg" in ds.modalities(s))
    truth = np.asarray(ds.ground_truth(f"sources/{story}"), np.float64)
    est = predict_sources(model, ds.features(story), sfreq=ds.sfreq).astype(np.float64)
    out = {"story": story, "subject": subject,
           "temporal_r": round(float(np.mean(temporal_r(est, truth))), 4)}
    for fwhm in (10.0, 15.0, 20.0):
        k = source_smoother(model.vertices, fwhm)
        out[f"temporal_r_smoothed_{fwhm:g}mm"] = round(float(np.mean(temporal_r(k @ est, truth))), 4)
    # MNE (lambda2 from the data's CNR) of the MEG the model predicts vs of the noiseless MEG
    morph = scipy.sparse.csr_array(ds.morph(subject), dtype=np.float64)
    gain = np.asarray((morph.T @ np.asarray(ds.leadfield(subject), np.float64).T).T)
    clean = gain @ truth
    meg = np.asarray(ds.meg(subject, story), np.float64).mean(0)
    resid = clean if np.allclose(meg, clean) else meg - clean
    cov = inv.noise_cov_from_noise(resid.astype(np.float32), ds.info(subject))
    inverse = inv.make_inverse(ds.forward(subject), ds.info(subject), cov, depth=0.8)
    to_fs = inv.fsaverage_map(morph)
    lambda2 = inv.lambda2_from_cnr(ds.cnr(subject)["meg"])

    def mne(data):
        e = inv.apply_inverse_array(data.astype(np.float32), inverse, lambda2=lambda2,
                                    method="MNE")
        return np.asarray(to_fs @ np.asarray(e, np.float64))

    pred = gain @ est
    out["meg_r_vs_noiseless"] = round(float(np.mean(temporal_r(pred, clean))), 4)
    out["temporal_r_mne_of_model_meg"] = round(float(np.mean(temporal_r(mne(pred), truth))), 4)
    out["temporal_r_mne_of_noiseless_meg"] = round(float(np.mean(temporal_r(mne(clean), truth))), 4)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True, type=Path, help="work folder (kept; reused)")
    p.add_argument("--data", type=Path, help="simulated study (default: simulate the demo's)")
    p.add_argument("--ridge", type=Path, help="a run's ridge/ folder (for '+denoise' variants)")
    p.add_argument("--variants", nargs="+", type=_variant,
                   default=[_variant(v) for v in ("none", "10", "15", "20")],
                   help="source-layer FWHM in mm, or none, or 'mixture' (the learned mixture "
                        "of widths, fitted on the validation stories) or 'mixture-training' "
                        "(fitted with the training loss); '+denoise' trains on ridge-denoised "
                        "fMRI (default: none 10 15 20)")
    p.add_argument("--widths", type=float, nargs="+", default=None,
                   help="FWHMs (mm; 0: none) of the 'mixture' variants (default: 0 5 10 15 20 30)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the demo's)")
    p.add_argument("--patience", type=int, default=None,
                   help="early-stopping patience in epochs (default: the demo's)")
    p.add_argument("--no-fmne", action="store_true", help="skip the fMNE reference")
    p.add_argument("--diagnostics", action="store_true",
                   help="also score each model's sources smoothed afterwards (10/15/20 mm) and "
                        "MNE applied to the MEG the model predicts (first test story, first MEG "
                        "subject)")
    args = p.parse_args(argv)

    import numpy as np

    from neurofuse.data.store import read_dataset
    from neurofuse.evaluation.pipeline import DEMO_FIT, DEMO_STUDY
    from neurofuse.evaluation.prediction import prediction_table
    from neurofuse.evaluation.recovery import source_recovery
    from neurofuse.systems.joint.model import JointModel
    from neurofuse.simulation.study import StudyConfig, simulate_study
    from neurofuse.systems.joint.trainer import fit, load_fit_config

    work = args.work.expanduser()
    work.mkdir(parents=True, exist_ok=True)
    data = args.data
    if data is None:
        data = work / "data"
        if not (data / "neurofuse-dataset.json").is_file():
            simulate_study(StudyConfig.resolve(DEMO_STUDY), data, overwrite=True)
    ds = read_dataset(data)
    out = {"machine": {"platform": platform.platform(), "python": platform.python_version()},
           "data": str(data), "cnr": ds.cnr(ds.subjects[0]), "variants": []}
    if not args.no_fmne:
        scores, _ = source_recovery(ds, methods=["fMNE"])
        out["fMNE"] = {k: round(scores["fMNE"][k], 4) for k in ("temporal_r", "spatial_r")}
    select_by = None  # fMRI targets as the ridge's (evaluate_study's rule) when --ridge is given
    if args.ridge is not None and (args.ridge / "scores.npz").is_file():
        from neurofuse.evaluation.prediction import ridge_selection

        with np.load(args.ridge / "scores.npz") as z:
            select_by = ridge_selection({tuple(k.split("|")): z[k] for k in z.files})
    for name, fwhm, denoise in args.variants:
        cfg = copy.deepcopy(DEMO_FIT)
        cfg.setdefault("train", {})["fmri_denoise"] = "none"  # '+denoise' passes its targets
        if fwhm in ("mixture", "mixture-training"):  # the learned mixture of widths
            cfg.setdefault("encoder", {}).update(
                source_fwhm=None, source_prior="mixture",
                source_mixture_loss="training" if fwhm == "mixture-training" else "validation")
            if args.widths:
                cfg["encoder"]["source_widths"] = args.widths
        else:
            cfg.setdefault("encoder", {})["source_fwhm"] = fwhm
        if args.epochs is not None:
            cfg["train"]["max_epochs"] = args.epochs
        if args.patience is not None:
            cfg["train"]["patience"] = args.patience
        train, encoder = load_fit_config(cfg)
        denoised = None
        if denoise:
            if args.ridge is None:
                p.error(f"variant {name!r} needs --ridge (a demo or benchmark run's ridge/ folder)")
            denoised = {}
            with np.load(args.ridge / "denoised.npz") as z:
                for key in z.files:
                    subject, story = key.split("|")
                    denoised.setdefault(subject, {})[story] = z[key]
        run = work / f"fit-{name.replace('+', '-')}"
        t0 = time.perf_counter()
        if not (run / "model").is_dir():
            history = fit(ds, run, train_config=train, encoder_kwargs=encoder,
                          denoised_fmri=denoised)
        else:
            import csv

            from neurofuse.evaluation.fit_reuse import _check_done_fit

            # refuse a folder fitted under other training settings or on other data
            _check_done_fit(run / "config.json", {"train": train.to_dict()})
            saved = json.loads((run / "config.json").read_text()).get("dataset")
            if saved is not None and Path(saved).resolve() != Path(data).resolve():
                p.error(f"'{run}' was fitted on '{saved}', not on '{data}': pass another --work")
            with open(run / "history.csv") as f:
                history = [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(f)]
        seconds = time.perf_counter() - t0
        model = JointModel.load(run / "model").cpu()
        scores, _ = source_recovery(ds, model=model, methods=[])
        rows, _ = prediction_table(ds, model=model, select_by=select_by)
        best = min((h for h in history if "val_total" in h and h.get("alpha_fmri")),
                   key=lambda h: h["val_total"], default=None)
        out["variants"].append({
            "variant": name, "source_fwhm_mm": fwhm if not isinstance(fwhm, str) else None,
            "source_prior": model.source_prior(), "denoised_fmri": denoise,
            "epochs": len(history), "fit_seconds": round(seconds, 1),
            "val_total": None if best is None else round(best["val_total"], 4),
            "temporal_r": round(scores["neurofuse"]["temporal_r"], 4),
            "spatial_r": round(scores["neurofuse"]["spatial_r"], 4),
            "prediction_r": {f"{r['subject']} {r['modality']}": round(r["r_mean"], 3)
                             for r in rows},
        })
        if args.diagnostics:
            out["variants"][-1]["diagnostics"] = _diagnostics(ds, model)
        print(json.dumps(out["variants"][-1]), flush=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

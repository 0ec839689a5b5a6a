"""ECoG validation benchmark (paper §5, Fig. 4) on simulated ECoG. Prints one JSON object.

A simulated study (the ``demo`` preset unless ``--study`` is given) provides the ground-truth
world; :func:`neurofuse.simulation.ecog.simulate_ecog` records a new 30-minute story on new
subjects' cortex; :func:`neurofuse.evaluation.ecog.run_ecog_validation` then scores

* the **ground-truth encoder** (the study's true sources: the best any source model can do),
* a **trained joint model** (``--model DIR``, or one trained here with the ``demo`` preset for
  ``--fit-epochs`` epochs; skipped with ``--fit-epochs 0`` and no ``--model``),

against the stacked-ridge encoding model of the stimulus trained on the same ECoG minutes.
The stimulus ridge does not depend on the source model, so it is fitted once (with the
ground-truth run) and its rows are reported once.

    python benchmarks/bench_ecog.py --work /tmp/bench-ecog                  # everything
    python benchmarks/bench_ecog.py --work W --study STUDY --model FIT/model  # reuse

The paper's expectation: zero-shot prediction significant for most electrodes near
responsive cortex, and the source-based ridge above the stimulus ridge at every training
fraction, most of all at small fractions. ``"expectation"`` in the output says whether the
measured table meets it, per source model.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import resource
import time
from pathlib import Path


def _rows(results, method):
    return {r["train_fraction"]: r["top25_r"] for r in results["trained"] if r["method"] == method}


def _expectation(neurofuse, ridge):
    fractions = sorted(set(neurofuse) & set(ridge))
    adv = {f"{f:g}": round(neurofuse[f] - ridge[f], 4) for f in fractions}
    trained = [f for f in fractions if f > 0]
    return {
        "advantage_top25_r": adv,
        "beats_ridge_at_every_fraction": all(neurofuse[f] > ridge[f] for f in fractions),
        "advantage_largest_at_smallest_trained_fraction": bool(trained) and max(
            trained, key=lambda f: neurofuse[f] - ridge[f]) == min(trained),
        "advantage_shrinks_with_training_data": all(
            neurofuse[a] - ridge[a] >= neurofuse[b] - ridge[b]
            for a, b in itertools.pairwise(trained)),
    }


def _summary(validation):
    res = validation["results"]
    recs = validation["electrodes"]
    by_group = {}
    for r in recs:
        g = by_group.setdefault(r["group"], [0, 0])
        g[0] += 1
        g[1] += int(r["significant"])
    return {"zero_shot": res["zero_shot"],
            "n_identification_significant_binomial_paper": sum(
                p < 0.05 for p in (r["identification_p_binomial"] for r in recs)),
            "significant_by_array": {k: f"{v[1]}/{v[0]}" for k, v in sorted(by_group.items())},
            "median_zero_shot_r": float(sorted(r["r"] for r in recs)[len(recs) // 2]),
            "top25_r": _rows(res, "neurofuse")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", required=True, help="folder for the study, ECoG and outputs")
    parser.add_argument("--study", help="an existing simulated study (default: simulate 'demo')")
    parser.add_argument("--model", help="a trained joint model folder (or a `neurofuse joint fit` out)")
    parser.add_argument("--fit-epochs", type=int, default=12,
                        help="train the 'demo' joint model for this many epochs when --model is "
                             "not given (0: no joint model)")
    parser.add_argument("--meg-first-epochs", type=int, default=10)
    parser.add_argument("--n-subjects", type=int, default=3)
    parser.add_argument("--story-minutes", type=float, default=30.0)
    parser.add_argument("--cnr", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch

    from neurofuse.evaluation.ecog import run_ecog_validation
    from neurofuse.simulation.ecog import simulate_ecog
    from neurofuse.simulation.study import simulate_study

    work = Path(args.work).expanduser()
    work.mkdir(parents=True, exist_ok=True)
    seconds = {}
    t0 = time.perf_counter()
    study = Path(args.study) if args.study else work / "study"
    if not args.study and not (study / "neurofuse-dataset.json").is_file():
        simulate_study("demo", study, overwrite=True)
        seconds["simulate_study"] = time.perf_counter() - t0
    ecog = work / f"ecog-cnr{args.cnr:g}-seed{args.seed}"
    if not (ecog / "neurofuse-dataset.json").is_file():
        t0 = time.perf_counter()
        simulate_ecog(study, ecog, n_subjects=args.n_subjects, story_minutes=args.story_minutes,
                      cnr=args.cnr, seed=args.seed, overwrite=True)
        seconds["simulate_ecog"] = time.perf_counter() - t0

    out = {"config": {**vars(args), "study": str(study), "ecog": str(ecog)}}
    t0 = time.perf_counter()
    truth = run_ecog_validation(study / "ground_truth" / "encoding", ecog, work / "val-truth",
                                overwrite=True, figures=True, seed=args.seed)
    seconds["validate_ground_truth"] = time.perf_counter() - t0
    ridge = _rows(truth["results"], "ridge")
    out["ridge_top25_r"] = ridge
    out["ground_truth"] = _summary(truth)
    out["expectation"] = {"ground_truth": _expectation(_rows(truth["results"], "neurofuse"), ridge)}

    model = args.model
    if model is None and args.fit_epochs > 0:
        from neurofuse.systems.joint.trainer import TrainConfig, fit, load_fit_config

        train, encoder = load_fit_config("demo")
        train = TrainConfig.from_dict({**train.to_dict(), "max_epochs": args.fit_epochs,
                                       "meg_first_epochs": min(args.meg_first_epochs,
                                                               args.fit_epochs)})
        t0 = time.perf_counter()
        fit_dir = work / f"fit-{args.fit_epochs}"
        history = fit(study, fit_dir, train_config=train, encoder_kwargs=encoder,
                      resume=(fit_dir / "checkpoints" / "latest").is_file())
        seconds["fit_joint_model"] = time.perf_counter() - t0
        out["joint_model_training"] = history[-1] if history else None
        model = fit_dir / "model"
    if model is not None:
        t0 = time.perf_counter()
        joint = run_ecog_validation(model, ecog, work / "val-joint", overwrite=True,
                                    methods=("neurofuse",), seed=args.seed)
        seconds["validate_joint_model"] = time.perf_counter() - t0
        out["joint_model"] = {"model": str(model), **_summary(joint)}
        out["expectation"]["joint_model"] = _expectation(_rows(joint["results"], "neurofuse"),
                                                         ridge)
    out["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["machine"] = {"python": platform.python_version(), "processor": platform.processor(),
                      "torch_threads": torch.get_num_threads()}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

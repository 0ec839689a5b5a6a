"""Decoding controls for System B's claim that synthetic MEG helps: EEG + a second modality
that carries nothing but the EEG itself. Prints one JSON object.

The paper argues (§III-C) that MEG which "only looks like the real MEG wave but has no neural
information ... will not provide any benefit to decoding". Our decoder standardises each
feature family of each modality and weights the families equally in its kernel (as the
paper's feature-engineering SVM would need to, with two modalities), so a second modality
also *re-weights* the EEG's own information. These controls measure how much that alone
moves accuracy, on the held-out subjects and with the folds of ``bench_eeg2meg.py``:

* ``eeg_copy``: the EEG itself as the second modality (same information, twice the weight);
* ``eeg_random_mix``: a fixed random Gaussian mix of the EEG channels into as many channels
  as the MEG has (seed ``--seed``): a linear transform with no knowledge of physics or MEG;
* beside ``eeg_only``, ``real_meg`` and ``physics`` (EEG → MNE inverse → MEG forward, λ² and
  gains from the validation subject, as in the benchmark: a linear transform *with* physics).

It reads the world of a ``bench_eeg2meg.py`` work folder (``--work``, the same
``--n-test-subjects``), trains nothing, and chooses nothing: the rows with the benchmark's
methods reproduce its decoding numbers.

    PYTHONPATH=. python benchmarks/bench_eeg2meg_decoding_controls.py --work W \\
        > benchmarks/results/eeg2meg_decoding_controls.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_eeg2meg import fit_spec  # noqa: E402

CONTROLS = ("real_meg", "physics", "eeg_copy", "eeg_random_mix")


def main(argv=None):
    from neurofuse.data.store import read_dataset
    from neurofuse.evaluation.eeg2meg.decoding import _cross_validate_conditions
    from neurofuse.evaluation.eeg2meg_pipeline import _mean_rows, _physics
    from neurofuse.systems.eeg2meg.data import PairedEpochs
    from neurofuse.systems.eeg2meg.trainer import load_fit_config

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True, type=Path,
                   help="a bench_eeg2meg.py work folder (its world/ is read)")
    p.add_argument("--n-test-subjects", type=int, default=3,
                   help="held-out paired subjects, as the benchmark's (default 3)")
    p.add_argument("--n-runs", type=int, default=10, help="CV repetitions (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random mix (default 0)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    world = args.work / "world"
    if not (world / "neurofuse-dataset.json").is_file():
        raise SystemExit(f"No benchmark world in {world}: run benchmarks/bench_eeg2meg.py "
                         f"--work {args.work} first.")
    ds = read_dataset(world)
    _, _, data_cfg = load_fit_config(fit_spec("demo", args.n_test_subjects))
    data = PairedEpochs(ds, data_cfg)
    paired = {sub: data.subject_arrays(sub, physical=True) for sub in data.subjects["test"]}
    physics, settings = _physics(ds, data, data.subjects["val"],
                                 {sub: a[0] for sub, a in paired.items()})
    mix = np.random.default_rng(args.seed).standard_normal(
        (len(data.meg_names), len(data.eeg_names)))
    rows = []
    for sub, (eeg, meg, labels) in paired.items():
        for name, sl in data.set_slices(sub):
            e = eeg[sl]
            seconds = {"real_meg": meg[sl], "physics": physics[sub][sl], "eeg_copy": e.copy(),
                       "eeg_random_mix": np.einsum("mc,nct->nmt", mix, e)}
            scores = _cross_validate_conditions(e, labels[sl], data.sfreq, seconds,
                                                base="eeg_only", n_runs=args.n_runs,
                                                n_splits=10, verbose="error")
            rows += [{"subject": sub, "task": name, "method": m, **sc.summary()}
                     for m, sc in scores.items()]
            print(f"{sub} {name}: " + ", ".join(
                f"{m} {sc.summary()['accuracy']:.3f}" for m, sc in scores.items()),
                file=sys.stderr, flush=True)
    out = {
        "benchmark": "eeg2meg_decoding_controls",
        "command": "python benchmarks/bench_eeg2meg_decoding_controls.py " + " ".join(
            argv if argv is not None else sys.argv[1:]),
        "settings": {"n_test_subjects": args.n_test_subjects, "n_runs": args.n_runs,
                     "n_splits": 10, "seed": args.seed, "subjects": data.subjects,
                     "physics": settings},
        "rows": [{k: r[k] for k in ("method", "task", "accuracy", "f1", "accuracy_sd",
                                    "n_subjects", "n_trials", "n_correct", "chance",
                                    "p_value")} for r in _mean_rows(rows)],
        "by_subject": rows,
        "total_seconds": round(time.perf_counter() - t0, 1),
        "machine": {"python": platform.python_version(), "numpy": np.__version__},
    }
    json.dump(out, sys.stdout, indent=1, default=float)
    print()


if __name__ == "__main__":
    main()

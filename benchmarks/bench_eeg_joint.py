"""What do EEG subjects add to the joint model's source recovery? Prints one JSON object.

Simulates the demo's study (:data:`~neurofuse.evaluation.pipeline.DEMO_STUDY`) once per number
of EEG-only subjects (``--n-eeg``, default 0 and 2) and runs
:func:`~neurofuse.evaluation.pipeline.evaluate_study` on each with the demo's training set-up
(:data:`~neurofuse.evaluation.pipeline.DEMO_FIT`). EEG subjects are appended after the MEG and
fMRI subjects and draw their own noise, so every study has byte-identical MEG, fMRI and
ground-truth sources: the classical inverses (MEG only) score the same in each, and any change
of the joint model's temporal / spatial r comes from training with the EEG subjects' heads
(EEG = P L M s, average reference). Held-out EEG r (model vs EEG ridge ceiling) is reported
beside MEG and fMRI r. ``--more-meg K`` adds controls: the study with K more MEG subjects
instead (no EEG; the fMRI subjects are then renumbered, so their anatomy and noise differ,
and the inverses average over more MEG subjects), to tell a gain from EEG subjects from one
from more subjects of any kind.

    python benchmarks/bench_eeg_joint.py --work /tmp/eeg-joint               # ~2 demo runs
    python benchmarks/bench_eeg_joint.py --work W --n-eeg 0 2 4 --eeg-cnr 0.5
    python benchmarks/bench_eeg_joint.py --work W --n-eeg 0 2 --more-meg 2   # + a control
    python benchmarks/bench_eeg_joint.py --work W --study tiny --fit tiny --epochs 2  # smoke
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True, help="folder for the studies and evaluations")
    p.add_argument("--n-eeg", type=int, nargs="+", default=[0, 2],
                   help="numbers of EEG subjects to compare (default 0 2)")
    p.add_argument("--eeg-cnr", default=None, help="EEG CNR (default: the study's, 1)")
    p.add_argument("--study", default=None,
                   help="study preset (default: the demo's, oct5); e.g. 'tiny' for a smoke run")
    p.add_argument("--fit", default=None, help="training preset (default: the demo's)")
    p.add_argument("--epochs", type=int, default=None, help="override max_epochs of the fit")
    p.add_argument("--more-meg", type=int, nargs="*", default=[],
                   help="controls: the study with this many more MEG subjects and no EEG "
                        "(runs 'meg+K'): is a gain from EEG subjects more than one from "
                        "as many subjects of any head?")
    args = p.parse_args(argv)

    from neurofuse.evaluation.pipeline import DEMO_FIT, DEMO_STUDY, evaluate_study
    from neurofuse.simulation.study import StudyConfig, simulated_study

    base = dict(DEMO_STUDY) if args.study is None else {"preset": args.study, "spacing": "oct5"}
    fit = dict(DEMO_FIT) if args.fit is None else {"preset": args.fit}
    if args.epochs is not None:
        fit["train"] = {"max_epochs": args.epochs}
    work = Path(args.work).expanduser()
    out = {"study": base, "fit": fit, "eeg_cnr": args.eeg_cnr, "machine": platform.node(),
           "runs": {}}
    n_meg = StudyConfig.resolve(base).n_meg_subjects
    runs = [(str(n), f"eeg{n}", {"n_eeg_subjects": n} if n else {}) for n in args.n_eeg]
    runs += [(f"meg+{k}", f"meg{k}", {"n_meg_subjects": n_meg + k}) for k in args.more_meg]
    for key, folder, over in runs:
        if over.get("n_eeg_subjects") and args.eeg_cnr is not None:
            over["eeg_cnr"] = float(args.eeg_cnr)
        config = StudyConfig.resolve({**base, **over})
        t0 = time.perf_counter()
        data = simulated_study(config, work / folder / "study")
        ev = evaluate_study(data, work / folder / "eval", fit_config=fit)
        out["runs"][key] = {
            "seconds": round(time.perf_counter() - t0, 1),
            "source_recovery": [{k: r[k] for k in ("method", "temporal_r", "spatial_r")}
                                for r in ev.source_recovery],
            "prediction": [{k: r[k] for k in ("subject", "modality", "method", "r_mean")}
                           for r in ev.prediction],
            "epochs": (len(Path(ev.history).read_text().splitlines()) - 1
                       if ev.history is not None else None),
        }
    print(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()

"""System B's own encoder pretraining, chosen on the validation subject. Prints JSON.

At 40 generator epochs an encoder trained from scratch with the generator passed our frozen
pretrained one on the held-out subjects (mean band r 0.41 vs 0.35; stop 30), whose
pretraining was short: 4 epochs of masked patch modelling on two simulated EEG-only subjects.
This pretrains the encoder (LaBraM ``small`` sizes) under each variant's changes of that
set-up (longer, on more subjects of the pretraining world, or with the waveform target; the
pretraining world is the demo's: EEG-only, template head, seed 1000, disjoint from the paired
data), fits the ``demo-reflect`` generator preset (stop 31's demo) on it on the paired world
of a ``bench_eeg2meg.py`` work folder into ``WORK/pretraining/<name>/`` (a rerun resumes
finished steps), and scores the **validation** subjects' synthetic MEG with
:func:`bench_eeg2meg_sampling.score_split` (per-band Pearson r): one DDIM run from
``z_T = 0`` (5 steps) and the mean of K = 16 / 64 five-step samples (K = 64: how a trained
generator generates by default). Each variant's ``pretrain_val_loss`` is its own objective
on its own held-out sequences (another loss for the waveform target, other sequences for
another world): not comparable across variants.
``scratch`` fits the same generator with an untrained encoder trained with it (the
``no_pretrained`` ablation), the mark a pretraining must pass.
The test subjects are never read, so the choice leaves the benchmark's held-out numbers
untouched::

    PYTHONPATH=. python benchmarks/bench_eeg2meg.py --work W > ...   # the paired world
    PYTHONPATH=. python benchmarks/bench_eeg2meg_pretrain.py --work W \\
        > benchmarks/results/eeg2meg_pretrain.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

#: The pretraining the variants change: stops 21-30's (4 epochs, batch 128, on the demo's
#: two-subject EEG-only world).
BASE = {"world": {"preset": "demo", "n_subjects": 0, "n_eeg_only_subjects": 2,
                  "eeg_only_tasks": ["somatomotor", "faces", "motor_imagery"],
                  "anatomy": "template", "n_trials": 20, "save_sources": False},
        "encoder_config": "small", "config": {"epochs": 4, "batch_size": 128}}
#: name -> changes of BASE's ``world`` and ``config`` (``None``: no pretraining, a scratch
#: encoder trained with the generator).
VARIANTS = {
    "epochs4": {},
    "epochs40": {"config": {"epochs": 40, "patience": 5}},
    "epochs40_waveform": {"config": {"epochs": 40, "patience": 5, "target": "waveform"}},
    "subjects10_epochs40": {"world": {"n_eeg_only_subjects": 10},
                            "config": {"epochs": 40, "patience": 5}},
    "scratch": None,
}
CANDIDATES = ("ddim_zero_s5", "mean_eta1_s5")
K = (16, 64)
#: The generator fitted on each encoder: the demo preset of stop 31, when the pretraining
#: was chosen (MNE's padding in the band loss; named demo-reflect since stop 34).
FIT = "demo-reflect"
#: The pretraining world's seed (the pipeline's: its seed 0 + 1000).
WORLD_SEED = 1000


def _pretrain(folder, changes):
    """Simulate and pretrain a variant's encoder with the pipeline's own pretraining step
    (into ``folder/pretrain/``; a finished one is reused only under the same settings);
    return its model folder and the pretraining's numbers."""
    from neurofuse.evaluation.eeg2meg_pipeline import _pretrain_step
    from neurofuse.evaluation.fit_reuse import _history_rows

    spec = {"pretrain_world": {**BASE["world"], **changes.get("world", {})},
            "pretrain": {"encoder_config": BASE["encoder_config"],
                         "config": {**BASE["config"], **changes.get("config", {})}}}
    path = _pretrain_step(folder, spec, resume=True, seed=WORLD_SEED - 1000)
    rows = _history_rows(folder / "pretrain" / "encoder")
    losses = [float(r["val_loss"]) for r in rows]
    done = json.loads((folder / "pretrain" / "done.json").read_text())
    return path, {"pretrain_world": spec["pretrain_world"],
                  "pretrain_config": spec["pretrain"]["config"],
                  "n_pretrain_epochs_of_eeg": done["n_epochs"],
                  "pretrain_epochs_run": len(rows),
                  "pretrain_epoch_kept": losses.index(min(losses)) + 1,
                  "pretrain_val_loss": min(losses),
                  # the epochs' own times (a resumed run's wall clock would not count them)
                  "pretrain_seconds": round(sum(float(r["seconds"]) for r in rows), 1)}


def _check_fit_encoder(folder, encoder):
    """Refuse to resume a variant's fit on another encoder than the one it began on (a
    pretraining redone); record the encoder's weight checksum when it begins."""
    from neurofuse.evaluation.eeg2meg_pipeline import _check_started, _encoder_weights

    _check_started(folder / "fit_encoder.json", folder / "fit" / "checkpoints",
                   _encoder_weights(encoder), what=f"The fit in '{folder / 'fit'}'")


def main(argv=None):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _eeg2meg_validation import (check_kept, command, machine, monitored_values, parser,
                                     score_fit, variant_rows)

    p = parser(__doc__, "a bench_eeg2meg.py work folder (its world/)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = p.parse_args(argv)

    from neurofuse._io import write_json
    from neurofuse.systems.eeg2meg import fit

    world = args.work / "world"
    if not world.is_dir():
        raise SystemExit(f"{world} not found: run benchmarks/bench_eeg2meg.py --work "
                         f"{args.work} first (it simulates the paired world).")
    t0, rows = time.perf_counter(), []
    for name in args.variants:
        folder = args.work / "pretraining" / name
        done = folder / "val.json"
        asked = {"changes": VARIANTS[name], "base": BASE, "fit": FIT,
                 "n_test_subjects": args.n_test_subjects, "world_seed": WORLD_SEED,
                 "candidates": list(CANDIDATES), "k": list(K)}
        if done.is_file():  # a finished variant is reused only under the same settings
            check_kept(done, asked)
        else:
            if VARIANTS[name] is None:  # sizes of the base encoder, fresh weights
                encoder, pre = BASE["encoder_config"], {}
                model = {"encoder": "scratch"}
            else:
                encoder, pre = _pretrain(folder, VARIANTS[name])
                model = {}
            config = {"preset": FIT, "data": {"n_test_subjects": args.n_test_subjects},
                      "model": model}
            _check_fit_encoder(folder, encoder)
            history = fit(world, folder / "fit", encoder=encoder, config=config, resume=True,
                          verbose="warning")
            record = score_fit(world, folder / "fit", monitored_values(history, config),
                               CANDIDATES, K)
            write_json(done, {
                "variant": name, **asked, **pre, **record,
                # the epochs' own times (a resumed run's wall clock would not count them)
                "fit_seconds": round(sum(float(h["seconds"]) for h in history), 1)},
                what="pretraining variant")
        rows += variant_rows(name, json.loads(done.read_text()))
    out = {"benchmark": "eeg2meg_pretrain",
           "command": command("bench_eeg2meg_pretrain.py", argv),
           "split": "val", "base": BASE, "variants": VARIANTS, "fit": FIT, "rows": rows,
           "detail": {name: json.loads((args.work / "pretraining" / name / "val.json")
                                       .read_text()) for name in args.variants},
           # this call's time; each variant's own is its pretrain_seconds and fit_seconds
           "this_call_seconds": round(time.perf_counter() - t0, 1),
           "machine": machine()}
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()

"""What each stage of a trained System B generator keeps of the MEG, band by band. Prints JSON.

Linear probes: a ridge from one stage's features of an EEG patch (all channels) to the MEG
samples of the same patch (all 306 channels), fitted on the training subjects and scored on
the **validation** subjects with the evaluation's per-band Pearson r
(:func:`~neurofuse.evaluation.eeg2meg.signal_metrics.compute_band_metrics`). The stages: the
EEG patch itself (``eeg_patch``), the frozen encoder's tokens (``h_enc``), the spatial focus
mapping's output (``focus``) and the quantised condition (``z_q``). The penalty of each probe is
chosen on the last training subject (fitted on the others), then the probe is refitted on all
training subjects. Beside them: the generator's own synthetic MEG (how it generates by
default), the lagged ridge of the benchmark (``EEGMEGRidge``), and the generator's γ-band
power relative to the real MEG's. The test subjects are never read::

    PYTHONPATH=. python benchmarks/bench_eeg2meg.py --work W > ...   # world and generator
    PYTHONPATH=. python benchmarks/bench_eeg2meg_probe.py --work W \\
        > benchmarks/results/eeg2meg_probe.json

or on the demo's generator (``neurofuse eeg2meg demo --out D``)::

    PYTHONPATH=. python benchmarks/bench_eeg2meg_probe.py --work D \\
        --model D/fits/generator/model > benchmarks/results/eeg2meg_probe.json

A probe sees one patch at a time (a linear map of ``C_e × D`` features onto ``C_m × 50``
samples), so it is a floor on what a stage holds, not a rival method.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from neurofuse.physics.bands import BANDS

STAGES = ("eeg_patch", "h_enc", "focus", "z_q")
#: ridge penalties tried (per 1000 rows of the standardised design)
PENALTIES = tuple(10.0 ** np.arange(1, 6))


def stage_features(model, eeg, batch_size=32):
    """Each stage's features of standardised EEG (n, C_e, T): ``{stage: (n, C_e, P, F)}``,
    read from the generator's own :meth:`condition` (the focus mapping's output by a hook)."""
    import torch

    p = model.n_patches
    out = {s: [] for s in STAGES}
    seen = {}
    hooks = [model.focus.register_forward_hook(lambda m, i, o: seen.__setitem__("focus", o)),
             model.encoder.register_forward_hook(lambda m, i, o: seen.__setitem__("h_enc", o))]
    try:
        with torch.no_grad():
            for i in range(0, len(eeg), batch_size):
                x = torch.as_tensor(eeg[i:i + batch_size])
                parts = {"eeg_patch": x.reshape(*x.shape[:2], p, -1),
                         "z_q": model.condition(x)["z_q"], **seen}
                for s in STAGES:
                    out[s].append(parts[s].numpy())
    finally:
        for h in hooks:
            h.remove()
    return {s: np.concatenate(v) for s, v in out.items()}


def _rows(feat):
    """(n, C, P, F) → (n P, C F): every channel's features of one patch."""
    n, c, p, f = feat.shape
    return feat.transpose(0, 2, 1, 3).reshape(n * p, c * f).astype(np.float64)


def _patch_rows(meg, p):
    n, c, t = meg.shape
    return meg.reshape(n, c, p, t // p).transpose(0, 2, 1, 3).reshape(n * p, -1)


def _from_patch_rows(y, n, c, p):
    return y.reshape(n, p, c, -1).transpose(0, 2, 1, 3).reshape(n, c, -1)


class PatchProbe:
    """Ridge from a stage's patch features to the MEG of the same patch: the package's ridge
    solver (:mod:`neurofuse.baselines.ridge.solver`: standardised columns, constant ones left
    out, every penalty from one eigendecomposition); penalties are per 1000 rows."""

    def __init__(self, feat, meg):
        from neurofuse.baselines.ridge.backend import use_ridge_backend
        from neurofuse.baselines.ridge.solver import _Standardized, _Stats

        x = _rows(feat)
        self.n_patches, self.n_rows = feat.shape[2], len(x)
        y = _patch_rows(meg, self.n_patches).astype(np.float64)
        self.n_targets = y.shape[1]
        with use_ridge_backend("numpy") as bk:
            stats = _Stats()
            stats.add(bk, x, y)
            self._bk, self._std = bk, _Standardized(bk, stats)

    def predict(self, feat, penalty, n_meg):
        alphas = np.full(self.n_targets, penalty * self.n_rows / 1000)
        coef, intercept = self._std.coef(self._bk, alphas)
        y = _rows(feat) @ coef + intercept
        return _from_patch_rows(y, feat.shape[0], n_meg, self.n_patches)


def band_r(pred, real, data):
    """Mean per-band Pearson r over epochs of standardised MEG (scored in physical units)."""
    from neurofuse.evaluation.eeg2meg.signal_metrics import compute_band_metrics

    m = compute_band_metrics(data.to_physical(pred), data.to_physical(real), data.sfreq,
                             verbose="error")
    r = {b: float(np.nanmean(m[b]["pearson"])) for b in BANDS}
    return {"mean": float(np.mean(list(r.values()))), **r}


def main(argv=None):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _eeg2meg_validation import command, machine, parser

    from neurofuse.evaluation.eeg2meg.signal_metrics import band_filter
    from neurofuse.evaluation.eeg2meg_pipeline import _ridge
    from neurofuse.systems.eeg2meg.data import PairedEpochs
    from neurofuse.systems.eeg2meg.model import load_generator, synthesize

    p = parser(__doc__, "a bench_eeg2meg.py work folder (its world/ and eval/fits/), or the "
               "output folder of neurofuse eeg2meg demo with --model")
    p.add_argument("--variant", default="generator", help="the fit probed (default generator)")
    p.add_argument("--model", type=Path, default=None,
                   help="the generator's model folder (default WORK/eval/fits/VARIANT/model); "
                   "its own split of the subjects is used (--n-test-subjects is not read)")
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    world = args.work / "world"
    fitted = args.model or args.work / "eval" / "fits" / args.variant / "model"
    if not (fitted / "model.json").is_file():
        raise SystemExit(f"{fitted} not found: run benchmarks/bench_eeg2meg.py --work "
                         f"{args.work} first.")
    model, meta = load_generator(fitted, return_meta=True)
    data = PairedEpochs(world, meta["data"]["config"])
    train = data.subjects["train"]
    if len(train) < 2:
        raise SystemExit("The probes choose their penalty on a training subject: the world "
                         f"needs two or more training subjects, it has {train}.")
    arrays = {s: data.subject_arrays(s) for s in train + data.subjects["val"]}
    feats = {s: stage_features(model, a[0]) for s, a in arrays.items()}

    def stack(subs, key=None):
        if key is None:
            return np.concatenate([arrays[s][1] for s in subs])
        return np.concatenate([feats[s][key] for s in subs])

    inner, val = train[-1], data.subjects["val"]
    n_meg = len(data.meg_names)
    probes = {}
    for stage in STAGES:
        probe = PatchProbe(stack(train[:-1], stage), stack(train[:-1]))
        by_penalty = {a: band_r(probe.predict(feats[inner][stage], a, n_meg), arrays[inner][1],
                              data)["mean"] for a in PENALTIES}
        penalty = max(by_penalty, key=by_penalty.get)
        probe = PatchProbe(stack(train, stage), stack(train))
        probes[stage] = {"penalty": penalty, "inner_mean_r": by_penalty,
                         **band_r(probe.predict(stack(val, stage), penalty, n_meg),
                                  stack(val), data)}
        print(stage, {k: round(v, 3) for k, v in probes[stage].items()
                      if k in ("mean", *BANDS)}, file=sys.stderr, flush=True)
    real = stack(val)
    eeg = {s: data.subject_arrays(s, physical=True)[0] for s in val}
    # as the evaluation makes them (synthesize: one stream of draws for the whole call)
    gen = data.standardize(np.concatenate([synthesize(model, eeg[s], meta=meta) for s in val]),
                           "meg")
    ridge = _ridge(data, eeg)
    ridge = data.standardize(np.concatenate([ridge[s] for s in val]), "meg")
    gamma = [band_filter(x.astype(np.float64), data.sfreq, BANDS["gamma"], verbose="error")
             for x in (gen, real)]
    out = {"benchmark": "eeg2meg_probe", "command": command("bench_eeg2meg_probe.py", argv),
           "split": "val", "subjects": {"train": train, "penalty_chosen_on": inner, "val": val},
           "model": str(fitted), "probes": probes,
           "generator": band_r(gen, real, data), "ridge": band_r(ridge, real, data),
           "generator_gamma_power_ratio": float(np.mean(gamma[0] ** 2)
                                                / np.mean(gamma[1] ** 2)),
           "total_seconds": round(time.perf_counter() - t0, 1), "machine": machine()}
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()

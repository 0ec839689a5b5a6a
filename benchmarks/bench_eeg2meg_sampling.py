"""How should a trained EEG→MEG generator generate? Sampling settings scored on one split.

For one model folder (``neurofuse eeg2meg fit``'s ``model/``) and the paired store it was fitted
on, it synthesises the MEG of a split's subjects (``val`` by default: the validation subjects,
which a user without test data can use) with several settings of
:meth:`~neurofuse.systems.eeg2meg.generator.EEG2MEGGenerator.generate`, all through the public
API, and scores each with the evaluation's per-band metrics
(:func:`~neurofuse.evaluation.eeg2meg.signal_metrics.compute_band_metrics`, physical units, as
``neurofuse eeg2meg evaluate`` does). Prints one JSON object.

Settings (``--candidates``):

* ``ddim_zero_s<N>``: DDIM (η = 0) from ``z_T = 0`` on N steps (the default path with
  ``steps=N``; ``s1`` is the one-shot ``ẑ₀`` prediction at the last timestep);
* ``ddim_zero_s<N>_noclip``: the same without the ``latent_clip`` bound;
* ``mean_eta1_s<N>``: the mean of K stochastic samples (DDIM with η = 1 on N steps,
  ``deterministic=False``), an estimate of the posterior mean; reported for every K of
  ``--k`` from the same stream of draws (prefix means);
* ``mean_eta0_randzT_s<N>``: the mean of K DDIM (η = 0) runs from normal draws of ``z_T``;
* ``mean_ddpm``: the mean of K ancestral samples over every diffusion step.

For every setting and K: per-band Pearson r and RMSE, their means over bands, and the paired
difference of each epoch's band-mean r to ``--reference`` (mean and standard error over epochs),
so a gain can be told from noise. Example (the stop-23 demo model)::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_eeg2meg_sampling.py \\
        --model demo/fits/generator/model --splits val test
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time

import numpy as np

DEFAULT_CANDIDATES = ("ddim_zero_s1", "ddim_zero_s5", "ddim_zero_s10", "ddim_zero_s20",
                      "ddim_zero_s50", "ddim_zero_s200", "ddim_zero_s20_noclip",
                      "mean_eta1_s20", "mean_eta0_randzT_s20", "mean_ddpm")
_PATTERN = re.compile(r"^(ddim_zero_s(\d+)(_noclip)?|mean_eta1_s(\d+)|mean_eta0_randzT_s(\d+)"
                      r"|mean_ddpm)$")


def _sampler(name, model):
    """``(draw(eeg, generator) -> meg, stochastic)`` for a candidate name."""
    import torch

    m = _PATTERN.match(name)
    if m is None:
        raise SystemExit(f"Unknown candidate {name!r}; expected one of the forms in the "
                         "module docstring, e.g. ddim_zero_s20, mean_eta1_s20, mean_ddpm.")
    if m.group(2):
        steps = int(m.group(2))

        def draw(x, gen):
            if m.group(3):  # no clip: a bound no standardised latent reaches
                saved = model.config
                model.config = saved.replace(latent_clip=float(torch.finfo(torch.float32).max))
                try:
                    return model.generate(x, steps=steps, n_samples=0)
                finally:
                    model.config = saved
            return model.generate(x, steps=steps, n_samples=0)
        return draw, False
    if m.group(4):
        steps = int(m.group(4))
        return (lambda x, gen: model.generate(x, deterministic=False, steps=steps,
                                              generator=gen)), True
    if m.group(5):
        steps = int(m.group(5))
        return (lambda x, gen: model.generate(x, steps=steps, n_samples=0, generator=gen)), True
    return (lambda x, gen: model.generate(x, deterministic=False, generator=gen)), True


def _score(meg, real, sfreq):
    from neurofuse.evaluation.eeg2meg.signal_metrics import compute_band_metrics

    metrics = compute_band_metrics(meg, real, sfreq, verbose="error")
    r = {b: float(np.nanmean(v["pearson"])) for b, v in metrics.items()}
    rmse = {b: float(np.mean(v["rmse"])) for b, v in metrics.items()}
    per_epoch = np.nanmean(np.stack([v["pearson"] for v in metrics.values()]), axis=0)
    return {"pearson": r, "mean_r": float(np.mean(list(r.values()))), "rmse": rmse,
            "mean_rmse": float(np.mean(list(rmse.values())))}, per_epoch


def score_split(model, meta, data, split, candidates, *, k=(1, 2, 4, 8, 16), k_ddpm=4,
                reference="ddim_zero_s20", batch_size=50, seed=0):
    """Score each sampling ``candidate`` of a trained generator on one split's subjects.

    Parameters
    ----------
    model : EEG2MEGGenerator
        From :func:`~neurofuse.systems.eeg2meg.model.load_generator`.
    meta : dict
        Its model folder's metadata (``return_meta=True``): the scales of EEG and MEG.
    data : PairedEpochs
        The store it was fitted on.
    split : 'train' | 'val' | 'test'
    candidates : list of str
        Setting names (module docstring); the first must be ``reference``.
    k : sequence of int
        Numbers of averaged samples reported (prefix means of one stream of draws).
    k_ddpm : int
        Largest K of ``mean_ddpm``.
    reference : str
        The candidate the paired per-epoch differences are taken against.
    batch_size, seed : int

    Returns
    -------
    result : dict
        ``{"subjects", "n_epochs", "results": {candidate: {"seconds", "K<k>": scores}}}``.
    """
    import torch

    emean, estd = (np.asarray(v, dtype=np.float64) for v in meta["data"]["eeg_scale"])
    mmean, mstd = (np.asarray(v, dtype=np.float64) for v in meta["data"]["meg_scale"])
    subs = data.subjects[split]
    parts = [data.subject_arrays(s, physical=True) for s in subs]
    eeg = np.concatenate([a[0] for a in parts])
    real = np.concatenate([a[1] for a in parts])
    x = torch.as_tensor(((eeg - emean[:, None]) / estd[:, None]).astype(np.float32))
    res, ref_epochs = {}, None
    for name in candidates:
        draw, stochastic = _sampler(name, model)
        kmax = (k_ddpm if name == "mean_ddpm" else max(k)) if stochastic else 1
        ks = sorted({kk for kk in k if kk <= kmax} | {kmax}) if stochastic else [1]
        gen = torch.Generator().manual_seed(seed)
        t0, total, rows = time.perf_counter(), None, {}
        for kk in range(1, kmax + 1):
            y = torch.cat([draw(x[i:i + batch_size], gen)
                           for i in range(0, len(x), batch_size)])
            meg = y.double().numpy() * mstd[:, None] + mmean[:, None]
            total = meg if total is None else total + meg
            if kk in ks:
                row, per_epoch = _score(total / kk, real, data.sfreq)
                if name == reference:
                    ref_epochs = per_epoch
                d = per_epoch - ref_epochs
                row["diff_vs_reference"] = {
                    "mean": float(np.nanmean(d)),
                    "se": float(np.nanstd(d, ddof=1) / np.sqrt(np.isfinite(d).sum()))}
                rows[f"K{kk}"] = row
        res[name] = {"seconds": round(time.perf_counter() - t0, 1), **rows}
        print(split, name, {kk: round(v["mean_r"], 4) for kk, v in rows.items()},
              f"{res[name]['seconds']:.0f}s", file=sys.stderr, flush=True)
    return {"subjects": subs, "n_epochs": int(len(x)), "results": res}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a generator model folder")
    p.add_argument("--world", default=None,
                   help="the paired store (default: the one named in model.json)")
    p.add_argument("--splits", nargs="+", default=["val"], choices=["train", "val", "test"])
    p.add_argument("--candidates", nargs="+", default=list(DEFAULT_CANDIDATES))
    p.add_argument("--k", nargs="+", type=int, default=[1, 2, 4, 8, 16],
                   help="numbers of averaged samples reported (prefix means of one stream)")
    p.add_argument("--k-ddpm", type=int, default=4, help="largest K of mean_ddpm (slow)")
    p.add_argument("--reference", default="ddim_zero_s20",
                   help="candidate the paired per-epoch differences are taken against")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import torch

    from neurofuse.systems.eeg2meg.data import PairedEpochs
    from neurofuse.systems.eeg2meg.model import load_generator

    model, meta = load_generator(args.model, return_meta=True)
    data = PairedEpochs(args.world or meta["data"]["store"], meta["data"]["config"])
    if data.subjects != meta["data"]["subjects"]:
        raise SystemExit(f"The store splits subjects as {data.subjects}, the model was fitted "
                         f"with {meta['data']['subjects']}: pass the store it was fitted on.")
    candidates = list(dict.fromkeys([args.reference, *args.candidates]))
    out = {"benchmark": "eeg2meg_sampling",
           "command": "python benchmarks/bench_eeg2meg_sampling.py " + " ".join(
               argv if argv is not None else sys.argv[1:]),
           "model": str(args.model), "subjects": data.subjects,
           "sample_steps": model.config.sample_steps,
           "diffusion_steps": model.config.diffusion_steps, "reference": args.reference,
           "splits": {},
           "machine": {"python": platform.python_version(), "torch": torch.__version__,
                       "threads": torch.get_num_threads()}}
    for split in args.splits:
        out["splits"][split] = score_split(
            model, meta, data, split, candidates, k=args.k, k_ddpm=args.k_ddpm,
            reference=args.reference, batch_size=args.batch_size, seed=args.seed)
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()

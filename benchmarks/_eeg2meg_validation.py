"""What System B's validation studies share (``bench_eeg2meg_codebook.py``,
``bench_eeg2meg_pretrain.py``): their command line, a finished variant reused only under the
settings it was scored with, a fitted generator scored on the **validation** subjects (the
test subjects never read), and the rows of their output."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np


def parser(doc, work_help):
    """The studies' arguments: ``--work`` (a ``bench_eeg2meg.py`` work folder) and
    ``--n-test-subjects``; a study adds ``--variants``."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--work", required=True, type=Path, help=work_help)
    p.add_argument("--n-test-subjects", type=int, default=3,
                   help="held-out subjects of that benchmark (default 3; never read here)")
    return p


def check_kept(done, asked):
    """Refuse a finished variant's ``done`` file scored under other settings than ``asked``
    (a dict of the settings it records)."""
    kept = json.loads(done.read_text())
    differ = {k: (kept.get(k), v) for k, v in asked.items() if kept.get(k) != v}
    if differ:
        raise SystemExit(f"{done.parent} was scored under other settings (there, now: "
                         f"{differ}); use a new --work folder or delete it.")


def score_fit(world, fit_folder, monitored, candidates, k):
    """Score a fitted generator's synthetic MEG on the validation subjects.

    Parameters
    ----------
    world : Path
        The paired store it was fitted on.
    fit_folder : Path
        Its fit folder (``model/`` inside).
    monitored : sequence of float
        What the fit kept its model by (its ``TrainConfig.monitor``), per epoch.
    candidates : sequence of str
        Generation settings of :func:`bench_eeg2meg_sampling.score_split`, the first the
        reference.
    k : sequence of int
        Numbers of averaged samples reported.

    Returns
    -------
    record : dict
        ``subjects``, ``n_epochs`` (validation epochs), ``epochs_run``, ``epoch_kept``
        (lowest ``monitored``, 1-based) and ``scores`` (``score_split``'s results).
    """
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_eeg2meg_sampling import score_split

    from neurofuse.systems.eeg2meg.data import PairedEpochs
    from neurofuse.systems.eeg2meg.model import load_generator

    model, meta = load_generator(fit_folder / "model", return_meta=True)
    data = PairedEpochs(world, meta["data"]["config"])
    scores = score_split(model, meta, data, "val", list(candidates), k=tuple(k),
                         reference=candidates[0])
    return {"subjects": scores["subjects"], "n_epochs": scores["n_epochs"],
            "epochs_run": len(monitored), "epoch_kept": int(np.argmin(monitored)) + 1,
            "scores": scores["results"]}


def monitored_values(history, config):
    """What a fit kept its model by, per epoch.

    Parameters
    ----------
    history : list of dict
        A :func:`~neurofuse.systems.eeg2meg.trainer.fit` history.
    config : str | dict
        The set-up it was fitted with (its ``TrainConfig.monitor`` names the column).

    Returns
    -------
    values : list of float
        Per epoch, for :func:`score_fit`.
    """
    from neurofuse.systems.eeg2meg.task import monitored
    from neurofuse.systems.eeg2meg.trainer import load_fit_config

    monitor = load_fit_config(config)[0].monitor
    return [monitored(h, monitor) for h in history]


def variant_rows(name, record):
    """One row per generation setting and K of a variant's scores (and a line on stderr)."""
    rows = [{"variant": name, "generation": cand, "k": int(key[1:]), "mean_r": s["mean_r"],
             "pearson": s["pearson"], "mean_rmse": s["mean_rmse"]}
            for cand, by_k in record["scores"].items()
            for key, s in by_k.items() if key.startswith("K")]
    print(name, {f"{r['generation']} K{r['k']}": round(r["mean_r"], 4) for r in rows},
          file=sys.stderr, flush=True)
    return rows


def command(script, argv):
    """The command line that made an output."""
    return f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:])


def machine():
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads()}

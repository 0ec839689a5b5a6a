"""System D's figures (paper eeg-fmri-deep-transcoding, Fig. 4-5 style).

* :func:`plot_r_by_method`: mean r per method and scenario with 95 % intervals, for the
  transcoded fMRI and EEG and the source recovery per source kind and truth.
* :func:`plot_learned_responses`: the HRF and lead field the model learned (its encoders'
  impulse responses) against the true ones.
* :func:`plot_training`: the four loss terms per epoch from a fit's ``history.csv``.

Every function returns a ``matplotlib.figure.Figure`` not registered with pyplot.
"""

from __future__ import annotations

import csv

import numpy as np

from .figures import _METHOD_COLORS, _new_figure

__all__ = ["plot_learned_responses", "plot_r_by_method", "plot_training"]


def _bars(ax, rows, key, methods, scenarios, title):
    width = 0.8 / max(len(methods), 1)
    for i, m in enumerate(methods):
        vals, lo, hi = [], [], []
        for s in scenarios:
            row = next((r for r in rows if r["method"] == m and r["scenario"] == s
                        and r.get(key) is not None), None)
            v = np.nan if row is None else row[key]
            ci = [None, None] if row is None else row.get(f"{key}_ci", [None, None])
            vals.append(v)
            lo.append(0.0 if ci[0] is None else v - ci[0])
            hi.append(0.0 if ci[1] is None else ci[1] - v)
        x = np.arange(len(scenarios)) + (i - (len(methods) - 1) / 2) * width
        ax.bar(x, vals, width, yerr=[lo, hi], label=m, capsize=2,
               color=_METHOD_COLORS[i % len(_METHOD_COLORS)])
    ax.set_xticks(np.arange(len(scenarios)), scenarios, fontsize=7)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_title(title, fontsize=8)
    ax.set_ylabel("r")


def plot_r_by_method(rows):
    """Bars of r per method and scenario with their 95 % intervals.

    Parameters
    ----------
    rows : list of dict
        Benchmark rows (:func:`neurofuse.evaluation.transcoder.evaluate_transcoder`).

    Returns
    -------
    fig : matplotlib.figure.Figure
        Top: transcoded fMRI r and EEG r; then one row of panels per source truth, one panel
        per source kind, the EEG-pathway source estimates.
    """
    methods = list(dict.fromkeys(r["method"] for r in rows))
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    truths = list(dict.fromkeys(r.get("source_truth", "latent") for r in rows))
    fig = _new_figure((9, 2.6 * (1 + len(truths))))
    axes = fig.subplots(1 + len(truths), 2, squeeze=False)
    first = [r for r in rows if r.get("source_truth", "latent") == truths[0]]
    _bars(axes[0, 0], first, "fmri_r", methods, scenarios, "transcoded fMRI (EEG→fMRI)")
    _bars(axes[0, 1], first, "eeg_r", methods, scenarios, "transcoded EEG (fMRI→EEG)")
    for i, truth in enumerate(truths, 1):
        for j, kind in enumerate(("oscillatory", "sparse")):
            sub = [r for r in rows if r.get("source_truth", "latent") == truth
                   and r["source_kind"] == kind and r.get("source_from") == "eeg"]
            _bars(axes[i, j], sub, "source_r", methods, scenarios,
                  f"{kind} sources from EEG (truth: {truth})")
    axes[0, 0].legend(fontsize=7, ncol=2)
    return fig


def _fmt(r):
    return "n/a" if r is None else f"{r:.2f}"


def plot_learned_responses(learned):
    """The learned HRF against the true one, and the lead-field r per voxel.

    Parameters
    ----------
    learned : dict
        From :func:`neurofuse.evaluation.transcoder_pipeline.learned_responses` (arrays or
        lists).

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    fig = _new_figure((8, 2.6))
    ax1, ax2 = fig.subplots(1, 2)
    h, t = np.asarray(learned["hrf_learned"], float), np.asarray(learned["hrf_true"], float)
    x = np.arange(len(h)) * learned.get("tr", 1.0)

    def unit(v):
        return v / (np.abs(v).max() or 1.0)
    ax1.plot(x, unit(t), "k", label="true HRF")
    ax1.plot(x, unit(h), "tab:red", label=f"learned (r = {_fmt(learned['hrf_r'])})")
    ax1.set_xlabel("s after impulse")
    ax1.set_title("fMRI encoder impulse response (peak-normalised)", fontsize=8)
    ax1.legend(fontsize=7)
    r = np.asarray(learned["leadfield_r"], float)
    ax2.hist(r[np.isfinite(r)], bins=20, range=(-1, 1), color="tab:blue")
    ax2.set_xlabel("r over channels, learned vs true lead field")
    ax2.set_title(f"EEG encoder, per voxel (median {_fmt(learned['leadfield_r_median'])})",
                  fontsize=8)
    return fig


def plot_training(history_csv):
    """The training (and validation) loss terms per epoch.

    Parameters
    ----------
    history_csv : path-like
        A fit's ``history.csv``.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    with open(history_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    fig = _new_figure((6, 3))
    ax = fig.subplots()
    epochs = [int(r["epoch"]) for r in rows]
    for key in rows[0] if rows else []:
        if key.endswith("loss") or key.startswith(("train_", "val_")):
            vals = [float(r[key]) if r.get(key) not in (None, "") else np.nan for r in rows]
            ax.plot(epochs, vals, "-" if key.startswith("train") else "--", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (normalised data)")
    ax.legend(fontsize=6, ncol=2)
    return fig

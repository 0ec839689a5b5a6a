"""The figure of the data-scaling benchmark: r against minutes of training data per subject.

* :func:`plot_scaling_curves`: one panel per metric (temporal r and spatial r of source
  recovery, held-out MEG r and fMRI r), one row of panels per set of subjects, one line per
  method (:func:`neurofuse.evaluation.scaling.run_scaling_benchmark`).
"""

from __future__ import annotations

import math

import numpy as np

from .figures import _METHOD_COLORS, _new_figure, unsmoothed_method

_RECOVERY_PANELS = (("temporal_r", "source recovery: temporal r"),
                    ("spatial_r", "source recovery: spatial r"))
_PREDICTION_PANELS = (("meg", "held-out MEG r"), ("fmri", "held-out fMRI r"),
                      ("eeg", "held-out EEG r"))
_GRID_KEYS = ("n_meg_subjects", "n_fmri_subjects", "train_minutes")


def _check_rows(rows, name, required):
    if not isinstance(rows, (list, tuple)) or not all(isinstance(r, dict) for r in rows):
        raise TypeError(f"'results[\"{name}\"]' must be a list of dicts, got "
                        f"{type(rows).__name__}.")
    for i, row in enumerate(rows):
        missing = [k for k in required if k not in row]
        if missing:
            raise ValueError(f"results['{name}'][{i}] lacks the keys {missing}; each row needs "
                             f"{list(required)} (rows of run_scaling_benchmark's results.json).")


def _mean_prediction(rows):
    """``{(group, modality, method): {minutes: mean r_mean over subjects}}``."""
    acc = {}
    for r in rows:
        value = r.get("r_mean")
        if value is None or not math.isfinite(float(value)):
            continue
        key = ((int(r["n_meg_subjects"]), int(r["n_fmri_subjects"])), str(r["modality"]),
               str(r["method"]))
        acc.setdefault(key, {}).setdefault(float(r["train_minutes"]), []).append(float(value))
    return {k: {x: float(np.mean(v)) for x, v in d.items()} for k, d in acc.items()}


def plot_scaling_curves(results, *, methods=None, title=None, figsize=None):
    """Source recovery and held-out prediction r against training minutes per subject.

    Parameters
    ----------
    results : dict
        ``results.json`` of :func:`neurofuse.evaluation.scaling.run_scaling_benchmark`:
        ``"source_recovery"`` rows ``{"n_meg_subjects", "n_fmri_subjects", "train_minutes",
        "method", "temporal_r", "spatial_r"}`` and optional ``"prediction"`` rows
        ``{"n_meg_subjects", "n_fmri_subjects", "train_minutes", "modality", "method",
        "r_mean"}`` (averaged over subjects per point).
    methods : sequence of str | None
        Source-recovery methods to draw, in this order (default: order of first appearance).
    title : str | None
    figsize : (float, float) | None
        Default: 3.2 inches per panel wide, 2.8 per row of panels high.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Rows: sets of subjects ("MEG + fMRI"), fewest first; columns: temporal r, spatial r,
        then held-out r per modality present. One line per method against minutes of
        training stories per subject; a smoothed inverse (``"<inverse>+smooth"``) has its
        inverse's colour, dashed; the ridge ceiling is grey.
    """
    if not isinstance(results, dict):
        raise TypeError(f"'results' must be a dict (results.json of the scaling benchmark), "
                        f"got {type(results).__name__}.")
    rec = results.get("source_recovery", [])
    pred = results.get("prediction", [])
    _check_rows(rec, "source_recovery", (*_GRID_KEYS, "method", "temporal_r", "spatial_r"))
    _check_rows(pred, "prediction", (*_GRID_KEYS, "modality", "method"))
    if not rec and not pred:
        raise ValueError("'results' has no source_recovery or prediction rows: nothing to plot.")
    groups = sorted({(int(r["n_meg_subjects"]), int(r["n_fmri_subjects"]))
                     for r in (*rec, *pred)}, key=lambda g: (sum(g), g))
    if methods is None:
        methods = list(dict.fromkeys(str(r["method"]) for r in rec))
    methods = list(methods)
    bases = list(dict.fromkeys(unsmoothed_method(m) for m in methods))
    means = _mean_prediction(pred)
    modalities = {k[1] for k in means}
    panels = ([("rec", k, label) for k, label in _RECOVERY_PANELS] if rec else []) + \
             [("pred", k, label) for k, label in _PREDICTION_PANELS if k in modalities]
    if figsize is None:
        figsize = (3.2 * len(panels) + 1.6, 2.8 * len(groups) + 0.4)
    fig = _new_figure(figsize)
    axes = np.atleast_2d(fig.subplots(len(groups), len(panels), squeeze=False))

    def style(method):
        if method == "ridge":
            return dict(color="0.5", ls="-", marker="s")
        base = unsmoothed_method(method)
        color = _METHOD_COLORS[(bases.index(base) if base in bases else len(bases))
                               % len(_METHOD_COLORS)]
        smoothed = base != method
        return dict(color=color, ls="--" if smoothed else "-", marker="." if smoothed else "o")

    for i, group in enumerate(groups):
        for j, (kind, key, label) in enumerate(panels):
            ax = axes[i, j]
            if kind == "rec":
                for method in methods:
                    pts = sorted((float(r["train_minutes"]), float(r[key])) for r in rec
                                 if str(r["method"]) == method
                                 and (int(r["n_meg_subjects"]), int(r["n_fmri_subjects"])) == group)
                    if pts:
                        ax.plot(*zip(*pts), label=method, lw=1.2, ms=4, **style(method))
            else:
                for (g, modality, method), curve in means.items():
                    if g == group and modality == key:
                        pts = sorted(curve.items())
                        ax.plot(*zip(*pts), label=method, lw=1.2, ms=4, **style(method))
            ax.axhline(0, color="black", lw=0.6)
            if i == 0:
                ax.set_title(label, fontsize=9)
            if i == len(groups) - 1:
                ax.set_xlabel("training minutes per subject", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{group[0]} MEG + {group[1]} fMRI\nmean Pearson r", fontsize=8)
            ax.tick_params(labelsize=7)
    handles = {}
    for ax in axes.ravel():
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside right upper",
                   fontsize=7, frameon=False)
    fig.suptitle(title or "Data scaling: r vs training minutes", fontsize=10)
    return fig


__all__ = ["plot_scaling_curves"]

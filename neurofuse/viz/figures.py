"""The figures of the demo and of the paper's §3-4: sensor topomaps, time courses, training
curves and source-recovery bars.

Every function returns a ``matplotlib.figure.Figure`` that is not registered with pyplot: it
renders with Agg wherever it is saved, needs no display and no ``plt.close``.

* :func:`plot_sensor_topomaps`: per-sensor r on the MEG helmet (Fig. 2, top), magnetometers
  and gradiometers (the two gradiometers of each location averaged) side by side.
* :func:`plot_time_courses`: ground-truth vs estimated source time courses (§4).
* :func:`plot_training_curves`: losses and validation correlations per epoch, with the epoch
  where the MEG-first curriculum switches the fMRI term on (§2.6).
* :func:`plot_recovery_bars`: temporal and spatial r of source recovery per method and noise
  level (Fig. 3).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from .._checks import _check_ndim, _check_positive
from ..stats import pearson_r, zscore
from .surface import _color_limits

_METHOD_COLORS = ("tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown",
                  "tab:pink", "tab:olive", "tab:cyan", "tab:gray")


def _new_figure(figsize, dpi=100):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=dpi, layout="constrained")


def _as_cnr(value) -> float:
    """A CNR from results: a number, ``inf``, or a string such as ``'inf'``/``'Infinity'``."""
    if value is None:
        return math.nan
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("inf", "+inf", "infinity", "+infinity", "∞"):
            return math.inf
        return float(text)
    return float(value)


def format_cnr(value) -> str:
    """A CNR as text: ``'inf'`` for the noiseless case, else ``'%g'``."""
    cnr = _as_cnr(value)
    return "inf" if math.isinf(cnr) and cnr > 0 else f"{cnr:g}"


# ---------------------------------------------------------------------------- topomaps


def _pair_gradiometers(info, grad_picks):
    """Group gradiometer indices by sensor location (``loc[:3]`` rounded to 0.1 mm)."""
    groups: dict[tuple, list[int]] = {}
    for idx in grad_picks:
        key = tuple(np.round(np.asarray(info["chs"][idx]["loc"][:3]) * 1e4).astype(int))
        groups.setdefault(key, []).append(int(idx))
    return list(groups.values())


def plot_sensor_topomaps(values, info, *, title=None, cmap=None, vmin=None, vmax=None,
                         cbar_label="Pearson r", names=False, figsize=(8.0, 3.8)):
    """Topomaps of a per-sensor value (e.g. r) for magnetometers and gradiometers.

    Parameters
    ----------
    values : array, shape (n_channels,)
        One value per channel of ``info`` (non-MEG channels are ignored). NaN values are
        left out of the gradiometer average and of the colour range.
    info : mne.Info
        Channel locations, e.g. :func:`neurofuse.anatomy.make_meg_info`.
    title : str | None
        Figure title.
    cmap, vmin, vmax :
        Colour map and limits shared by both maps; ``None``: symmetric around 0 ('RdBu_r')
        when any value is negative, else ``[0, max]`` ('YlOrRd').
    cbar_label : str
        Label of the shared colour bar.
    names : bool
        Write the channel names (magnetometer name for a gradiometer pair) on the maps.
    figsize : (float, float)

    Returns
    -------
    fig : matplotlib.figure.Figure
        One map per channel type present: "Magnetometers" and "Gradiometers (mean of
        pair)", with one colour bar.
    """
    import matplotlib as mpl
    import mne
    from mne.io.constants import FIFF

    values = _check_ndim("values", values, 1, "(n_channels,)").astype(float)
    if values.shape[0] != len(info["ch_names"]):
        raise ValueError(
            f"'values' must have one entry per channel of 'info' ({len(info['ch_names'])}), "
            f"got shape {values.shape}."
        )
    mag = mne.pick_types(info, meg="mag", ref_meg=False, exclude=())
    grad = mne.pick_types(info, meg="grad", ref_meg=False, exclude=())
    panels = []  # (title, info for positions, values, names)
    if len(mag):
        panels.append(("Magnetometers", mne.pick_info(info, mag), values[mag],
                       [info["ch_names"][i] for i in mag]))
    if len(grad):
        pairs = _pair_gradiometers(info, grad)
        firsts = [p[0] for p in pairs]
        with np.errstate(invalid="ignore"):
            merged = np.array([np.nanmean(values[p]) if np.isfinite(values[p]).any() else np.nan
                               for p in pairs])
        # plot_topomap would RMS-combine gradiometer pairs (losing the sign): present one
        # channel per location as a magnetometer at the same place so the map shows the mean.
        pos_info = mne.pick_info(info, firsts)
        with pos_info._unlock():
            for ch in pos_info["chs"]:
                ch["coil_type"] = FIFF.FIFFV_COIL_VV_MAG_T3
                ch["unit"] = FIFF.FIFF_UNIT_T
        label = "Gradiometers (mean of pair)" if max(map(len, pairs)) > 1 else "Gradiometers"
        panels.append((label, pos_info, merged, [info["ch_names"][i] for i in firsts]))
    if not panels:
        raise ValueError("'info' holds no MEG magnetometers or gradiometers to plot.")
    shown = np.concatenate([p[2] for p in panels])
    vmin, vmax, cmap = _color_limits(shown, vmin, vmax, cmap)

    fig = _new_figure(figsize)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (label, pos_info, vals, ch_names) in zip(axes, panels):
        finite = np.isfinite(vals)
        if not finite.all():
            pos_info = mne.pick_info(pos_info, np.flatnonzero(finite))
            vals, ch_names = vals[finite], [n for n, f in zip(ch_names, finite) if f]
        mne.viz.plot_topomap(vals, pos_info, axes=ax, cmap=cmap, vlim=(vmin, vmax), show=False,
                             contours=0, names=ch_names if names else None, sensors=True)
        ax.set_title(f"{label} (n={len(vals)})")
    sm = mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(vmin, vmax), cmap=cmap)
    fig.colorbar(sm, ax=list(axes), shrink=0.7, label=cbar_label)
    if title:
        fig.suptitle(title)
    return fig


# ---------------------------------------------------------------------------- time courses


def plot_time_courses(truth, estimates, sources, sfreq, max_seconds=10.0, *, tmin=0.0,
                      source_names=None, title=None, figsize=None):
    """Ground-truth vs estimated source time courses at a few sources.

    Each series is z-scored over the samples shown (scales of MNE-type estimates, A·m, and
    model outputs differ by orders of magnitude); the legend gives each method's Pearson r
    with the truth over the whole series.

    Parameters
    ----------
    truth : array, shape (n_sources, n_times)
        Ground-truth source activity.
    estimates : dict of str -> array, shape (n_sources, n_times)
        Estimates per method (e.g. ``{"neurofuse": ..., "fMNE": ...}``).
    sources : sequence of int
        Rows of ``truth`` to show, one panel each.
    sfreq : float
        Sampling frequency in Hz.
    max_seconds : float | None
        Show at most this many seconds from the start (``None``: everything).
    tmin : float
        Time of the first sample in seconds (for the x axis).
    source_names : sequence of str | None
        Panel titles (default ``'source <index>'``).
    title : str | None
    figsize : (float, float) | None

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    truth = _check_ndim("truth", truth, 2, "(n_sources, n_times)")
    if not isinstance(estimates, dict):
        raise TypeError(f"'estimates' must be a dict of method -> array, got {type(estimates).__name__}.")
    for method, est in estimates.items():
        if np.shape(est) != truth.shape:
            raise ValueError(
                f"estimates[{method!r}] must have the shape of 'truth' {truth.shape}, got "
                f"{np.shape(est)}."
            )
    sfreq = _check_positive("sfreq", sfreq)
    sources = [int(s) for s in np.atleast_1d(sources)]
    if not sources:
        raise ValueError("'sources' must name at least one source.")
    bad = [s for s in sources if not -truth.shape[0] <= s < truth.shape[0]]
    if bad:
        raise ValueError(f"'sources' must index rows of 'truth' (0-{truth.shape[0] - 1}), got {bad}.")
    if source_names is not None and len(source_names) != len(sources):
        raise ValueError(
            f"'source_names' must have one name per source ({len(sources)}), got {len(source_names)}."
        )
    n_show = truth.shape[1]
    if max_seconds is not None:
        n_show = min(n_show, max(1, round(_check_positive("max_seconds", max_seconds) * sfreq)))
    times = tmin + np.arange(n_show) / sfreq

    fig = _new_figure(figsize or (9.0, 1.8 * len(sources) + 0.6))
    axes = fig.subplots(len(sources), 1, sharex=True, squeeze=False)[:, 0]
    for i, (ax, src) in enumerate(zip(axes, sources)):
        true_row = np.asarray(truth[src], float)
        ax.plot(times, zscore(true_row[:n_show], axis=None), color="black", lw=1.6, label="ground truth")
        for j, (method, est) in enumerate(estimates.items()):
            row = np.asarray(est[src], float)
            r = float(pearson_r(row, true_row))
            ax.plot(times, zscore(row[:n_show], axis=None), color=_METHOD_COLORS[j % len(_METHOD_COLORS)],
                    lw=1.0, alpha=0.85, label=f"{method} (r = {r:.2f})")
        name = source_names[i] if source_names is not None else f"source {src}"
        ax.set_title(name, loc="left", fontsize=9)
        ax.set_ylabel("z-scored\namplitude")
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=7, ncols=len(estimates) + 1,
                  frameon=False, borderaxespad=0.1)
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(title or "Source time courses (each series z-scored; r over the whole series)",
                 fontsize=10)
    return fig


# ---------------------------------------------------------------------------- training curves


def _read_history(history) -> list[dict]:
    if isinstance(history, (str, Path)):
        path = Path(history)
        if not path.is_file():
            raise FileNotFoundError(f"The training history '{path}' does not exist.")
        with open(path, newline="") as fid:
            history = list(csv.DictReader(fid))
    if not isinstance(history, (list, tuple)) or not all(isinstance(r, dict) for r in history):
        raise TypeError("'history' must be a list of dicts (one per epoch) or the path of a "
                        f"history.csv, got {type(history).__name__}.")
    if not history:
        raise ValueError("'history' is empty: there are no epochs to plot.")
    return list(history)


def _column(history, key) -> np.ndarray:
    out = []
    for row in history:
        value = row.get(key)
        try:
            out.append(float(value) if value not in (None, "") else math.nan)
        except (TypeError, ValueError):
            out.append(math.nan)
    return np.array(out)


def _curriculum_switch(history):
    """First epoch with alpha_fmri > 0 after epochs with alpha_fmri == 0 (None if none)."""
    alpha = _column(history, "alpha_fmri")
    epochs = _column(history, "epoch")
    if np.isnan(epochs).all():
        epochs = np.arange(1, len(history) + 1, dtype=float)
    for i in range(1, len(alpha)):
        if alpha[i - 1] == 0 and alpha[i] > 0:
            return float(epochs[i])
    return None


def plot_training_curves(history, *, title=None, figsize=(9.0, 3.4)):
    """Training and validation loss and validation correlations per epoch.

    Parameters
    ----------
    history : list of dict | str | Path
        One dict per epoch (keys such as ``epoch``, ``train_total``, ``val_total``,
        ``val_meg_r``, ``val_fmri_r``, ``alpha_fmri``), or the path of the trainer's
        ``history.csv``. Missing or empty entries are skipped.
    title : str | None
    figsize : (float, float)

    Returns
    -------
    fig : matplotlib.figure.Figure
        Left: ``train_total`` and ``val_total``; right: ``val_meg_r`` and ``val_fmri_r``.
        A dashed line marks the first epoch with ``alpha_fmri > 0`` (the MEG-first
        curriculum switching the fMRI loss on), after which the total loss has a new term.
    """
    history = _read_history(history)
    epochs = _column(history, "epoch")
    if np.isnan(epochs).all():
        epochs = np.arange(1, len(history) + 1, dtype=float)
    switch = _curriculum_switch(history)

    fig = _new_figure(figsize)
    ax_loss, ax_r = fig.subplots(1, 2)
    panels = ((ax_loss, (("train_total", "train loss"), ("val_total", "validation loss")), "loss"),
              (ax_r, (("val_meg_r", "validation MEG r"), ("val_fmri_r", "validation fMRI r")),
               "weighted mean Pearson r"))
    for ax, series, ylabel in panels:
        drawn = 0
        for key, label in series:
            y = _column(history, key)
            ok = np.isfinite(y)
            if ok.any():
                ax.plot(epochs[ok], y[ok], marker="o", ms=3, lw=1.2, label=label)
                drawn += 1
        if switch is not None:
            ax.axvline(switch, color="0.4", ls="--", lw=1.0,
                       label=f"fMRI loss on (epoch {switch:g})")
        if not drawn:
            ax.text(0.5, 0.5, "not recorded", transform=ax.transAxes, ha="center", color="0.5")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle(title or "Training curves", fontsize=10)
    return fig


# ---------------------------------------------------------------------------- recovery bars


def _noise_label(meg_cnr, fmri_cnr) -> str:
    def fmt(c):
        return "∞" if math.isinf(c) and c > 0 else f"{c:g}"

    return f"MEG {fmt(meg_cnr)}\nfMRI {fmt(fmri_cnr)}"


def unsmoothed_method(method: str) -> str:
    """The method a smoothed one derives from: ``"MNE+smooth"`` -> ``"MNE"``.

    Only the ``+smooth`` suffix is stripped, so an inverse with the model's prior mean
    (``"neurofuse+MNE"``) stays a method of its own (its own colour in the figures).
    """
    return method[:-len("+smooth")] if method.endswith("+smooth") else method


def plot_recovery_bars(rows, *, methods=None, title=None, figsize=(10.0, 3.8)):
    """Source recovery per method and noise level: temporal and spatial r (like Fig. 3).

    Parameters
    ----------
    rows : list of dict
        Keys ``method``, ``meg_cnr``, ``fmri_cnr`` (a number, ``inf`` or ``'inf'``),
        ``temporal_r``, ``spatial_r``; optional ``temporal_r_sd`` / ``spatial_r_sd`` are
        drawn as error bars.
    methods : sequence of str | None
        Methods to show, in this order (default: order of first appearance).
    title : str | None
    figsize : (float, float)

    Returns
    -------
    fig : matplotlib.figure.Figure
        Two panels (temporal r, spatial r); one group of bars per noise level (noiseless
        first, then decreasing MEG CNR, then decreasing fMRI CNR), one bar per method. A
        smoothed inverse (``"<inverse>+smooth"``) has its inverse's colour, hatched; an
        inverse with the model's prior mean (``"neurofuse+MNE"``) has a colour of its own.
    """
    if not isinstance(rows, (list, tuple)) or not all(isinstance(r, dict) for r in rows):
        raise TypeError(f"'rows' must be a list of dicts, got {type(rows).__name__}.")
    if not rows:
        raise ValueError("'rows' is empty: there is no source recovery result to plot.")
    required = ("method", "meg_cnr", "fmri_cnr", "temporal_r", "spatial_r")
    for i, row in enumerate(rows):
        missing = [k for k in required if k not in row]
        if missing:
            raise ValueError(f"rows[{i}] lacks the keys {missing}; each row needs {list(required)}.")
    if methods is None:
        methods = list(dict.fromkeys(str(r["method"]) for r in rows))
    methods = list(methods)
    levels = sorted({(_as_cnr(r["meg_cnr"]), _as_cnr(r["fmri_cnr"])) for r in rows},
                    key=lambda lv: (-lv[0], -lv[1]))
    table = {(str(r["method"]), _as_cnr(r["meg_cnr"]), _as_cnr(r["fmri_cnr"])): r for r in rows}

    fig = _new_figure(figsize)
    axes = fig.subplots(1, 2, sharey=True)
    x = np.arange(len(levels))
    width = 0.8 / max(len(methods), 1)
    base = unsmoothed_method
    bases = list(dict.fromkeys(base(m) for m in methods))
    for ax, key, label in ((axes[0], "temporal_r", "temporal r (per source, over time)"),
                           (axes[1], "spatial_r", "spatial r (per time point, over sources)")):
        for j, method in enumerate(methods):
            vals, errs = [], []
            for level in levels:
                row = table.get((method, *level))
                vals.append(math.nan if row is None else float(row[key]))
                sd = None if row is None else row.get(f"{key}_sd")
                errs.append(math.nan if sd is None else float(sd))
            errs = np.array(errs)
            ax.bar(x + (j - (len(methods) - 1) / 2) * width, vals, width * 0.95,
                   yerr=None if np.isnan(errs).all() else np.nan_to_num(errs),
                   color=_METHOD_COLORS[bases.index(base(method)) % len(_METHOD_COLORS)],
                   hatch="///" if method.endswith("+smooth") else None, edgecolor="white",
                   linewidth=0, label=method, capsize=2)
        ax.set_xticks(x, [_noise_label(*lv) for lv in levels], fontsize=8)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("noise level (CNR)")
    axes[0].set_ylabel("mean Pearson r with ground truth")
    axes[0].legend(fontsize=8, frameon=False)
    fig.suptitle(title or "Source recovery", fontsize=10)
    return fig

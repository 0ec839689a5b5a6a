"""System B's figures (paper eeg-to-meg-generative, Fig. 3-5 style).

* :func:`plot_topomaps`: topographies of the EEG, the real MEG and each synthetic MEG at one
  latency of a class-averaged response (Fig. 3).
* :func:`plot_band_metrics`: per-band Pearson r, RMSE, NMI and SSIM of each method's MEG
  against the real MEG (Fig. 4).
* :func:`plot_decoding`: decoding accuracy and F1 from EEG, EEG + each method's MEG and EEG +
  real MEG per task (Fig. 5/6).
* :func:`report_sections`: the sections of ``neurofuse eeg2meg evaluate``'s report (with
  the paper's Table I and decoding F1 beside ours).

Every function returns a ``matplotlib.figure.Figure`` not registered with pyplot.
"""

from __future__ import annotations

import numpy as np

from .figures import _METHOD_COLORS, _new_figure
from .report import rows_to_html

__all__ = ["plot_band_metrics", "plot_decoding", "plot_topomaps", "report_sections"]

_METRICS = (("pearson", "Pearson r"), ("rmse", "RMSE (z units)"), ("nmi", "NMI"),
            ("ssim", "SSIM"))


def plot_band_metrics(rows):
    """Per-band fidelity of each method's MEG (one panel per metric).

    Parameters
    ----------
    rows : list of dict
        ``{"method", "band", "pearson", "rmse", "nmi", "ssim"}`` rows.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    methods = list(dict.fromkeys(r["method"] for r in rows))
    bands = list(dict.fromkeys(r["band"] for r in rows))
    fig = _new_figure(figsize=(10, 2.6))
    axes = fig.subplots(1, len(_METRICS))
    x = np.arange(len(bands))
    for ax, (key, label) in zip(axes, _METRICS):
        for i, m in enumerate(methods):
            vals = [next((r[key] for r in rows if r["method"] == m and r["band"] == b), np.nan)
                    for b in bands]
            ax.plot(x, vals, "o-", ms=3, lw=1, label=m, color=_METHOD_COLORS[i % len(
                _METHOD_COLORS)])
        ax.set_xticks(x, bands, fontsize=7)
        ax.set_title(label, fontsize=8)
    axes[0].legend(fontsize=6)
    return fig


def plot_decoding(rows, *, score="accuracy"):
    """Decoding score per task and method (bars).

    Parameters
    ----------
    rows : list of dict
        ``{"method", "task", "accuracy", "f1"}`` rows.
    score : 'accuracy' | 'f1'

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    methods = list(dict.fromkeys(r["method"] for r in rows))
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig = _new_figure(figsize=(1.6 + 1.8 * len(tasks), 2.8))
    ax = fig.subplots()
    width = 0.8 / max(len(methods), 1)
    for i, m in enumerate(methods):
        vals = [next((r[score] for r in rows if r["method"] == m and r["task"] == t), np.nan)
                for t in tasks]
        ax.bar(np.arange(len(tasks)) + (i - (len(methods) - 1) / 2) * width, vals, width,
               label=m, color=_METHOD_COLORS[i % len(_METHOD_COLORS)])
    ax.set_xticks(np.arange(len(tasks)), tasks, fontsize=8)
    ax.set_ylabel(score)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=6, ncol=2)
    return fig


def plot_topomaps(eeg_info, meg_info, eeg, real_meg, synthetic, *, sfreq, tmin, time=None):
    """Topographies of EEG, real MEG and synthetic MEG at one latency (Fig. 3).

    Parameters
    ----------
    eeg_info, meg_info : mne.Info
    eeg : array, shape (n_eeg, n_times)
        Class-averaged EEG.
    real_meg : array, shape (n_meg, n_times)
    synthetic : dict of str to array, shape (n_meg, n_times)
        Each method's class-averaged MEG.
    sfreq, tmin : float
    time : float | None
        Latency in s (None: the peak of the real magnetometers' global field power).

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    import mne

    mags = mne.pick_types(meg_info, meg="mag")
    if time is None:
        idx = int(np.argmax((real_meg[mags] ** 2).sum(axis=0)))
    else:
        idx = int(round((time - tmin) * sfreq))
    mag_info = mne.pick_info(meg_info, mags)
    panels = [("EEG", eeg[:, idx], eeg_info), ("real MEG (mag)", real_meg[mags, idx],
                                               mag_info)]
    panels += [(f"{m} (mag)", y[mags, idx], mag_info) for m, y in synthetic.items()]
    fig = _new_figure(figsize=(2.2 * len(panels), 2.4))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (title, values, info) in zip(axes, panels):
        mne.viz.plot_topomap(values, info, axes=ax, show=False, contours=4)
        ax.set_title(title, fontsize=8)
    fig.suptitle(f"t = {tmin + idx / sfreq:.3f} s", fontsize=8)
    return fig


def report_sections(results, ds, data, paired, synthetic):
    """Report sections of a System B evaluation.

    Parameters
    ----------
    results : dict
        :func:`~neurofuse.evaluation.eeg2meg_pipeline.evaluate_eeg2meg`'s results.
    ds : Dataset
    data : PairedEpochs
    paired : dict of str to tuple
        Test subject → ``(eeg, meg, labels)`` of
        :meth:`~neurofuse.systems.eeg2meg.data.PairedEpochs.subject_arrays` (physical units).
    synthetic : dict of str to dict of str to array
        Method → subject → synthetic MEG (physical units), rows as ``paired``.

    Returns
    -------
    sections : dict
        For :func:`~neurofuse.viz.report.make_report`.
    """
    sections = {"Summary": [("MEG fidelity per band", plot_band_metrics(results["signal"]),
                             "Each method's MEG against the real MEG of the held-out "
                             "subjects (Fig. 4).")]}
    if results["decoding"]:
        sections["Summary"].append((
            "Decoding", plot_decoding(results["decoding"]),
            "SVM, 10 runs x 10-fold CV: EEG alone, EEG + each method's MEG, EEG + real MEG "
            "(Fig. 5)."))
    if results.get("cross_dataset"):
        sections["Summary"].append((
            "Decoding on EEG-only subjects", plot_decoding(results["cross_dataset"]),
            "New subjects and a new task, EEG alone vs EEG + synthetic MEG (Fig. 6)."))
    topos = []
    sub = next(iter(paired))
    eeg, real, labels = paired[sub]
    for name, sl in data.set_slices(sub):
        pick = np.flatnonzero(labels[sl] == labels[sl][0])  # the first class's trials
        fig = plot_topomaps(ds.info(sub, "eeg"), ds.info(sub, "meg"),
                            eeg[sl][pick].mean(axis=0), real[sl][pick].mean(axis=0),
                            {m: s[sub][sl][pick].mean(axis=0) for m, s in synthetic.items()},
                            sfreq=data.sfreq,
                            tmin=float(ds.epochs_info(sub, "eeg", name)["tmin"]))
        topos.append((f"{name}, {sub}", fig, "Class-averaged response at the real MEG's "
                      "peak (Fig. 3)."))
    sections["MEG sensor topomaps"] = topos
    beside = results.get("paper")
    if beside:
        sections["Tables"] = [(
            "Beside the paper (Table I, Fig. 5)", rows_to_html(beside),
            "Accuracy and F1 of EEG alone and EEG + each variant's synthetic MEG here (mean "
            "over held-out subjects) beside Li & Wang's (medians over CV runs; their 2-class "
            "task is Somatomotor, their 3-class NOD-MEG in place of our faces; None: not "
            "reported or not scored).")]
    return sections

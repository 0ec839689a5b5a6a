"""Scores used throughout the paper (§3, §4): Pearson r per target, temporal and spatial r.

* :func:`pearson_r`: per target (sensor or source) over time, on held-out data (§3); it lives
  in :mod:`neurofuse.stats` and is re-exported here.
* :func:`temporal_r` / :func:`spatial_r`: source recovery against ground truth (§4, Fig. 3):
  per source over time, and per time point over sources.
* :func:`temporal_lobe_channels`: the MEG sensors over the temporal lobes (Table 1), from the
  Neuromag selections that ship with MNE-Python.
* :func:`top_quartile`: the best 25 % of targets (Table 2, fMRI sources).
* :func:`summarize`: mean ± sd, as the tables report.
"""

from __future__ import annotations

import numpy as np

from .._checks import _check_ndim
from ..stats import pearson_r

__all__ = ["pearson_r", "spatial_r", "summarize", "temporal_lobe_channels", "temporal_r",
           "top_quartile"]


def temporal_r(estimate, truth):
    """Per-source correlation over time between estimate and ground truth.

    Parameters
    ----------
    estimate, truth : array, shape (n_sources, n_times)

    Returns
    -------
    r : array, shape (n_sources,)
    """
    _check_ndim("estimate", estimate, 2, "(n_sources, n_times)")
    return pearson_r(estimate, truth, axis=1)


def spatial_r(estimate, truth):
    """Per-time-point correlation over sources between estimate and ground truth.

    Parameters
    ----------
    estimate, truth : array, shape (n_sources, n_times)

    Returns
    -------
    r : array, shape (n_times,)
    """
    _check_ndim("estimate", estimate, 2, "(n_sources, n_times)")
    return pearson_r(estimate, truth, axis=0)


def temporal_lobe_channels(info):
    """Names of the MEG channels over the left and right temporal lobes.

    Uses MNE-Python's Neuromag ``Left-temporal`` and ``Right-temporal`` selections (78 of the
    306 Vectorview channels), matching names with or without the space (``MEG 0111`` /
    ``MEG0111``).

    Parameters
    ----------
    info : mne.Info

    Returns
    -------
    ch_names : list of str
    """
    import mne

    sel = {n.replace(" ", "") for n in mne.read_vectorview_selection(
        ["Left-temporal", "Right-temporal"], info=None)}
    picked = [ch for ch in info["ch_names"] if ch.replace(" ", "") in sel]
    if not picked:
        raise ValueError("None of the channels are in the Neuromag temporal selections; this "
                         "selection needs Vectorview/TRIUX channel names (MEG0111 ...).")
    return picked


def top_quartile(values):
    """Boolean mask of the top 25 % of finite values (ties at the threshold included)."""
    values = np.asarray(values, float)
    finite = np.isfinite(values)
    if not finite.any():
        return finite
    return finite & (values >= np.quantile(values[finite], 0.75))


def summarize(values):
    """``{"mean", "sd", "n"}`` over the finite values (sd with ddof=1, as tables report)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return {"mean": float(v.mean()) if len(v) else float("nan"),
            "sd": float(v.std(ddof=1)) if len(v) > 1 else float("nan"),
            "n": len(v)}

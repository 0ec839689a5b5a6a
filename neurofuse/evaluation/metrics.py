"""Scores used throughout the paper (§3, §4): Pearson r per target, temporal and spatial r.

* :func:`pearson_r`: per target (sensor or source) over time, on held-out data (§3); it lives
  in :mod:`neurofuse.stats` and is re-exported here.
* :func:`temporal_r` / :func:`spatial_r`: source recovery against ground truth (§4, Fig. 3):
  per source over time, and per time point over sources.
* :func:`temporal_lobe_channels`: the MEG sensors over the temporal lobes (Table 1), from the
  Neuromag selections that ship with MNE-Python: by name on Vectorview/TRIUX, by head-frame
  position on other layouts.
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


#: Farthest a sensor may lie (head frame, m) from the nearest Vectorview location whose
#: selection it takes (about two Vectorview sensor spacings).
TEMPORAL_MAX_DISTANCE = 0.04


def _meg_head_positions(info):
    """``(names, positions (n, 3) in the head frame)`` of the MEG channels (no references)."""
    import mne

    picks = mne.pick_types(info, meg=True, ref_meg=False, exclude=[])
    names = [info["ch_names"][i] for i in picks]
    loc = np.array([info["chs"][i]["loc"][:3] for i in picks], float).reshape(-1, 3)
    if info.get("dev_head_t") is None or not len(picks) or not np.all(np.isfinite(loc)) \
            or np.allclose(loc, 0):
        return names, None
    trans = info["dev_head_t"]["trans"]
    return names, loc @ trans[:3, :3].T + trans[:3, 3]


def _vectorview_temporal_reference():
    """Head-frame positions of the Vectorview sensor locations and whether each is temporal."""
    import mne

    from ..anatomy.sensors import make_meg_info

    ref = make_meg_info()  # real Vectorview geometry at the default head position
    names, pos = _meg_head_positions(ref)
    sel = {n.replace(" ", "") for n in mne.read_vectorview_selection(
        ["Left-temporal", "Right-temporal"], info=None)}
    return pos, np.array([n.replace(" ", "") in sel for n in names])


def temporal_lobe_channels(info, *, by="auto"):
    """Names of the MEG channels over the left and right temporal lobes.

    The selection is MNE-Python's Neuromag ``Left-temporal`` and ``Right-temporal`` (78 of
    the 306 Vectorview channels). On Vectorview/TRIUX names (``MEG 0111`` / ``MEG0111``) it is
    taken by name; on any other layout (CTF, KIT, renamed channels) by position: a channel
    is selected when the nearest Vectorview sensor location, both in the head frame (each
    through its ``dev_head_t``; the Vectorview at neurofuse's default head position), is in
    the selection and lies within :data:`TEMPORAL_MAX_DISTANCE`. The head frame is anchored
    on the nasion and ears, so "over the temporal lobes" means the same there for every
    system.

    Parameters
    ----------
    info : mne.Info
    by : "auto" | "name" | "position"
        ``"auto"``: by name when every MEG channel has a Vectorview name, else by position.

    Returns
    -------
    ch_names : list of str
        In the order of ``info["ch_names"]``.
    """
    import mne

    from .._checks import _check_option

    _check_option("by", by, ["auto", "name", "position"])
    names, pos = _meg_head_positions(info)
    if not names:
        raise ValueError("The info has no MEG channels: the temporal-lobe selection is of MEG "
                         "sensors.")
    vv_names = {n.replace(" ", "") for n in mne.read_vectorview_selection(
        ["Left", "Right", "Vertex"], info=None)}  # every Vectorview channel
    if by == "auto":
        by = "name" if all(n.replace(" ", "") in vv_names for n in names) else "position"
    if by == "name":
        sel = {n.replace(" ", "") for n in mne.read_vectorview_selection(
            ["Left-temporal", "Right-temporal"], info=None)}
        picked = [ch for ch in names if ch.replace(" ", "") in sel]
        if not picked:
            raise ValueError("None of the channels are in the Neuromag temporal selections; "
                             "by='name' needs Vectorview/TRIUX channel names (MEG0111 ...). "
                             "Use by='position' for another sensor layout.")
        return picked
    if pos is None:
        raise ValueError(
            "The MEG channels are not Vectorview/TRIUX channels (by name), and their positions "
            "cannot place them over the temporal lobes: the info needs 'dev_head_t' and coil "
            "positions (chs[i]['loc'][:3]). Read the recording with MNE-Python (which fills "
            "both), or pick the channels yourself.")
    ref_pos, ref_temporal = _vectorview_temporal_reference()
    d = np.linalg.norm(pos[:, None, :] - ref_pos[None, :, :], axis=-1)  # (n, 306)
    nearest = d.argmin(axis=1)
    keep = ref_temporal[nearest] & (d[np.arange(len(names)), nearest] <= TEMPORAL_MAX_DISTANCE)
    if not keep.any():
        raise ValueError(f"No MEG channel lies within {TEMPORAL_MAX_DISTANCE * 1e3:.0f} mm of "
                         "the Vectorview temporal sensors in the head frame: check the info's "
                         "dev_head_t (device to head, metres) and coil positions.")
    return [n for n, k in zip(names, keep) if k]


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

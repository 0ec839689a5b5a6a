"""dSPM source imaging from EEG, EEG + real MEG and EEG + synthetic MEG (paper §III-D, Fig. 7).

The paper shows pictures; here the estimates are scored against the ground-truth sources of a
simulation.

**Estimate** (:func:`make_dspm`). The epochs of each modality are averaged into one evoked
response (``nave`` = the number of epochs). EEG gets MNE's average-reference projector (which
MNE's inverse requires for EEG). The noise covariance is estimated from the pre-stimulus
baseline of the same epochs (the samples of all epochs pooled; MNE applies the projector to
it) and kept diagonal by default — one noise variance per sensor, so EEG (V), gradiometers (T/m)
and magnetometers (T) are each whitened by their own noise and MNE combines them (a
synthetic MEG is thus whitened by *its own* baseline noise: a generator whose baseline is
nearly noiseless gets a large weight — pass a covariance from real MEG, e.g. of the training
subjects, when that matters); or a given :class:`mne.Covariance` is used. The operator is MNE's fixed-orientation, depth-weighted
(0.8) inverse (:func:`neurofuse.baselines.inverse.make_inverse`) on the channels present, and
dSPM is applied with ``lambda2 = 1 / snr**2`` (:func:`mne.minimum_norm.apply_inverse`).

**Scores** (:func:`score_source_estimate`), at one time sample: by default the sample where
the true activity is strongest (largest sum over sources of squared truth), otherwise the
sample nearest to ``time``; distances in mm on the forward's source space (``src[i]["rr"]``):

* ``localization_error_mm``: from the source of largest ``|dSPM|`` to the nearest *truly
  active* source (``|truth| >= true_threshold * max |truth|`` at that sample) — the peak
  localisation error;
* ``peak_position_error_mm`` and ``spatial_deviation_mm``:
  :func:`mne.simulation.metrics.peak_position_error` /
  :func:`~mne.simulation.metrics.spatial_deviation_error` (the ``|dSPM|``-weighted centre of
  mass of the sources above ``threshold`` of the peak, and the weighted spread around the
  true source); defined for a *single* true dipole only, NaN otherwise;
* ``region_localization_error_mm``: :func:`mne.simulation.metrics.region_localization_error`
  (sources above ``rle_threshold`` of the peak in both maps);
* ``cosine``: :func:`mne.simulation.metrics.cosine_score` of the signed maps (1 = same
  pattern up to a positive scale).

:func:`compare_source_imaging` runs the three conditions of Fig. 7 on the same EEG;
:func:`combine_forwards` makes the EEG + MEG forward from one forward per modality.
"""

from __future__ import annotations

import numpy as np

from ..._checks import _check_finite, _check_option, _check_positive, _check_type
from ..._logging import logger, verbose

__all__ = [
    "SOURCE_CONDITIONS", "SOURCE_SCORES", "combine_forwards", "compare_source_imaging",
    "make_dspm", "score_source_estimate",
]

#: The conditions of :func:`compare_source_imaging` (Fig. 7).
SOURCE_CONDITIONS = ("eeg", "eeg+real_meg", "eeg+synthetic_meg")
#: The keys of :func:`score_source_estimate`.
SOURCE_SCORES = ("localization_error_mm", "peak_position_error_mm", "spatial_deviation_mm",
                 "region_localization_error_mm", "cosine")


def combine_forwards(meg_forward, eeg_forward):
    """One EEG + MEG forward from an MEG and an EEG forward on the same source space.

    For stores that keep one forward per modality. Rows: the MEG channels, then the EEG
    channels, as :func:`neurofuse.anatomy.make_forward` with ``meg=True, eeg=True`` orders
    them; the free-orientation solution MNE keeps for depth weighting is stacked too. The
    inputs are not modified (unlike MNE's private ``_merge_fwds``, which also leaves the
    channel info of the EEG out).

    Parameters
    ----------
    meg_forward, eeg_forward : mne.Forward
        Fixed orientation, same sources (vertices, orientations, coordinate frame).

    Returns
    -------
    forward : mne.Forward
        Lead field shape (n_meg + n_eeg, n_sources).
    """
    from copy import deepcopy

    import mne

    _check_type("meg_forward", meg_forward, mne.Forward, "mne.Forward")
    _check_type("eeg_forward", eeg_forward, mne.Forward, "mne.Forward")
    for name, fwd, kind in (("meg_forward", meg_forward, "meg"),
                            ("eeg_forward", eeg_forward, "eeg")):
        other = "eeg" if kind == "meg" else "meg"
        if not len(_forward_picks(fwd, kind)) or len(_forward_picks(fwd, other)):
            raise ValueError(f"'{name}' must hold only {kind.upper()} channels, got "
                             f"{len(_forward_picks(fwd, 'meg'))} MEG and "
                             f"{len(_forward_picks(fwd, 'eeg'))} EEG channels.")
    a, b = meg_forward, eeg_forward
    same = (a["nsource"] == b["nsource"] and a["source_ori"] == b["source_ori"]
            and a["coord_frame"] == b["coord_frame"]
            and all(np.array_equal(x["vertno"], y["vertno"]) for x, y in zip(a["src"], b["src"]))
            and (a.get("_orig_sol") is None) == (b.get("_orig_sol") is None))
    if not same:
        raise ValueError("'meg_forward' and 'eeg_forward' are not on the same source space "
                         f"({a['nsource']} vs {b['nsource']} sources, or different vertices, "
                         "orientations or coordinate frames): compute both for the same "
                         "subject and spacing.")
    fwd = a.copy()  # deep
    fwd["sol"]["data"] = np.concatenate([a["sol"]["data"], b["sol"]["data"]], axis=0)
    fwd["sol"]["nrow"] = a["sol"]["nrow"] + b["sol"]["nrow"]
    fwd["sol"]["row_names"] = list(a["sol"]["row_names"]) + list(b["sol"]["row_names"])
    if a.get("_orig_sol") is not None:
        fwd["_orig_sol"] = np.concatenate([a["_orig_sol"], b["_orig_sol"]], axis=0)
    fwd["nchan"] = a["nchan"] + b["nchan"]
    info = fwd["info"]
    with info._unlock():
        info["chs"] = info["chs"] + deepcopy(b["info"]["chs"])
        info["bads"] = list(a["info"]["bads"]) + list(b["info"]["bads"])
        info._update_redundant()
    fwd["info"] = info
    return fwd


def _forward_picks(forward, kind):
    import mne

    if kind == "eeg":
        return mne.pick_types(forward["info"], meg=False, eeg=True, exclude=[])
    return mne.pick_types(forward["info"], meg=True, eeg=False, ref_meg=False, exclude=[])


def _check_modality(name, data, forward, kind):
    data = np.asarray(data)
    n_fwd = len(_forward_picks(forward, kind))
    if data.ndim != 3:
        raise ValueError(f"'{name}' must have shape (n_epochs, n_channels, n_times) (3-D), got "
                         f"shape {data.shape}.")
    if n_fwd == 0:
        raise ValueError(f"'{name}' was given but the forward has no {kind.upper()} channels: "
                         "compute it with make_forward(subject, meg=True, eeg=True).")
    if data.shape[1] != n_fwd:
        raise ValueError(f"'{name}' has {data.shape[1]} channels but the forward has {n_fwd} "
                         f"{kind.upper()} channels: rows must follow the forward's "
                         f"{kind.upper()} channels, in its order.")
    return np.asarray(_check_finite(name, data), dtype=np.float64)


def _measurement_info(fwd_info, picks, sfreq):
    """A full ``mne.Info`` of the forward's channels ``picks`` (a Forward keeps a reduced one,
    without sampling rate or projectors): same channel records and device-to-head transform."""
    from copy import deepcopy

    import mne

    names = [fwd_info["ch_names"][i] for i in picks]
    info = mne.create_info(names, float(sfreq), "misc")
    with info._unlock():
        info["chs"] = [deepcopy(fwd_info["chs"][i]) for i in picks]
        info["dev_head_t"] = deepcopy(fwd_info["dev_head_t"])
        info._update_redundant()
    info._check_consistency()
    return info


def _evoked_and_cov(forward, parts, sfreq, tmin, noise_cov, baseline, diag):
    """EpochsArray of the given channels → (evoked with EEG average reference, noise cov)."""
    from copy import deepcopy

    import mne

    picks = np.concatenate([_forward_picks(forward, kind) for kind, _ in parts])
    info = _measurement_info(forward["info"], picks, sfreq)
    data = np.concatenate([x for _, x in parts], axis=1)
    epochs = mne.EpochsArray(data, info, tmin=tmin, baseline=None, verbose="error")
    if any(kind == "eeg" for kind, _ in parts):
        epochs.set_eeg_reference("average", projection=True, verbose="error")
    if isinstance(noise_cov, str):
        lo, hi = baseline
        lo = epochs.times[0] if lo is None else float(lo)
        hi = 0.0 if hi is None else float(hi)
        in_base = (epochs.times >= lo - 1e-9) & (epochs.times <= hi + 1e-9)
        if in_base.sum() < 2:
            raise ValueError(
                f"noise_cov='baseline' needs pre-stimulus samples: the epochs start at "
                f"tmin={tmin:g} s and baseline={baseline!r} holds {in_base.sum()} sample(s). "
                "Pass epochs that start before 0, another 'baseline', or a noise covariance "
                "(mne.Covariance).")
        if diag:  # per-sensor variances of the pooled baseline samples (MNE projects the
            # covariance with the average-reference projector, as it does the data)
            base = data[:, :, in_base].transpose(1, 0, 2).reshape(data.shape[1], -1)
            var = base.var(axis=1, ddof=1)  # (C,) over n_epochs * n_baseline samples
            noise_cov = mne.Covariance(var, list(info["ch_names"]), [],
                                       deepcopy(epochs.info["projs"]),
                                       base.shape[1] - 1, verbose="error")
        else:
            noise_cov = mne.compute_covariance(epochs, tmin=lo, tmax=hi, method="empirical",
                                               verbose="error")  # full: cross-sensor terms
    evoked = epochs.average()
    return evoked, noise_cov


@verbose
def make_dspm(forward, eeg, meg=None, *, sfreq, tmin, noise_cov="baseline",
              baseline=(None, 0.0), diag=True, snr=3.0, depth=0.8, verbose=None):
    """dSPM estimate of the evoked response of EEG epochs (and MEG epochs, if given).

    Parameters
    ----------
    forward : mne.Forward
        Fixed-orientation forward with EEG and MEG channels (e.g.
        ``neurofuse.anatomy.make_forward(subject, meg=True, eeg=True)``).
    eeg : array, shape (n_epochs, n_eeg, n_times)
        Rows follow the forward's EEG channels (volts).
    meg : array, shape (n_epochs, n_meg, n_times) | None
        Rows follow the forward's MEG channels (T/m, T); real or synthetic. None: EEG only.
    sfreq : float
        Sampling rate (Hz).
    tmin : float
        Time of the first sample (s); the stimulus is at 0.
    noise_cov : 'baseline' | mne.Covariance
        ``'baseline'``: estimated from the samples in ``baseline`` of the same epochs; or a
        covariance covering the channels used.
    baseline : tuple of (float | None, float | None)
        The pre-stimulus window (s) of ``noise_cov='baseline'``; None: the epoch start / 0.
    diag : bool
        Keep only the variances of the baseline covariance.
    snr : float
        Assumed SNR of the evoked response: ``lambda2 = 1 / snr**2``.
    depth : float | None
        Depth-weighting exponent.
    verbose : bool | str | None
        Log level for this call.

    Returns
    -------
    stc : mne.SourceEstimate
        dSPM values, shape (n_sources, n_times), on the forward's source space.
    """
    import mne
    from mne.minimum_norm import apply_inverse

    from ...baselines.inverse import make_inverse

    _check_type("forward", forward, mne.Forward, "mne.Forward")
    sfreq = _check_positive("sfreq", sfreq)
    snr = _check_positive("snr", snr)
    if not isinstance(noise_cov, mne.Covariance):
        _check_option("noise_cov", noise_cov, ["baseline"],
                      extra="Or pass an mne.Covariance of the channels used.")
    parts = [("eeg", _check_modality("eeg", eeg, forward, "eeg"))]
    if meg is not None:
        parts.append(("meg", _check_modality("meg", meg, forward, "meg")))
        if parts[1][1].shape[0] != parts[0][1].shape[0] or \
                parts[1][1].shape[2] != parts[0][1].shape[2]:
            raise ValueError(f"'meg' must be epoch- and time-aligned with 'eeg' (shape "
                             f"{parts[0][1].shape}), got shape {parts[1][1].shape}.")
    evoked, cov = _evoked_and_cov(forward, parts, sfreq, tmin, noise_cov, baseline, diag)
    inverse = make_inverse(forward, evoked.info, cov, depth=depth)
    stc = apply_inverse(evoked, inverse, lambda2=1.0 / snr**2, method="dSPM", verbose="error")
    logger.info("dSPM from %s: %d epochs, %d channels, %d sources", "+".join(k for k, _ in parts),
                evoked.nave, len(evoked.ch_names), stc.data.shape[0])
    return stc


def _source_positions(src, vertices):
    return np.concatenate([s["rr"][v] for s, v in zip(src, vertices)], axis=0)


def _stc_like(stc, data):
    import mne

    return mne.SourceEstimate(data, [v.copy() for v in stc.vertices], stc.tmin, stc.tstep,
                              subject=stc.subject)


def _single_sample(stc, idx, rows=None):
    """``stc`` at time index ``idx`` (optionally only the sources ``rows``)."""
    import mne

    data = stc.data[:, idx:idx + 1]
    if rows is None:
        return mne.SourceEstimate(data, [v.copy() for v in stc.vertices], stc.times[idx],
                                  stc.tstep, subject=stc.subject)
    offsets = np.cumsum([0] + [len(v) for v in stc.vertices])
    vertices = [v[rows[(rows >= a) & (rows < b)] - a]
                for v, a, b in zip(stc.vertices, offsets[:-1], offsets[1:])]
    return mne.SourceEstimate(data[rows], vertices, stc.times[idx], stc.tstep,
                              subject=stc.subject)


def score_source_estimate(stc, truth, src, *, time=None, threshold="50%",
                          rle_threshold="90%", true_threshold=0.5):
    """Score a source estimate against the ground-truth sources at one time sample.

    Parameters
    ----------
    stc : mne.SourceEstimate
        The estimate (e.g. :func:`make_dspm`), shape (n_sources, n_times).
    truth : mne.SourceEstimate | array, shape (n_sources, n_times)
        The true source time courses on the same sources and samples (an array's rows follow
        ``stc.vertices``).
    src : mne.SourceSpaces
        The source space of both (``forward["src"]``): the positions.
    time : float | None
        Score at the sample nearest to ``time`` (s); None: the sample of strongest true
        activity.
    threshold : str | float
        Of :func:`mne.simulation.metrics.peak_position_error` and
        :func:`~mne.simulation.metrics.spatial_deviation_error` (on the estimate).
    rle_threshold : str | float
        Of :func:`mne.simulation.metrics.region_localization_error` (both maps).
    true_threshold : float
        Sources with ``|truth| >= true_threshold * max |truth|`` are the truly active ones of
        ``localization_error_mm``.

    Returns
    -------
    scores : dict
        :data:`SOURCE_SCORES` (floats; NaN where undefined), plus ``"time"`` (s) and
        ``"n_true_sources"``.
    """
    import mne
    from mne.simulation.metrics import (
        cosine_score,
        peak_position_error,
        region_localization_error,
        spatial_deviation_error,
    )

    _check_type("stc", stc, mne.SourceEstimate, "mne.SourceEstimate")
    true_data = truth.data if isinstance(truth, mne.SourceEstimate) else np.asarray(truth)
    if true_data.shape != stc.data.shape:
        raise ValueError(f"'truth' must have the estimate's shape (n_sources, n_times) = "
                         f"{stc.data.shape}, got {true_data.shape}: give the true sources on "
                         "the forward's source space and the epochs' time samples.")
    if isinstance(truth, mne.SourceEstimate) and any(
            not np.array_equal(a, b) for a, b in zip(truth.vertices, stc.vertices)):
        raise ValueError("'truth' and 'stc' have different vertices: use the same source space.")
    _check_finite("truth", true_data)
    true_stc = _stc_like(stc, np.asarray(true_data, dtype=np.float64))
    if time is None:
        idx = int(np.argmax((true_data**2).sum(axis=0)))
    else:
        idx = int(np.argmin(np.abs(stc.times - float(time))))
    t_true = np.abs(true_data[:, idx])
    if not t_true.max() > 0:
        raise ValueError(f"The true sources are all zero at t = {stc.times[idx]:.3f} s: pick "
                         "another 'time'.")
    pos = _source_positions(src, stc.vertices)
    active = np.flatnonzero(t_true >= true_threshold * t_true.max())
    peak = int(np.argmax(np.abs(stc.data[:, idx])))
    scores = {"time": float(stc.times[idx]),
              "n_true_sources": int(np.count_nonzero(t_true))}
    scores["localization_error_mm"] = float(
        1e3 * np.min(np.linalg.norm(pos[active] - pos[peak], axis=1)))
    est_t = _single_sample(stc, idx)
    true_t = _single_sample(true_stc, idx)
    nonzero = np.flatnonzero(t_true)
    if len(nonzero) == 1:
        one = _single_sample(true_stc, idx, rows=nonzero)
        scores["peak_position_error_mm"] = float(1e3 * peak_position_error(
            one, est_t, src, threshold=threshold, per_sample=False))
        scores["spatial_deviation_mm"] = float(1e3 * spatial_deviation_error(
            one, est_t, src, threshold=threshold, per_sample=False))
    else:
        scores["peak_position_error_mm"] = scores["spatial_deviation_mm"] = float("nan")
    scores["region_localization_error_mm"] = float(1e3 * region_localization_error(
        true_t, est_t, src, threshold=rle_threshold, per_sample=False))
    scores["cosine"] = float(cosine_score(true_t, est_t, per_sample=False))
    return scores


@verbose
def compare_source_imaging(forward, eeg, truth, *, sfreq, tmin, real_meg=None,
                           synthetic_meg=None, time=None, return_estimates=False, verbose=None,
                           **kwargs):
    """dSPM from EEG, EEG + real MEG and EEG + synthetic MEG, scored against the truth.

    Parameters
    ----------
    forward : mne.Forward
        Fixed-orientation EEG + MEG forward.
    eeg : array, shape (n_epochs, n_eeg, n_times)
    truth : mne.SourceEstimate | array, shape (n_sources, n_times)
        True sources of the evoked response on the forward's sources and the epochs' samples.
    sfreq, tmin : float
        As :func:`make_dspm`.
    real_meg, synthetic_meg : array, shape (n_epochs, n_meg, n_times) | None
        Conditions whose MEG is None are skipped.
    time : float | None
        As :func:`score_source_estimate` (None: the sample of strongest true activity).
    return_estimates : bool
        Also return the estimates.
    verbose : bool | str | None
        Log level for this call.
    **kwargs
        Passed to :func:`make_dspm` (``noise_cov``, ``baseline``, ``diag``, ``snr``,
        ``depth``).

    Returns
    -------
    scores : dict of str to dict
        Per condition of :data:`SOURCE_CONDITIONS` run, :func:`score_source_estimate`.
    estimates : dict of str to mne.SourceEstimate
        Only with ``return_estimates=True``.
    """
    scores, estimates = {}, {}
    for name, meg in (("eeg", None), ("eeg+real_meg", real_meg),
                      ("eeg+synthetic_meg", synthetic_meg)):
        if name != "eeg" and meg is None:
            continue
        stc = make_dspm(forward, eeg, meg, sfreq=sfreq, tmin=tmin, **kwargs)
        scores[name] = score_source_estimate(stc, truth, forward["src"], time=time)
        estimates[name] = stc
        logger.info("%s: localisation error %.1f mm, cosine %.3f", name,
                    scores[name]["localization_error_mm"], scores[name]["cosine"])
    return (scores, estimates) if return_estimates else scores

"""One EEG–fMRI run: the EEG checked for gradient artefacts, aligned with the first volume,
resampled, and cut to the volumes both cover; the BOLD volumes; the events."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...._logging import logger
from ....preprocessing.mr_artifacts import check_gradient_artifact
from .._bids import read_raw_bids, read_table, to_float
from .layout import PURPOSE, find_volume_onsets


@dataclass
class Run:
    """What one run contributes to the store.

    Attributes
    ----------
    name : str
        The story name (the EEG file's BIDS name without ``_eeg``).
    eeg : array, shape (n_channels, n_times)
        Volts, at the store's rate, from the first volume on.
    info : mne.Info
        The EEG channels at the store's rate.
    bold : array, shape (n_x, n_y, n_z, n_trs)
    affine : array, shape (4, 4)
    events : dict of str to array
        Onsets (s from the first volume) of each event kind.
    report : dict
        JSON: files, alignment, gradient score, counts.
    """

    name: str
    eeg: np.ndarray
    info: object
    bold: np.ndarray
    affine: np.ndarray
    events: dict = field(default_factory=dict)
    report: dict = field(default_factory=dict)


def event_name(trial_type) -> str:
    """A trial type as a store event name (letters, digits, ``.``, ``_``, ``-``)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(trial_type).strip()).strip("_")
    return name if name and name[0].isalnum() else f"e{name}"


def _events_from_annotations(onsets, descriptions, t0, duration, skip):
    out = {}
    for onset, desc in zip(onsets, descriptions):
        if desc == skip or desc.upper().startswith(("BAD", "EDGE", "NEW SEGMENT")):
            continue
        t = float(onset) - t0
        if 0 <= t < duration:
            out.setdefault(event_name(desc), []).append(t)
    return out


def _events_from_bold(bold, duration):
    """Events of the BOLD's ``_events.tsv`` (onsets from the first volume, BIDS)."""
    name = bold.name.replace(".nii.gz", "").replace(".nii", "")
    path = bold.with_name(name.rsplit("_", 1)[0] + "_events.tsv")
    if not path.is_file():
        return {}, None
    fields, rows = read_table(path)
    if "onset" not in fields:
        return {}, None
    out = {}
    for row in rows:
        t = to_float(row.get("onset"))
        kind = row.get("trial_type") or "event"
        if math.isfinite(t) and 0 <= t < duration:
            out.setdefault(event_name(kind), []).append(t)
    return out, path


def read_run(bp, bold, *, tr, sfreq, volume_event, gradient_threshold, l_freq, h_freq,
             drop, bids_root):
    """Read, check and align one EEG–fMRI run.

    Parameters
    ----------
    bp : mne_bids.BIDSPath
        The EEG.
    bold : Path
        Its BOLD NIfTI.
    tr : float
        Repetition time, s.
    sfreq : float
        The store's rate, Hz.
    volume_event : 'auto' | str | None
        See :func:`~neurofuse.data.datasets.ds000116.layout.find_volume_onsets`.
    gradient_threshold : float
        See :func:`~neurofuse.preprocessing.mr_artifacts.check_gradient_artifact`.
    l_freq, h_freq : float | None
        Band-pass applied before resampling (None: none).
    drop : list of str
        EEG channels to leave out (bad in some run of the subject).
    bids_root : Path

    Returns
    -------
    run : Run
    """
    import mne
    import nibabel as nib

    raw = read_raw_bids(bp, purpose=PURPOSE)
    fname = Path(bp.fpath).name
    rel = Path(bp.fpath).relative_to(bids_root).as_posix()
    ann_onsets, ann_descs = annotation_times(raw)
    onsets, marker = find_volume_onsets(ann_onsets, ann_descs, tr, volume_event)
    t0 = float(onsets[0]) if onsets.size else 0.0
    if marker is None:
        logger.info("'%s': no scanner volume markers; its first sample is taken as the first "
                    "volume's onset (volume_event).", fname)
    img = nib.load(bold)
    if img.ndim != 4:
        raise ValueError(f"'{bold.name}' is not a 4-D BOLD run (shape {img.shape}).")
    n_vols = img.shape[3]
    eeg_dur = raw.times[-1] + 1.0 / raw.info["sfreq"] - t0
    n_trs = min(n_vols, math.floor(eeg_dur / tr + 1e-9))
    if n_trs < 1:
        raise ValueError(f"'{fname}' holds {eeg_dur:.3f} s of EEG from the first volume on, less "
                         f"than one TR ({tr:g} s): it cannot be paired with '{bold.name}'.")
    if n_trs < n_vols:
        logger.info("'%s': the EEG covers %d of the %d volumes of '%s'; the rest are left out.",
                    fname, n_trs, n_vols, bold.name)
    picks = mne.pick_types(raw.info, eeg=True, exclude=())
    picks = [p for p in picks if raw.ch_names[p] not in set(drop)]
    if not picks:
        raise ValueError(f"'{fname}' has no EEG channel (after leaving out the bad ones "
                         f"{sorted(drop)}).")
    raw.pick([raw.ch_names[p] for p in picks])
    t_end = t0 + n_trs * tr
    if t_end < raw.times[-1]:
        raw.crop(tmin=t0, tmax=t_end, include_tmax=False)
    else:
        raw.crop(tmin=t0)
    raw.load_data(verbose="error")
    native = raw.info["sfreq"]
    # the gradient check: at the recorded rate, over the scan, before any filter
    if math.isinf(gradient_threshold) and n_trs < 4:  # too short to score, and not asked to
        result = {"score": None}
    else:
        result = check_gradient_artifact(raw.get_data(), native, tr,
                                         threshold=gradient_threshold, what=f"The EEG '{rel}'",
                                         ch_names=raw.ch_names)
        logger.info("'%s': TR-harmonic contrast %.3g (threshold %g).", fname, result["score"],
                    gradient_threshold)
    if l_freq is not None or h_freq is not None:
        raw.filter(l_freq, h_freq, verbose="error")
    if abs(native - sfreq) > 1e-6 * sfreq:
        raw.resample(sfreq, verbose="error")
    n_times = math.floor(n_trs * tr * sfreq + 1e-6)
    data = raw.get_data()
    if data.shape[1] < n_times:  # resampling may round the last sample away
        data = np.pad(data, ((0, 0), (0, n_times - data.shape[1])), mode="edge")
    data = data[:, :n_times]
    duration = n_times / sfreq
    events = _events_from_annotations(ann_onsets, ann_descs, t0, duration, marker)
    source = "eeg events.tsv"
    if not events:
        events, path = _events_from_bold(bold, duration)
        source = None if path is None else Path(path).name
    bold_data = np.asarray(img.dataobj[..., :n_trs], dtype=np.float32)
    info = raw.info.copy()
    with info._unlock():
        info["bads"] = []
    report = {"eeg": rel, "bold": bold.relative_to(bids_root).as_posix(), "tr": tr,
              "eeg_sfreq": native, "first_volume_s": t0, "volume_marker": marker,
              "n_volume_markers": int(onsets.size), "n_trs": int(n_trs),
              "n_volumes": int(n_vols), "gradient_score": result["score"],
              "events_from": source,
              "events": {k: len(v) for k, v in events.items()}}
    name = Path(bp.fpath).name.rsplit("_eeg", 1)[0]
    return Run(name=name, eeg=data.astype(np.float32), info=info, bold=bold_data,
               affine=np.asarray(img.affine, dtype=np.float64),
               events={k: np.sort(np.asarray(v)) for k, v in events.items()}, report=report)


def annotation_times(raw):
    """Onsets (s from the recording's first sample) and descriptions of its annotations."""
    ann = raw.annotations
    onsets = np.array(ann.onset, dtype=np.float64)  # a copy: crop shifts them in place
    if ann.orig_time is not None:  # onsets count from orig_time, the first sample from first_time
        onsets = onsets - raw.first_time
    return onsets, [str(d) for d in ann.description]

"""Which recordings an EEG(+MEG) BIDS study holds, and one recording cut into labelled epochs.

What it expects
---------------
* EEG recorded with MEG (the layout of OpenNeuro ds000117, faces / scrambled): MEGIN/Elekta
  ``sub-<label>/[ses-<label>/]meg/sub-<label>_..._meg.fif`` holding MEG **and** EEG channels,
  with ``_events.tsv`` (``trial_type`` per stimulus) and ``_channels.tsv`` (bad channels).
  Calibration / cross-talk files and empty-room recordings are skipped.
* EEG alone: ``sub-<label>/[ses-<label>/]eeg/sub-<label>_..._eeg.{vhdr,edf,bdf,set}``
  (BrainVision, EDF, BDF, EEGLAB), with the same sidecars.

Recordings are used as they are on disk (raw, or a MaxFilter derivative pointed to as
``bids_root``); the loader filters, references and resamples only as asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...._logging import logger
from .._bids import check_subjects_found, is_first_part, open_bids_root, read_raw_bids

PURPOSE = "Reading BIDS EEG and MEG"
EEG_EXTENSIONS = (".vhdr", ".edf", ".bdf", ".set")
_SKIP_TASKS = ("noise", "emptyroom", "empty-room", "empty_room")


def find_eeg_recordings(bids_root, *, subjects=None, task=None) -> dict:
    """The recordings with EEG of a BIDS study, per subject: MEG ``.fif`` files (EEG + MEG)
    and EEG-only files.

    Parameters
    ----------
    bids_root : path-like
    subjects : list of str | None
        Labels (``"01"`` or ``"sub-01"``); default all.
    task : str | list of str | None

    Returns
    -------
    recordings : dict of str to list of mne_bids.BIDSPath
        ``{"sub-01": [BIDSPath, ...]}``, sorted; a subject's recordings are all MEG (``.fif``)
        or all EEG-only: a subject with both keeps its MEG files (which hold its EEG too).
    """
    mne_bids, root, labels, tasks = open_bids_root(bids_root, subjects, task, PURPOSE)
    found = {}
    for datatype, suffix, exts in (("meg", "meg", [".fif"]), ("eeg", "eeg",
                                                              list(EEG_EXTENSIONS))):
        for bp in mne_bids.find_matching_paths(root, subjects=labels, tasks=tasks,
                                               datatypes=datatype, suffixes=suffix,
                                               extensions=exts):
            if not is_first_part(bp) or bp.subject == "emptyroom" \
                    or (bp.task or "").lower() in _SKIP_TASKS:
                continue
            found.setdefault(f"sub-{bp.subject}", {}).setdefault(datatype, []).append(bp)
    out = {}
    for sub, kinds in found.items():
        if "meg" in kinds and "eeg" in kinds:
            logger.info("%s has MEG (.fif) and EEG-only recordings: the MEG files (with their "
                        "EEG channels) are used.", sub)
        out[sub] = sorted(kinds.get("meg") or kinds["eeg"],
                          key=lambda p: (p.session or "", p.task or "", p.run or "",
                                         str(p.fpath)))
    check_subjects_found(labels, out, root, "EEG or MEG recording")
    if not out:
        raise FileNotFoundError(
            f"No recording{' of task ' + repr(task) if task else ''} in '{root}': expected "
            "sub-<label>/[ses-<label>/]meg/*_meg.fif (MEG with EEG channels) or "
            "sub-<label>/[ses-<label>/]eeg/*_eeg.<vhdr|edf|bdf|set>.")
    return dict(sorted(out.items()))


def epoch_set_name(bp) -> str:
    """The epoch-set name of a recording: its BIDS name without subject and suffix."""
    stem = Path(bp.fpath).name.rsplit("_", 1)[0]
    parts = [p for p in stem.split("_") if not p.startswith("sub-")]
    return "_".join(parts) or "recording"


def match_condition(description, conditions) -> str | None:
    """The condition a trial type belongs to: exact match, or one of its ``/``-parts."""
    tags = set(str(description).split("/")) | {str(description)}
    for name, members in conditions.items():
        if tags & set(members):
            return name
    return None


@dataclass
class Cut:
    """Labelled epochs of one recording, per modality (same trials, same order)."""

    data: dict                     # modality -> array (n_epochs, n_channels, n_times)
    infos: dict                    # modality -> mne.Info
    events: np.ndarray             # (n_epochs,) s from the recording's first sample
    labels: np.ndarray             # (n_epochs,) int64
    report: dict = field(default_factory=dict)


def cut_recording(bp, *, modalities, conditions, tmin, tmax, baseline, sfreq, l_freq, h_freq,
                  eeg_reference, drop):
    """Read one recording and cut it into epochs around its labelled events.

    Parameters
    ----------
    bp : mne_bids.BIDSPath
    modalities : tuple of str
        ``("eeg", "meg")`` or ``("eeg",)``.
    conditions : dict of str to list of str
        Label name → trial types (or ``/``-parts of them); labels are 1, 2... in this order.
    tmin, tmax : float
        Epoch window, s.
    baseline : tuple | None
        As :class:`mne.Epochs`.
    sfreq : float | None
        Rate of the epochs (None: the recording's).
    l_freq, h_freq : float | None
        Band-pass of the continuous data before epoching.
    eeg_reference : 'average' | None
        Re-reference the EEG (None: as recorded).
    drop : list of str
        Channels left out.

    Returns
    -------
    cut : Cut
    """
    import mne

    raw = read_raw_bids(bp, purpose=PURPOSE)
    fname = Path(bp.fpath).name
    types = {"eeg": {"eeg": True}, "meg": {"meg": True}}
    picks = {m: [raw.ch_names[i] for i in mne.pick_types(raw.info, **types[m], exclude=())
                 if raw.ch_names[i] not in set(drop)] for m in modalities}
    missing = [m for m in modalities if not picks[m]]
    if missing:
        raise ValueError(f"'{fname}' has no {' or '.join(m.upper() for m in missing)} channel "
                         f"(channel types {sorted(set(raw.get_channel_types()))}); a recording "
                         f"of this subject must have {' and '.join(modalities)} channels.")
    raw.pick([c for m in modalities for c in picks[m]]).load_data(verbose="error")
    with raw.info._unlock():
        raw.info["bads"] = []
    if eeg_reference == "average":
        raw.set_eeg_reference("average", projection=False, verbose="error")
    if l_freq is not None or h_freq is not None:
        raw.filter(l_freq, h_freq, verbose="error")
    code = {}
    events = []
    first = raw.first_time if raw.annotations.orig_time is not None else 0.0
    label_of = {name: i + 1 for i, name in enumerate(conditions)}
    for onset, desc in zip(raw.annotations.onset, raw.annotations.description):
        cond = match_condition(desc, conditions)
        if cond is None:
            continue
        code[desc] = label_of[cond]
        sample = int(round((float(onset) - first) * raw.info["sfreq"])) + raw.first_samp
        events.append([sample, 0, label_of[cond]])
    if not events:
        raise ValueError(f"'{fname}' has no event of the conditions {conditions} (its trial "
                         f"types: {sorted(set(map(str, raw.annotations.description)))[:10]}). "
                         "Pass 'conditions' naming them.")
    events = np.array(sorted(events), dtype=np.int64)
    present = {n: v for n, v in label_of.items() if v in set(events[:, 2])}
    epochs = mne.Epochs(raw, events, event_id=present, tmin=tmin, tmax=tmax,
                        baseline=baseline, preload=True, reject=None, flat=None,
                        reject_by_annotation=False, event_repeated="drop", verbose="error")
    kept = epochs.events.copy()                            # before any resampling
    times = (kept[:, 0] - raw.first_samp) / raw.info["sfreq"]
    if sfreq is not None and abs(epochs.info["sfreq"] - sfreq) > 1e-6 * sfreq:
        epochs.resample(sfreq, verbose="error")
    data, infos = {}, {}
    for m in modalities:
        sub = epochs.copy().pick(picks[m])
        data[m] = sub.get_data(copy=False).astype(np.float32)     # (n, C_m, T)
        infos[m] = sub.info
    report = {"file": fname, "n_events": int(len(events)), "n_epochs": int(len(kept)),
              "counts": {n: int((kept[:, 2] == v).sum()) for n, v in present.items()},
              "sfreq_recorded": float(raw.info["sfreq"])}
    if len(kept) < len(events):
        logger.info("'%s': %d of %d events dropped (window outside the recording).", fname,
                    len(events) - len(kept), len(events))
    return Cut(data=data, infos=infos, events=times, labels=kept[:, 2].astype(np.int64),
               report=report)

"""EEG recorded with MEG (OpenNeuro ds000117's layout), or EEG alone, into labelled epochs.

:func:`prepare_eeg_meg_bids` cuts every recording of a BIDS study around its events
(``trial_type`` of ``events.tsv``, grouped into conditions) and writes per recording one
epoch set per modality — ``eeg`` and ``meg`` from the same trials, in the same order, under
the same name (the store pairs epoch sets by name and index) — or, for EEG-only studies
(BrainVision, EDF, BDF, EEGLAB), ``eeg`` alone. System B (EEG → MEG) trains on the pairs and
synthesises MEG for the EEG-only epochs.
"""

from __future__ import annotations

import time
from pathlib import Path

from ...._checks import _check_option, _check_positive, _check_type
from ...._docs import fill_doc
from ...._logging import logger, progress_enabled, verbose
from ..._prepare import check_out
from .._bids import channel_bads
from .recording import cut_recording, epoch_set_name, find_eeg_recordings


def _check_conditions(conditions):
    """``{label name: [trial types]}`` or None (every trial type its own label)."""
    if conditions is None:
        return None
    if isinstance(conditions, str):
        conditions = [conditions]
    if isinstance(conditions, (list, tuple)):
        conditions = {str(c): [str(c)] for c in conditions}
    _check_type("conditions", conditions, dict, "a list of trial types or a dict "
                "{label name: [trial types]}")
    out = {}
    for name, members in conditions.items():
        members = [members] if isinstance(members, str) else list(members)
        if not members:
            raise ValueError(f"'conditions[{name!r}]' lists no trial type.")
        out[str(name)] = [str(m) for m in members]
    if not out:
        raise ValueError("'conditions' is empty; give trial types or None (all).")
    return out


def _all_trial_types(bp):
    from .._bids import read_table, sidecar

    path = sidecar(bp, "events")
    if not path.is_file():
        return []
    fields, rows = read_table(path)
    if "trial_type" not in fields:
        return []
    return sorted({r["trial_type"] for r in rows if r.get("trial_type")
                   and r["trial_type"] != "n/a" and not r["trial_type"].upper().startswith(
                       ("BAD", "EDGE"))})


@verbose
@fill_doc
def prepare_eeg_meg_bids(bids_root, out, *, subjects=None, task=None, conditions=None,
                         tmin=-0.2, tmax=0.8, baseline=(None, 0), sfreq=None, l_freq=None,
                         h_freq=None, eeg_reference=None, overwrite=False,
                         verbose=None) -> Path:
    """Cut a BIDS EEG + MEG (or EEG-only) study into labelled, paired epoch sets.

    Parameters
    ----------
    bids_root : path-like
        The BIDS dataset (read with mne-bids).
    %(out)s
    subjects : list of str | None
        Subject labels (``"01"`` or ``"sub-01"``); default all.
    task : str | list of str | None
        Only these tasks (ds000117: ``facerecognition``).
    conditions : list of str | dict of str to list of str | None
        The labels: a list of trial types (label ``i + 1`` each), or ``{name: [trial
        types]}`` grouping several (``{"face": ["Famous", "Unfamiliar"], "scrambled":
        ["Scrambled"]}``); a trial type matches exactly or by one of its ``/``-parts
        (``Famous/First`` is ``Famous``). None: every trial type of the first recording's
        ``events.tsv``, sorted, its own label.
    tmin, tmax : float
        Epoch window around each event, s.
    baseline : tuple of (float | None, float | None) | None
        Baseline correction, as :class:`mne.Epochs` (default: the pre-stimulus interval).
    sfreq : float | None
        Rate of the stored epochs (MNE's resampling); None: the recordings' (which must then
        agree). ds000117 is recorded at 1100 Hz.
    l_freq, h_freq : float | None
        Band-pass of the continuous data before epoching (None: none).
    eeg_reference : 'average' | None
        Average-reference the EEG (None: as recorded).
    %(overwrite)s
    %(verbose_loader)s

    Returns
    -------
    out : Path
        The dataset (epochs only: no stories, no features, ``tr`` None).

    Raises
    ------
    FileNotFoundError
        No recording.
    ValueError
        A MEG recording without EEG channels, recordings without the conditions' events,
        recordings at different rates without ``sfreq``, a subject's recordings with
        different channels. Nothing is written at ``out``.

    Notes
    -----
    Per subject the modalities are ``["eeg", "meg"]`` when its recordings are MEG ``.fif``
    files (their EEG channels are the EEG) and ``["eeg"]`` for EEG-only recordings. Each
    recording gives epoch sets named ``<ses>_<task>_<run>`` (its BIDS name without subject
    and suffix), with event times (s from the recording's first sample), labels and
    ``event_id`` (``{condition: label}``). Channels bad in any recording of a subject
    (``_channels.tsv``) are left out of all of them. No artefact rejection: every event whose
    window fits in the recording is kept.
    """
    from tqdm.auto import tqdm

    from ...store import _check_name

    t_start = time.perf_counter()
    out = check_out(out, overwrite)
    tmin, tmax = float(tmin), float(tmax)
    if not tmax > tmin:
        raise ValueError(f"'tmax' ({tmax:g}) must exceed 'tmin' ({tmin:g}).")
    if sfreq is not None:
        sfreq = _check_positive("sfreq", sfreq)
    _check_option("eeg_reference", eeg_reference, ["average", None])
    conditions = _check_conditions(conditions)
    bids_root = Path(bids_root).expanduser()
    recordings = find_eeg_recordings(bids_root, subjects=subjects, task=task)
    if conditions is None:
        first = next(iter(recordings.values()))[0]
        kinds = _all_trial_types(first)
        if not kinds:
            raise ValueError(f"'{Path(first.fpath).name}' has no trial_type in its events.tsv: "
                             "pass 'conditions'.")
        conditions = {k: [k] for k in kinds}
        logger.info("Conditions (labels 1...): %s", list(conditions))
    for sub, bps in recordings.items():
        _check_name("subject name", sub)
        for bp in bps:
            _check_name("epoch set name", epoch_set_name(bp))
    drops = {sub: sorted(set().union(*(channel_bads(bp) for bp in bps)))
             for sub, bps in recordings.items()}
    report = {}
    metadata = {"generator": "neurofuse.data.datasets.ds000117.prepare_eeg_meg_bids",
                "eeg_meg_bids": {"bids_root": str(bids_root), "conditions": conditions,
                                 "tmin": tmin, "tmax": tmax,
                                 "baseline": None if baseline is None else list(baseline),
                                 "l_freq": l_freq, "h_freq": h_freq,
                                 "eeg_reference": eeg_reference, "bads": drops,
                                 "recordings": report}}
    bar = {"disable": not progress_enabled(), "leave": False}
    with _Writer(out, sfreq, overwrite, metadata) as writer:
        for sub, bps in tqdm(recordings.items(), desc="recordings", **bar):
            mods = ("eeg", "meg") if bps[0].datatype == "meg" else ("eeg",)
            names = None
            for bp in bps:
                cut = cut_recording(bp, modalities=mods, conditions=conditions, tmin=tmin,
                                    tmax=tmax, baseline=baseline, sfreq=sfreq, l_freq=l_freq,
                                    h_freq=h_freq, eeg_reference=eeg_reference,
                                    drop=drops[sub])
                w = writer.open(cut.infos["eeg"]["sfreq"])
                if names is None:
                    names = {m: cut.infos[m]["ch_names"] for m in mods}
                    w.add_subject(sub, modalities=list(mods))
                    for m in mods:
                        w.add_sensors(sub, m, info=cut.infos[m],
                                      units="V" if m == "eeg" else "T, T/m")
                elif any(cut.infos[m]["ch_names"] != names[m] for m in mods):
                    raise ValueError(f"The recordings of {sub} have different channels "
                                     f"('{cut.report['file']}'); mark the extra ones bad in "
                                     "_channels.tsv.")
                name = epoch_set_name(bp)
                event_id = {c: i + 1 for i, c in enumerate(conditions)
                            if i + 1 in set(cut.labels.tolist())}
                for m in mods:
                    w.write_epochs(sub, m, name, cut.data[m], events=cut.events,
                                   labels=cut.labels, event_id=event_id, tmin=tmin)
                report[f"{sub}/{name}"] = {**cut.report, "modalities": list(mods)}
    logger.info("EEG/MEG epochs '%s': %d subjects, %d recordings (%.1f s).", out,
                len(recordings), len(report), time.perf_counter() - t_start)
    return out


class _Writer:
    """A DatasetWriter opened at the first recording's rate (known only once it is cut);
    later recordings must come at the same rate."""

    def __init__(self, out, sfreq, overwrite, metadata):
        self.out, self.sfreq, self.overwrite, self.metadata = out, sfreq, overwrite, metadata
        self.writer = None

    def open(self, rate):
        from ...store import DatasetWriter

        if self.writer is None:
            self.writer = DatasetWriter(self.out, sfreq=rate, tr=None, feature_streams=None,
                                        overwrite=self.overwrite, metadata=self.metadata)
            self.writer.__enter__()
        elif abs(self.writer.sfreq - rate) > 1e-6 * rate:
            raise ValueError(f"The recordings come at different rates ({self.writer.sfreq:g} "
                             f"and {rate:g} Hz): pass 'sfreq' to resample them to one.")
        return self.writer

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.writer is not None:
            return self.writer.__exit__(*exc)
        return False

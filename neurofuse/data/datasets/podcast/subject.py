"""One subject of ds005574: every check that needs no signal (:func:`_plan_subject`), then its
signal (:func:`_subject_signal`; the signal processing is :mod:`neurofuse.preprocessing.ieeg`'s).

The authors' preprocessing (tutorial ``02-preprocessing``), which ``signal="highgamma"``
follows: bad channels out; common average reference over the good ECoG channels
(``set_eeg_reference("average", ch_type="ecog")``); notch at the line frequency (the
``PowerLineFrequency`` of ``ieeg.json``, 60 Hz if absent) and its 2nd and 3rd harmonics
(``notch_widths=2``, MNE's FIR notch); band-pass 70-200 Hz (4th-order Butterworth,
zero-phase, ``method="iir"``); Hilbert envelope (``apply_hilbert(envelope=True)``). The paper
(§5) predicts the ECoG of the 9 subjects (1268 electrodes) from its source estimates but does
not describe the ECoG preprocessing; issue 6 brings the nearest source's time course to the
ECoG's rate and, for an envelope signal, to its envelope (``neurofuse joint ecog`` does so when the
stored ``signal`` says "envelope").
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ...._checks import _check_option, _check_positive
from ...._logging import logger
from ....preprocessing.ieeg import extract_signal, resample_from_onset, resample_ratio
from .._bids import read_raw_bids, read_table, sidecar, to_float
from .electrodes import _group_of, read_podcast_electrodes
from .layout import PURPOSE

#: BIDS channel types (``channels.tsv``) and MNE's names for them.
_MNE_TYPES = {"ECOG": "ecog", "SEEG": "seeg", "DBS": "dbs", "EEG": "eeg"}


def _read_events(bp):
    """Rows of the recording's events.tsv, or None without one."""
    path = sidecar(bp, "events")
    if not path.is_file():
        return None, path
    _, rows = read_table(path)
    return rows, path


def _onset_seconds(sub, bp, onset, onset_event):
    """(onset in s from the first sample, how it was found)."""
    if isinstance(onset, dict):
        if sub not in onset:
            raise ValueError(f"'onset' has no entry for {sub} (it has {sorted(onset)}).")
        onset = onset[sub]
    if not isinstance(onset, str):
        return _check_positive(f"onset of {sub}", onset, allow_zero=True), "given"
    _check_option("onset", onset, ("auto",), extra="(or seconds, or {subject: seconds})")
    rows, path = _read_events(bp)
    if rows is None:
        return 0.0, "first sample (no events.tsv)"
    if onset_event is not None:
        rows = [r for r in rows if onset_event in (r.get("trial_type"), r.get("value"))]
        if not rows:
            raise ValueError(f"'{path}' has no event {onset_event!r} (trial_type or value); "
                             "fix 'onset_event', or give the onset in seconds ('onset').")
    elif len(rows) != 1:
        kinds = sorted({str(r.get("trial_type", r.get("value"))) for r in rows})
        raise ValueError(f"'{path}' has {len(rows)} events ({kinds[:8]}); say which marks the "
                         "podcast onset with 'onset_event', or give the onset in seconds "
                         "('onset').")
    value = to_float(rows[0].get("onset"))
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"'{path}': the podcast onset {rows[0].get('onset')!r} is not a time "
                         "in seconds >= 0.")
    return value, f"events.tsv ({path.name})"


def _check_rates(sub, raw, bp, *, signal, band, sfreq):
    sfreq_in = float(raw.info["sfreq"])
    js = Path(bp.copy().update(extension=".json", check=False).fpath)
    if js.is_file():
        try:
            declared = json.loads(js.read_text()).get("SamplingFrequency")
        except json.JSONDecodeError:
            declared = None
        if isinstance(declared, (int, float)) and abs(declared - sfreq_in) > 1e-3 * sfreq_in:
            raise ValueError(f"Wrong sampling rate for {sub}: '{js.name}' declares "
                             f"{declared:g} Hz but the recording '{Path(bp.fpath).name}' is "
                             f"sampled at {sfreq_in:g} Hz. Fix the sidecar or the data file.")
    if sfreq_in < 4 * sfreq:
        raise ValueError(f"Wrong sampling rate for {sub}: {sfreq_in:g} Hz is too low to "
                         f"resample to 'sfreq' = {sfreq:g} Hz (need >= {4 * sfreq:g} Hz).")
    if signal == "highgamma" and band[1] >= sfreq_in / 2:
        raise ValueError(f"Wrong sampling rate for {sub}: {sfreq_in:g} Hz has its Nyquist "
                         f"frequency ({sfreq_in / 2:g} Hz) below the top of 'band' "
                         f"({band[1]:g} Hz). Lower 'band' or use signal='broadband'.")
    return sfreq_in


def _plan_subject(layout, sub, *, signal, band, sfreq, electrode_types, space, onset,
                  onset_event, n_audio, tolerance):
    """Everything about one subject that can be checked without reading its signals."""
    bp = layout.recordings[sub]
    raw = read_raw_bids(bp, purpose=PURPOSE)
    sfreq_in = _check_rates(sub, raw, bp, signal=signal, band=band, sfreq=sfreq)
    mne_types = {_MNE_TYPES[t] for t in electrode_types}
    types = raw.get_channel_types()
    bads = set(raw.info["bads"])
    typed = [ch for ch, t in zip(raw.ch_names, types) if t in mne_types]
    good = [ch for ch in typed if ch not in bads]
    counts = {"channels": len(raw.ch_names), "of_type": len(typed), "bad": len(typed) - len(good)}
    source = raw
    if signal == "ecogprep":
        fif = layout.derivative(sub)
        if not fif.is_file():
            raise FileNotFoundError(f"signal='ecogprep' needs the authors' derivative '{fif}', "
                                    "which is missing; download it or use "
                                    "signal='highgamma'.")
        import mne

        source = mne.io.read_raw_fif(fif, verbose="error")
        if abs(source.info["sfreq"] - sfreq_in) > 1e-3 * sfreq_in \
                or abs(source.n_times - raw.n_times) > 1:
            raise ValueError(f"The derivative '{fif.name}' ({source.n_times} samples at "
                             f"{source.info['sfreq']:g} Hz) does not match the recording "
                             f"({raw.n_times} at {sfreq_in:g} Hz); it cannot share its onset.")
        in_fif = set(source.ch_names)
        counts["not_in_derivative"] = sum(ch not in in_fif for ch in good)
        good = [ch for ch in good if ch in in_fif]
    el = read_podcast_electrodes(bp, space=space)
    lookup = {n: i for i, n in enumerate(el["names"])}
    lookup_ci = {n.lower(): i for i, n in enumerate(el["names"])}
    rows, kept = [], []
    for ch in good:
        i = lookup.get(ch, lookup_ci.get(ch.lower()))
        if i is not None and np.isfinite(el["pos_mm"][i]).all():
            rows.append(i)
            kept.append(ch)
    counts["no_position"] = len(good) - len(kept)
    if counts["no_position"]:
        logger.warning("%s: %d good electrode(s) have no finite position in %s and are left "
                       "out: %s", sub, counts["no_position"], el["file"],
                       [ch for ch in good if ch not in kept][:10])
    if not kept:
        raise ValueError(f"{sub} has no good electrode of types {list(electrode_types)} with a "
                         f"position in {el['file']} (channels: {counts}). Check "
                         "'electrode_types' against the 'type' column of channels.tsv.")
    onset_s, how = _onset_seconds(sub, bp, onset, onset_event)
    onset_sample = round(onset_s * sfreq_in)
    if onset_sample >= raw.n_times:
        raise ValueError(f"{sub}: the podcast onset ({onset_s:.3f} s) is after the end of the "
                         f"recording ({raw.n_times / sfreq_in:.3f} s).")
    up, down = resample_ratio(sfreq_in, sfreq, raw.n_times / sfreq_in)
    n_avail = (raw.n_times - onset_sample) * up // down  # as resample_from_onset
    short = (n_audio - n_avail) / sfreq
    if short > tolerance:
        raise ValueError(
            f"Stories of inconsistent length: {sub}'s recording holds "
            f"{(raw.n_times - onset_sample) / sfreq_in:.3f} s after the podcast onset "
            f"({onset_s:.3f} s, {how}) but the audio lasts {n_audio / sfreq:.3f} s: "
            f"{short:.3f} s are missing, more than 'tolerance' = {tolerance:g} s. Check the "
            "onset, and that the audio is the podcast the subject heard.")
    pos_mm = el["pos_mm"][rows]
    groups = [(el["group"][i] if el["group"] and el["group"][i] else _group_of(ch))
              for i, ch in zip(rows, kept)]
    return {"bp": bp, "raw": raw, "source": source, "picks": kept, "sfreq_in": sfreq_in,
            "onset": onset_s, "onset_how": how, "onset_sample": onset_sample,
            "n_avail": int(min(n_avail, n_audio)), "pos_mm": pos_mm, "group": groups,
            "electrodes_file": el["file"], "units": el["units"], "counts": counts}


def _subject_signal(sub, plan, *, signal, band, sfreq, n_out):
    if signal == "ecogprep":
        src = plan["source"]
        data = src.get_data(picks=plan["picks"])
        out = resample_from_onset(data, plan["sfreq_in"], sfreq, plan["onset_sample"], n_out)
        return out.astype(np.float32), None
    raw = plan["raw"]
    line_freq = raw.info.get("line_freq") or 60.0
    out = extract_signal(lambda chans: raw.get_data(picks=chans), plan["picks"], raw.n_times,
                         sfreq_in=float(raw.info["sfreq"]), line_freq=line_freq, signal=signal,
                         band=band, sfreq=sfreq, onset_sample=plan["onset_sample"], n_out=n_out,
                         desc=f"{sub} channels")
    return out, float(line_freq)

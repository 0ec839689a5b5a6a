"""The "Podcast" ECoG dataset (Zada et al. 2025, OpenNeuro ds005574) into the ECoG dataset format.

:func:`prepare_podcast` reads the BIDS iEEG recordings of a local copy of ds005574, keeps the
good electrodes of the chosen types, extracts the high-gamma envelope (or the broadband
signal) at 50 Hz from the podcast onset, z-scores it, places the electrodes on the fsaverage
(MNI305) brain, computes the stimulus features of ``stimuli/podcast.wav`` and its word-level
transcript (:func:`neurofuse.stimulus.features_from_alignment`), and writes an ECoG dataset
(:func:`neurofuse.data.ecog.write_ecog_dataset`, ``docs/ecog.md``) that
``neurofuse joint ecog`` reads unchanged. ``docs/real-data-podcast.md`` says which files go where.

What the dataset holds (ds005574 1.0.2, as its authors' code reads it)
----------------------------------------------------------------------
Sources: the dataset's tutorials (hassonlab/podcast-ecog-tutorials, ``notebooks/00-intro``,
``02-preprocessing``, ``03-features``, ``04-encoding``, ``05-atlases``), the paper's code
(hassonlab/podcast-ecog-paper, ``code/audioxcorr.py``), the abstract of Zada et al. (Sci. Data
12:1135, 2025; 9 participants, 1,330 grid, strip and depth electrodes, a 30-min podcast), and
third-party code that reads the dataset (file names, columns).

* ``sub-01`` ... ``sub-09`` (``participants.tsv``), no sessions, one recording each:
  ``sub-XX/ieeg/sub-XX_task-podcast_ieeg.edf`` (EDF, 512 Hz, 921,600 samples = 1800.0 s; the
  EDF also holds ``EKG*`` and ``DC*`` channels), ``sub-XX_task-podcast_channels.tsv`` (BIDS
  ``type`` ``ECOG`` / ..., ``status`` ``good`` / ``bad``), ``sub-XX_task-podcast_ieeg.json``.
* Electrode positions: ``sub-XX/ieeg/sub-XX_space-MNI152NLin2009aSym_electrodes.tsv`` with its
  ``sub-XX_space-MNI152NLin2009aSym_coordsystem.json`` (no task entity), plus native-space
  ``sub-XX_space-Other_electrodes.tsv`` (some rows NaN) and ``sub-XX/anat/sub-XX_T1w.nii.gz``.
  The authors' plots use the MNI coordinates as millimetres. The unit is read from the
  coordsystem's ``iEEGCoordinateUnits`` (``mm``, ``cm`` or ``m``); without it, it is inferred
  from the magnitudes (with a warning). *Not confirmed here*: the exact unit string.
* ``stimuli/podcast.wav`` and ``stimuli/podcast_transcript.csv``, a comma-separated table with
  the columns ``word, start, end`` (seconds from the start of the audio; words carry their
  punctuation, e.g. ``"one,"``; first word "Act" at 3.71 s). Word starts are not strictly
  increasing (overlapping forced-alignment intervals). The authors' code mentions words
  without times; rows without a start or end are dropped here (counted in the summary).
  Token-level tables (``stimuli/<model>/transcript.tsv``, columns ``word_idx, word, start,
  end, ...``) are read too: tokens are merged back into words by ``word_idx``.
  *Not found*: a phone-level alignment; the phoneme stream is zeros unless ``phones=`` gives
  one.
* ``derivatives/ecogprep/sub-XX/ieeg/sub-XX_task-podcast_desc-highgamma_ieeg.fif``: the
  authors' high-gamma envelope, 512 Hz, 1800.0 s, good electrodes only, with positions; used
  with ``signal="ecogprep"``.
* Timing: the EDF and the derivative start at the podcast onset. The tutorials put word ``w``
  at sample ``int(start_w * 512)`` of the recording and ``audioxcorr.py`` cross-correlates the
  whole audio envelope with the whole recording. *Not found*: an ``events.tsv``. So the onset
  is read from an ``events.tsv`` when the recording has one (``onset_event``) and is 0 s
  (the first sample) otherwise; a number given as ``onset`` overrides both.

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

What neurofuse writes
---------------------
One story, ``"podcast"``, at ``sfreq`` (50 Hz). For every subject, every electrode that is

1. of a type in ``electrode_types`` in ``channels.tsv`` (default ``ECOG``), and ``good``;
2. in the ``electrodes.tsv`` of ``space`` with finite coordinates;
3. not flat over the story;

gets the signal: ``"highgamma"`` as above on the whole recording, processed in blocks of
channels (the common average is computed over all kept electrodes first), then cut at the
podcast onset and resampled to ``sfreq`` (polyphase, :func:`scipy.signal.resample_poly`, on
a span that starts a whole number of resampling periods before the onset, so output sample
``k`` lies exactly at ``onset + k / sfreq`` as in MNE's ``Raw.resample``, the MEG convention);
``"broadband"`` is the same without band-pass and envelope (common average reference, notch,
anti-alias low-pass of the resampler at ``sfreq / 2``); ``"ecogprep"`` resamples the
authors' derivative. Each electrode is then z-scored over the story (mean 0, s.d. 1; units
``"z"``). The story lasts the audio (``floor(duration * sfreq)`` frames), cut to the shortest
recording when a recording ends within ``tolerance`` seconds before the audio does.

Positions. ``EcogElectrodes.pos_fsaverage`` holds fsaverage surface RAS = MNI305 coordinates in
metres. Positions in an MNI152 space (``MNI152NLin2009aSym`` by default, ``MNI152*``) are
mapped with FreeSurfer's affine MNI152 -> MNI305
(:data:`~neurofuse.anatomy.coordinates.MNI152_TO_MNI305`, from
``$FREESURFER_HOME/average/mni152.register.dat``, FreeSurfer wiki "CoordinateSystems" 8b). It
was made for FSL's MNI152 (NLin6Asym); the nonlinear 2009 templates differ from it by about a
millimetre, less than electrode localisation error. ``fsaverage``/``MNI305`` positions are used
as they are; other spaces are refused. Electrodes are not moved onto the cortex (the
zero-shot mapping takes the nearest source); their distance to the fsaverage pial surface is
reported. The hemisphere is the sign of x. There is no FreeSurfer reconstruction of the
subjects, so ``pos_mri`` is ``None``; the positions as given (mm, in ``space``) are kept in the
subject's ``anatomy``.
"""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._checks import _check_option, _check_positive, _check_type
from .._docs import fill_doc
from .._io import hash_arrays, hash_file
from .._logging import logger, progress_enabled, verbose
from ..stats import zscore
from ._prepare import (
    audio_duration,
    cached,
    check_feature_options,
    check_out,
    import_real,
    lm_id,
    lm_name,
    open_work_dir,
    signature,
    store_cached,
)
from .ecog import EcogElectrodes, write_ecog_dataset
from ..preprocessing.ieeg import BLOCK, extract_signal, resample_from_onset, resample_ratio

__all__ = [
    "PODCAST_STORY",
    "SIGNALS",
    "PodcastLayout",
    "prepare_podcast",
    "read_podcast_electrodes",
    "read_podcast_layout",
    "read_transcript",
]

#: Task label of the recordings and name of the story in the ECoG dataset.
PODCAST_TASK = "podcast"
PODCAST_STORY = "podcast"
DEFAULT_SPACE = "MNI152NLin2009aSym"
#: Signals :func:`prepare_podcast` can extract.
SIGNALS = ("highgamma", "broadband", "ecogprep")
_MNE_TYPES = {"ECOG": "ecog", "SEEG": "seeg", "DBS": "dbs", "EEG": "eeg"}
_DATA_EXTENSIONS = (".edf", ".vhdr", ".bdf", ".set", ".nwb", ".fif")
_UNITS = {"m": 1.0, "cm": 1e-2, "mm": 1e-3}
_WORK_MARKER = "neurofuse-podcast-work.json"
_CACHE_VERSION = 1


def _mne_bids():
    return import_real("mne_bids", "Reading the Podcast BIDS iEEG dataset")


# --------------------------------------------------------------------------------------
# Files of the dataset
# --------------------------------------------------------------------------------------

@dataclass
class PodcastLayout:
    """Where the files of a ds005574 copy are.

    Attributes
    ----------
    root : Path
    audio, transcript : Path
        ``stimuli/podcast.wav`` and ``stimuli/podcast_transcript.csv`` (or as given).
    recordings : dict of str to mne_bids.BIDSPath
        ``{"sub-01": BIDSPath of the iEEG recording, ...}``.
    """

    root: Path
    audio: Path
    transcript: Path
    recordings: dict = field(default_factory=dict)

    @property
    def subjects(self) -> list:
        return list(self.recordings)

    def derivative(self, subject) -> Path:
        """The authors' high-gamma FIF of ``subject`` (``derivatives/ecogprep``)."""
        bp = self.recordings[subject]
        return (self.root / "derivatives" / "ecogprep" / subject / "ieeg"
                / f"{subject}_task-{bp.task}_desc-highgamma_ieeg.fif")


def _subject_label(subject) -> str:
    subject = str(subject)
    return subject if subject.startswith("sub-") else f"sub-{subject}"


def read_podcast_layout(root, *, subjects=None, task=PODCAST_TASK, audio=None,
                        transcript=None) -> PodcastLayout:
    """Find the recordings, the audio and the transcript of a ds005574 copy.

    Parameters
    ----------
    root : path-like
        The dataset folder (with ``sub-XX/ieeg/`` and ``stimuli/``).
    subjects : list of str | None
        ``"sub-01"`` or ``"01"``; default every subject with a recording of ``task``.
    task : str
        BIDS task label of the recordings (``"podcast"``).
    audio, transcript : path-like | None
        Override ``stimuli/podcast.wav`` / ``stimuli/podcast_transcript.csv``.

    Raises
    ------
    FileNotFoundError
        Naming each missing file or folder and where it was looked for.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"'root' = '{root}' is not a folder. Pass the ds005574 folder "
                                "(the one that holds sub-01/ ... and stimuli/).")
    audio = root / "stimuli" / "podcast.wav" if audio is None else Path(audio).expanduser()
    transcript = (root / "stimuli" / "podcast_transcript.csv" if transcript is None
                  else Path(transcript).expanduser())
    missing = [f"the {what} '{path}'" for what, path in (("audio", audio),
                                                          ("transcript", transcript))
               if not path.is_file()]
    mne_bids = _mne_bids()
    found = {}
    for bp in mne_bids.find_matching_paths(root, tasks=task, datatypes="ieeg", suffixes="ieeg",
                                           extensions=list(_DATA_EXTENSIONS)):
        rel = Path(bp.fpath).resolve().relative_to(root.resolve())
        if rel.parts[0] in ("derivatives", "sourcedata", "code") or bp.description:
            continue  # e.g. derivatives/ecogprep/..._desc-highgamma_ieeg.fif
        found.setdefault(f"sub-{bp.subject}", []).append(bp)
    if subjects is None:
        wanted = sorted(found)
        if not wanted:
            missing.append(f"any recording sub-*/ieeg/sub-*_task-{task}_ieeg"
                           f"{{{','.join(_DATA_EXTENSIONS)}}} under '{root}'")
    else:
        wanted = [_subject_label(_check_type("subjects", s, str))
                  for s in ([subjects] if isinstance(subjects, str) else subjects)]
        if len(set(wanted)) != len(wanted):
            raise ValueError(f"'subjects' lists a subject twice: {wanted}.")
        missing += [f"the recording {s}/ieeg/{s}_task-{task}_ieeg.edf" for s in wanted
                    if s not in found]
    if missing:
        raise FileNotFoundError(
            f"Cannot prepare the Podcast dataset in '{root}': missing {'; '.join(missing)}. "
            "Download them (e.g. `datalad get`, or the OpenNeuro ds005574 download page) or fix "
            "'root' / 'subjects' / 'audio' / 'transcript'.")
    recordings = {}
    for sub in wanted:
        paths = sorted(found[sub], key=str)
        if len(paths) > 1:
            raise ValueError(f"{sub} has {len(paths)} recordings of task {task!r} "
                             f"({[p.basename for p in paths]}); prepare_podcast expects one.")
        recordings[sub] = paths[0]
    from .store import _check_name

    for sub in recordings:
        _check_name("subject name", sub)
    return PodcastLayout(root=root, audio=audio, transcript=transcript, recordings=recordings)


# --------------------------------------------------------------------------------------
# Transcript
# --------------------------------------------------------------------------------------

def _read_table(path):
    """Rows of a CSV (``,``) or TSV (``\\t``) file as dicts with lower-case keys."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    delimiter = "\t" if path.suffix.lower() == ".tsv" or (
        "\t" in text.split("\n", 1)[0] and "," not in text.split("\n", 1)[0]) else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    if reader.fieldnames is None:
        raise ValueError(f"'{path}' is empty; expected a header line.")
    reader.fieldnames = [str(f).strip().lower() for f in reader.fieldnames]
    return reader.fieldnames, list(reader)


def _float(value):
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


@verbose
def read_transcript(path, *, verbose=None) -> list:
    """Read a word-level transcript with times: ``[(start, end, word), ...]`` in file order.

    Parameters
    ----------
    path : path-like
        ``stimuli/podcast_transcript.csv`` (columns ``word, start, end``, seconds from the
        start of the audio), or a token table with a ``word_idx`` column (e.g.
        ``stimuli/gpt2-xl/transcript.tsv``), whose tokens are merged into words (first
        start, last end). CSV or TSV (by extension, else sniffed from the header).

    Returns
    -------
    words : list of (float, float, str)
        Rows without a finite start or end, or with an empty word, are left out with a
        warning.
    """
    path = Path(path)
    fields, rows = _read_table(path)
    need = {"word", "start", "end"}
    if not need <= set(fields):
        raise ValueError(f"The transcript '{path}' must have the columns {sorted(need)} (word, "
                         f"onset and offset in s), got {fields}.")
    if "word_idx" in fields:  # a token table: one row per token
        merged = {}
        for row in rows:
            key = row["word_idx"]
            start, end = _float(row["start"]), _float(row["end"])
            if key not in merged:
                merged[key] = [start, end, row["word"]]
            else:
                merged[key][1] = end
        rows = [{"start": s, "end": e, "word": w} for s, e, w in merged.values()]
    words, dropped = [], 0
    for row in rows:
        start, end = _float(row["start"]), _float(row["end"])
        word = (row.get("word") or "").strip()
        if not (math.isfinite(start) and math.isfinite(end)) or not word:
            dropped += 1
            continue
        if end < start:
            raise ValueError(f"The transcript '{path}' has a word ending before it starts: "
                             f"{word!r} from {start:g} to {end:g} s.")
        words.append((start, end, word))
    if dropped:
        logger.warning("Transcript '%s': %d of %d rows have no start/end time or no word and "
                       "are left out.", path.name, dropped, len(rows))
    if not words:
        raise ValueError(f"The transcript '{path}' holds no word with a start and end time.")
    return words


def _check_coverage(words, duration, *, max_gap, tol, what):
    """Raise unless the words lie within the audio and cover it without long silences."""
    starts = np.array([w[0] for w in words])
    ends = np.array([w[1] for w in words])
    bad = np.flatnonzero((starts < -tol) | (ends > duration + tol))
    if len(bad):
        s, e, w = words[bad[0]]
        raise ValueError(
            f"The transcript does not cover the audio: {len(bad)} word(s) lie outside the "
            f"{duration:.3f} s of the audio ({what}), e.g. {w!r} at {s:.3f}-{e:.3f} s. The "
            "transcript belongs to another audio, or its times are not seconds from the start "
            "of podcast.wav.")
    order = np.argsort(starts, kind="stable")
    covered = np.maximum.accumulate(ends[order])  # end of speech so far
    gaps = np.concatenate([[starts[order[0]]], starts[order[1:]] - covered[:-1],
                           [duration - covered[-1]]])
    worst = int(np.argmax(gaps))
    if gaps[worst] > max_gap:
        where = ("before the first word" if worst == 0 else "after the last word"
                 if worst == len(gaps) - 1 else
                 f"before the word {words[order[worst]][2]!r} at {starts[order[worst]]:.1f} s")
        raise ValueError(
            f"The transcript does not cover the audio ({what}, {duration:.1f} s): it has "
            f"{gaps[worst]:.1f} s without words {where}, more than 'max_gap' = {max_gap:g} s. "
            "Check that the transcript is the whole story's and matches the audio, or raise "
            "'max_gap' if the audio really has such a pause.")


def _read_phones(path):
    """Phone intervals from a TextGrid (its phone tier) or a CSV/TSV table."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"'phones' = '{path}' is not a file.")
    if path.suffix.lower() == ".textgrid":
        from ..stimulus.textgrid import get_word_phone_tiers, read_textgrid

        _, phones = get_word_phone_tiers(read_textgrid(path))
        return [(float(p.start), float(p.end), str(p.label)) for p in phones]
    fields, rows = _read_table(path)
    label = next((c for c in ("phone", "phoneme", "label") if c in fields), None)
    if label is None or not {"start", "end"} <= set(fields):
        raise ValueError(f"The phone table '{path}' must have the columns start, end and one "
                         f"of phone / phoneme / label; got {fields}.")
    return [(_float(r["start"]), _float(r["end"]), r[label]) for r in rows
            if math.isfinite(_float(r["start"])) and math.isfinite(_float(r["end"]))]


# --------------------------------------------------------------------------------------
# Electrodes
# --------------------------------------------------------------------------------------

def _space_to_fsaverage_mm(pos_mm, space):
    from ..anatomy.coordinates import mni152_to_mni305

    key = space.lower()
    if key.startswith("mni152"):
        return mni152_to_mni305(pos_mm), "MNI152 -> MNI305 (FreeSurfer affine)"
    if key in ("fsaverage", "mni305"):
        return np.asarray(pos_mm, float), "identity (already fsaverage/MNI305)"
    raise ValueError(f"Electrode positions in space {space!r} cannot be placed on fsaverage: "
                     "neurofuse maps MNI152* and fsaverage/MNI305 positions only. Use the "
                     "dataset's space-MNI152NLin2009aSym files (space='MNI152NLin2009aSym').")


def _electrode_files(bids_path, space):
    ieeg_dir = Path(bids_path.fpath).parent
    sub = f"sub-{bids_path.subject}"
    ses = f"_ses-{bids_path.session}" if bids_path.session else ""
    tsv = sorted(ieeg_dir.glob(f"{sub}{ses}*_space-{space}_electrodes.tsv"))
    js = sorted(ieeg_dir.glob(f"{sub}{ses}*_space-{space}_coordsystem.json"))
    if len(tsv) != 1:
        others = sorted(p.name for p in ieeg_dir.glob(f"{sub}*_electrodes.tsv"))
        raise FileNotFoundError(
            f"{'No' if not tsv else 'Several'} electrode file(s) of space {space!r} for {sub} in "
            f"'{ieeg_dir}' ({[p.name for p in tsv] or others or 'none there'}). ds005574 has "
            f"{sub}_space-MNI152NLin2009aSym_electrodes.tsv; pass 'space' to choose another.")
    return tsv[0], (js[0] if len(js) == 1 else None)


def read_podcast_electrodes(bids_path, *, space=DEFAULT_SPACE) -> dict:
    """Read a recording's electrode positions in ``space`` (BIDS ``electrodes.tsv``).

    Parameters
    ----------
    bids_path : mne_bids.BIDSPath
        The iEEG recording (its folder holds ``sub-XX_space-<space>_electrodes.tsv`` and
        ``..._coordsystem.json``).
    space : str
        BIDS ``space`` entity (``"MNI152NLin2009aSym"`` in ds005574).

    Returns
    -------
    electrodes : dict
        ``"names"`` (list of str), ``"pos_mm"`` (array (n, 3), mm in ``space``, NaN where
        the file has ``n/a``), ``"group"`` (list of str | None), ``"units"`` (as declared or
        inferred), ``"file"`` (the tsv's name), ``"coordsystem"`` (the json, or ``{}``).
    """
    tsv, coord = _electrode_files(bids_path, space)
    fields, rows = _read_table(tsv)
    if not {"name", "x", "y", "z"} <= set(fields):
        raise ValueError(f"'{tsv}' must have the columns name, x, y, z; got {fields}.")
    names = [r["name"].strip() for r in rows]
    pos = np.array([[_float(r[c]) for c in "xyz"] for r in rows], float).reshape(-1, 3)
    meta = {}
    if coord is not None:
        try:
            meta = json.loads(coord.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"'{coord}' is not valid JSON ({err}).") from None
    units = str(meta.get("iEEGCoordinateUnits", "n/a")).strip().lower()
    if units not in _UNITS:
        finite = np.abs(pos[np.isfinite(pos)])
        inferred = "mm" if finite.size and finite.max() > 0.5 else "m"
        logger.warning("%s: iEEGCoordinateUnits is %r; the coordinates (max |value| %.3g) are "
                       "taken as %s.", tsv.name, units, finite.max() if finite.size else 0.0,
                       inferred)
        units = inferred
    group = [r.get("group") or None for r in rows] if "group" in fields else None
    return {"names": names, "pos_mm": pos * (_UNITS[units] * 1e3), "group": group,
            "units": units, "file": tsv.name, "coordsystem": meta}


def _group_of(name) -> str:
    """Electrode array from a name: the label without its trailing number (``LGA12`` -> LGA)."""
    stem = re.sub(r"\d+$", "", name).rstrip("_- ")
    return stem or name


def _pial_distance_mm(pos_m, hemi):
    """Distance of each point to the fsaverage5 pial surface of its hemisphere, mm."""
    from scipy.spatial import cKDTree

    from ..anatomy.template import read_template_surface

    out = np.empty(len(pos_m))
    for h in ("lh", "rh"):
        sel = np.flatnonzero(np.asarray(hemi) == h)
        if len(sel):
            rr, _ = read_template_surface("pial", h)  # mm
            out[sel] = cKDTree(rr).query(pos_m[sel] * 1e3)[0]
    return out


# --------------------------------------------------------------------------------------
# Planning (every check before any computation)
# --------------------------------------------------------------------------------------

def _read_raw(bp):
    import warnings

    mne_bids = _mne_bids()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sidecar notes (several electrode spaces, units)
        return mne_bids.read_raw_bids(bp, verbose="error")


def _read_events(bp):
    """Rows of the recording's events.tsv, or None without one."""
    path = Path(bp.copy().update(suffix="events", extension=".tsv", check=False).fpath)
    if not path.is_file():
        return None, path
    _, rows = _read_table(path)
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
    value = _float(rows[0].get("onset"))
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
    raw = _read_raw(bp)
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


def _subject_key(sub, plan, *, signal, band, sfreq, n_out):
    path = plan["source"].filenames[0]
    return hash_arrays("podcast-ecog", _CACHE_VERSION, sub, signature(path), plan["picks"],
                       signal, list(band), sfreq, plan["onset_sample"], n_out,
                       plan["raw"].info.get("line_freq"), BLOCK)


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


# --------------------------------------------------------------------------------------
# prepare
# --------------------------------------------------------------------------------------

def _check_band(band):
    _check_type("band", band, (list, tuple))
    if len(band) != 2:
        raise ValueError(f"'band' must be (low, high) in Hz, got {band!r}.")
    low, high = (_check_positive("band[0]", band[0]), _check_positive("band[1]", band[1]))
    if low >= high:
        raise ValueError(f"'band' must be (low, high) with low < high, got {band!r}.")
    return (low, high)


def _signal_label(signal, band):
    if signal == "highgamma":
        return (f"high-gamma envelope ({band[0]:g}-{band[1]:g} Hz Butterworth band-pass, "
                "Hilbert amplitude) after common average reference and line-noise notch; "
                "z-scored")
    if signal == "broadband":
        return "broadband (common average reference, line-noise notch, anti-alias low-pass); " \
               "z-scored"
    return "high-gamma envelope (ds005574 derivatives/ecogprep, 70-200 Hz); z-scored"


@verbose
@fill_doc
def prepare_podcast(root, out, *, subjects=None, signal="highgamma", band=(70, 200), sfreq=50.0,
                    language_model="gpt2", layer=7, context_tokens=20,
                    electrode_types=("ECOG",), space=DEFAULT_SPACE, onset="auto",
                    onset_event=None, task=PODCAST_TASK, audio=None, transcript=None,
                    phones=None, tolerance=2.0, max_gap=30.0, overwrite=False, work_dir=None,
                    keep_work=False, device=None, verbose=None) -> Path:
    """Turn the Podcast ECoG dataset (ds005574) into an ECoG dataset for ``neurofuse joint ecog``.

    See the module docstring for what is read and written and why.

    Parameters
    ----------
    root : path-like
        The ds005574 folder (``sub-XX/ieeg/``, ``stimuli/``, optionally ``derivatives/``).
    %(out)s
    subjects : list of str | None
        ``"sub-01"`` or ``"01"``...; default every subject with a ``task`` recording.
    signal : "highgamma" | "broadband" | "ecogprep"
        What to extract: the high-gamma envelope of the raw recording (the authors' recipe),
        the broadband signal, or the authors' high-gamma derivative
        (``derivatives/ecogprep``).
    band : (float, float)
        Band-pass of ``"highgamma"`` in Hz (70-200, as the authors).
    sfreq : float
        Rate of the ECoG and of the features (50 Hz for neurofuse models).
    %(language_model)s
    %(layer_context_tokens)s
    electrode_types : sequence of str
        BIDS channel types to keep (``"ECOG"``, ``"SEEG"``, ``"DBS"``); default ECoG only.
    space : str
        BIDS space of the electrode positions (``"MNI152NLin2009aSym"``).
    onset : "auto" | float | dict of str to float
        Podcast onset in seconds from the first sample of each recording: ``"auto"`` takes
        it from the recording's ``events.tsv`` (see ``onset_event``), or 0 without one
        (ds005574's recordings start at the podcast onset).
    onset_event : str | None
        ``trial_type`` (or ``value``) of the onset event; needed when ``events.tsv`` has
        several events.
    task : str
        BIDS task label (``"podcast"``).
    audio, transcript : path-like | None
        Override ``stimuli/podcast.wav`` / ``stimuli/podcast_transcript.csv``.
    phones : path-like | None
        A phone alignment (TextGrid, or CSV/TSV with start, end, phone) for the phoneme
        stream; ``None`` leaves it at zero (with a warning).
    tolerance : float
        Seconds by which a recording may end before the audio; the story is then cut to the
        shortest recording. More is an error.
    max_gap : float
        Longest stretch in seconds without words allowed at the start, between words and at
        the end of the audio; more means the transcript does not cover the audio.
    %(overwrite)s
    %(work_dir)s
        Here: the signals of each subject and the features.
    %(keep_work)s
    %(device)s
    %(verbose_loader)s

    Returns
    -------
    out : Path
        The ECoG dataset; open it with :func:`neurofuse.data.ecog.read_ecog_dataset`.
    """
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    out = check_out(out, overwrite)  # before any work
    _check_option("signal", signal, SIGNALS)
    band = _check_band(band)
    sfreq = _check_positive("sfreq", sfreq)
    layer, context_tokens = check_feature_options(layer, context_tokens)
    tolerance = _check_positive("tolerance", tolerance, allow_zero=True)
    max_gap = _check_positive("max_gap", max_gap)
    electrode_types = [str(t).upper() for t in ([electrode_types] if isinstance(
        electrode_types, str) else _check_type("electrode_types", electrode_types,
                                               (list, tuple)))]
    for t in electrode_types:
        _check_option("electrode_types", t, list(_MNE_TYPES))
    if not electrode_types:
        raise ValueError("'electrode_types' is empty; give e.g. ('ECOG',).")
    _space_to_fsaverage_mm(np.zeros((1, 3)), _check_type("space", space, str))

    # ---------------------------------------------------------------- check everything first
    layout = read_podcast_layout(root, subjects=subjects, task=task, audio=audio,
                                 transcript=transcript)
    duration = audio_duration(layout.audio)
    n_audio = math.floor(duration * sfreq + 1e-9)
    words = read_transcript(layout.transcript)
    _check_coverage(words, duration, max_gap=max_gap, tol=1.0 / sfreq,
                    what=f"'{layout.audio.name}'")
    phone_list = None if phones is None else _read_phones(phones)
    plans = {}
    for sub in tqdm(layout.subjects, desc="checking recordings", leave=False,
                    disable=not progress_enabled()):
        plans[sub] = _plan_subject(layout, sub, signal=signal, band=band, sfreq=sfreq,
                                   electrode_types=electrode_types, space=space, onset=onset,
                                   onset_event=onset_event, n_audio=n_audio,
                                   tolerance=tolerance)
    n_times = min([n_audio] + [p["n_avail"] for p in plans.values()])
    if n_times < n_audio:
        logger.warning("The shortest recording ends %.3f s before the audio: the story is cut "
                       "to %d frames (%.3f s).", (n_audio - n_times) / sfreq, n_times,
                       n_times / sfreq)

    # ---------------------------------------------------------------- features (cached)
    work = open_work_dir(work_dir, out, marker=_WORK_MARKER,
                         generator="neurofuse.data.podcast.prepare_podcast",
                         cache_version=_CACHE_VERSION)
    counts = {"features": "cached", "computed": [], "cached": []}
    feat_key = hash_arrays("podcast-features", _CACHE_VERSION, signature(layout.audio),
                           hash_file(layout.transcript), lm_id(language_model), layer,
                           context_tokens, sfreq, phone_list)
    feat_npy = work / "features" / f"{PODCAST_STORY}.npy"
    info = cached(feat_npy, feat_key)
    if info is None:
        from ..stimulus.features import features_from_alignment
        from ..stimulus.language_model import as_language_model

        lm = as_language_model(language_model, device=device)
        feats = features_from_alignment(layout.audio, words, phone_list, language_model=lm,
                                        layer=layer, context_tokens=context_tokens,
                                        sfreq=sfreq)
        data = np.asarray(feats.data, np.float32)
        if data.shape[0] != n_audio:
            raise ValueError(f"The features have {data.shape[0]} frames but the audio "
                             f"({duration:.3f} s at {sfreq:g} Hz) needs {n_audio}.")
        info = {"streams": {k: [int(v[0]), int(v[1])] for k, v in feats.streams.items()},
                "metadata": feats.metadata}
        store_cached(feat_npy, feat_key, data, info)
        counts["features"] = "computed"
        del lm

    # ---------------------------------------------------------------- ECoG (cached)
    subjects_out, summary = {}, {}
    for sub in tqdm(layout.subjects, desc="ECoG subjects", disable=not progress_enabled()):
        plan = plans[sub]
        n_out = plan["n_avail"]
        key = _subject_key(sub, plan, signal=signal, band=band, sfreq=sfreq, n_out=n_out)
        npy = work / "ecog" / f"{sub}.npy"
        cinfo = cached(npy, key)
        if cinfo is None:
            data, line_freq = _subject_signal(sub, plan, signal=signal, band=band, sfreq=sfreq,
                                              n_out=n_out)
            cinfo = {"names": plan["picks"], "line_freq": line_freq}
            store_cached(npy, key, data, cinfo)
            counts["computed"].append(sub)
        else:
            counts["cached"].append(sub)
        data = np.load(npy, allow_pickle=False)[:, :n_times].astype(np.float64)
        sd = data.std(axis=1)
        flat = sd <= 1e-12 * max(float(sd.max()), 1e-30)
        if flat.any():
            logger.warning("%s: %d flat electrode(s) left out: %s", sub, int(flat.sum()),
                           [plan["picks"][i] for i in np.flatnonzero(flat)][:10])
        keep = np.flatnonzero(~flat)
        if not len(keep):
            raise ValueError(f"All electrodes of {sub} are flat over the podcast.")
        z = zscore(data[keep], axis=1).astype(np.float32)
        pos_mm = plan["pos_mm"][keep]
        fs_mm, transform = _space_to_fsaverage_mm(pos_mm, space)
        hemi = np.where(fs_mm[:, 0] < 0, "lh", "rh")
        names = [plan["picks"][i] for i in keep]
        electrodes = EcogElectrodes(
            names=names, hemi=[str(h) for h in hemi], pos_fsaverage=fs_mm * 1e-3, pos_mri=None,
            group=[plan["group"][i] for i in keep])
        dist = _pial_distance_mm(fs_mm * 1e-3, hemi)
        anatomy = {"dataset": "ds005574", "subject": sub, "space": space,
                   "electrodes_file": plan["electrodes_file"], "units_in_file": plan["units"],
                   "to_fsaverage": transform, "subject_mri": None,
                   "pos_space_mm": np.round(pos_mm, 4).tolist(),
                   "dist_to_fsaverage_pial_mm": np.round(dist, 2).tolist()}
        subjects_out[sub] = {"electrodes": electrodes, "ecog": {PODCAST_STORY: z},
                             "units": "z", "signal": _signal_label(signal, band),
                             "anatomy": anatomy}
        summary[sub] = {**plan["counts"], "flat": int(flat.sum()), "kept": len(names),
                        "onset_s": plan["onset"], "onset_from": plan["onset_how"],
                        "sfreq_in": plan["sfreq_in"], "line_freq": cinfo.get("line_freq"),
                        "pial_dist_mm_median": float(np.median(dist)),
                        "far_from_cortex": int((dist > 10.0).sum())}
        if summary[sub]["far_from_cortex"]:
            logger.info("%s: %d electrode(s) lie > 10 mm from the fsaverage pial surface (depth "
                        "electrodes or misregistration); the zero-shot mapping still takes "
                        "their nearest source.", sub, summary[sub]["far_from_cortex"])
        del data, z

    # ---------------------------------------------------------------- write the dataset
    from .. import __version__

    feats = np.load(feat_npy, mmap_mode="r")
    metadata = {
        "generator": "neurofuse.data.podcast.prepare_podcast",
        "versions": {"neurofuse": __version__, "numpy": np.__version__},
        "story_offsets": {PODCAST_STORY: 0.0},  # the story starts with the audio
        "podcast": {
            "dataset": "Zada et al. (2025), OpenNeuro ds005574", "root": str(layout.root),
            "task": task, "audio": str(layout.audio), "transcript": str(layout.transcript),
            "phones": None if phones is None else str(phones), "signal": signal,
            "band": list(band), "sfreq": sfreq, "electrode_types": electrode_types,
            "space": space, "tolerance": tolerance, "max_gap": max_gap,
            "audio_duration": duration, "n_times": n_times, "frames_cut": n_audio - n_times,
            "n_words": len(words), "language_model": lm_name(language_model), "layer": layer,
            "context_tokens": context_tokens, "features": info.get("metadata", {}),
            "subjects": summary,
        },
    }
    out = write_ecog_dataset(
        out, sfreq=sfreq, feature_streams=info["streams"],
        stories={PODCAST_STORY: np.asarray(feats[:n_times])}, subjects=subjects_out,
        metadata=metadata, overwrite=overwrite)
    del feats
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    logger.info(
        "Prepared Podcast ds005574 -> %s in %.1f s: %d subjects, %d electrodes (%s), story "
        "%.1f s at %g Hz, signal %s; features %s; ECoG computed for %s, reused for %s.",
        out, time.perf_counter() - t_start, len(summary),
        sum(s["kept"] for s in summary.values()),
        ", ".join(f"{s}: {v['kept']} kept / {v['bad']} bad / {v['no_position']} without "
                  f"position, onset {v['onset_s']:.3f} s" for s, v in summary.items()),
        n_times / sfreq, sfreq, signal, counts["features"], counts["computed"] or "none",
        counts["cached"] or "none")
    return out

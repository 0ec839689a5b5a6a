"""Where the files of a ds005574 copy are, and what they hold.

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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...._checks import _check_type
from ..._prepare import check_root
from .._bids import import_mne_bids

#: Task label of the recordings and name of the story in the ECoG dataset.
PODCAST_TASK = "podcast"
PODCAST_STORY = "podcast"
DEFAULT_SPACE = "MNI152NLin2009aSym"
_DATA_EXTENSIONS = (".edf", ".vhdr", ".bdf", ".set", ".nwb", ".fif")
#: What mne-bids is needed for (its missing-dependency message).
PURPOSE = "Reading the Podcast BIDS iEEG dataset"


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
    root = check_root(root, dataset="ds005574", holds="sub-01/ ... and stimuli/")
    audio = root / "stimuli" / "podcast.wav" if audio is None else Path(audio).expanduser()
    transcript = (root / "stimuli" / "podcast_transcript.csv" if transcript is None
                  else Path(transcript).expanduser())
    missing = [f"the {what} '{path}'" for what, path in (("audio", audio),
                                                          ("transcript", transcript))
               if not path.is_file()]
    mne_bids = import_mne_bids(PURPOSE)
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
    from ...store import _check_name

    for sub in recordings:
        _check_name("subject name", sub)
    return PodcastLayout(root=root, audio=audio, transcript=transcript, recordings=recordings)

"""Where the recordings and the stimuli of a BIDS MEG study are.

What it expects
---------------
* ``<bids_root>/sub-<label>/[ses-<label>/]meg/sub-<label>_..._task-<task>_..._meg.<ext>``:
  the recordings (any MEG format MNE-Python reads; tSSS needs MEGIN/Elekta ``.fif``), with
  the usual sidecars (``_meg.json`` with ``PowerLineFrequency``, ``_channels.tsv`` with bad
  channels, ``_events.tsv``). The site's ``acq-calibration`` ``.dat`` and ``acq-crosstalk``
  ``.fif`` files are used for SSS when present. Empty-room recordings are ignored.
* Story onsets: events whose ``trial_type`` is the story name (or ends with ``/<story>``,
  e.g. ``story/wheretheressmoke``), from ``events.tsv`` or, if no event names a story, from
  the trigger channel with the ``value`` codes of ``events.tsv`` (or ``event_id``). A story
  presented several times (in one run or across runs and sessions) gives several repeats.
* ``<stimuli_dir>/<story>.wav`` and ``<stimuli_dir>/<story>.TextGrid`` (default
  ``<bids_root>/stimuli/``, BIDS's folder for stimuli): the story's audio, starting at the
  story's onset event, and its word/phone alignment. A story lasts
  ``n_times = floor(audio duration * 50)`` samples.
* Anatomy: ``<subjects_dir>/sub-<label>`` (or ``<label>``), a FreeSurfer reconstruction, with
  a head↔MRI transform (``trans``, ``<subjects_dir>/<fs subject>/bem/<fs subject>-trans.fif``
  or the T1w landmarks of the BIDS dataset). A subject without a FreeSurfer folder gets the
  fsaverage template placed with the recording's head position (``dev_head_t``).
"""

from __future__ import annotations

from pathlib import Path

from ...._checks import _check_type
from ..._prepare import as_list
from .._bids import import_mne_bids

#: File extensions of MEG recordings in BIDS (MEGIN/Elekta, CTF, KIT/Yokogawa, BTi/4D, ...).
MEG_EXTENSIONS = (".fif", ".ds", ".sqd", ".con", ".pdf", ".bin")
#: What mne-bids is needed for (its missing-dependency message).
PURPOSE = "Reading BIDS MEG"


def _find_stories(stimuli_dir, stories):
    """Story names and their (wav, TextGrid) paths; every file must exist."""
    from ...store import _check_name

    if not stimuli_dir.is_dir():
        raise FileNotFoundError(
            f"The stimuli folder '{stimuli_dir}' does not exist: put <story>.wav and "
            "<story>.TextGrid there (default <bids_root>/stimuli/) or pass 'stimuli_dir'.")
    if stories is None:
        stories = sorted(p.stem for p in stimuli_dir.glob("*.wav"))
        if not stories:
            raise FileNotFoundError(f"No <story>.wav file in the stimuli folder '{stimuli_dir}'.")
    else:
        stories = as_list("stories", stories)
        if len(set(stories)) != len(stories) or not stories:
            raise ValueError(f"'stories' must list distinct story names, got {stories}.")
    missing = []
    for story in stories:
        _check_name("story name", story)
        for ext in (".wav", ".TextGrid"):
            if not (stimuli_dir / f"{story}{ext}").is_file():
                missing.append(str(stimuli_dir / f"{story}{ext}"))
    if missing:
        raise FileNotFoundError(
            f"Missing stimulus files: {missing[:6]}{' ...' if len(missing) > 6 else ''}. Each "
            "story needs its audio (<story>.wav) and its word/phone alignment "
            "(<story>.TextGrid) in the stimuli folder; add them or leave the story out "
            "('stories').")
    return stories, {s: (stimuli_dir / f"{s}.wav", stimuli_dir / f"{s}.TextGrid")
                     for s in stories}


def find_meg_recordings(bids_root, *, subjects=None, task=None) -> dict:
    """The MEG recordings of a BIDS dataset, per subject.

    Parameters
    ----------
    bids_root : path-like
        The BIDS dataset folder.
    subjects : list of str | None
        Subject labels (``"01"`` or ``"sub-01"``); default all but ``emptyroom``.
    task : str | list of str | None
        Only these tasks.

    Returns
    -------
    recordings : dict of str to list of mne_bids.BIDSPath
        ``{"sub-01": [BIDSPath, ...]}``, sorted by session, task, run; one path per
        recording (the first part of split files).
    """
    mne_bids = import_mne_bids(PURPOSE)
    root = Path(bids_root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"'bids_root' = '{root}' is not a folder: point it to the BIDS "
                                "dataset (the folder with dataset_description.json).")
    labels = None
    if subjects is not None:
        subjects = [subjects] if isinstance(subjects, str) else list(subjects)
        labels = [_check_type("subjects", s, str).removeprefix("sub-") for s in subjects]
    tasks = None if task is None else ([task] if isinstance(task, str) else list(task))
    paths = mne_bids.find_matching_paths(root, subjects=labels, tasks=tasks, datatypes="meg",
                                         suffixes="meg", extensions=list(MEG_EXTENSIONS))
    out = {}
    for bp in paths:
        if bp.subject == "emptyroom" or bp.acquisition in ("calibration", "crosstalk") \
                or (bp.split is not None and bp.split not in ("01", "1")) \
                or (bp.task or "").lower() == "noise":
            continue
        out.setdefault(f"sub-{bp.subject}", []).append(bp)
    for bps in out.values():
        bps.sort(key=lambda p: (p.session or "", p.task or "", p.acquisition or "",
                                p.run or "", str(p.fpath)))
    if labels is not None:
        missing = [f"sub-{s}" for s in labels if f"sub-{s}" not in out]
        if missing:
            raise FileNotFoundError(
                f"No MEG recording{' of task ' + repr(task) if task else ''} for subjects "
                f"{missing} in '{root}' (found {sorted(out) or 'none'}). Check the subject "
                "labels and 'task'.")
    if not out:
        raise FileNotFoundError(
            f"No MEG recording{' of task ' + repr(task) if task else ''} in '{root}': expected "
            "sub-<label>/[ses-<label>/]meg/sub-<label>_..._meg.fif (or another MEG format).")
    return dict(sorted(out.items()))

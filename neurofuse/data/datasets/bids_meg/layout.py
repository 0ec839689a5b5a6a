"""Where the recordings and the stimuli of a BIDS MEG study are.

What it expects
---------------
* ``<bids_root>/sub-<label>/[ses-<label>/]meg/sub-<label>_..._task-<task>_..._meg.<ext>``:
  the recordings (any MEG format MNE-Python reads; tSSS needs MEGIN/Elekta ``.fif``), with
  the usual sidecars (``_meg.json`` with ``PowerLineFrequency``, ``_channels.tsv`` with bad
  channels, ``_events.tsv``). The site's ``acq-calibration`` ``.dat`` and ``acq-crosstalk``
  ``.fif`` files are used for SSS when present.
* Empty-room recordings — subject ``emptyroom``, task ``noise`` (or ``emptyroom``), or a
  file that another recording's ``_meg.json`` names as its ``AssociatedEmptyRoom`` — are not
  stories: they are left out with a log line (:func:`find_empty_rooms` lists them).
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

import json
from pathlib import Path

from ...._logging import logger
from ..._prepare import as_list
from .._bids import is_first_part, open_bids_root

#: File extensions of MEG recordings in BIDS (MEGIN/Elekta, CTF, KIT/Yokogawa, BTi/4D, ...).
MEG_EXTENSIONS = (".fif", ".ds", ".sqd", ".con", ".pdf", ".bin")
#: What mne-bids is needed for (its missing-dependency message).
PURPOSE = "Reading BIDS MEG"
#: Task names of empty-room recordings (BIDS: ``sub-emptyroom/.../task-noise``).
EMPTY_ROOM_TASKS = ("noise", "emptyroom", "empty-room", "empty_room")


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


def _associated_empty_rooms(paths) -> set:
    """File names given as ``AssociatedEmptyRoom`` in the ``_meg.json`` sidecars of ``paths``.

    The entry may be relative to the dataset, a BIDS URI (``bids::sub-emptyroom/...``) or an
    absolute path (mne-bids writes one, stale once the dataset moves), so the file name is
    what is compared: BIDS names are unique within a dataset.
    """
    out = set()
    for bp in paths:
        side = Path(bp.copy().update(extension=".json", split=None, check=False).fpath)
        try:
            entry = json.loads(side.read_text()).get("AssociatedEmptyRoom")
        except (OSError, ValueError, AttributeError):
            continue
        for item in [entry] if isinstance(entry, str) else (entry or []):
            if isinstance(item, str) and item:
                out.add(Path(item.split(":", 2)[-1] if item.startswith("bids:") else item).name)
    return out


def _is_empty_room(bp, associated) -> str | None:
    """Why ``bp`` is an empty-room recording, or None."""
    if bp.subject == "emptyroom":
        return "subject 'emptyroom'"
    if (bp.task or "").lower() in EMPTY_ROOM_TASKS:
        return f"task {bp.task!r}"
    if Path(bp.fpath).name in associated:
        return "named as AssociatedEmptyRoom in a _meg.json sidecar"
    return None


def _scan(bids_root, subjects, task):
    mne_bids, root, labels, tasks = open_bids_root(bids_root, subjects, task, PURPOSE)
    paths = mne_bids.find_matching_paths(root, subjects=labels, tasks=tasks, datatypes="meg",
                                         suffixes="meg", extensions=list(MEG_EXTENSIONS))
    paths = [bp for bp in paths if is_first_part(bp)]
    associated = _associated_empty_rooms(paths)
    out, empty = {}, {}
    for bp in paths:
        why = _is_empty_room(bp, associated)
        if why is not None:
            empty[bp] = why
            continue
        out.setdefault(f"sub-{bp.subject}", []).append(bp)
    for bps in out.values():
        bps.sort(key=lambda p: (p.session or "", p.task or "", p.acquisition or "",
                                p.run or "", str(p.fpath)))
    return root, labels, out, empty


def find_empty_rooms(bids_root, *, subjects=None, task=None) -> dict:
    """The empty-room recordings of a BIDS MEG dataset (which are not prepared as stories).

    Parameters
    ----------
    bids_root : path-like
        The BIDS dataset folder.
    subjects : list of str | None
        Subject labels; default all (``emptyroom`` included).
    task : str | list of str | None
        Only these tasks.

    Returns
    -------
    empty_rooms : dict of str to str
        ``{path relative to bids_root: why it counts as empty-room}``: subject ``emptyroom``,
        a task in :data:`EMPTY_ROOM_TASKS`, or named as ``AssociatedEmptyRoom`` by a
        recording's ``_meg.json``.
    """
    root, _, _, empty = _scan(bids_root, subjects, task)
    return {Path(bp.fpath).relative_to(root).as_posix(): why for bp, why in empty.items()}


def find_meg_recordings(bids_root, *, subjects=None, task=None) -> dict:
    """The MEG recordings of a BIDS dataset, per subject, empty-room recordings left out.

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
        recording (the first part of split files). Empty-room recordings
        (:func:`find_empty_rooms`) are left out with a log line.
    """
    root, labels, out, empty = _scan(bids_root, subjects, task)
    for bp, why in empty.items():
        logger.info("'%s' is an empty-room recording (%s): not prepared as a story.",
                    Path(bp.fpath).name, why)
    if labels is not None:
        missing = [f"sub-{s}" for s in labels if f"sub-{s}" not in out]
        if missing:
            only_empty = sorted({f"sub-{bp.subject}" for bp in empty} & set(missing))
            extra = (f" {only_empty} have only empty-room recordings (subject 'emptyroom', task "
                     "'noise' or an AssociatedEmptyRoom file), which hold no story: leave them "
                     "out of 'subjects'." if only_empty else "")
            raise FileNotFoundError(
                f"No MEG recording{' of task ' + repr(task) if task else ''} for subjects "
                f"{missing} in '{root}' (found {sorted(out) or 'none'}). Check the subject "
                f"labels and 'task'.{extra}")
    if not out:
        extra = (f" Only empty-room recordings matched ({len(empty)}: "
                 f"{sorted(Path(bp.fpath).name for bp in empty)[:3]}); they hold no story"
                 + (": choose the task of the story recordings." if task else ".")
                 if empty else "")
        raise FileNotFoundError(
            f"No MEG recording{' of task ' + repr(task) if task else ''} in '{root}': expected "
            "sub-<label>/[ses-<label>/]meg/sub-<label>_..._meg.fif (or another MEG format)."
            + extra)
    return dict(sorted(out.items()))

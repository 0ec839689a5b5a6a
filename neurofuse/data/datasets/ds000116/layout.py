"""Where the EEG and BOLD runs of a BIDS simultaneous EEG–fMRI study are, and how they pair.

What it expects
---------------
* ``<bids_root>/sub-<label>/[ses-<label>/]eeg/sub-<label>_..._task-<task>_..._eeg.<ext>``: the
  EEG, in a format mne-bids reads (BrainVision ``.vhdr``, EDF ``.edf``, BDF ``.bdf``, EEGLAB
  ``.set``), **with the MR gradient and ballistocardiogram artefacts already removed**
  (``docs/real-data.md`` §EEG–fMRI), with its sidecars (``_channels.tsv`` for bad channels,
  ``_events.tsv``, ``_electrodes.tsv``).
* ``<bids_root>/sub-<label>/[ses-<label>/]func/sub-<label>_..._bold.nii[.gz]``: the BOLD run
  recorded with it — the one with the same subject, session, task and run (the acquisition
  may differ) — with its ``RepetitionTime`` in a ``_bold.json`` sidecar (the run's own or the
  dataset's ``task-<task>_bold.json``) or, failing that, in the NIfTI header.
* The EEG and the fMRI start together: the first scanner volume marker of the EEG (an event
  named e.g. ``R128``, ``TR`` or ``volume``) is the first volume's onset; without markers the
  EEG's first sample is (as in ds000116, whose EEG recording was started by the scanner).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...._checks import _check_type
from ...._logging import logger
from .._bids import check_subjects_found, import_mne_bids, open_bids_root

#: EEG formats mne-bids reads from BIDS.
EEG_EXTENSIONS = (".vhdr", ".edf", ".bdf", ".set")
#: What mne-bids is needed for (its missing-dependency message).
PURPOSE = "Reading BIDS EEG-fMRI"
#: Event names (the part after the last "/", spaces removed, lower case) of scanner volumes.
VOLUME_MARKERS = ("r128", "tr", "volume", "vol", "scanner", "scan", "mri", "fmri", "v1")


def _entities(path):
    mne_bids = import_mne_bids(PURPOSE)
    return mne_bids.get_entities_from_fname(Path(path).name, on_error="ignore")


def _find_bold(bp):
    """The BOLD NIfTI of the EEG run ``bp`` (same subject, session, task, run), or None."""
    folder = Path(bp.fpath).parent.parent / "func"
    if not folder.is_dir():
        return None
    want = {"subject": bp.subject, "session": bp.session, "task": bp.task, "run": bp.run}
    found = []
    for path in sorted(folder.glob("*_bold.nii*")):
        if not path.name.endswith((".nii", ".nii.gz")):
            continue
        ent = _entities(path)
        if all(_same(ent.get(k), v) for k, v in want.items()):
            found.append(path)
    if len(found) > 1:
        raise ValueError(f"Several BOLD runs match the EEG '{Path(bp.fpath).name}': "
                         f"{[p.name for p in found]}. Keep one per run (or give them different "
                         "'run' entities).")
    return found[0] if found else None


def _same(a, b):
    if a is None or b is None:
        return a is None and b is None
    return str(a).lstrip("0") == str(b).lstrip("0")


def read_tr(bold, bids_root, task):
    """The repetition time (s) of a BOLD run: its ``_bold.json``, the dataset's
    ``task-<task>_bold.json``, else the NIfTI header (``pixdim[4]``)."""
    import nibabel as nib

    stem = bold.name[: -len(".nii.gz")] if bold.name.endswith(".nii.gz") else bold.stem
    sidecars = [bold.with_name(stem + ".json"), Path(bids_root) / f"task-{task}_bold.json"]
    img = nib.load(bold)
    zooms = img.header.get_zooms()
    header_tr = None
    if len(zooms) > 3 and zooms[3] > 0:
        unit = img.header.get_xyzt_units()[1]
        header_tr = float(zooms[3]) / (1000.0 if unit == "msec" else 1.0)
    for side in sidecars:
        if side.is_file():
            try:
                tr = json.loads(side.read_text()).get("RepetitionTime")
            except (OSError, ValueError, AttributeError):
                tr = None
            if tr is not None:
                tr = float(tr)
                if header_tr is not None and abs(header_tr - tr) > 0.01 * tr:
                    logger.warning("'%s': RepetitionTime %g s in '%s' but %g s in the NIfTI "
                                   "header; using the sidecar's (BIDS).", bold.name, tr,
                                   side.name, header_tr)
                return tr
    if header_tr is None:
        raise ValueError(f"No repetition time for '{bold}': add \"RepetitionTime\" (s) to its "
                         "_bold.json sidecar.")
    return header_tr


def find_eeg_fmri_runs(bids_root, *, subjects=None, task=None) -> dict:
    """The EEG runs of a BIDS simultaneous EEG–fMRI dataset and their BOLD runs, per subject.

    Parameters
    ----------
    bids_root : path-like
        The BIDS dataset folder.
    subjects : list of str | None
        Subject labels (``"01"`` or ``"sub-01"``); default all with EEG.
    task : str | list of str | None
        Only these tasks.

    Returns
    -------
    runs : dict of str to list of (mne_bids.BIDSPath, Path)
        ``{"sub-01": [(eeg BIDSPath, bold path), ...]}``, sorted by session, task, run.

    Raises
    ------
    FileNotFoundError
        No EEG, a requested subject without EEG, or an EEG run without its BOLD run.
    """
    mne_bids, root, labels, tasks = open_bids_root(bids_root, subjects, task, PURPOSE)
    paths = mne_bids.find_matching_paths(root, subjects=labels, tasks=tasks, datatypes="eeg",
                                         suffixes="eeg", extensions=list(EEG_EXTENSIONS))
    out, missing = {}, []
    for bp in sorted(paths, key=lambda p: (p.subject, p.session or "", p.task or "",
                                           p.run or "", str(p.fpath))):
        bold = _find_bold(bp)
        if bold is None:
            missing.append(Path(bp.fpath).relative_to(root).as_posix())
            continue
        out.setdefault(f"sub-{bp.subject}", []).append((bp, bold))
    if missing:
        raise FileNotFoundError(
            f"No BOLD run for the EEG runs {missing[:5]}{' ...' if len(missing) > 5 else ''}: "
            "expected sub-<label>/[ses-<label>/]func/sub-<label>_..._task-<task>_..._run-<n>_"
            "bold.nii.gz with the EEG's subject, session, task and run. Add it, or leave the "
            "run out ('subjects', 'task').")
    check_subjects_found(labels, out, root, "EEG run", " Check the labels and 'task'.")
    if not out:
        raise FileNotFoundError(
            f"No EEG run{' of task ' + repr(task) if task else ''} in '{root}': expected "
            "sub-<label>/[ses-<label>/]eeg/sub-<label>_..._eeg.<vhdr|edf|bdf|set>. ds000116 "
            "ships its EEG as MATLAB files outside BIDS: convert them (after gradient and "
            "ballistocardiogram removal) with mne_bids.write_raw_bids.")
    return dict(sorted(out.items()))


def find_volume_onsets(onsets, descriptions, tr, volume_event="auto"):
    """Onsets (s) of the scanner volume markers among a recording's events, and their name.

    Parameters
    ----------
    onsets : array, shape (n_events,)
        Event onsets, s.
    descriptions : list of str
        Event names (annotation descriptions), one per onset.
    tr : float
        The BOLD's repetition time, to check the markers' spacing.
    volume_event : 'auto' | str | None
        ``'auto'``: the first description whose last ``/``-part (spaces removed, lower case)
        is in :data:`VOLUME_MARKERS`; a description: exactly it (it must occur); None: none.

    Returns
    -------
    onsets : array, shape (n_markers,)
        Sorted; empty without markers.
    name : str | None
    """
    descs = [str(d) for d in descriptions]
    if volume_event is None:
        return np.empty(0), None
    if volume_event == "auto":
        names = sorted({d for d in descs
                        if d.rsplit("/", 1)[-1].replace(" ", "").lower() in VOLUME_MARKERS})
        if not names:
            return np.empty(0), None
        name = names[0]
    else:
        name = _check_type("volume_event", volume_event, str)
        if name not in descs:
            raise ValueError(f"'volume_event' = {name!r} is not among the EEG's events "
                             f"{sorted(set(descs))[:10]}; pass one of them, 'auto' or None "
                             "(the EEG starts with the first volume).")
    onsets = np.sort(np.asarray(onsets, dtype=np.float64)[[d == name for d in descs]])
    if onsets.size > 1:
        step = float(np.median(np.diff(onsets)))
        if abs(step - tr) > 0.02 * tr:
            raise ValueError(f"The volume markers {name!r} come every {step:g} s (median) but "
                             f"the BOLD's TR is {tr:g} s: they are not one per volume. Pass "
                             "'volume_event' = the marker of each volume, or None if the EEG "
                             "starts with the first volume.")
    return onsets, name

"""The anatomy of a BIDS subject: its FreeSurfer reconstruction and head<->MRI transform, or
the fsaverage template at the recording's head position."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ...._logging import logger
from .._bids import import_mne_bids
from .layout import PURPOSE


def _fs_subject(sub, subjects_dir):
    """The FreeSurfer folder name of a BIDS subject in ``subjects_dir``, or None."""
    if subjects_dir is None:
        return None
    for name in (sub, sub.removeprefix("sub-")):
        if (subjects_dir / name / "surf").is_dir():
            return name
    return None


def _find_trans(sub, fs_name, subjects_dir, trans, bp):
    mne_bids = import_mne_bids(PURPOSE)
    if trans is not None and sub in trans:
        path = Path(trans[sub]).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"trans[{sub!r}] = '{path}' does not exist.")
        return path
    path = subjects_dir / fs_name / "bem" / f"{fs_name}-trans.fif"
    if path.is_file():
        return path
    try:
        return mne_bids.get_head_mri_trans(bp, fs_subject=fs_name, fs_subjects_dir=subjects_dir,
                                           verbose="error")
    except (RuntimeError, ValueError, OSError, KeyError) as err:  # no T1w landmarks
        raise FileNotFoundError(
            f"Subject {sub!r} has a FreeSurfer folder '{subjects_dir / fs_name}' but no head<->MRI "
            f"transform: none at '{path}', none given in 'trans', and none from the BIDS T1w "
            f"landmarks ({err}). Make one with 'mne coreg' and save it as '{path}' (or pass "
            f"trans={{{sub!r}: path}}), or move the FreeSurfer folder away to use the "
            "fsaverage template.") from None


def _make_subject(sub, info, subjects_dir, trans, bp):
    from ....anatomy import make_template_subject, read_subject

    fs_name = _fs_subject(sub, subjects_dir)
    if fs_name is None:
        if subjects_dir is not None:
            logger.warning("%s has no FreeSurfer folder in '%s' (looked for '%s' and '%s'): "
                           "using the fsaverage template at the recording's head position.",
                           sub, subjects_dir, sub, sub.removeprefix("sub-"))
        template = make_template_subject(meg=False, sfreq=info["sfreq"])
        return dataclasses.replace(template, meg_info=info)
    return read_subject(fs_name, subjects_dir, trans=_find_trans(sub, fs_name, subjects_dir,
                                                                 trans, bp), info=info)

"""The anatomy of a BIDS subject: its FreeSurfer reconstruction and head<->MRI transform, or
the fsaverage template at the recording's head position, or a forward solution of the user's
own (``forward={"sub-01": "sub-01-fwd.fif"}``, checked by :func:`_read_user_forward` before
any preprocessing)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

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


def _user_forward_subject(sub, fwd, fname, subjects_dir, spacing):
    """The Subject whose fsaverage morph fits ``fwd``'s source space, or a clear error.

    The forward's sources must be those of the template (fsaverage, ``spacing``: morph =
    identity) unless the subject's FreeSurfer folder is in ``subjects_dir`` (then the morph
    goes from fsaverage to the forward's own source space).
    """
    import mne

    from ....anatomy import make_template_subject, read_subject
    from ....anatomy.forward import get_source_space

    src = fwd["src"]
    got = [np.asarray(s["vertno"]) for s in src]
    trans = mne.transforms._ensure_trans(fwd["mri_head_t"], "head", "mri")
    his_id = src[0].get("subject_his_id")
    fs_name = _fs_subject(sub, subjects_dir)
    if fs_name is None and subjects_dir is not None and his_id \
            and (subjects_dir / his_id / "surf").is_dir():
        fs_name = his_id  # the folder named as the forward's source-space subject
    if fs_name is not None:
        for hemi, s in zip(("lh", "rh"), src):
            n_surf = len(mne.read_surface(subjects_dir / fs_name / "surf" / f"{hemi}.white",
                                          verbose="error")[0])
            if s["np"] != n_surf:
                raise ValueError(
                    f"Forward solution '{fname}' of {sub} does not fit its FreeSurfer "
                    f"reconstruction '{subjects_dir / fs_name}': its {hemi} source space lies on "
                    f"a surface of {s['np']} vertices but {hemi}.white has {n_surf}. Compute "
                    "the forward on this subject's own source space "
                    f"(mne.setup_source_space({fs_name!r}, {spacing!r})), or pass the "
                    "FreeSurfer folder the forward was computed with.")
        return read_subject(fs_name, subjects_dir, trans=trans)
    template = make_template_subject(meg=False)
    want = [np.asarray(s["vertno"]) for s in get_source_space(template, spacing)]
    if not all(np.array_equal(a, b) for a, b in zip(got, want)):
        n_got, n_want = sum(v.size for v in got), sum(v.size for v in want)
        what = (f"has {n_got} sources ({got[0].size} + {got[1].size}), expected the "
                f"{n_want} ({want[0].size} + {want[1].size}) of the template source space "
                f"(fsaverage, {spacing})" if n_got != n_want else
                f"has {n_got} sources like the template source space (fsaverage, {spacing}) "
                "but at other vertices")
        where = ("no subjects_dir was given" if subjects_dir is None else
                 f"there is none in subjects_dir '{subjects_dir}'")
        raise ValueError(
            f"Source-space mismatch for {sub}: the forward solution '{fname}' {what}. Other "
            f"sources need {sub}'s FreeSurfer folder to morph fsaverage onto them, and "
            f"{where}. Fix: compute the forward on neurofuse's template source space with "
            f"every source kept (src = neurofuse.anatomy.get_source_space("
            f"neurofuse.anatomy.make_template_subject(meg=False), {spacing!r}); "
            "mne.make_forward_solution(info, trans, src, bem, mindist=0)), or pass "
            f"--subjects-dir (subjects_dir) with {sub}'s FreeSurfer reconstruction (as "
            f"'{sub}' or '{sub.removeprefix('sub-')}') on which the forward was computed.")
    return dataclasses.replace(template, trans=trans)


def _read_user_forward(sub, fname, info, subjects_dir, spacing):
    """Read and check a user's ``-fwd.fif`` for ``sub`` before any preprocessing.

    Parameters
    ----------
    sub : str
        BIDS subject (``"sub-01"``).
    fname : path-like
        The forward solution (MNE ``-fwd.fif``, surface source space).
    info : mne.Info
        The subject's first recording (its MEG channels and head position).
    subjects_dir : Path | None
    spacing : str

    Returns
    -------
    fwd : mne.Forward
        Fixed orientation.
    subject : Subject
        Template (``kind='template'``) or FreeSurfer subject whose morph fits ``fwd``.
    """
    import mne

    from ....anatomy import read_forward

    fname = Path(fname).expanduser()
    if not fname.is_file():
        raise FileNotFoundError(f"forward[{sub!r}] = '{fname}' does not exist: pass the "
                                "-fwd.fif file of that subject (--fwd SUBJECT=FILE).")
    try:
        fwd = read_forward(fname)
    except ValueError:
        raise
    except Exception as err:  # MNE's many ways of failing on a file that is not a forward
        raise ValueError(f"forward[{sub!r}] = '{fname}' is not a readable MNE forward solution "
                         f"({type(err).__name__}: {err}). Write it with "
                         "mne.write_forward_solution.") from None
    meg = [info["ch_names"][p] for p in mne.pick_types(info, meg=True, ref_meg=False,
                                                       exclude=())]
    missing = [ch for ch in meg if ch not in set(fwd["sol"]["row_names"])]
    if missing:
        raise ValueError(
            f"The forward solution '{fname}' of {sub} lacks {len(missing)} of the recording's "
            f"{len(meg)} MEG channels ({missing[:5]}{' ...' if len(missing) > 5 else ''}). "
            "Compute it with the recording's info (mne.make_forward_solution(raw.info, ...)).")
    subject = _user_forward_subject(sub, fwd, fname, subjects_dir, spacing)
    head = info["dev_head_t"]
    fwd_head = fwd["info"].get("dev_head_t")
    if head is not None and fwd_head is not None:
        shift = 1e3 * np.linalg.norm(np.asarray(head["trans"])[:3, 3]
                                     - np.asarray(fwd_head["trans"])[:3, 3])
        if shift > 1.0:
            logger.warning(
                "The forward solution '%s' of %s was computed with the head %.1f mm away from "
                "its position in the first recording, to which tSSS brings every run: compute "
                "it with that recording's info for a matching lead field.", fname, sub, shift)
    return fwd, subject


def _morph_target(fwd, subject):
    """``fwd["src"]``, labelled with ``subject``'s name for MNE's morph when the forward was
    computed under another name for the same FreeSurfer folder (checked against its
    surfaces by :func:`_user_forward_subject`)."""
    src = fwd["src"]
    if all(s.get("subject_his_id") in (None, subject.name) for s in src):
        return src
    src = src.copy()
    for s in src:
        s["subject_his_id"] = subject.name
    return src

"""SMN4Lang (OpenNeuro ds004078) into a dataset store that system C pairs: :func:`prepare_smn4lang`.

The store has the format of system C's simulated world (``neurofuse simulate study
meg2fmri``): per subject the ``meg`` modality (MEG channels at ``sfreq``) and the
``fmri-volume`` modality (the BOLD volumes on their native grid, with the NIfTI affine), one
story per run (``task-RDR_run-1`` ...), and per story the event onsets (one table per
``trial_type`` of the events files), on the story's clock
(:mod:`~neurofuse.data.datasets.smn4lang.alignment`). So ``neurofuse meg2fmri prepare
--data OUT --event <trial_type>`` and ``neurofuse meg2fmri evaluate`` run on it unchanged.

Two passes: the first reads only headers and events (every file checked before anything is
written: pairing, events, TRs, grids, channels); the second reads one run at a time (one
MEG story window, then the BOLD run volume block by volume block, straight into the
store's memory-mapped array), so the study is never in memory. The store appears at ``out``
only once complete.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import numpy as np

from ...._checks import _check_option, _check_type
from ...._docs import fill_doc
from ...._logging import logger, verbose
from ..._prepare import check_out, resolve_splits, split_counts
from .alignment import ALIGNMENTS, align_story
from .layout import find_runs, pair_runs, read_events, read_tr
from .recordings import PICKS, bold_header, copy_bold, meg_header, read_meg_window

__all__ = ["prepare_smn4lang"]


def _event_name(kind, taken):
    from ...store import _check_name

    name = re.sub(r"[^A-Za-z0-9._-]", "_", str(kind))
    name = name if re.match(r"^[A-Za-z0-9]", name) else f"e{name}"
    _check_name("event name", name)
    if name in taken and taken[name] != kind:
        raise ValueError(f"Event types {taken[name]!r} and {kind!r} both become the event "
                         f"table {name!r} in the store; rename one in the events files.")
    taken[name] = kind
    return name


def _default_splits(stories):
    """The last fifth of the stories (at least one, given two or more) are ``test``."""
    n_test = 0 if len(stories) < 2 else max(1, round(0.2 * len(stories)))
    return {s: "test" for s in stories[len(stories) - n_test:]}


def _check_float(name, value, *, minimum=None):
    _check_type(name, value, (int, float))
    value = float(value)
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"'{name}' must be a finite number{bound}, got {value!r}.")
    return value


def _headers(runs, root, tr, picks):
    """Pass 1: headers and events of every run; the common TR; per-subject grids/channels."""
    from .recordings import _pick

    trs, infos = [], {}
    for r in runs:
        r.meg_head = meg_header(r.meg)
        r.bold_head = bold_header(r.bold)
        r.meg_ev, r.bold_ev = read_events(r.meg_events), read_events(r.bold_events)
        side = r.meg.with_name(r.meg.name[:-len("_meg.fif")] + "_meg.json")
        r.line_freq = json.loads(side.read_text()).get("PowerLineFrequency") \
            if side.is_file() else None
        trs.append(read_tr(r.bold, root) if tr is None else tr)
        names = [r.meg_head["info"]["ch_names"][i] for i in _pick(r.meg_head["info"], picks)]
        first = infos.setdefault(r.subject, (r, names))
        if names != first[1]:
            raise ValueError(f"The MEG runs of {r.subject} have different channels ('{r.meg}' "
                             f"vs '{first[0].meg}'); the store holds one channel set per "
                             "subject.")
        f0 = first[0].bold_head
        if r.bold_head["shape"] != f0["shape"] or not np.allclose(
                r.bold_head["affine"], f0["affine"], atol=1e-3):
            raise ValueError(f"The BOLD runs of {r.subject} are on different grids ('{r.bold}': "
                             f"{r.bold_head['shape']} vs '{first[0].bold}': {f0['shape']}, or "
                             "their affines differ); the store holds one grid per subject: use "
                             "runs resampled to one space.")
    values = sorted(set(trs))
    if values[-1] - values[0] > 1e-3 * values[0]:
        example = {t: r.bold.name for r, t in zip(runs, trs)}
        raise ValueError("The BOLD runs have different TRs: " + ", ".join(
            f"{t:g} s (e.g. '{name}')" for t, name in sorted(example.items())) + "; the store "
            "has one TR: prepare the runs of one TR at a time ('runs', 'subjects').")
    return values[0]


@verbose
@fill_doc
def prepare_smn4lang(bids_root, out, *, subjects=None, runs=None, task=None, sfreq=100.0,
                     l_freq=None, h_freq=None, preprocessing=None, picks="meg", tr=None,
                     align="stimulus", start_event=None, events_from="bold", meg_offset=0.0,
                     tolerance=0.01, max_shift=None, run_map=None, splits=None, pad=5.0,
                     overwrite=False, verbose=None) -> Path:
    """Turn SMN4Lang (ds004078: MEG FIF + BOLD NIfTI + events) into a store for system C.

    Parameters
    ----------
    bids_root : path-like
        The dataset folder holding ``sub-XX/`` (the raw dataset, or
        ``derivatives/preprocessed_data`` for the authors' cleaned MEG and MNI-space BOLD);
        :mod:`~neurofuse.data.datasets.smn4lang.layout` says what is expected.
    %(out)s
    subjects : list of str | None
        ``"01"`` or ``"sub-01"``; default every ``sub-*`` folder.
    runs : list of str | None
        MEG run labels to prepare (``"1"`` or ``"01"``); default all.
    task : str | None
        Only this BIDS task (ds004078: ``"RDR"``); default all.
    sfreq : float
        The store's MEG rate in Hz (the MEG2fMRI paper: 100). With ``preprocessing``, its
        ``sfreq`` is used and this must match it or be left at 100.
    l_freq, h_freq : float | None
        Band-pass (Hz) before the resampling; default none (the authors' derivatives are
        already 0.1–40 Hz).
    preprocessing : MEGPreprocessing | dict | path-like | None
        Run :func:`~neurofuse.preprocessing.meg.preprocess_meg` (tSSS, filters, ICA) on each
        story window of raw recordings instead; ``None``: only the band-pass and resampling.
    picks : ``"meg"`` | ``"mag"`` | ``"grad"``
        MEG inputs: all 306 sensors (default), magnetometers or gradiometers. Trigger, EOG,
        ECG and misc channels are never stored (the authors' code fed them to the model as
        if they were MEG).
    tr : float | None
        The TR in s; default from the NIfTI headers and JSON sidecars, which must agree.
    align : ``"stimulus"`` | ``"start"``
        How the MEG and fMRI clocks are put on one
        (:mod:`~neurofuse.data.datasets.smn4lang.alignment`): the runs' reference events
        mark the same moment (default), or the runs' starts do.
    start_event : str | None
        ``trial_type`` of the reference event (default: each run's first event).
    events_from : ``"bold"`` | ``"meg"``
        Whose events.tsv gives the stored event onsets.
    meg_offset : float
        Seconds added to the MEG reference onset (``align="stimulus"``), or MEG time of the
        store's sample 0 (``align="start"``); e.g. a trigger-to-sound delay.
    tolerance : float
        Largest disagreement (s) between subjects' event onsets of one story.
    max_shift : float | None
        Largest fMRI timing error allowed when subjects' BOLD reference events are not a
        whole number of TRs apart (s; default TR / 2, which only warns).
    run_map : dict of str to str | None
        MEG run label → BOLD run label, if MEG run N is not fMRI run N.
    %(splits)s
        Default: the last fifth of the stories (by run) are ``'test'`` (one, given two or
        more), the others ``'train'``; ``neurofuse meg2fmri evaluate`` holds out subjects
        and pairs them on the test stories.
    pad : float
        Seconds of MEG read beyond each end of a story window for the filters.
    %(overwrite)s
    %(verbose_loader)s

    Returns
    -------
    out : Path
        The store (:func:`neurofuse.data.store.read_dataset`).

    Raises
    ------
    FileNotFoundError
        No runs, or a paired run without its events file (the message names it).
    ValueError
        TR header/sidecar mismatch, runs of different TRs, grids or channels within a
        subject, subjects whose events of a story disagree; nothing is written at ``out``.
    """
    from ....preprocessing.meg import MEGPreprocessing

    t0 = time.perf_counter()
    out = check_out(out, overwrite)
    _check_option("align", align, list(ALIGNMENTS))
    _check_option("events_from", events_from, ["bold", "meg"])
    _check_option("picks", picks, list(PICKS))
    if start_event is not None:
        _check_type("start_event", start_event, str)
    meg_offset = _check_float("meg_offset", meg_offset)
    tolerance = _check_float("tolerance", tolerance, minimum=0)
    pad = _check_float("pad", pad, minimum=0)
    if run_map is not None:
        _check_type("run_map", run_map, dict, "a dict {MEG run: BOLD run}")
    config = None
    if preprocessing is not None:
        config = MEGPreprocessing.resolve(preprocessing)
        if float(sfreq) not in (100.0, config.sfreq):
            raise ValueError(f"'sfreq'={sfreq} but preprocessing.sfreq={config.sfreq}: the "
                             "pipeline sets the rate; give it there.")
        if l_freq is not None or h_freq is not None:
            raise ValueError("'l_freq'/'h_freq' are for the plain path; with 'preprocessing' "
                             "set its l_freq/h_freq.")
        sfreq = config.sfreq
    sfreq = _check_float("sfreq", sfreq, minimum=1e-9)
    if tr is not None:
        tr = _check_float("tr", tr, minimum=1e-9)

    # ---------------------------------------------------------------- pass 1: headers
    root = Path(bids_root).expanduser()
    paired, unpaired = pair_runs(find_runs(root, subjects=subjects, task=task), runs=runs,
                                 run_map=run_map)
    if not paired:
        raise FileNotFoundError(f"No MEG run of '{root}' has a BOLD run with the same subject, "
                                f"task and run ({len(unpaired)} unpaired runs: "
                                f"{unpaired[:4]}).")
    tr = _headers(paired, root, tr, picks)
    for r in paired:
        if r.meg_head["sfreq"] < sfreq:
            raise ValueError(f"'{r.meg}' is sampled at {r.meg_head['sfreq']:g} Hz, below the "
                             f"store's sfreq={sfreq:g} Hz.")
    by_story = {}
    for r in paired:
        by_story.setdefault(r.story, []).append(r)
    stories = list(by_story)
    clocks = {}
    for story, rs in by_story.items():
        clocks[story] = align_story(
            story, [{"name": f"{r.subject} {r.story}", "meg_events": r.meg_ev,
                     "bold_events": r.bold_ev, "meg_duration": r.meg_head["duration"],
                     "n_volumes": r.bold_head["n_volumes"]} for r in rs],
            sfreq=sfreq, tr=tr, align=align, start_event=start_event,
            events_from=events_from, meg_offset=meg_offset, tolerance=tolerance,
            max_shift=max_shift)
    story_splits = resolve_splits(splits, stories, default=_default_splits(stories))
    taken = {}
    names = {s: {k: _event_name(k, taken) for k in c.events} for s, c in clocks.items()}

    # ---------------------------------------------------------------- pass 2: write
    import mne
    import nibabel as nib

    from .... import __version__
    from ...store import DatasetWriter, expected_n_trs

    record = {}
    for story, rs in by_story.items():
        for r, c in zip(rs, clocks[story].runs):
            record[f"{r.subject}/{story}"] = {
                "meg": str(r.meg), "bold": str(r.bold), "meg_events": str(r.meg_events),
                "bold_events": str(r.bold_events), "meg_start_s": c.meg_start,
                "volume_start": c.volume_start, "fmri_shift_s": c.shift}
    metadata = {
        "generator": "neurofuse.data.datasets.smn4lang.prepare_smn4lang",
        "versions": {"neurofuse": __version__, "mne": mne.__version__,
                     "nibabel": nib.__version__, "numpy": np.__version__},
        "units": {"meg": "T (magnetometers), T/m (gradiometers)",
                  "fmri-volume": "BOLD as stored in the NIfTI (scaling applied)"},
        "smn4lang": {
            "bids_root": str(root), "task": task, "sfreq": sfreq, "tr": tr, "picks": picks,
            "l_freq": l_freq, "h_freq": h_freq,
            "preprocessing": None if config is None else config.to_dict(),
            "align": align, "start_event": start_event, "events_from": events_from,
            "meg_offset": meg_offset, "tolerance": tolerance, "run_map": run_map,
            "story_lead_s": {s: c.lead for s, c in clocks.items()},
            "event_types": {s: {v: k for k, v in n.items()} for s, n in names.items()},
            "events_dropped": {s: c.dropped for s, c in clocks.items()},
            "runs": record, "unpaired": unpaired,
        },
    }
    subjects_done = []
    with DatasetWriter(out, sfreq=sfreq, tr=tr, overwrite=overwrite,
                       metadata=metadata) as writer:
        for story in stories:
            clock = clocks[story]
            writer.add_story(story, split=story_splits[story], n_times=clock.n_times)
            for kind, onsets in clock.events.items():
                writer.write_events(story, names[story][kind], onsets)
        work = sorted(((r, c) for s, rs in by_story.items()
                       for r, c in zip(rs, clocks[s].runs)),
                      key=lambda rc: (rc[0].subject, stories.index(rc[0].story)))
        for r, c in work:
            n_times = clocks[r.story].n_times
            data, info = read_meg_window(r.meg, c.meg_start, n_times, sfreq=sfreq, picks=picks,
                                         l_freq=l_freq, h_freq=h_freq, preprocessing=config,
                                         pad=pad, line_freq=r.line_freq)
            if r.subject not in subjects_done:
                writer.add_subject(r.subject, modalities=["meg", "fmri-volume"], info=info,
                                   anatomy={"bids_subject": r.subject})
                writer.add_grid(r.subject, "fmri-volume", affine=r.bold_head["affine"],
                                shape=r.bold_head["shape"])
                subjects_done.append(r.subject)
            writer.write_meg(r.subject, r.story, data)
            del data
            n_trs = expected_n_trs(n_times, sfreq, tr)
            vol = writer.create_array(f"subjects/{r.subject}/fmri-volume/{r.story}.npy",
                                      (1, *r.bold_head["shape"], n_trs))
            copy_bold(r.bold, c.volume_start, vol[0])
            vol.flush()
            logger.info("%s %s: MEG from %.3f s (%d samples), BOLD from volume %d (%d "
                        "volumes).", r.subject, r.story, c.meg_start, n_times, c.volume_start,
                        n_trs)
    logger.info("Prepared SMN4Lang %s -> %s in %.1f s: %d subjects, %d stories (splits %s), "
                "%d paired runs, %d unpaired runs skipped; TR %g s, MEG at %g Hz.", root, out,
                time.perf_counter() - t0, len(subjects_done), len(stories),
                split_counts(story_splits), len(paired), len(unpaired), tr, sfreq)
    return out

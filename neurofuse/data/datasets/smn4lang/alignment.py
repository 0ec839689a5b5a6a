"""One clock per story: where each subject's MEG and BOLD runs are cut, and the story's events.

The store holds one list of event onsets per story, shared by every subject and both
modalities, in seconds from the story's first MEG sample, which is also the start of its
first fMRI volume (:mod:`neurofuse.systems.meg2fmri.pairing` pairs on that clock). MEG and
fMRI were recorded in separate sessions (fMRI first, MEG at least a month later), each run on
its own clock: an ``events.tsv`` onset is seconds from the first MEG sample of the ``.fif``
file, or from the start of the first BOLD volume of the NIfTI (BIDS). This module says how
the two clocks are put on one.

``align="stimulus"`` (default)
    Each run's *reference event* marks the same moment of the story in both modalities
    (the first event of the run, or the first of ``trial_type == start_event``): the
    stimulus start. The store's story clock puts the stimulus start at ``lead`` seconds,
    the same for every subject: ``lead`` is the first subject's BOLD reference onset, moved
    back by whole TRs until every subject has at least ``lead`` seconds of MEG and of fMRI
    before its stimulus start (so fMRI is cut on volume boundaries). Then, per run,

    * MEG: sample 0 of the store is the MEG file's time ``meg_ref + meg_offset - lead``;
    * fMRI: volume 0 of the store is the file's volume ``k0 = round((bold_ref - lead) / tr)``;
      a subject whose BOLD reference onset is not a whole number of TRs from the first
      subject's is off by ``shift = bold_ref - lead - k0 * tr`` (|shift| <= tr / 2): logged
      as a warning above 1 ms, an error above ``max_shift``, recorded in the metadata.

    ``lead`` depends on the subjects prepared together (the first subject's BOLD onset, the
    shortest pre-stimulus recording): prepare every subject into one store, not subjects
    into stores of their own that are later compared sample by sample.

    ``meg_offset`` is added to the MEG reference onset: a delay between the MEG trigger and
    the moment it marks (the dataset's documentation reports 39.5 ms from trigger to
    sound at the ear for the MEG; whether its ``events.tsv`` already accounts for it we could
    not check, so the default is 0).

``align="start"``
    The runs' own starts are taken as simultaneous with the story's: MEG sample 0 is the
    file's time ``meg_offset`` and fMRI volume 0 its first volume (the MEG2fMRI authors'
    implicit assumption). Only for data already cut to the stimulus.

Onsets are BIDS onsets: seconds from the first sample stored in the ``.fif`` file (MNE's
``raw.times``, which start at 0 whatever ``first_samp`` is) and from the start of the first
volume of the NIfTI (volumes the scanner discarded before it are not counted).

Event onsets come from one modality's ``events.tsv`` (``events_from``, default the BOLD
runs', whose clock the volumes follow): relative to its reference event (``"stimulus"``) or
to its run start (``"start"``), plus ``lead``. Every subject must give the same onsets
(within ``tolerance`` s) — they heard the same story — else an error names the runs. Each
story lasts as long as the shortest of its subjects' MEG and fMRI after the cut
(``n_times`` samples at the store's ``sfreq``, ``floor(n_times / (sfreq * tr))`` volumes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...._logging import logger

__all__ = ["RunClock", "StoryClock", "align_story", "reference_onset"]

#: Alignment modes.
ALIGNMENTS = ("stimulus", "start")


@dataclass
class RunClock:
    """Where one run is cut.

    Attributes
    ----------
    meg_start : float
        Time in the MEG file (s from its first sample) of the store's sample 0.
    volume_start : int
        Volume of the NIfTI that is the store's volume 0.
    shift : float
        fMRI timing error of this run on the story clock (s; 0 when exact).
    """

    meg_start: float
    volume_start: int
    shift: float


@dataclass
class StoryClock:
    """A story's clock: its length, event onsets and how each run is cut.

    Attributes
    ----------
    n_times : int
        Samples at the store's ``sfreq``.
    lead : float
        Story-clock time of the stimulus start (s); 0 with ``align="start"``.
    events : dict of str to array
        Onsets (s on the story clock, sorted) per event name, within the story.
    runs : list of RunClock
        In the order of the runs given.
    dropped : dict of str to int
        Events per name left out because they fall outside the story.
    """

    n_times: int
    lead: float
    events: dict
    runs: list
    dropped: dict


def reference_onset(events, start_event, where) -> float:
    """The onset of a run's reference event: the first event, or the first ``start_event``."""
    if start_event is None:
        return events[None][0]
    if start_event not in events:
        raise ValueError(f"'{where}' has no event with trial_type {start_event!r} (it has "
                         f"{sorted(k for k in events if k is not None)}); set 'start_event' to "
                         "the trial_type that marks the stimulus start, or None for the first "
                         "event.")
    return events[start_event][0]


def _relative_events(events, ref):
    return {k: np.asarray(v, np.float64) - ref for k, v in events.items() if k is not None}


def align_story(story, runs, *, sfreq, tr, align="stimulus", start_event=None,
                events_from="bold", meg_offset=0.0, tolerance=0.01, max_shift=None):
    """Cut the runs of one story onto one clock (see the module notes).

    Parameters
    ----------
    story : str
        For messages.
    runs : list of dict
        One per subject: ``meg_events`` and ``bold_events`` (from
        :func:`~neurofuse.data.datasets.smn4lang.layout.read_events`), ``meg_duration`` (s),
        ``n_volumes`` and ``name`` (for messages).
    sfreq, tr : float
        The store's MEG rate (Hz) and the fMRI TR (s).
    align : ``"stimulus"`` | ``"start"``
    start_event : str | None
    events_from : ``"bold"`` | ``"meg"``
    meg_offset : float
    tolerance : float
        Largest disagreement between subjects' event onsets (s).
    max_shift : float | None
        Largest fMRI timing error allowed (s); default ``tr / 2`` (never an error).

    Returns
    -------
    clock : StoryClock
    """
    max_shift = tr / 2 if max_shift is None else max_shift
    if align == "start" and meg_offset < 0:
        raise ValueError(f"With align='start', 'meg_offset' is the MEG time of the story's "
                         f"first sample and must be >= 0, got {meg_offset:g}.")
    refs = []
    for r in runs:
        if align == "stimulus":
            m = reference_onset(r["meg_events"], start_event, r["name"] + " (MEG events)")
            b = reference_onset(r["bold_events"], start_event, r["name"] + " (BOLD events)")
            refs.append((m + meg_offset, b))
        else:
            refs.append((meg_offset, 0.0))
    if align == "stimulus":
        room = min(min(m for m, _ in refs), min(b for _, b in refs))
        if room < 0:
            raise ValueError(f"Story {story!r}: a reference event lies before its run's start "
                             f"(meg_offset={meg_offset:g} s makes the MEG one {room:g} s).")
        first = refs[0][1]
        k = max(0, math.ceil((first - room) / tr - 1e-9))
        lead = first - k * tr
    else:
        lead = 0.0
    clocks = []
    for r, (m, b) in zip(runs, refs):
        if align == "stimulus":
            k0 = int(round((b - lead) / tr))
            shift = b - lead - k0 * tr
            clocks.append(RunClock(m - lead, k0, shift))
        else:
            clocks.append(RunClock(m, 0, 0.0))
    for r, c in zip(runs, clocks):
        if abs(c.shift) > max_shift + 1e-9:
            raise ValueError(
                f"{r['name']}: its BOLD reference event is {c.shift:+.3f} s off the TR grid of "
                f"story {story!r} (more than max_shift={max_shift:g} s), so its volumes cannot "
                "be put on the story's clock; check its events.tsv, or raise 'max_shift'.")
        if abs(c.shift) > 1e-3:
            logger.warning("%s: fMRI volumes are %+.3f s off the story clock of %s (its BOLD "
                           "reference event is not a whole number of TRs from the first "
                           "subject's).", r["name"], c.shift, story)
    n_times = min(
        min(math.floor((r["meg_duration"] - c.meg_start) * sfreq + 1e-6),
            math.floor((r["n_volumes"] - c.volume_start) * tr * sfreq + 1e-6))
        for r, c in zip(runs, clocks))
    if n_times < max(1, math.ceil(sfreq * tr)):
        raise ValueError(f"Story {story!r} is shorter than one TR after the cut ({n_times} "
                         "samples): check the runs' events and lengths.")
    key = "bold_events" if events_from == "bold" else "meg_events"
    rel = []
    for r, (m, b) in zip(runs, refs):
        ref = (b if events_from == "bold" else m - meg_offset) if align == "stimulus" else 0.0
        rel.append(_relative_events(r[key], ref))
    first = rel[0]
    for r, other in zip(runs[1:], rel[1:]):
        for name in sorted(set(first) | set(other)):
            a, o = first.get(name), other.get(name)
            same = a is not None and o is not None and len(a) == len(o) and (
                not len(a) or np.max(np.abs(a - o)) <= tolerance)
            if not same:
                what = ("missing" if a is None or o is None else
                        f"{len(a)} vs {len(o)} events" if len(a) != len(o) else
                        f"onsets differ by up to {np.max(np.abs(a - o)):.3f} s")
                raise ValueError(
                    f"Story {story!r}: the {events_from.upper()} events {name!r} of "
                    f"{runs[0]['name']} and {r['name']} disagree ({what}; tolerance "
                    f"{tolerance:g} s). The store keeps one list of onsets per story; check "
                    "the events.tsv files, or use events_from / start_event / tolerance.")
    duration = n_times / sfreq
    events, dropped = {}, {}
    for name, onsets in first.items():
        t = np.sort(onsets + lead)
        ok = (t >= 0) & (t < duration)
        events[name], dropped[name] = t[ok], int((~ok).sum())
        if dropped[name]:
            logger.info("Story %s: %d of %d %r events fall outside its %.2f s (left out).",
                        story, dropped[name], len(t), name, duration)
    return StoryClock(n_times=int(n_times), lead=float(lead), events=events, runs=clocks,
                      dropped=dropped)

"""Story onsets in a MEG recording (annotations or triggers) and one epoch per presentation."""

from __future__ import annotations

import numpy as np

from ..._checks import _check_option
from ..._logging import verbose
from .settings import _check_raw

__all__ = ["epoch_stories", "find_story_onsets"]


def _story_of(description, stories):
    """The story an event names: its description, or its last '/'-separated part."""
    if description in stories:
        return description
    last = str(description).rsplit("/", 1)[-1]
    return last if last in stories else None


@verbose
def find_story_onsets(raw, stories, *, source="auto", event_id=None, stim_channel=None,
                      verbose=None):
    """Find when each story started, from annotations or from the trigger channel.

    Parameters
    ----------
    raw : mne.io.Raw
        The recording at its acquisition rate (before downsampling, for precise onsets).
    stories : list of str
        Story names. An annotation names a story when its description is the name or ends
        with ``/<name>`` (e.g. ``story/wheretheressmoke``).
    source : 'auto' | 'annotations' | 'stim'
        ``'annotations'``: ``raw.annotations`` (what ``mne_bids.read_raw_bids`` makes of
        ``events.tsv``). ``'stim'``: :func:`mne.find_events` on the trigger channel, with
        ``event_id`` mapping story names (or event descriptions naming a story) to trigger
        codes. ``'auto'``: annotations if any names a story, else the trigger channel.
    event_id : dict of str to int | None
        Trigger code of each story (needed for ``'stim'``).
    stim_channel : str | None
        Trigger channel; ``None`` lets MNE choose (``STI101``, ``STI 014``...).

    Returns
    -------
    onsets : list of (str, float)
        ``(story, onset)`` in presentation order; onset in seconds from the first sample of
        ``raw``. A story presented several times appears several times.
    """
    import mne

    _check_raw(raw)
    stories = list(stories)
    _check_option("source", source, ["auto", "annotations", "stim"])
    found = []
    ann = raw.annotations
    if source in ("auto", "annotations"):
        offset = raw.first_time if ann.orig_time is not None else 0.0
        for desc, onset in zip(ann.description, ann.onset):
            story = _story_of(desc, stories)
            if story is not None:
                found.append((story, float(onset - offset)))
        if found or source == "annotations":
            if not found:
                raise ValueError(
                    f"No annotation names any of the stories {stories}: the recording's "
                    f"annotations are {sorted(set(ann.description))[:10]}. Name events after the "
                    "stories (trial_type in events.tsv) or use source='stim' with event_id.")
            return sorted(found, key=lambda x: x[1])
    if event_id is None:
        raise ValueError(
            "Story onsets from the trigger channel need 'event_id', the trigger code of each "
            f"story, e.g. {{{stories[0]!r}: 1}}; or name the stories in the annotations "
            "(events.tsv trial_type).")
    codes = {}
    for name, code in dict(event_id).items():
        story = _story_of(name, stories)
        if story is not None:
            codes[int(code)] = story
    if not codes:
        raise ValueError(f"'event_id' {event_id} names none of the stories {stories}.")
    events = mne.find_events(raw, stim_channel=stim_channel, shortest_event=1,
                             initial_event=True, verbose="error")
    for sample, _, code in events:
        if int(code) in codes:
            found.append((codes[int(code)], float((sample - raw.first_samp) / raw.info["sfreq"])))
    if not found:
        seen = sorted({int(c) for c in events[:, 2]})
        raise ValueError(f"The trigger channel has no event with the story codes "
                         f"{sorted(codes)} (codes seen: {seen}). Check 'event_id'.")
    return sorted(found, key=lambda x: x[1])


def epoch_stories(raw, onsets, n_times, *, picks="meg"):
    """Cut each presentation of each story to its exact length.

    Parameters
    ----------
    raw : mne.io.Raw
        Preprocessed recording (e.g. at 50 Hz).
    onsets : list of (str, float)
        From :func:`find_story_onsets`: story and onset in seconds from the first sample.
    n_times : dict of str to int
        Length of each story in samples at ``raw.info['sfreq']``.
    picks : str | list
        Channels to keep (default: the MEG channels, bad ones included).

    Returns
    -------
    epochs : dict of str to array, shape (n_repeats, n_channels, n_times)
        float32, presentations in temporal order. The first sample of each is at
        ``round(onset * sfreq)``.
    """
    import mne

    _check_raw(raw)
    sfreq = raw.info["sfreq"]
    if isinstance(picks, str) and picks == "meg":
        picks = mne.pick_types(raw.info, meg=True, ref_meg=False, exclude=())
    out = {}
    for story, onset in onsets:
        if story not in n_times:
            raise ValueError(f"No length given for story {story!r} in 'n_times'.")
        n = int(n_times[story])
        start = round(onset * sfreq)
        if start < 0 or start + n > raw.n_times:
            raise ValueError(
                f"stories of inconsistent length: story {story!r} starts at {onset:.3f} s and "
                f"lasts {n / sfreq:.3f} s ({n} samples at {sfreq:g} Hz), but the recording has "
                f"{raw.n_times / sfreq:.3f} s. Check the story's audio against the recording "
                "(was the recording stopped early?).")
        data = raw.get_data(picks=picks, start=start, stop=start + n)
        out.setdefault(story, []).append(data.astype(np.float32))
    return {story: np.stack(reps) for story, reps in out.items()}

"""The podcast's word-level transcript and an optional phone alignment, and the check that
the words cover the audio."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...._logging import logger, verbose
from .._bids import read_table, to_float


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
    fields, rows = read_table(path)
    need = {"word", "start", "end"}
    if not need <= set(fields):
        raise ValueError(f"The transcript '{path}' must have the columns {sorted(need)} (word, "
                         f"onset and offset in s), got {fields}.")
    if "word_idx" in fields:  # a token table: one row per token
        merged = {}
        for row in rows:
            key = row["word_idx"]
            start, end = to_float(row["start"]), to_float(row["end"])
            if key not in merged:
                merged[key] = [start, end, row["word"]]
            else:
                merged[key][1] = end
        rows = [{"start": s, "end": e, "word": w} for s, e, w in merged.values()]
    words, dropped = [], 0
    for row in rows:
        start, end = to_float(row["start"]), to_float(row["end"])
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
        from ....stimulus.textgrid import get_word_phone_tiers, read_textgrid

        _, phones = get_word_phone_tiers(read_textgrid(path))
        return [(float(p.start), float(p.end), str(p.label)) for p in phones]
    fields, rows = read_table(path)
    label = next((c for c in ("phone", "phoneme", "label") if c in fields), None)
    if label is None or not {"start", "end"} <= set(fields):
        raise ValueError(f"The phone table '{path}' must have the columns start, end and one "
                         f"of phone / phoneme / label; got {fields}.")
    return [(to_float(r["start"]), to_float(r["end"]), r[label]) for r in rows
            if math.isfinite(to_float(r["start"])) and math.isfinite(to_float(r["end"]))]

"""The 44-dimensional phoneme one-hot stream (paper §2.2).

The 44 labels are the 39 phonemes of the CMU Pronouncing Dictionary (ARPAbet, stress digits
stripped) and the 5 non-speech labels of the forced alignments of LeBel et al. (2023,
OpenNeuro ds003020, made with the Penn Phonetics Lab Forced Aligner, P2FA):

=========  ==================================================
``sp``     short pause / silence
``{BR}``   breath
``{LG}``   laughter
``{LS}``   lip smack
``{NS}``   noise
=========  ==================================================

Source: the Huth lab's code released with the dataset, HuthLab/deep-fMRI-dataset
``encoding/ridge_utils/dsutils.py``: its ``phonemes`` list (the 39 ARPAbet phonemes, matched
after ``label.upper().strip("0123456789")``) and its ``DEFAULT_BAD_WORDS`` — ``sp``, ``br``,
``lg``, ``ls``, ``ns`` (compared after ``.lower().strip("{}")``) plus the ``sentence_start`` /
``sentence_end`` markers, which are not sounds. 39 + 5 = 44, the size the paper states.

Matching is case-insensitive, ignores stress digits (``AH0`` -> ``AH``) and curly braces
(``{lg}``, ``LG`` and ``{LG}`` are the same label). ``sil`` and ``{SL}`` (P2FA's silence) are
read as ``sp``. An empty label means "nothing annotated" and gives a row of zeros. Any other
label is *unknown*: the Huth lab's extended lists also name ``{CG}`` (cough), ``{IG}`` and
``ns_ap``, which have no column here. Unknown labels give zeros and are reported according to
``on_unknown`` (``"warn"``: one warning listing each label and its count; ``"raise"``: a
ValueError; ``"ignore"``). Map them onto a column with ``aliases`` (e.g.
``{"{CG}": "{NS}"}``) if you prefer.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .._checks import _check_int, _check_option, _check_positive, _check_type
from .._logging import logger, verbose
from .textgrid import check_intervals, interval_frames

__all__ = [
    "ARPABET_PHONEMES",
    "NON_SPEECH_LABELS",
    "PHONEMES",
    "find_unknown_phonemes",
    "normalize_phoneme",
    "phoneme_onehot",
]

ARPABET_PHONEMES = (
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G",
    "HH", "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T",
    "TH", "UH", "UW", "V", "W", "Y", "Z", "ZH",
)
NON_SPEECH_LABELS = ("sp", "{BR}", "{LG}", "{LS}", "{NS}")
PHONEMES = ARPABET_PHONEMES + NON_SPEECH_LABELS
"""The 44 column names of the phoneme stream, in column order."""

_INDEX = {p: i for i, p in enumerate(ARPABET_PHONEMES)}
_INDEX.update({"SP": 39, "BR": 40, "LG": 41, "LS": 42, "NS": 43})
_BUILTIN_ALIASES = {"SIL": "SP", "SL": "SP"}


def _key(label: str) -> str:
    """Case-, brace- and stress-insensitive key of a label ('ah1' -> 'AH', '{lg}' -> 'LG')."""
    key = str(label).strip().strip("{}").strip().upper()
    stripped = key.rstrip("0123456789")
    return stripped if stripped else key


def _alias_table(aliases) -> dict:
    table = dict(_BUILTIN_ALIASES)
    if aliases is not None:
        _check_type("aliases", aliases, dict)
        for src, dst in aliases.items():
            if _key(dst) not in _INDEX:
                raise ValueError(f"aliases[{src!r}] = {dst!r} is not one of the 44 phoneme "
                                 f"labels {list(PHONEMES)}.")
            table[_key(src)] = _key(dst)
    return table


def _column(label, table) -> int | None:
    """Column of ``label``; -1 for an empty label; None if unknown."""
    key = _key(label)
    if not key:
        return -1
    key = table.get(key, key)
    return _INDEX.get(key)


def normalize_phoneme(label, *, aliases=None) -> str | None:
    """Canonical name of a phone label (one of :data:`PHONEMES`), ``""`` if empty, None if unknown.

    Examples: ``"ah0" -> "AH"``, ``"{lg}" -> "{LG}"``, ``"SP" -> "sp"``, ``"sil" -> "sp"``.
    """
    col = _column(label, _alias_table(aliases))
    if col is None:
        return None
    return "" if col == -1 else PHONEMES[col]


def find_unknown_phonemes(labels, *, aliases=None) -> dict:
    """Count the labels that map to none of the 44 columns.

    Parameters
    ----------
    labels : iterable of str | iterable of (start, end, label)
        Phone labels, or phone intervals.
    aliases : dict | None
        Extra label -> column-name mappings (see the module notes).

    Returns
    -------
    unknown : dict of str to int
        Each unknown label as written, with its count, most frequent first.
    """
    table = _alias_table(aliases)
    counts = Counter()
    for item in labels:
        label = item if isinstance(item, str) else item[2]
        if _column(label, table) is None:
            counts[str(label)] += 1
    return dict(counts.most_common())


def _report_unknown(unknown: dict, on_unknown: str, n_total: int):
    if not unknown or on_unknown == "ignore":
        return
    listing = ", ".join(f"{label!r} x{n}" for label, n in unknown.items())
    msg = (f"{sum(unknown.values())} of {n_total} phone intervals have labels outside the 44 "
           f"phoneme columns (they get zeros): {listing}. Known labels: the 39 ARPAbet "
           f"phonemes (stress digits ignored) and {list(NON_SPEECH_LABELS)}.")
    if on_unknown == "raise":
        raise ValueError(msg + " Fix the labels, map them with 'aliases' (e.g. "
                         "{'{CG}': '{NS}'}) or pass on_unknown_phoneme='warn' or 'ignore'.")
    logger.warning(msg)


@verbose
def phoneme_onehot(phones, n_times, *, sfreq=50.0, on_unknown="warn", aliases=None,
                   verbose=None) -> np.ndarray:
    """One-hot phoneme features, each phone repeated over its duration.

    Parameters
    ----------
    phones : sequence of (start, end, label)
        Phone intervals in s (e.g. the phone tier of a TextGrid).
    n_times : int
        Number of frames of the story.
    sfreq : float
        Frame rate in Hz; frame ``k`` covers ``[k / sfreq, (k + 1) / sfreq)`` and takes the
        phone whose interval holds the frame centre (see
        :func:`neurofuse.stimulus.textgrid.interval_frames`).
    on_unknown : "warn" | "raise" | "ignore"
        What to do with labels outside the 44 columns (they get zeros either way).
    aliases : dict | None
        Extra label -> column-name mappings, e.g. ``{"{CG}": "{NS}"}``.
    verbose : bool | str | None
        Log level for this call.

    Returns
    -------
    onehot : array, shape (n_times, 44), float32
        Column order :data:`PHONEMES`. Frames outside every phone (or in an empty or unknown
        label) are all zeros. Where intervals overlap, the later one wins.
    """
    n_times = _check_int("n_times", n_times, minimum=0)
    sfreq = _check_positive("sfreq", sfreq)
    _check_option("on_unknown", on_unknown, ("warn", "raise", "ignore"))
    table = _alias_table(aliases)
    codes = np.full(n_times, -1, dtype=np.int64)
    unknown = Counter()
    n_total = 0
    for start, end, label in check_intervals("phones", phones):
        n_total += 1
        col = _column(label, table)
        if col is None:
            unknown[str(label)] += 1
        k0, k1 = interval_frames(start, end, sfreq, n_times)
        codes[k0:k1] = -1 if col is None else col
    _report_unknown(dict(unknown.most_common()), on_unknown, n_total)
    onehot = np.zeros((n_times, len(PHONEMES)), dtype=np.float32)
    rows = np.flatnonzero(codes >= 0)
    onehot[rows, codes[rows]] = 1.0
    return onehot

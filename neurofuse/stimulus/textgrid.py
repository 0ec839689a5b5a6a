"""Read Praat TextGrid files: the word and phone alignments of a story.

:func:`read_textgrid` reads the two text formats Praat writes — the long ("ooTextFile",
``xmin = 0`` / ``intervals [1]:`` lines) and the short one (bare values) — in the encodings
Praat uses: UTF-8 (with or without a byte-order mark), UTF-16 (Praat's choice when a label
holds a non-ASCII character; big- or little-endian, with a BOM) and, for old files, Latin-1.
Binary TextGrids and the "chronological" format are refused with an error that says how to
convert them (open the file in Praat and *Save as text file*).

:func:`get_word_phone_tiers` picks the word and phone tiers of a forced alignment such as
LeBel et al.'s (ds003020 ``derivative/TextGrids/<story>.TextGrid``: tiers ``phone`` and
``word``), tolerating the usual name variants (``word``/``words``, ``phone``/``phones``/
``phoneme``, ``"<speaker> - words"`` as FAVE and the Montreal Forced Aligner write them).

Time to frames
--------------
All stimulus streams share one convention: at a feature rate ``sfreq`` frame ``k`` covers
``[k / sfreq, (k + 1) / sfreq)``, and an interval ``[start, end)`` owns the frames whose centre
``(k + 0.5) / sfreq`` lies inside it (:func:`interval_frames`). Adjacent intervals therefore
share no frame and leave no gap; an onset at ``t`` lands on frame ``round(t * sfreq)``, within
one frame of ``floor(t * sfreq)``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .._checks import _check_option, _check_positive, _check_type
from .._io import atomic_path
from .._logging import logger, verbose

__all__ = [
    "Interval",
    "TextGrid",
    "Tier",
    "get_word_phone_tiers",
    "interval_frames",
    "read_textgrid",
    "write_textgrid",
]

WORD_TIER_NAMES = ("word", "words", "wrd", "word tier")
PHONE_TIER_NAMES = ("phone", "phones", "phoneme", "phonemes", "phn", "phone tier")


class Interval(NamedTuple):
    """A labelled interval ``[xmin, xmax)`` in s (a TextTier point has ``xmin == xmax``)."""

    xmin: float
    xmax: float
    text: str


@dataclass
class Tier:
    """A TextGrid tier.

    Attributes
    ----------
    name : str
        Tier name as written in the file.
    kind : str
        ``"IntervalTier"`` or ``"TextTier"`` (points; each point is an :class:`Interval` with
        ``xmin == xmax``).
    xmin, xmax : float
        Time domain of the tier, in s.
    intervals : list of Interval
        The intervals (or points) in file order.
    """

    name: str
    kind: str
    xmin: float
    xmax: float
    intervals: list = field(default_factory=list)

    def __len__(self):
        return len(self.intervals)

    def __iter__(self):
        return iter(self.intervals)


@dataclass
class TextGrid:
    """A Praat TextGrid: a time domain and its tiers.

    Attributes
    ----------
    xmin, xmax : float
        Time domain of the whole grid, in s.
    tiers : list of Tier
        The tiers in file order.
    fname : Path | None
        The file it was read from.
    """

    xmin: float
    xmax: float
    tiers: list = field(default_factory=list)
    fname: Path | None = None

    @property
    def tier_names(self) -> list:
        """Names of the tiers in file order."""
        return [t.name for t in self.tiers]

    def get_tier(self, name) -> Tier:
        """Return the tier called ``name`` (case-insensitive) or at index ``name`` (an int)."""
        if isinstance(name, int) and not isinstance(name, bool):
            if not -len(self.tiers) <= name < len(self.tiers):
                raise IndexError(f"Tier index {name} out of range: {self._where()} has "
                                 f"{len(self.tiers)} tiers {self.tier_names}.")
            return self.tiers[name]
        _check_type("name", name, (str, int), "a tier name or index")
        for tier in self.tiers:
            if tier.name.strip().lower() == name.strip().lower():
                return tier
        raise KeyError(f"No tier named {name!r} in {self._where()}; its tiers are "
                       f"{self.tier_names}.")

    def _where(self) -> str:
        return f"the TextGrid '{self.fname}'" if self.fname else "the TextGrid"


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------

# A Praat text file is a stream of values — numbers, "strings" (a quote inside is doubled)
# and <flags> — with labels (xmin =, intervals [3]:) between them that the reader skips.
_TOKEN = re.compile(r"""
    (?P<str>"(?:[^"]|"")*")
  | (?P<flag><[A-Za-z]+>)
  | (?P<index>\[\s*\d*\s*\])
  | (?P<comment>![^\n]*)
  | (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<word>[A-Za-z_][\w?]*)
  | (?P<other>\S)
""", re.VERBOSE)


def _decode(raw: bytes, fname) -> str:
    """Decode the bytes of a TextGrid the way Praat writes them."""
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8")
    if raw.startswith((b"\xfe\xff", b"\xff\xfe")):
        return raw.decode("utf-16")
    head = raw[:200]
    if head.count(b"\x00") > len(head) // 4:  # UTF-16 without a byte-order mark
        return raw.decode("utf-16-be" if head[:1] == b"\x00" else "utf-16-le")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        logger.info("TextGrid %s is not UTF-8 or UTF-16; reading it as Latin-1 (old Praat "
                    "files).", fname)
        return raw.decode("latin-1")


def _tokens(text: str, fname):
    out = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "str":
            out.append(("str", m.group()[1:-1].replace('""', '"')))
        elif kind == "num":
            out.append(("num", float(m.group())))
        elif kind == "flag":
            out.append(("flag", m.group()))
    return out


class _Stream:
    def __init__(self, tokens, fname):
        self.tokens, self.pos, self.fname = tokens, 0, fname

    def _get(self, kind, what):
        if self.pos >= len(self.tokens):
            raise ValueError(f"TextGrid '{self.fname}' ends early: expected {what}. The file "
                             "is truncated or not a TextGrid written by Praat.")
        got_kind, value = self.tokens[self.pos]
        if got_kind != kind:
            raise ValueError(f"TextGrid '{self.fname}' is malformed: expected {what} (a "
                             f"{kind}) at value #{self.pos + 1}, got {value!r}.")
        self.pos += 1
        return value

    def num(self, what):
        return self._get("num", what)

    def str(self, what):
        return self._get("str", what)

    def count(self, what):
        value = self.num(what)
        if value < 0 or value != int(value):
            raise ValueError(f"TextGrid '{self.fname}' is malformed: {what} must be a "
                             f"non-negative integer, got {value}.")
        return int(value)


@verbose
def read_textgrid(fname, *, verbose=None) -> TextGrid:
    """Read a Praat TextGrid file (long or short text format; UTF-8, UTF-16 or Latin-1).

    Parameters
    ----------
    fname : path-like
        The ``.TextGrid`` file.
    verbose : bool | str | None
        Log level for this call.

    Returns
    -------
    textgrid : TextGrid
        Its tiers; interval tiers hold :class:`Interval` ``(xmin, xmax, text)`` tuples.

    Raises
    ------
    FileNotFoundError
        If ``fname`` does not exist.
    ValueError
        If the file is not a text TextGrid or is malformed (the message says where).
    """
    path = Path(fname).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"TextGrid file not found for 'textgrid': '{path}'. Check the "
                                "path (LeBel's are in ds003020/derivative/TextGrids/).")
    raw = path.read_bytes()
    if raw.startswith(b"ooBinaryFile"):
        raise ValueError(f"TextGrid '{path}' is a binary Praat file. Open it in Praat and use "
                         "'Save as text file...' (or 'Save as short text file...').")
    text = _decode(raw, path)
    if "chronological" in text[:200].lower():
        raise ValueError(f"TextGrid '{path}' is in Praat's chronological format, which is not "
                         "supported. Open it in Praat and use 'Save as text file...'.")
    stream = _Stream(_tokens(text, path), path)
    file_type = stream.str('File type = "ooTextFile"')
    object_class = stream.str('Object class = "TextGrid"')
    if not file_type.startswith("ooTextFile") or object_class != "TextGrid":
        raise ValueError(f"'{path}' is not a Praat TextGrid text file: its header says File "
                         f"type = {file_type!r}, Object class = {object_class!r} (expected "
                         "'ooTextFile' and 'TextGrid').")
    xmin, xmax = stream.num("the grid xmin"), stream.num("the grid xmax")
    tiers = []
    if stream.pos < len(stream.tokens) and stream.tokens[stream.pos][0] == "flag":
        exists = stream._get("flag", "<exists>")
        n_tiers = stream.count("the number of tiers") if exists == "<exists>" else 0
    else:
        n_tiers = stream.count("the number of tiers")
    for i in range(n_tiers):
        kind = stream.str(f'the class of tier {i + 1} ("IntervalTier" or "TextTier")')
        name = stream.str(f"the name of tier {i + 1}")
        t_min, t_max = stream.num(f"xmin of tier {name!r}"), stream.num(f"xmax of tier {name!r}")
        n = stream.count(f"the number of intervals of tier {name!r}")
        tier = Tier(name=name, kind=kind, xmin=t_min, xmax=t_max)
        if kind == "IntervalTier":
            for j in range(n):
                a = stream.num(f"xmin of interval {j + 1} of tier {name!r}")
                b = stream.num(f"xmax of interval {j + 1} of tier {name!r}")
                tier.intervals.append(Interval(a, b, stream.str(
                    f"text of interval {j + 1} of tier {name!r}")))
        elif kind == "TextTier":
            for j in range(n):
                t = stream.num(f"time of point {j + 1} of tier {name!r}")
                tier.intervals.append(Interval(t, t, stream.str(
                    f"mark of point {j + 1} of tier {name!r}")))
        else:
            raise ValueError(f"TextGrid '{path}': tier {i + 1} ({name!r}) has unknown class "
                             f"{kind!r}; expected 'IntervalTier' or 'TextTier'.")
        tiers.append(tier)
    logger.debug("Read TextGrid %s: %s", path, [(t.name, len(t)) for t in tiers])
    return TextGrid(xmin=xmin, xmax=xmax, tiers=tiers, fname=path)


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------

def _fmt(value) -> str:
    text = repr(float(value))
    return text.removesuffix(".0")


def _quote(text) -> str:
    return '"' + str(text).replace('"', '""') + '"'


def _filled(intervals, xmin, xmax):
    """Intervals sorted, with the gaps (and the ends) filled by empty intervals, as Praat needs."""
    out, t = [], xmin
    for a, b, text in sorted((float(a), float(b), str(c)) for a, b, c in intervals):
        if a < t - 1e-9:
            raise ValueError(f"Intervals overlap at {a:g} s (previous interval ends at {t:g} s); "
                             "an IntervalTier needs non-overlapping intervals.")
        if a > t:
            out.append(Interval(t, a, ""))
        out.append(Interval(a, b, text))
        t = b
    if t < xmax:
        out.append(Interval(t, xmax, ""))
    return out


def write_textgrid(fname, tiers, *, xmin=0.0, xmax=None, short=False, encoding="utf-8"):
    """Write interval tiers as a Praat TextGrid text file (atomically).

    Parameters
    ----------
    fname : path-like
        Output ``.TextGrid`` file (replaced if it exists).
    tiers : TextGrid | dict of str to sequence of (start, end, text)
        The tiers, in order (e.g. ``{"phone": [...], "word": [...]}`` as LeBel's files).
        Gaps between intervals are filled with empty intervals, as Praat requires.
    xmin, xmax : float
        Time domain in s; ``xmax=None`` uses the latest interval end (ignored for a TextGrid).
    short : bool
        Praat's short text format instead of the long one.
    encoding : "utf-8" | "utf-16"
        ``"utf-16"`` writes big-endian UTF-16 with a byte-order mark, as Praat does for text
        that is not ASCII.

    Returns
    -------
    fname : Path
    """
    _check_option("encoding", encoding, ("utf-8", "utf-16"))
    if isinstance(tiers, TextGrid):
        xmin, xmax = tiers.xmin, tiers.xmax
        items = [(t.name, t.intervals) for t in tiers.tiers]
    else:
        _check_type("tiers", tiers, dict, "a TextGrid or a dict of tier name -> intervals")
        items = [(name, list(iv)) for name, iv in tiers.items()]
        if xmax is None:
            xmax = max([float(b) for _, iv in items for _, b, _ in iv], default=xmin)
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', ""]
    if short:
        lines += [_fmt(xmin), _fmt(xmax), "<exists>", str(len(items))]
    else:
        lines += [f"xmin = {_fmt(xmin)} ", f"xmax = {_fmt(xmax)} ", "tiers? <exists> ",
                  f"size = {len(items)} ", "item []: "]
    for i, (name, intervals) in enumerate(items):
        filled = _filled(intervals, xmin, xmax)
        if short:
            lines += ['"IntervalTier"', _quote(name), _fmt(xmin), _fmt(xmax), str(len(filled))]
            for a, b, text in filled:
                lines += [_fmt(a), _fmt(b), _quote(text)]
            continue
        lines += [f"    item [{i + 1}]:", '        class = "IntervalTier" ',
                  f"        name = {_quote(name)} ", f"        xmin = {_fmt(xmin)} ",
                  f"        xmax = {_fmt(xmax)} ", f"        intervals: size = {len(filled)} "]
        for j, (a, b, text) in enumerate(filled):
            lines += [f"        intervals [{j + 1}]:", f"            xmin = {_fmt(a)} ",
                      f"            xmax = {_fmt(b)} ", f"            text = {_quote(text)} "]
    text = "\n".join(lines) + "\n"
    raw = b"\xfe\xff" + text.encode("utf-16-be") if encoding == "utf-16" else text.encode()
    path = Path(fname).expanduser()
    with atomic_path(path, what="TextGrid") as tmp:
        Path(tmp).write_bytes(raw)
    return path


# --------------------------------------------------------------------------------------
# Word and phone tiers
# --------------------------------------------------------------------------------------

def _match_tier(textgrid: TextGrid, wanted, candidates, what, param):
    if wanted is not None:
        try:
            tier = textgrid.get_tier(wanted)
        except (KeyError, IndexError) as err:
            raise ValueError(f"Cannot find the {what} tier given by '{param}' ({wanted!r}): "
                             f"{err.args[0]}") from None
    else:
        def norm(name):
            name = name.strip().lower()
            # FAVE / Montreal Forced Aligner: "<speaker> - words"
            return name.rsplit(" - ", 1)[-1].strip() if " - " in name else name

        found = [t for t in textgrid.tiers if norm(t.name) in candidates]
        if len(found) != 1:
            problem = "no tier" if not found else f"{len(found)} tiers"
            raise ValueError(
                f"Cannot find the {what} tier of {textgrid._where()}: {problem} named one of "
                f"{list(candidates)}; its tiers are {textgrid.tier_names}. Pass the tier's name "
                f"or index as '{param}' (e.g. {param}={textgrid.tier_names[0]!r})."
                if textgrid.tiers else f"{textgrid._where()} has no tiers.")
        tier = found[0]
    if tier.kind != "IntervalTier":
        raise ValueError(f"The {what} tier {tier.name!r} of {textgrid._where()} is a "
                         f"{tier.kind} (points); an IntervalTier is needed.")
    return tier


def get_word_phone_tiers(textgrid, *, word_tier=None, phone_tier=None):
    """Return the word and phone intervals of a forced-alignment TextGrid.

    Parameters
    ----------
    textgrid : TextGrid | path-like
        A TextGrid or its file.
    word_tier, phone_tier : str | int | None
        Name (case-insensitive) or index of each tier. ``None`` looks for the usual names:
        ``word``/``words`` and ``phone``/``phones``/``phoneme(s)``, optionally after a
        ``"<speaker> - "`` prefix.

    Returns
    -------
    words : list of Interval
        ``(start, end, word)`` in s, in file order (silences included as written, e.g. ``sp``).
    phones : list of Interval
        ``(start, end, phone label)`` in s.

    Raises
    ------
    ValueError
        If a tier cannot be found unambiguously (the message lists the tiers there are).
    """
    if not isinstance(textgrid, TextGrid):
        textgrid = read_textgrid(textgrid)
    words = _match_tier(textgrid, word_tier, WORD_TIER_NAMES, "word", "word_tier")
    phones = _match_tier(textgrid, phone_tier, PHONE_TIER_NAMES, "phone", "phone_tier")
    return list(words.intervals), list(phones.intervals)


def check_intervals(name, intervals, *, label="label", duration=None, tol=0.0, what="audio"):
    """Check ``(start, end, label)`` intervals in s: finite, ordered, inside the story.

    Parameters
    ----------
    name : str
        The parameter the intervals came from (named in the errors).
    intervals : iterable of (float, float, object)
        ``(start, end, label)`` with times in s.
    label : str
        What the third element is called in the error messages (``"label"``, ``"word"``).
    duration : float | None
        When given, every interval must lie within ``[-tol, duration + tol]``.
    tol : float
        Tolerance in s of that check.
    what : str
        What ``duration`` is the length of (named in the error).

    Returns
    -------
    intervals : list of (float, float, object)
        The intervals with float times and the labels as given, in the input order.
    """
    out = []
    for item in intervals:
        try:
            start, end, text = item
            start, end = float(start), float(end)
        except (TypeError, ValueError):
            raise ValueError(f"'{name}' must be a sequence of (start, end, {label}) with times in "
                             f"s, got the item {item!r}.") from None
        if not (math.isfinite(start) and math.isfinite(end)) or end < start:
            raise ValueError(f"'{name}' holds an invalid interval {item!r}: need finite "
                             "start <= end, in s.")
        if duration is not None and (start < -tol or end > duration + tol):
            raise ValueError(
                f"'{name}' interval ({start:g}, {end:g}, {text!r}) lies outside the audio "
                f"({what}: 0 to {duration:.3f} s, tolerance {tol:g} s). The alignment does not "
                "belong to this audio, or the times are not in s from the audio start.")
        out.append((start, end, text))
    return out


def interval_frames(start, end, sfreq, n_times=None) -> tuple:
    """Frames ``[k0, k1)`` owned by the interval ``[start, end)`` at rate ``sfreq``.

    Frame ``k`` covers ``[k / sfreq, (k + 1) / sfreq)`` and belongs to the interval that holds
    its centre ``(k + 0.5) / sfreq``. The result is clipped to ``[0, n_times]`` when
    ``n_times`` is given; an interval shorter than a frame may own no frame.

    Parameters
    ----------
    start, end : float
        Interval bounds in s.
    sfreq : float
        Frame rate in Hz.
    n_times : int | None
        Number of frames of the story.

    Returns
    -------
    k0, k1 : int
        ``k0 <= k1``.
    """
    sfreq = _check_positive("sfreq", sfreq)
    k0 = math.ceil(start * sfreq - 0.5)
    k1 = math.ceil(end * sfreq - 0.5)
    if n_times is not None:
        k0, k1 = min(max(k0, 0), n_times), min(max(k1, 0), n_times)
    return k0, max(k0, k1)

"""What the store checks report: :class:`Problem` and :class:`StoreError` (see :mod:`.validate`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

_FIX_MANIFEST = ("Correct this field of the manifest, or regenerate the dataset (DatasetWriter, "
                 "or the command that made it).")
_FIX_ARRAY = ("The manifest and the file disagree: restore the file from a good copy or "
              "regenerate the dataset; if the file is right, correct the manifest field.")
_FIX_DAMAGED = ("The file is damaged (e.g. an interrupted copy): restore it from a good copy "
                "or regenerate the dataset.")
_FIX_VALUES = ("Repair the data (interpolate the bad samples, or drop the channel or story) "
               "and write the store again; `neurofuse data info --check DIR` lists every bad "
               "value.")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a store.

    Attributes
    ----------
    file : str
        The file, relative to the store (the manifest for its own fields).
    field : str
        What is wrong: a manifest field (``stories.s1.n_times``), an array axis or property.
    expected, got : str
        What the store's other files require, and what this one holds.
    fix : str
        How to fix it.
    """

    file: str
    field: str
    expected: str
    got: str
    fix: str

    def __str__(self):
        return f"{self.file}: {self.field}: expected {self.expected}, got {self.got}. {self.fix}"


class StoreError(ValueError):
    """A dataset store whose files contradict each other, are damaged or hold bad values.

    Attributes
    ----------
    path : Path
    problems : list of Problem
    """

    def __init__(self, path, problems, *, when="on open"):
        self.path, self.problems = Path(path), list(problems)
        shown = self.problems[:8]
        more = len(self.problems) - len(shown)
        lines = "".join(f"\n  - {p}" for p in shown)
        if more:
            lines += f"\n  ... and {more} more"
        n = len(self.problems)
        super().__init__(
            f"Dataset '{self.path}' failed its check {when}: {n} problem{'s' * (n != 1)}"
            f"{lines}\nRun `neurofuse data info --check {self.path}` to list every problem.")


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _pos_int(x, minimum=1) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= minimum


class _Found(list):
    def add(self, file, field, expected, got, fix=_FIX_MANIFEST):
        self.append(Problem(str(file), str(field), str(expected), str(got), fix))

"""SMN4Lang (OpenNeuro ds004078: MEG and fMRI of 12 listeners, 60 stories) for system C.

* :mod:`.layout` — what the files look like (:func:`find_runs`) and how a MEG run finds its
  BOLD run: by BIDS entities (:func:`pair_runs`), never by listing order;
* :mod:`.alignment` — one clock per story for both modalities and every subject, and the
  story's event onsets (what is assumed about the two clocks);
* :mod:`.recordings` — a MEG story window read and resampled, a BOLD run copied block-wise;
* :mod:`.prepare` — :func:`prepare_smn4lang`: check everything, then write run by run.
"""

from .layout import find_runs, pair_runs
from .prepare import prepare_smn4lang

__all__ = ["find_runs", "pair_runs", "prepare_smn4lang"]

"""A BIDS MEG study of story listening into a neurofuse dataset store.

* :mod:`.layout` — where the recordings (:func:`find_meg_recordings`) and stimuli are;
* :mod:`.recording` — one recording preprocessed, cut into story presentations, cached;
* :mod:`.anatomy` — a subject's FreeSurfer anatomy or the fsaverage template;
* :mod:`.prepare` — :func:`prepare_meg_bids`: check everything, compute, write the store.
"""

from .layout import find_empty_rooms, find_meg_recordings
from .prepare import prepare_meg_bids

__all__ = ["find_empty_rooms", "find_meg_recordings", "prepare_meg_bids"]

"""A BIDS MEG study of story listening into a neurofuse dataset store."""

from .prepare import find_meg_recordings, prepare_meg_bids

__all__ = ["find_meg_recordings", "prepare_meg_bids"]

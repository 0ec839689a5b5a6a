"""EEG recorded with MEG (the layout of OpenNeuro ds000117), or EEG alone, in BIDS → paired,
labelled epoch sets in a dataset store (system B, EEG → MEG).

* :mod:`.recording` — which recordings there are (:func:`find_eeg_recordings`) and one cut
  into epochs around its labelled events;
* :mod:`.prepare` — :func:`prepare_eeg_meg_bids`: check everything, write the store.

``prepare_ds000117`` is the same function under the name of the dataset it was made for.
"""

from .prepare import prepare_eeg_meg_bids
from .recording import find_eeg_recordings

prepare_ds000117 = prepare_eeg_meg_bids

__all__ = ["find_eeg_recordings", "prepare_ds000117", "prepare_eeg_meg_bids"]

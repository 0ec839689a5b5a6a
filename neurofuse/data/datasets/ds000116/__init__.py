"""A BIDS simultaneous EEG–fMRI study (the layout of OpenNeuro ds000116) into a dataset store.

* :mod:`.layout` — which EEG runs there are and the BOLD run of each
  (:func:`find_eeg_fmri_runs`), their TR, the scanner volume markers;
* :mod:`.run` — one run read, checked for the MR gradient artefact, aligned and cut;
* :mod:`.prepare` — :func:`prepare_eeg_fmri_bids`: check everything, write the store.

``prepare_ds000116`` is the same function under the name of the dataset it was made for.
"""

from .layout import find_eeg_fmri_runs
from .prepare import prepare_eeg_fmri_bids

prepare_ds000116 = prepare_eeg_fmri_bids

__all__ = ["find_eeg_fmri_runs", "prepare_ds000116", "prepare_eeg_fmri_bids"]

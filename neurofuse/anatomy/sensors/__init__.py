"""Sensor arrays: a 306-channel MEGIN/Elekta MEG, EEG montages, and ECoG grids and strips.

Coordinate frames and units (SI throughout):

- MEG channel ``loc`` values are in **MEG device** coordinates (metres); ``info['dev_head_t']``
  maps device to head coordinates (``r_head = R @ r_dev + t``), as in real Neuromag files
  (:mod:`.meg`).
- EEG positions are in **head** coordinates (Neuromag convention: x towards RPA, y towards the
  nasion, z up), derived from the montage's fiducials (:mod:`.eeg`).
- ECoG electrodes are placed on a cortical surface given in **MRI (surface RAS)** coordinates
  (metres); :func:`make_ecog_info` converts them to head coordinates with fiducials (by default
  the fsaverage fiducials that MNE ships, consistent with ``fsaverage-trans.fif``) (:mod:`.ecog`).
"""

from .ecog import ElectrodeArray, make_ecog_electrodes, make_ecog_info
from .eeg import make_eeg_info
from .meg import DEFAULT_DEV_HEAD_T, apply_head_position, make_meg_info

__all__ = [
    "DEFAULT_DEV_HEAD_T",
    "ElectrodeArray",
    "apply_head_position",
    "make_ecog_electrodes",
    "make_ecog_info",
    "make_eeg_info",
    "make_meg_info",
]

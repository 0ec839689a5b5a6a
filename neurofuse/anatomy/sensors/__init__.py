"""Sensor arrays: a 306-channel MEGIN/Elekta MEG, EEG montages, and ECoG grids and strips."""

from .meg import (
    DEFAULT_DEV_HEAD_T,
    ElectrodeArray,
    apply_head_position,
    make_ecog_electrodes,
    make_ecog_info,
    make_eeg_info,
    make_meg_info,
)

__all__ = [
    "DEFAULT_DEV_HEAD_T",
    "ElectrodeArray",
    "apply_head_position",
    "make_ecog_electrodes",
    "make_ecog_info",
    "make_eeg_info",
    "make_meg_info",
]

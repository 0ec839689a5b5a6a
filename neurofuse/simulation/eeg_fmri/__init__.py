"""Simultaneous EEG–fMRI simulator (system D's world; paper eeg-fmri-deep-transcoding §4.2).

Sources on a grey-matter voxel grid, driven by event-related impulse trains and, in some
regions, ongoing oscillations; EEG through an MNE lead field and an ERP kernel; fMRI through
the canonical HRF at each slice's acquisition time, with physiological, motion and thermal
noise; presets for the paper's three scenarios; run-by-run, resumable writing and readers.
See ``docs/eeg-fmri-simulator.md``.
"""

from .config import SCENARIOS, SIZES, EEGfMRIConfig, make_config
from .dataset import EEGfMRIDataset, read_dataset, simulate_dataset
from .simulator import Setup, make_setup, simulate_run

__all__ = ["SCENARIOS", "SIZES", "EEGfMRIConfig", "EEGfMRIDataset", "Setup", "make_config",
           "make_setup", "read_dataset", "simulate_dataset", "simulate_run"]

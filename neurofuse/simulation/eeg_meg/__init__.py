"""Paired EEG + MEG world (System B, issue 12 item 1; paper eeg-to-meg-generative §III-A).

Several subjects recorded with a 70-channel EEG cap and the 306-channel MEG at once, from
the same cortical sources, at 250 Hz; event-related tasks with classes (somatomotor 2-class,
faces 3-class) with per-trial jitter, ongoing oscillations in every band, radial and
tangential sources, sensor noise at a CNR per modality; EEG-only subjects of a new task
(motor imagery) for the cross-dataset test. In parts: :mod:`.config` (the configuration and
presets), :mod:`.regions` (cortical regions by position and orientation), :mod:`.tasks`
(classes, evoked components, induced modulations), :mod:`.sources` (trial source activity)
and :mod:`.world` (subjects, sensors, noise, the store).
"""

from .config import BANDS, PRESETS, EEGMEGWorldConfig
from .regions import REGIONS, radiality, region_profiles
from .sources import ONGOING, band_noise, simulate_trials
from .tasks import TASKS, Component, Modulation, Task
from .world import WorldSubject, make_world_subject, simulate_eeg_meg_world

__all__ = ["BANDS", "ONGOING", "PRESETS", "REGIONS", "TASKS", "Component", "EEGMEGWorldConfig",
           "Modulation", "Task", "WorldSubject", "band_noise", "make_world_subject",
           "radiality", "region_profiles", "simulate_eeg_meg_world", "simulate_trials"]

"""MEG preprocessing as in the paper (§2.4), as a reusable pipeline on ``mne.io.Raw``.

The steps, in order (all with MNE-Python):

1. **tSSS** — temporal signal-space separation (:func:`mne.preprocessing.maxwell_filter`),
   after automatic detection of noisy and flat channels
   (:func:`mne.preprocessing.find_bad_channels_maxwell`), optionally with the site's
   fine-calibration and cross-talk files and a common head position (``destination``);
   :mod:`~neurofuse.preprocessing.meg.maxwell`;
2. **filters** — 1–150 Hz band-pass (zero-phase FIR) and a notch at the power-line frequency
   and its harmonics up to the band-pass's upper edge (60 and 120 Hz in the paper);
   :mod:`~neurofuse.preprocessing.meg.filters`;
3. **ICA** — removal of the ocular (EOG channels, or frontal magnetometers as a proxy),
   cardiac (ECG channel, or MNE's synthetic ECG from the magnetometers) and audio-locked
   components (correlation with the stimulus audio, see :class:`MEGPreprocessing`);
   :mod:`~neurofuse.preprocessing.meg.ica`;
4. **downsampling** to 50 Hz (:meth:`mne.io.Raw.resample`, which low-passes first).

:class:`MEGPreprocessing` (:mod:`~neurofuse.preprocessing.meg.settings`) holds the settings;
:func:`preprocess_meg` (:mod:`~neurofuse.preprocessing.meg.pipeline`) runs the steps and
returns the cleaned recording and a report of what was removed. :func:`find_story_onsets`
finds story onsets from the trigger channel or from annotations (BIDS ``events.tsv``), and
:func:`epoch_stories` cuts each presentation of a story to its exact length at 50 Hz
(:mod:`~neurofuse.preprocessing.meg.epochs`); repeated presentations are kept as separate
repeats (the dataset store averages them on request and uses them for repeatability).
"""

from .epochs import epoch_stories, find_story_onsets
from .filters import apply_filters, line_noise_freqs
from .ica import apply_ica
from .maxwell import apply_maxwell, maxwell_history
from .pipeline import preprocess_meg
from .settings import MEGPreprocessing

__all__ = [
    "MEGPreprocessing",
    "apply_filters",
    "apply_ica",
    "apply_maxwell",
    "epoch_stories",
    "find_story_onsets",
    "line_noise_freqs",
    "maxwell_history",
    "preprocess_meg",
]

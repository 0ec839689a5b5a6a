"""Signal processing of recordings, before they enter the dataset store.

* :mod:`~neurofuse.preprocessing.meg`: the paper's MEG preprocessing on ``mne.io.Raw``
  (tSSS, filters, ICA, downsampling; :func:`preprocess_meg`, settings in
  :class:`MEGPreprocessing`), story onsets and one epoch per story presentation;
* :mod:`~neurofuse.preprocessing.ieeg`: iEEG on arrays (common average reference, line
  notch, high-gamma envelope, resampling from an onset);
* :mod:`~neurofuse.preprocessing.fmri`: fMRI timing on arrays (TR resampling, the story
  window a run's volumes cover).

Functions of recordings, arrays and rates only, with no dataset layout: the real-data loaders
(:mod:`neurofuse.data`) read the files and call these, so this layer sits below
:mod:`neurofuse.data` and never imports it.
"""

from .meg import (
    MEGPreprocessing,
    apply_filters,
    apply_ica,
    apply_maxwell,
    epoch_stories,
    find_story_onsets,
    line_noise_freqs,
    preprocess_meg,
)

__all__ = [
    "MEGPreprocessing",
    "apply_filters",
    "apply_ica",
    "apply_maxwell",
    "epoch_stories",
    "find_story_onsets",
    "line_noise_freqs",
    "preprocess_meg",
]

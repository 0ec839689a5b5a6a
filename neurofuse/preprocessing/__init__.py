"""Signal processing of recordings, before they enter the dataset store.

* :mod:`~neurofuse.preprocessing.meg`: the paper's MEG preprocessing on ``mne.io.Raw``
  (tSSS, filters, ICA, downsampling;
  :func:`~neurofuse.preprocessing.meg.preprocess_meg`, settings in
  :class:`~neurofuse.preprocessing.meg.MEGPreprocessing`), story onsets and one epoch per
  story presentation;
* :mod:`~neurofuse.preprocessing.ieeg`: iEEG on arrays (common average reference, line
  notch, high-gamma envelope, resampling from an onset);
* :mod:`~neurofuse.preprocessing.fmri`: fMRI timing on arrays (TR resampling, the story
  window a run's volumes cover);
* :mod:`~neurofuse.preprocessing.mr_artifacts`: EEG recorded in the MR scanner, whether the
  gradient artefact is still there (the TR-harmonic contrast).

Functions of recordings, arrays and rates only, with no dataset layout: the real-data loaders
(:mod:`neurofuse.data`) read the files and call these, so this layer sits below
:mod:`neurofuse.data` and never imports it. Import from the submodules, e.g.
``from neurofuse.preprocessing.meg import preprocess_meg``.
"""

"""Real studies into dataset stores: one loader per dataset.

* :mod:`~neurofuse.data.datasets.lebel` — LeBel et al. (2023) fMRI, OpenNeuro ds003020
  (:func:`~neurofuse.data.datasets.lebel.prepare_lebel`, ``docs/real-data-lebel.md``);
* :mod:`~neurofuse.data.datasets.bids_meg` — any MEG study of story listening in BIDS
  (:func:`~neurofuse.data.datasets.bids_meg.prepare_meg_bids`, ``docs/real-data-meg.md``);
* :mod:`~neurofuse.data.datasets.podcast` — the Podcast ECoG dataset, OpenNeuro ds005574
  (:func:`~neurofuse.data.datasets.podcast.prepare_podcast`, ``docs/real-data-podcast.md``);
* :mod:`~neurofuse.data.datasets.smn4lang` — SMN4Lang MEG + fMRI, OpenNeuro ds004078, for
  system C (:func:`~neurofuse.data.datasets.smn4lang.prepare_smn4lang`);
* :mod:`~neurofuse.data.datasets.ds000116` — simultaneous EEG–fMRI in BIDS, the layout of
  OpenNeuro ds000116, for system D
  (:func:`~neurofuse.data.datasets.ds000116.prepare_eeg_fmri_bids`, ``docs/real-data.md``);
* :mod:`~neurofuse.data.datasets.ds000117` — EEG recorded with MEG (the layout of OpenNeuro
  ds000117), or EEG alone, in BIDS → paired labelled epochs, for system B
  (:func:`~neurofuse.data.datasets.ds000117.prepare_eeg_meg_bids`).

Each loader is a small package: ``layout`` (what the files look like on disk and how to find
them), modules for what one subject or recording is made of, and ``prepare`` (the
``prepare_*`` function: check everything, compute with a resumable work folder, write the
store). What the loaders share lives once: the work folder, cache keys, splits and story
features in :mod:`neurofuse.data._prepare`, the BIDS helpers in ``_bids``. The signal
processing is a layer below, in :mod:`neurofuse.preprocessing` (``meg``, ``ieeg``,
``fmri``, ``mr_artifacts``).
"""

from .bids_meg import prepare_meg_bids
from .ds000116 import prepare_eeg_fmri_bids
from .ds000117 import prepare_eeg_meg_bids
from .lebel import prepare_lebel
from .podcast import prepare_podcast
from .smn4lang import prepare_smn4lang

__all__ = ["prepare_eeg_fmri_bids", "prepare_eeg_meg_bids", "prepare_lebel", "prepare_meg_bids",
           "prepare_podcast", "prepare_smn4lang"]

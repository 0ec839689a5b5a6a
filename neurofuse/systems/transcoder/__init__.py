"""System D, the cyclic EEG↔fMRI transcoder (Sajda lab; ``shared/papers/eeg-fmri-deep-transcoding.md``).

Four networks of five layers (EEG decoder and encoder: spatial; fMRI decoder and encoder:
temporal) map EEG → latent source volume → fMRI and back, trained without a lead field or an
HRF on the four reconstruction losses of the paper's eq. 5. This package holds:

* the sizes (:mod:`.config`), the networks (:mod:`.nets`), the model and its folder
  (:mod:`.model`), the losses (:mod:`.losses`);
* the runs of a simulated data set (or of a dataset store's EEG–fMRI runs, :mod:`.store`)
  at the group level's resolution (:mod:`.data`), the
  training task (:mod:`.task`) and trainer with its presets (:mod:`.trainer`);
* the subject level: its residual model and the group model applied at full resolution
  (:mod:`.subject`), its data and trainer (:mod:`.subject_fit`);
* what it must beat (:mod:`.baselines`): MNE, dSPM and eLORETA with the true lead field, and
  the physics transfers (EEG → inverse → HRF → fMRI; fMRI → Wiener deconvolution → forward
  → EEG), scored by :mod:`neurofuse.evaluation.transcoder`.

The simulator is :mod:`neurofuse.simulation.eeg_fmri`; see ``docs/transcoder.md``.
"""

from .config import BLOCKS, TranscoderConfig
from .data import DataConfig, TranscoderData
from .losses import LOSS_TERMS, transcoder_loss
from .model import Transcoder, load_model, transcode
from .store import StoreRuns, open_eeg_fmri
from .subject import SubjectConfig, SubjectTranscoder
from .subject_fit import (SUBJECT_PRESETS, SubjectData, SubjectDataConfig, fit_subject,
                          subject_sources)
from .trainer import FIT_PRESETS, TrainConfig, fit, load_fit_config

__all__ = ["BLOCKS", "FIT_PRESETS", "LOSS_TERMS", "SUBJECT_PRESETS", "DataConfig",
           "StoreRuns", "SubjectConfig", "SubjectData", "SubjectDataConfig", "SubjectTranscoder",
           "TrainConfig", "Transcoder", "TranscoderConfig", "TranscoderData", "fit",
           "fit_subject", "load_fit_config", "load_model", "open_eeg_fmri", "subject_sources",
           "transcode", "transcoder_loss"]

"""System D, the cyclic EEG↔fMRI transcoder (Sajda lab; ``shared/papers/eeg-fmri-deep-transcoding.md``).

Four networks of five layers (EEG decoder and encoder: spatial; fMRI decoder and encoder:
temporal) map EEG → latent source volume → fMRI and back, trained without a lead field or an
HRF on the four reconstruction losses of the paper's eq. 5. This package holds:

* the sizes (:mod:`.config`), the networks (:mod:`.nets`), the model and its folder
  (:mod:`.model`), the losses (:mod:`.losses`);
* the runs of a simulated data set at the group level's resolution (:mod:`.data`), the
  training task (:mod:`.task`) and trainer with its presets (:mod:`.trainer`).

The simulator is :mod:`neurofuse.simulation.eeg_fmri`; see ``docs/transcoder.md``.
"""

from .config import BLOCKS, TranscoderConfig
from .data import DataConfig, TranscoderData
from .losses import LOSS_TERMS, transcoder_loss
from .model import Transcoder, load_model, transcode
from .trainer import FIT_PRESETS, TrainConfig, fit, load_fit_config

__all__ = ["BLOCKS", "FIT_PRESETS", "LOSS_TERMS", "DataConfig", "TrainConfig", "Transcoder",
           "TranscoderConfig", "TranscoderData", "fit", "load_fit_config", "load_model",
           "transcode", "transcoder_loss"]

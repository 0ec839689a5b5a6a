"""System B, the pretrained EEG→MEG generator (Li & Wang; ``shared/papers/eeg-to-meg-generative.md``).

A frozen, pretrained EEG representation encoder (LaBraM's architecture, channel-independent:
:mod:`neurofuse.nn.labram`), spatial focus mapping (channel and temporal attention,
:mod:`.spatial_focus`) with vector quantisation (:mod:`.vq`), a latent conditional diffusion
generator (:mod:`.diffusion`) over an MEG latent space (:mod:`.meg_autoencoder`), and
broadband spectral calibration (:mod:`.spectral`) synthesise MEG from EEG
(:class:`EEG2MEGGenerator`, Eq. 9 in :mod:`.losses`). This package holds:

* the sizes (:class:`GeneratorConfig`), the networks and the generator;
* our own masked-patch pretraining of the encoder, the offline default (:mod:`.pretrain`);
* the paired epochs of a store, split by subject (:mod:`.data`), the training task
  (:mod:`.task`) and trainer with its presets (:mod:`.trainer`), the model folder and
  synthesis (:mod:`.model`);
* what it must beat (:mod:`.baselines`): the physics transfer (EEG → minimum-norm inverse →
  MEG forward) and a lagged spatio-temporal ridge.

The paired world is :mod:`neurofuse.simulation.eeg_meg`; scoring is
:mod:`neurofuse.evaluation.eeg2meg`; see ``docs/eeg2meg.md``.
"""

from .baselines import EEGMEGRidge, PhysicsTransfer, mean_channel_r
from .config import GeneratorConfig
from .data import DataConfig, PairedEpochs, eeg_epochs
from .generator import EEG2MEGGenerator
from .losses import LOSS_TERMS
from .model import load_generator, save_generator, synthesize
from .pretrain import PretrainConfig, load_encoder, pretrain_encoder
from .spectral import BANDS
from .trainer import FIT_PRESETS, TrainConfig, build_generator, fit, load_fit_config

__all__ = ["BANDS", "FIT_PRESETS", "LOSS_TERMS", "DataConfig", "EEG2MEGGenerator",
           "EEGMEGRidge", "GeneratorConfig", "PairedEpochs", "PhysicsTransfer",
           "PretrainConfig", "TrainConfig", "mean_channel_r",
           "build_generator", "eeg_epochs", "fit", "load_encoder", "load_fit_config",
           "load_generator", "pretrain_encoder", "save_generator", "synthesize"]

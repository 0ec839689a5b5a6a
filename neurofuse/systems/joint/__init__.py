"""System A, the joint MEG-fMRI encoding model: the windowed lag-attention encoder, the
physics heads, the joint model, its training task and trainer, and predictions."""

from .encoder import EncoderConfig, StimulusEncoder
from .heads import DoubleGammaHRF, FMRIHead, MEGHead, analytic_envelope
from .model import JointModel, ModelOutput, check_model_fits
from .prior import select_source_fwhm
from .task import JointTask
from .trainer import FIT_PRESETS, TrainConfig, fit, load_fit_config

__all__ = ["FIT_PRESETS", "DoubleGammaHRF", "EncoderConfig", "FMRIHead", "JointModel", "JointTask",
           "MEGHead", "ModelOutput", "StimulusEncoder", "TrainConfig", "analytic_envelope",
           "check_model_fits", "fit", "load_fit_config", "select_source_fwhm"]

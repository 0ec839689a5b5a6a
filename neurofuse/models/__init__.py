"""Models: the windowed lag-attention encoder, the physics heads and the joint model."""

from .attention import LagWindowAttention
from .encoder import EncoderConfig, StimulusEncoder
from .heads import DoubleGammaHRF, FMRIHead, MEGHead, analytic_envelope
from .joint import JointModel, ModelOutput

__all__ = ["DoubleGammaHRF", "EncoderConfig", "FMRIHead", "JointModel", "LagWindowAttention",
           "MEGHead", "ModelOutput", "StimulusEncoder", "analytic_envelope"]

"""Training the joint model: pieces, losses, the trainer with checkpoints and DDP."""

from .data import PieceLoader, loss_weights, make_pieces, repeatability
from .losses import joint_loss, masked_correlation
from .trainer import TrainConfig, fit, load_checkpoint, save_checkpoint

__all__ = ["PieceLoader", "TrainConfig", "fit", "joint_loss", "load_checkpoint", "loss_weights",
           "make_pieces", "masked_correlation", "repeatability", "save_checkpoint"]

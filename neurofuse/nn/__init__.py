"""Network blocks shared by the systems (windowed lag attention, fully connected stacks)."""

from .attention import LagWindowAttention, lag_window_attention
from .mlp import mlp_layers

__all__ = ["LagWindowAttention", "lag_window_attention", "mlp_layers"]

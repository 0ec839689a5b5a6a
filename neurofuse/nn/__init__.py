"""Network blocks shared by the systems (windowed lag attention)."""

from .attention import LagWindowAttention, lag_window_attention

__all__ = ["LagWindowAttention", "lag_window_attention"]

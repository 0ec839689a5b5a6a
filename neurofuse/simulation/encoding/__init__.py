"""The ground-truth linear encoding model: stimulus features -> fsaverage source activity."""

from .model import (  # noqa: F401
    DEFAULT_LAGS,
    REGIONS,
    STREAM_TUNING,
    SourceEncodingModel,
    make_encoding_model,
    response_kernel,
)

__all__ = [
    "DEFAULT_LAGS",
    "REGIONS",
    "STREAM_TUNING",
    "SourceEncodingModel",
    "make_encoding_model",
    "response_kernel",
]

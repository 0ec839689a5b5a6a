"""The ground-truth linear encoding model: stimulus features -> fsaverage source activity.

In parts: :mod:`.model` (the :class:`SourceEncodingModel`, its transform and I/O, and the
model equations), :mod:`.factory` (:func:`make_encoding_model`, which draws one from the
features' empirical covariance), :mod:`.spatial` (regions, stream tuning, smooth random
fields) and :mod:`.kernels` (temporal response kernels and lags).
"""

from .factory import make_encoding_model
from .kernels import DEFAULT_LAGS, response_kernel
from .model import SourceEncodingModel
from .spatial import REGIONS, STREAM_TUNING

__all__ = [
    "DEFAULT_LAGS",
    "REGIONS",
    "STREAM_TUNING",
    "SourceEncodingModel",
    "make_encoding_model",
    "response_kernel",
]

"""The ground-truth linear encoding model: stimulus features -> fsaverage source activity.

In parts: :mod:`.model` (the :class:`SourceEncodingModel`, its transform and I/O, and the
model equations), :mod:`.factory` (:func:`make_encoding_model`, which draws one from the
features' empirical covariance), :mod:`.spatial` (regions, stream tuning, smooth random
fields) and :mod:`.kernels` (temporal response kernels and lags); :mod:`.world` (named
worlds: length scale, patches, nonlinear responses, spontaneous activity, region HRFs and
latencies) and :mod:`.source_world` (:class:`SourceWorld`, which draws and applies one).
"""

from .factory import make_encoding_model
from .kernels import DEFAULT_LAGS, response_kernel
from .model import SourceEncodingModel
from .source_world import SourceWorld
from .spatial import REGIONS, STREAM_TUNING
from .world import WORLDS, WorldConfig, resolve_world

__all__ = [
    "DEFAULT_LAGS",
    "REGIONS",
    "STREAM_TUNING",
    "SourceEncodingModel",
    "SourceWorld",
    "WORLDS",
    "WorldConfig",
    "make_encoding_model",
    "resolve_world",
    "response_kernel",
]

"""neurofuse: cortical source activity at millisecond and millimetre resolution.

A joint MEG-fMRI encoding model whose latent layer is the cortical source activity on
fsaverage, tied to each subject's data by lead fields, cortical morphs and a haemodynamic
response.
"""

from ._logging import logger, set_log_level, use_log_level

__version__ = "0.1.0.dev0"

__all__ = ["__version__", "logger", "set_log_level", "use_log_level"]

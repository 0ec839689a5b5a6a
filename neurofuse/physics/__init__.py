"""Forward physics shared by every simulator and model: how each modality measures sources.

* :mod:`~neurofuse.physics.measurement`: sources -> MEG / EEG / ECoG through a lead field
  (and a morph), sources -> BOLD, and measurement noise at a contrast-to-noise ratio.
* :mod:`~neurofuse.physics.bold_volume`: sources -> EPI volumes (BOLD % change on a baseline
  image, slow drift, thermal noise at a CNR).
* :mod:`~neurofuse.physics.hrf`: the SPM canonical HRF, HRF convolution and TR averaging.
* :mod:`~neurofuse.physics.envelope`: the amplitude envelope ``|x + j H(x)|``.
* :mod:`~neurofuse.physics.torch_ops`: torch counterparts used inside models (Hilbert
  transform, envelope, learnable double-gamma HRF). Not imported here: torch is optional.

numpy/scipy only (a bottom layer, next to :mod:`neurofuse.anatomy`).
"""

from .envelope import envelope
from .hrf import convolve_hrf, make_bold, spm_hrf, tr_kernel, tr_mean

__all__ = ["convolve_hrf", "envelope", "make_bold", "spm_hrf", "tr_kernel", "tr_mean"]

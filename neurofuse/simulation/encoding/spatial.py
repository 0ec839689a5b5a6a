"""Spatial tuning: named cortical regions, stream-to-region gains and smooth random fields."""

from __future__ import annotations

import math

import numpy as np

#: Named cortical regions: centre (x, y, z) in fsaverage/MNI305 mm for the *right*
#: hemisphere (the left one mirrors x) and the s.d. of the Gaussian spatial profile in mm.
REGIONS = {
    "auditory": ((45.0, -22.0, 8.0), 15.0),  # early auditory cortex / Heschl's gyrus
    "stg": ((56.0, -30.0, 2.0), 20.0),  # superior temporal gyrus / sulcus
    "anterior_temporal": ((55.0, -5.0, -20.0), 20.0),
    "ifg": ((48.0, 22.0, 10.0), 20.0),  # inferior frontal gyrus
    "angular": ((45.0, -62.0, 30.0), 20.0),
    "precuneus": ((6.0, -58.0, 36.0), 18.0),  # precuneus / posterior cingulate
}

#: Gain of each stream in its preferred regions (1 = strongest).
STREAM_TUNING = {
    "spectrogram": {"auditory": 1.0, "stg": 0.6},
    "phoneme": {"auditory": 0.4, "stg": 1.0, "anterior_temporal": 0.2},
    "word": {"stg": 0.5, "anterior_temporal": 1.0, "ifg": 0.9, "angular": 0.8, "precuneus": 0.7},
}
#: (left, right) multipliers: language streams are left-lateralised.
_LATERALITY = {"spectrogram": (1.0, 1.0), "phoneme": (1.0, 0.8), "word": (1.0, 0.7)}
_BACKGROUND_GAIN = 0.1

_FIELD_LENGTH = 0.015  # m, length scale of the smooth random fields
_N_FOURIER = 256  # random Fourier features per field basis


def _region_profiles(src_pos, hemi, regions):
    """dict name -> (n_sources,) Gaussian profiles, per hemisphere, plus 'background'."""
    out = {}
    for name, (centre, sigma) in regions.items():
        c = np.asarray(centre) * 1e-3
        s = sigma * 1e-3
        for h, sign in (("lh", -1.0), ("rh", 1.0)):
            ch = c * np.array([sign, 1.0, 1.0])
            d2 = ((src_pos - ch) ** 2).sum(axis=1)
            prof = np.exp(-0.5 * d2 / s**2)
            prof[hemi != (0 if h == "lh" else 1)] = 0.0
            out[f"{name}-{h}"] = prof
    out["background"] = np.ones(src_pos.shape[0])
    return out


def _fourier_basis(src_pos, rng):
    """(n_sources, M) random Fourier features of a Gaussian kernel (length 15 mm).

    ``f = basis @ a`` with ``a ~ N(0, I_M)`` is approximately a Gaussian process with
    covariance ``exp(-|x - y|^2 / (2 l^2))`` (unit variance).
    """
    omega = rng.standard_normal((3, _N_FOURIER)) / _FIELD_LENGTH
    phase = rng.uniform(0.0, 2 * np.pi, _N_FOURIER)
    return math.sqrt(2.0 / _N_FOURIER) * np.cos(src_pos @ omega + phase)

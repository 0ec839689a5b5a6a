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


def _fourier_basis(src_pos, rng, length=_FIELD_LENGTH):
    """(n_sources, M) random Fourier features of a Gaussian kernel of length ``length`` (m).

    ``f = basis @ a`` with ``a ~ N(0, I_M)`` is approximately a Gaussian process with
    covariance ``exp(-|x - y|^2 / (2 l^2))`` (unit variance); ``l`` = 15 mm by default.
    """
    omega = rng.standard_normal((3, _N_FOURIER)) / length
    phase = rng.uniform(0.0, 2 * np.pi, _N_FOURIER)
    return math.sqrt(2.0 / _N_FOURIER) * np.cos(src_pos @ omega + phase)


#: A source belongs to a region where that region's profile is the largest and at least this.
REGION_THRESHOLD = 0.5


def region_labels(src_pos, hemi):
    """Hard region of each source: where a region's Gaussian profile is largest and >= 0.5.

    Parameters
    ----------
    src_pos : array, shape (n_sources, 3)
        Source positions in m (fsaverage surface RAS).
    hemi : array, shape (n_sources,)
        0 for left-hemisphere sources, 1 for right.

    Returns
    -------
    labels : array of int, shape (n_sources,)
        Index into ``names`` of each source's region.
    names : list of str
        ``"<region>-lh"``, ``"<region>-rh"`` for each entry of :data:`REGIONS`, then
        ``"background"`` (the sources of no region, about 1.18 s.d. or more from every centre).
    """
    profiles = _region_profiles(np.asarray(src_pos, float), np.asarray(hemi), REGIONS)
    names = list(profiles)  # regions (lh, rh) then 'background'
    stack = np.stack([profiles[n] for n in names[:-1]])  # (n_regions, n_sources)
    best = stack.argmax(axis=0)
    labels = np.where(stack.max(axis=0) >= REGION_THRESHOLD, best, len(names) - 1)
    return labels.astype(np.int64), names


def make_parcels(src_pos, hemi, size, rng):
    """Random parcellation into patches about ``size`` across, never crossing hemispheres.

    Seeds are taken in random order and kept when at least ``size`` away from every seed
    kept before in the same hemisphere (a Poisson-disk sample, so seeds are ``size`` to about
    ``2 size`` apart); every source joins its nearest seed of its hemisphere.

    Parameters
    ----------
    src_pos : array, shape (n_sources, 3)
        Source positions in m.
    hemi : array, shape (n_sources,)
        0 for left-hemisphere sources, 1 for right.
    size : float
        Minimal distance between seeds in m.
    rng : numpy.random.Generator
        Random order of the candidate seeds.

    Returns
    -------
    parcels : array of int, shape (n_sources,)
        Parcel index of each source, ``0 .. n_parcels - 1``.
    """
    from scipy.spatial import cKDTree

    src_pos = np.asarray(src_pos, float)
    hemi = np.asarray(hemi)
    parcels = np.empty(src_pos.shape[0], np.int64)
    offset = 0
    for h in np.unique(hemi):
        idx = np.flatnonzero(hemi == h)
        pos = src_pos[idx]
        taken = np.zeros(idx.size, bool)
        blocked = np.zeros(idx.size, bool)
        tree = cKDTree(pos)
        for i in rng.permutation(idx.size):
            if not blocked[i]:
                taken[i] = True
                blocked[tree.query_ball_point(pos[i], size)] = True
        seeds = np.flatnonzero(taken)
        _, nearest = cKDTree(pos[seeds]).query(pos)
        parcels[idx] = nearest + offset
        offset += seeds.size
    return parcels

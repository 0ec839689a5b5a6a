"""Drawing a ground-truth encoding model from calibration features (:func:`make_encoding_model`)."""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..._checks import (
    _check_finite,
    _check_int,
    _check_ndim,
    _check_positive,
    _check_random_state,
    _check_type,
)
from ..._logging import logger, verbose
from .kernels import DEFAULT_LAGS, response_kernel
from .model import SourceEncodingModel, _check_features
from .spatial import (
    _BACKGROUND_GAIN,
    _LATERALITY,
    REGIONS,
    STREAM_TUNING,
    _fourier_basis,
    _region_profiles,
)

_RIDGE = 1e-6  # relative ridge added to the feature covariance eigenvalues
_SCALE_PERCENTILE = 95.0


def _check_stream_slices(stream_slices, n_features):
    _check_type("stream_slices", stream_slices, dict, "a dict of stream name -> slice")
    if not stream_slices:
        raise ValueError("'stream_slices' is empty: give at least one stream.")
    out = {}
    used = np.zeros(n_features, bool)
    for name, sl in stream_slices.items():
        if name not in STREAM_TUNING:
            raise ValueError(
                f"Invalid stream name {name!r} in 'stream_slices': expected names among "
                f"{list(STREAM_TUNING)} (they choose the regions each stream drives)."
            )
        if not isinstance(sl, slice) or sl.step not in (None, 1):
            raise TypeError(f"'stream_slices[{name!r}]' must be a slice with step 1, got {sl!r}.")
        start, stop, _ = sl.indices(n_features)
        if sl.stop is None or sl.stop > n_features or stop <= start:
            raise ValueError(
                f"'stream_slices[{name!r}]' = {sl!r} does not select a non-empty range of the "
                f"{n_features} feature columns."
            )
        if used[start:stop].any():
            raise ValueError(f"'stream_slices[{name!r}]' overlaps another stream's columns.")
        used[start:stop] = True
        out[name] = slice(start, stop)
    return out


def _check_hemi(hemi, src_pos):
    if hemi is None:
        return (src_pos[:, 0] >= 0).astype(np.int8)
    hemi = np.asarray(hemi)
    if hemi.shape != (src_pos.shape[0],) or not np.isin(hemi, (0, 1)).all():
        raise ValueError(
            f"'hemi' must be None or an array of 0 (left) / 1 (right), shape "
            f"({src_pos.shape[0]},), got shape {hemi.shape} with values "
            f"{np.unique(hemi)[:5].tolist()}."
        )
    return hemi.astype(np.int8)



def _covariance_factor(x):
    """F (d, d) with F @ F.T = cov(x) + ridge: w = F @ z, z ~ N(0, I) has that covariance."""
    n = x.shape[0]
    xc = x - x.mean(axis=0)
    cov = (xc.T @ xc) / max(n - 1, 1)  # (d, d)
    evals, evecs = np.linalg.eigh(cov)
    evals = np.clip(evals, 0.0, None)
    ridge = _RIDGE * max(evals.mean(), np.finfo(float).tiny)
    return evecs * np.sqrt(evals + ridge)


@verbose
def make_encoding_model(
    src_pos,
    features,
    *,
    stream_slices,
    sfreq=50.0,
    seed=0,
    stream_lags=None,
    n_components=8,
    amplitude=1e-9,
    hemi=None,
    field_length=0.015,
    parcels=None,
    region_delays=None,
    verbose=None,
):
    """Draw a ground-truth linear encoding model from features to fsaverage sources.

    Parameters
    ----------
    src_pos : array, shape (n_sources, 3)
        Source positions in **m**, fsaverage surface RAS (≈ MNI305: x right, y anterior,
        z superior), e.g. ``src[i]['rr'][src[i]['vertno']]`` of an fsaverage source space.
    features : array, shape (n_times, n_features)
        Calibration features (e.g. a few stories concatenated) at ``sfreq``: their
        per-stream empirical covariance is the covariance of the weight vectors, their mean
        is removed before the kernels, and they set the output scale.
    stream_slices : dict of str -> slice
        Columns of each stream in ``features``; names among ``"word"``, ``"phoneme"``,
        ``"spectrogram"`` (e.g. ``Story.stream_slices``).
    sfreq : float
        Sampling rate of the features in Hz.
    seed : int | numpy.random.Generator | None
        Random seed of the weights and spatial fields.
    stream_lags : dict of str -> float | None
        Peak latency (s) of each stream's temporal kernel, overriding :data:`DEFAULT_LAGS`
        (spectrogram 50 ms, phoneme 100 ms, word 350 ms) for the streams named.
    n_components : int
        Weight vectors per (stream, region, hemisphere); more gives more spatial variety of
        tuning within a region.
    amplitude : float
        Target source s.d. in A·m: the 95th percentile over sources of the activity s.d. on
        the calibration features equals ``amplitude``.
    hemi : array, shape (n_sources,) | None
        0 for left-hemisphere sources, 1 for right; None uses the sign of x (x < 0: left),
        which misplaces a few medial-wall vertices on fsaverage.
    field_length : float
        Length scale ``l`` (m) of the smooth random tuning fields, Gaussian processes of
        covariance ``exp(-d^2 / (2 l^2))`` (15 mm: the default world).
    parcels : array of int, shape (n_sources,) | None
        A parcellation (e.g. :func:`~neurofuse.simulation.encoding.spatial.make_parcels`):
        the tuning fields are then independent normal values per parcel and the region
        profiles their parcel means, so the loadings are piecewise constant over parcels
        (``field_length`` is unused). None: smooth fields.
    region_delays : dict of str -> float | None
        Extra latency (s, >= 0, rounded to samples) of the responses of the regions named
        (``"<region>-lh"``, ``"<region>-rh"`` or ``"background"``): their temporal kernels
        are shifted by it (see :class:`SourceEncodingModel`). None: no delays.
    verbose : bool | str | int | None
        Log level.

    Returns
    -------
    model : SourceEncodingModel
    """
    src_pos = _check_ndim("src_pos", src_pos, 2, "(n_sources, 3)").astype(np.float64)
    if src_pos.shape[1] != 3 or src_pos.shape[0] < 1:
        raise ValueError(f"'src_pos' must have shape (n_sources, 3), got {src_pos.shape}.")
    _check_finite("src_pos", src_pos)
    if np.abs(src_pos).max() > 0.5:
        raise ValueError(
            f"'src_pos' must be in metres, but its largest coordinate is "
            f"{np.abs(src_pos).max():g} (a brain is ~0.15 m across): it looks like mm, "
            "divide by 1000."
        )
    hemi = _check_hemi(hemi, src_pos)
    features = _check_features("features", features)
    if features.shape[0] < 2:
        raise ValueError(
            f"'features' needs at least 2 samples to estimate a covariance, got shape {features.shape}."
        )
    n_features = features.shape[1]
    slices = _check_stream_slices(stream_slices, n_features)
    sfreq = _check_positive("sfreq", sfreq)
    amplitude = _check_positive("amplitude", amplitude)
    _check_int("n_components", n_components, 1)
    lags = {s: DEFAULT_LAGS[s] for s in slices}
    if stream_lags is not None:
        _check_type("stream_lags", stream_lags, dict, "a dict of stream name -> seconds, or None")
        for s, lag in stream_lags.items():
            if s not in slices:
                raise ValueError(
                    f"Invalid stream name {s!r} in 'stream_lags': expected names among {list(slices)}."
                )
            lag = _check_positive(f"stream_lags[{s!r}]", lag)
            if lag < 1.0 / sfreq:
                raise ValueError(
                    f"'stream_lags[{s!r}]' must be at least one sample (1/sfreq = "
                    f"{1 / sfreq:g} s), got {lag:g} s."
                )
            lags[s] = lag
    field_length = _check_positive("field_length", field_length)
    if field_length > 0.5:
        raise ValueError(
            f"'field_length' must be in metres, got {field_length:g} (that is more than a "
            "brain): it looks like mm, divide by 1000."
        )
    if parcels is not None:
        parcels = np.asarray(parcels)
        if parcels.shape != (src_pos.shape[0],) or not np.issubdtype(parcels.dtype, np.integer) \
                or parcels.min() < 0:
            raise ValueError(
                f"'parcels' must be None or non-negative ints, shape ({src_pos.shape[0]},), "
                f"got shape {parcels.shape} of dtype {parcels.dtype}."
            )
    seed_json = (
        int(seed) if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) else None
    )
    rng = _check_random_state(seed)
    n_sources = src_pos.shape[0]
    logger.info(
        f"Encoding model: {n_sources} sources, streams "
        + ", ".join(
            f"{s} ({slices[s].stop - slices[s].start}-d, {lags[s] * 1e3:g} ms)" for s in slices
        )
    )
    profiles = _region_profiles(src_pos, hemi, REGIONS)
    if parcels is None:
        basis = _fourier_basis(src_pos, rng, field_length)  # (n_sources, M)
    else:
        n_parcels = int(parcels.max()) + 1
        counts = np.bincount(parcels, minlength=n_parcels).astype(float)
        profiles = {  # parcel means: piecewise constant over parcels
            name: (np.bincount(parcels, prof, n_parcels) / np.maximum(counts, 1))[parcels]
            for name, prof in profiles.items()
        }
    k = int(n_components)
    loadings, mixing, kernels, latent_regions = [], {}, {}, {}
    for s, sl in slices.items():
        factor = _covariance_factor(features[:, sl].astype(np.float64))  # (d_s, d_s)
        lat, regions = [], []
        left, right = _LATERALITY[s]
        gains = [
            (f"{r}-{h}", g * m)
            for r, g in STREAM_TUNING[s].items()
            for h, m in (("lh", left), ("rh", right))
        ]
        gains.append(("background", _BACKGROUND_GAIN))
        for name, gain in gains:
            if parcels is None:
                fields = basis @ rng.standard_normal((basis.shape[1], k))  # (n_sources, K)
            else:
                fields = rng.standard_normal((n_parcels, k))[parcels]  # (n_sources, K)
            lat.append(gain * profiles[name][:, None] * fields / math.sqrt(k))
            regions.append(name)
        loadings.append(np.concatenate(lat, axis=1))  # (n_sources, R_s K)
        mixing[s] = rng.standard_normal((len(regions) * k, factor.shape[0])) @ factor.T
        kernels[s] = response_kernel(lags[s], sfreq)
        latent_regions[s] = regions
    model = SourceEncodingModel(
        spatial_loadings=np.concatenate(loadings, axis=1),
        mixing=mixing,
        kernels=kernels,
        lags=lags,
        latent_regions=latent_regions,
        stream_slices=slices,
        feature_mean=features.mean(axis=0),
        src_pos=src_pos,
        hemi=hemi,
        sfreq=sfreq,
        amplitude=amplitude,
        n_components=k,
        seed=seed_json,
        region_delays=region_delays,
    )
    # Scale: (1) each stream's latent time courses to unit mean variance on the calibration
    # features, so that the region gains compare streams; (2) the loadings so that the 95th
    # percentile of the source s.d. equals `amplitude`.
    cov = _latent_covariance(model, features)
    for s in model.stream_names:
        ls = model.latent_slices[s]
        v = float(np.mean(np.diag(cov)[ls]))
        if v <= 0:
            raise ValueError(
                f"The '{s}' stream is constant over the calibration 'features': pass features "
                "with variance in every stream (e.g. a few concatenated stories)."
            )
        model.mixing[s] /= math.sqrt(v)
        cov[ls, :] /= math.sqrt(v)
        cov[:, ls] /= math.sqrt(v)
    a = model.spatial_loadings
    std = np.sqrt(np.maximum(np.einsum("ij,ij->i", a @ cov, a), 0.0))
    model.spatial_loadings *= amplitude / np.percentile(std, _SCALE_PERCENTILE)
    model._a32 = None
    return model


def _latent_covariance(model, features):
    """Covariance (n_latent, n_latent) of the filtered latent time courses over ``features``."""
    n_lat = model.n_latent
    s1 = np.zeros(n_lat)
    s2 = np.zeros((n_lat, n_lat))
    n = features.shape[0]
    for b0, b1, u in model._iter_latent(features):
        u = u[: b1 - b0]
        s1 += u.sum(axis=0)
        s2 += u.T @ u
    mean = s1 / n
    return (s2 - n * np.outer(mean, mean)) / max(n - 1, 1)

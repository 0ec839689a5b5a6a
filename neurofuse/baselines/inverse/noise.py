"""Regularisation (``lambda2 = 1 / CNR**2``) and noise covariance from ground-truth noise."""

from __future__ import annotations

import numpy as np

from ..._checks import _check_finite, _check_ndim, _check_positive, _check_type
from ..._logging import logger, verbose
from ._common import MIN_LAMBDA2, _check_chunk_size


def lambda2_from_cnr(cnr, *, min_lambda2=MIN_LAMBDA2) -> float:
    """The paper's regularisation ``lambda2 = 1 / CNR**2``, floored at ``min_lambda2``.

    Parameters
    ----------
    cnr : float | 'inf'
        MEG contrast-to-noise ratio (sigma_signal / sigma_noise per channel).
    min_lambda2 : float
        Floor, used for noiseless data: ``CNR = inf`` would give ``lambda2 = 0``, which MNE
        cannot use (and which would amplify the float32 rounding noise of stored MEG). The
        default 1e-6 corresponds to CNR = 1000.

    Returns
    -------
    lambda2 : float
    """
    cnr = _check_positive("cnr", cnr, allow_inf=True)
    min_lambda2 = _check_positive("min_lambda2", min_lambda2)
    return max(1.0 / cnr**2, min_lambda2)



@verbose
def noise_cov_from_noise(noise, info, *, diag=True, chunk_size=8192, verbose=None):
    """Noise covariance from known (ground-truth) sensor noise.

    Parameters
    ----------
    noise : array, shape (n_channels, n_times)
        The noise alone, e.g. ``data - clean`` in a simulation. Rows follow
        ``info["ch_names"]``. The mean of each channel is removed (like
        :func:`mne.compute_raw_covariance`).
    info : mne.Info
        The channels of ``noise`` (MEG only).
    diag : bool
        Keep only the per-sensor variances (appendix C: "the noise covariance for each MEG
        sensor"; in the simulation the noise is independent across sensors, so the diagonal
        is the true covariance and avoids the estimation error of 306² off-diagonal terms
        from a few thousand samples). ``False`` gives the full sample covariance.
    chunk_size : int
        Time samples processed at once (memory control).
    verbose : bool | str | None
        Log level for this call.

    Returns
    -------
    noise_cov : mne.Covariance
        With ``nfree = n_times - 1`` and the projectors of ``info``.
    """
    import mne

    _check_type("info", info, mne.Info, "mne.Info")
    noise = _check_ndim("noise", noise, 2, "(n_channels, n_times)") \
        if np.ndim(noise) != 2 else noise
    names = list(info["ch_names"])
    if noise.shape[0] != len(names):
        raise ValueError(f"'noise' vs info channel mismatch: 'noise' has {noise.shape[0]} rows "
                         f"but info has {len(names)} channels. Pass one row per channel of info.")
    n_times = noise.shape[1]
    if n_times < 2:
        raise ValueError(f"'noise' needs at least 2 time samples to estimate a covariance, got "
                         f"{n_times}.")
    chunk_size = _check_chunk_size(chunk_size)
    total = np.zeros(len(names))
    for a in range(0, n_times, chunk_size):
        chunk = np.asarray(noise[:, a:a + chunk_size], dtype=np.float64)
        _check_finite(f"noise[:, {a}:{a + chunk.shape[1]}]", chunk)
        total += chunk.sum(axis=1)
    mean = total / n_times
    acc = np.zeros(len(names)) if diag else np.zeros((len(names), len(names)))
    for a in range(0, n_times, chunk_size):
        chunk = np.asarray(noise[:, a:a + chunk_size], dtype=np.float64) - mean[:, None]
        acc += (chunk**2).sum(axis=1) if diag else chunk @ chunk.T
    cov = acc / (n_times - 1)
    var = cov if diag else np.diag(cov)
    scale = np.max(var) if var.size else 0.0
    zero = np.flatnonzero(var <= 1e-30 * max(scale, 1e-300))
    if zero.size:
        raise ValueError(
            f"'noise' has (numerically) zero variance on {zero.size} channel(s), e.g. "
            f"{[names[i] for i in zero[:3]]}: the noise covariance would be singular. For "
            "noiseless data (CNR = inf) estimate the covariance's shape from the clean signal "
            "(noise_cov_from_noise(clean, info), what run_inverses does) or use "
            "mne.make_ad_hoc_cov(info).")
    logger.info("Noise covariance from %d samples of ground-truth noise (%s).", n_times,
                "diagonal" if diag else "full")
    return mne.Covariance(cov, names, list(info["bads"]), [p.copy() for p in info["projs"]],
                          n_times - 1, verbose=False)

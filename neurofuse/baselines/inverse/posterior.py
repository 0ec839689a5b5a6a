"""Minimum-norm inverses with a prior mean: ``ŝ = m + K (y − G m)``.

MNE is the posterior mean of a Gaussian source prior ``s ~ N(0, R)`` given MEG ``y = G s + n``
with ``n ~ N(0, C)``: ``ŝ = K y`` with ``K = R Gᵀ (G R Gᵀ + lambda2 C)⁻¹``. With a prior *mean*
``m`` instead of zero (``s ~ N(m, R)``) the posterior mean is::

    ŝ = m + K (y − G m)

the same kernel ``K`` (same noise covariance, ``lambda2``, depth and, for fMNE, the same per-TR
fMRI prior) applied to what ``m`` leaves unexplained. With ``m = 0`` it is the classical
inverse; with data that ``m`` explains exactly (``y = G m``) it returns ``m`` whatever ``K``.
The joint model's stimulus → source prediction is such an ``m``
(:func:`neurofuse.evaluation.recovery.source_recovery`, methods ``"neurofuse+MNE"`` and
``"neurofuse+fMNE"``).

Where things live: ``m`` is on fsaverage (the model's sources, the space every inverse is
scored on); ``G = L M`` is the subject's gain on fsaverage sources (lead field times the
fsaverage → subject morph, :func:`prior_gain`), so ``G m = L (M m)`` is ``m`` morphed to the
subject and projected to the sensors; ``K`` maps to the subject's sources and
:func:`~neurofuse.baselines.inverse.fsaverage_map` (``F``, the row-normalised transpose of
``M``) takes the update back to fsaverage: ``ŝ_fs = m + F K (y − L M m)``. ``F M`` is not the
identity (a slight smoothing), so ``m`` is added on fsaverage as it is, not as ``F M m``:
a perfect ``m`` is returned unchanged.

Units: the joint model is trained with a correlation loss, so its sources are in model
units, proportional to A·m but not calibrated (:mod:`neurofuse.systems.joint.predict`). Used
as it is, such an ``m`` is off by many orders of magnitude and ``y − G m`` is all model. The
prior mean is therefore ``a m`` with the one scalar ``a >= 0`` that best explains the
recording being inverted in the whitened norm of the inverse (:func:`fit_prior_scale`,
``prior_scale="fit"``, the default): ``a = max(0, <W G m, W y> / ||W G m||²)``, an empirical
Bayes estimate of the prior mean's scale from the same data the inverse uses and no ground
truth. For an ``m`` already in A·m, pass ``prior_scale=1``.

Only MNE and fMNE have a prior mean to move: dSPM and sLORETA divide the MNE estimate by
its noise standard deviation (statistical maps, not estimates of ``s`` in A·m, to which
``m`` cannot be added), and eLORETA's source weights are fitted for zero localisation error
of point sources rather than being a source covariance the model's mean could complement;
they are refused.
"""

from __future__ import annotations

import numpy as np

from ..._checks import _check_finite, _check_option, _check_positive
from ..._logging import logger, verbose
from ._common import DEFAULT_FLOOR, METHODS, _check_chunk_size, _check_data, _check_inverse
from .classical import _prepare, apply_inverse_array
from .fmri import apply_fmne

#: The inverses that take a prior mean (the posterior-mean ones).
POSTERIOR_METHODS = ("MNE", "fMNE")


def posterior_name(method: str, prefix: str = "prior") -> str:
    """The name of ``method`` with a prior mean from ``prefix``: ``"neurofuse+MNE"``."""
    return f"{prefix}+{method}"


def _check_posterior_method(method):
    if method in METHODS and method not in POSTERIOR_METHODS:
        raise ValueError(
            f"'method' {method!r} cannot take a prior mean: dSPM and sLORETA are noise-"
            "normalised statistical maps (the MNE estimate divided by its noise standard "
            "deviation), not estimates of the sources in A·m, and eLORETA's weights are fitted "
            "for localisation, not a source prior; a mean m cannot be added to them. Use "
            f"method in {POSTERIOR_METHODS} (the posterior means of a Gaussian source prior).")
    _check_option("method", method, POSTERIOR_METHODS)
    return method


def prior_gain(leadfield, morph) -> np.ndarray:
    """The subject's gain on fsaverage sources, ``G = L M`` (dense float64).

    Parameters
    ----------
    leadfield : array, shape (n_channels, n_sources)
        Fixed-orientation lead field of the subject's sources (``ds.leadfield(subject)``),
        rows in the order of the inverse's channels.
    morph : scipy.sparse matrix, shape (n_sources, n_sources_fsaverage)
        fsaverage → subject morph (``ds.morph(subject)``).

    Returns
    -------
    gain : array, shape (n_channels, n_sources_fsaverage), float64
        ``G @ m`` is the sensor signal of fsaverage sources ``m`` (morphed to the subject).
    """
    from ...physics.measurement import make_gain

    return np.asarray(make_gain(np.asarray(leadfield, np.float64), morph), np.float64)


def _check_prior_shapes(data, gain, prior_mean) -> np.ndarray:
    """``gain`` as float64 after checking it and ``prior_mean`` against ``data``."""
    n_ch, n_times = data.shape
    gain = np.asarray(gain, np.float64)
    if gain.ndim != 2 or gain.shape[0] != n_ch:
        raise ValueError(f"'gain' must have shape (n_channels, n_prior) = ({n_ch}, n_prior), "
                         f"one row per channel of 'data', got {gain.shape}. Build it with "
                         "prior_gain(ds.leadfield(subject), ds.morph(subject)).")
    if prior_mean.ndim != 2 or tuple(prior_mean.shape) != (gain.shape[1], n_times):
        raise ValueError(
            f"'prior_mean' must have shape (n_prior, n_times) = ({gain.shape[1]}, {n_times}) "
            f"(one row per column of 'gain', one column per sample of 'data'), got "
            f"{tuple(prior_mean.shape)}. Pass the prior mean of the same story on the sources "
            "the gain maps from (fsaverage for prior_gain).")
    return gain


def prior_residual(data, gain, prior_mean, *, chunk_size=1024) -> np.ndarray:
    """What the prior mean leaves of the data: ``y − G m``, streamed over time.

    Parameters
    ----------
    data : array, shape (n_channels, n_times)
        MEG (may be a memmap).
    gain : array, shape (n_channels, n_prior)
        From :func:`prior_gain` (``n_prior``: fsaverage sources), or the lead field itself for
        a prior mean on the subject's sources.
    prior_mean : array, shape (n_prior, n_times)
        The prior mean ``m`` (may be a memmap).
    chunk_size : int
        Time samples per chunk.

    Returns
    -------
    residual : array, shape (n_channels, n_times)
        In ``data``'s floating dtype (float32 data: float32), computed in float64.
    """
    chunk_size = _check_chunk_size(chunk_size)
    gain = _check_prior_shapes(data, gain, prior_mean)
    n_ch, n_times = data.shape
    dtype = data.dtype if np.issubdtype(data.dtype, np.floating) else np.float64
    out = np.empty((n_ch, n_times), dtype)
    power = [0.0, 0.0]  # of the data, of the residual
    for a in range(0, n_times, chunk_size):
        m = np.asarray(prior_mean[:, a:a + chunk_size], np.float64)
        _check_finite("prior_mean", m)
        y = np.asarray(data[:, a:a + chunk_size], np.float64)
        r = y - gain @ m
        out[:, a:a + chunk_size] = r
        power[0] += float(np.sum(y**2))
        power[1] += float(np.sum(r**2))
    logger.info("Prior mean: the residual y - G m keeps %.3g of the data's power.",
                power[1] / power[0] if power[0] > 0 else float("nan"))
    return out


def _add_prior_mean(out, prior_mean, scale, *, chunk_size=1024):
    """``out += scale * prior_mean`` in place, in float64 time chunks (``out``: any array)."""
    for a in range(0, out.shape[1], chunk_size):
        out[:, a:a + chunk_size] = (np.asarray(out[:, a:a + chunk_size], np.float64) + scale
                                    * np.asarray(prior_mean[:, a:a + chunk_size], np.float64))
    return out


def fit_prior_scale(data, inverse, prior_mean, gain, *, chunk_size=1024) -> float:
    """The scale of a prior mean that best explains the data: ``max(0, <W G m, W y> / ||W G m||²)``.

    Least squares in the inverse's whitened sensor space (``W``: its whitener with SSP, the
    norm in which MNE weighs the data), over all samples. A prior mean in arbitrary units
    (the joint model's) becomes ``a m`` in A·m. ``a = 0`` (with a warning) when ``G m`` is
    anti-correlated with the data, and for ``m = 0``: the prior mean is then not used.

    Parameters
    ----------
    data : array, shape (n_channels, n_times)
        MEG (may be a memmap), rows in the order of ``inverse["noise_cov"].ch_names``.
    inverse : mne.minimum_norm.InverseOperator
    prior_mean : array, shape (n_prior, n_times)
    gain : array, shape (n_channels, n_prior)
        See :func:`prior_residual`.
    chunk_size : int
        Time samples per chunk.

    Returns
    -------
    scale : float
        ``a >= 0``.
    """
    _check_inverse(inverse)
    data = _check_data(data, inverse)
    chunk_size = _check_chunk_size(chunk_size)
    gain = _check_prior_shapes(data, gain, prior_mean)
    inv = _prepare(inverse, 1.0, "MNE")  # the whitener does not depend on lambda2
    whitener = inv["whitener"] @ inv["proj"]  # (n_whitened, n_channels)
    wg = whitener @ gain  # (n_whitened, n_prior)
    num = den = 0.0
    for a in range(0, data.shape[1], chunk_size):
        wgm = wg @ np.asarray(prior_mean[:, a:a + chunk_size], np.float64)
        wy = whitener @ np.asarray(data[:, a:a + chunk_size], np.float64)
        num += float(np.sum(wgm * wy))
        den += float(np.sum(wgm * wgm))
    if not den > 0:
        return 0.0
    scale = num / den
    if scale < 0:
        logger.warning("The prior mean's sensor signal G m is anti-correlated with the data "
                       "(least-squares scale %.3g): it is not used (scale 0, the classical "
                       "inverse).", scale)
        return 0.0
    logger.info("Prior mean scaled by %.4g to explain the data (whitened least squares).",
                scale)
    return scale


@verbose
def apply_posterior(data, inverse, prior_mean, gain, *, lambda2, method="MNE", bold=None,
                    sfreq=None, tr=None, floor=DEFAULT_FLOOR, normalization="minmax",
                    bold_lag=0, to_fsaverage=None, prior_scale="fit", chunk_size=1024,
                    out=None, verbose=None):
    """MNE or fMNE with a prior mean: ``ŝ = a m + K (y − a G m)``, streamed, float32 output.

    ``K`` is exactly the kernel of :func:`~neurofuse.baselines.inverse.apply_inverse_array`
    (``method="MNE"``) or :func:`~neurofuse.baselines.inverse.apply_fmne` (``"fMNE"``, one
    kernel per TR), applied to the residual ``y − a G m`` (:func:`prior_residual`); ``a m`` is
    then added on the output's sources. ``prior_mean = 0`` gives the classical estimate.

    Parameters
    ----------
    data : array, shape (n_channels, n_times)
        MEG (may be a memmap), rows in the order of ``inverse["noise_cov"].ch_names``.
    inverse : mne.minimum_norm.InverseOperator
        From :func:`~neurofuse.baselines.inverse.make_inverse`.
    prior_mean : array, shape (n_out, n_times)
        The prior mean ``m`` on the output's sources: fsaverage when ``to_fsaverage`` is given,
        else the subject's sources (may be a memmap).
    gain : array, shape (n_channels, n_out)
        Maps ``m`` to the sensors: :func:`prior_gain` (``L M``) for ``m`` on fsaverage, the lead
        field ``L`` for ``m`` on the subject's sources.
    lambda2 : float
        Regularisation, > 0 (``1 / CNR**2``, as the classical inverse).
    method : 'MNE' | 'fMNE'
        dSPM, sLORETA and eLORETA are refused (no prior mean to move; see the module notes).
    bold, sfreq, tr, floor, normalization, bold_lag
        fMNE only: see :func:`~neurofuse.baselines.inverse.apply_fmne`.
    to_fsaverage : scipy.sparse matrix, shape (n_sources_fsaverage, n_sources) | None
        Subject → fsaverage map (:func:`~neurofuse.baselines.inverse.fsaverage_map`) applied
        to the update ``K (y − G m)``.
    prior_scale : "fit" | float
        ``a``: ``"fit"`` (default) the least-squares scale of :func:`fit_prior_scale` (for a
        prior mean in model units); a number >= 0 to use as it is (1 for ``m`` in A·m).
    chunk_size : int
        Time samples per chunk.
    out : array, shape (n_out, n_times) | None
        Where to write (e.g. a float32 memmap); None allocates float32.
    verbose : bool | str | None
        Log level for this call.

    Returns
    -------
    estimate : array, shape (n_out, n_times)
        The posterior mean in A·m.
    """
    _check_inverse(inverse)
    method = _check_posterior_method(method)
    data = _check_data(data, inverse)
    n_out = inverse["nsource"] if to_fsaverage is None else to_fsaverage.shape[0]
    if np.shape(gain)[1:] != (n_out,):
        raise ValueError(
            f"'gain' must map the output's {n_out} sources ("
            f"{'fsaverage' if to_fsaverage is not None else 'the subject'}) to the sensors, "
            f"shape ({data.shape[0]}, {n_out}), got {np.shape(gain)}: use prior_gain(leadfield,"
            " morph) with to_fsaverage, the lead field without.")
    if isinstance(prior_scale, str):
        _check_option("prior_scale", prior_scale, ("fit",))
        prior_scale = fit_prior_scale(data, inverse, prior_mean, gain, chunk_size=chunk_size)
    prior_scale = _check_positive("prior_scale", prior_scale, allow_zero=True)
    residual = prior_residual(data, np.asarray(gain, np.float64) * prior_scale, prior_mean,
                              chunk_size=chunk_size)
    if method == "fMNE":
        if bold is None or sfreq is None or tr is None:
            raise ValueError("method='fMNE' needs 'bold', 'sfreq' and 'tr' (see apply_fmne).")
        out = apply_fmne(residual, inverse, bold, lambda2=lambda2, sfreq=sfreq, tr=tr,
                         floor=floor, normalization=normalization, bold_lag=bold_lag,
                         to_fsaverage=to_fsaverage, out=out)
    else:
        out = apply_inverse_array(residual, inverse, lambda2=lambda2, method="MNE",
                                  chunk_size=chunk_size, to_fsaverage=to_fsaverage, out=out)
    del residual
    return _add_prior_mean(out, prior_mean, prior_scale, chunk_size=chunk_size)

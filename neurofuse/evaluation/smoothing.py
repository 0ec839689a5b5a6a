"""Fair baselines: the classical inverses with the joint model's own spatial prior.

The demo's joint model smooths its sources with a fixed Gaussian over the fsaverage sources
(``sources = K (W z + b)``, ``K = source_smoother(vertices, source_fwhm)``; issue 15, item 4).
Part of its lead over MNE, dSPM, sLORETA, eLORETA and fMNE is that prior, not what it learned
from the stimulus. So each inverse is also scored smoothed post hoc with the *same* matrix:
the same function (:func:`neurofuse.anatomy.source_smoother`), the same width (the model's
``EncoderConfig.source_fwhm``), on the same sources (the model's fsaverage ``vertices``, which
are the rows of every inverse estimate mapped to fsaverage), as methods named
``"<inverse>+smooth"`` (e.g. ``"fMNE+smooth"``).

The smoothing is applied on the fsaverage template source space, where the model's smoother
acts and where the inverses are scored, not on each subject's own source space.

MNE-Python's nearest alternative is the smoothing of a surface morph
(:func:`mne.compute_source_morph` with ``smooth=<steps>``): iterated averaging over mesh
neighbours of the full-resolution surface, whose width is a number of steps rather than
millimetres, and which needs FreeSurfer's ``sphere.reg`` for the morph. The same kind of
step-wise smoothing on the source space itself is :func:`source_adjacency_smoother` (from
:func:`mne.spatial_src_adjacency`): offered for comparison, not used by default, because its
width is not the model's.
"""

from __future__ import annotations

import numpy as np

from .._checks import _check_int, _check_ndim, _check_positive
from .._logging import logger

#: Suffix of the method name of an inverse smoothed with the model's prior.
SMOOTH_SUFFIX = "+smooth"


def smoothed_name(method: str) -> str:
    """The name of ``method`` smoothed with the model's prior: ``"MNE"`` -> ``"MNE+smooth"``."""
    return f"{method}{SMOOTH_SUFFIX}"


def model_source_fwhm(model):
    """The FWHM (mm) of a joint model's smoothed source layer; None for a plain layer.

    Parameters
    ----------
    model : JointModel | SourceModel | None
        A trained joint model (its ``encoder.config.source_fwhm``) or any other source model
        (no source-layer prior: None).

    Returns
    -------
    fwhm : float | None
    """
    config = getattr(getattr(model, "encoder", None), "config", None)
    fwhm = getattr(config, "source_fwhm", None)
    return None if fwhm is None else float(fwhm)


def resolve_smoother(smooth_fwhm, *, model=None, vertices=None):
    """The smoother of the smoothed inverses, as :func:`source_recovery` asks for it.

    Parameters
    ----------
    smooth_fwhm : "model" | float | None
        ``"model"``: the width of ``model``'s smoothed source layer (None when the model has a
        plain layer or no model is given; for a learned mixture of widths, the trained mixture
        itself, :meth:`~neurofuse.systems.joint.model.JointModel.spatial_prior`, reported by
        its mean width); a float: that FWHM in mm; None: no smoothing.
    model : JointModel | SourceModel | None
        Gives the width for ``"model"`` and the fsaverage source ``vertices`` (when it has
        them, they take precedence over ``vertices``).
    vertices : [array, array] | None
        ``[lh_vertno, rh_vertno]`` fsaverage5 vertex numbers of the estimates' rows (a
        dataset's ``metadata['template']['vertices']``).

    Returns
    -------
    fwhm : float | None
        The width used (None: no smoothed inverses).
    smoother : scipy.sparse.csr_array, shape (n_sources, n_sources) | None
        :func:`neurofuse.anatomy.source_smoother` at that width on those vertices.
    """
    from ..anatomy.cortex import source_smoother

    if smooth_fwhm is None:
        return None, None
    if isinstance(smooth_fwhm, str):
        if smooth_fwhm != "model":
            raise ValueError(f"'smooth_fwhm' must be 'model', a width in mm or None, got "
                             f"{smooth_fwhm!r}.")
        prior = model.source_prior() if hasattr(model, "source_prior") else {}
        if prior.get("prior") == "mixture":  # the learned mixture itself, not one width of it
            logger.info("Smoothed inverses with the model's learned mixture of widths (mean "
                        "%.1f mm)", prior["mean_fwhm"])
            return float(prior["mean_fwhm"]), model.spatial_prior()
        fwhm = model_source_fwhm(model)
        if fwhm is None:
            logger.info("No smoothed inverses: %s", "no model was given" if model is None else
                        "the model's source layer is not smoothed (source_fwhm=None); pass "
                        "smooth_fwhm=<mm> to smooth the inverses anyway")
            return None, None
    else:
        fwhm = _check_positive("smooth_fwhm", smooth_fwhm)
    model_vertices = getattr(model, "vertices", None)
    if model_vertices:
        vertices = model_vertices
    if not vertices:
        raise ValueError(f"'smooth_fwhm' is {smooth_fwhm!r}, but the smoother needs the "
                         "fsaverage source vertices of the estimates, which neither the model "
                         "nor the dataset (metadata 'template' -> 'vertices') records. Write "
                         "them into the store (DatasetWriter(metadata={'template': "
                         "{'vertices': [lh, rh]}})) or pass smooth_fwhm=None.")
    return fwhm, source_smoother(vertices, fwhm)


def smooth_estimate(estimate, smoother, *, out=None, chunk_size=4096):
    """Apply a source smoother to an estimate, in blocks of time: ``K @ estimate``.

    Parameters
    ----------
    estimate : array, shape (n_sources, n_times)
        Source estimate on the smoother's sources (may be a read-only memmap).
    smoother : scipy.sparse matrix | array, shape (n_sources, n_sources)
        E.g. from :func:`resolve_smoother` or :func:`neurofuse.anatomy.source_smoother`.
    out : array, shape (n_sources, n_times) | None
        Written in place (e.g. a memmap) and returned; None: a new float32 array.
    chunk_size : int
        Time samples per block (memory control; the result does not depend on it).

    Returns
    -------
    smoothed : array, shape (n_sources, n_times)
    """
    return _smooth_blocks(estimate, smoother, None, 0.0, out=out, chunk_size=chunk_size)


def smooth_update(estimate, prior_mean, smoother, *, prior_scale=1.0, out=None,
                  chunk_size=4096):
    """Smooth only what an inverse added to its prior mean: ``a m + S (estimate − a m)``.

    For an inverse with a prior mean (``estimate = m + U``, ``U`` the minimum-norm update
    ``K_inv (y − G m)``; :func:`neurofuse.baselines.inverse.apply_posterior`) whose mean ``m``
    is already the joint model's own smooth estimate, the fair smoothed variant smooths the
    update only: ``m + S U``. With ``m = 0`` it is :func:`smooth_estimate`.

    Parameters
    ----------
    estimate : array, shape (n_sources, n_times)
        The posterior estimate (may be a read-only memmap).
    prior_mean : array, shape (n_sources, n_times)
        Its prior mean ``m``.
    smoother : scipy.sparse matrix | array, shape (n_sources, n_sources)
    prior_scale : float
        ``a >= 0``: the scale the inverse applied to ``prior_mean`` (``run_inverses``'s
        ``fitted_scale``).
    out : array, shape (n_sources, n_times) | None
        Written in place and returned; None: a new float32 array.
    chunk_size : int
        Time samples per block.

    Returns
    -------
    smoothed : array, shape (n_sources, n_times)
    """
    _check_ndim("estimate", estimate, 2, "(n_sources, n_times)")
    if tuple(prior_mean.shape) != tuple(estimate.shape):
        raise ValueError(f"'prior_mean' must have the estimate's shape {estimate.shape}, got "
                         f"{tuple(prior_mean.shape)}: pass the prior mean the inverse was "
                         "computed with, on the estimate's sources and samples.")
    prior_scale = _check_positive("prior_scale", prior_scale, allow_zero=True)
    return _smooth_blocks(estimate, smoother, prior_mean, prior_scale, out=out,
                          chunk_size=chunk_size)


def _smooth_blocks(estimate, smoother, prior_mean, prior_scale, *, out, chunk_size):
    """``a m + S (estimate - a m)`` block by block along time (``m`` None: ``S estimate``)."""
    import scipy.sparse

    _check_ndim("estimate", estimate, 2, "(n_sources, n_times)")
    chunk_size = _check_int("chunk_size", chunk_size)
    k = scipy.sparse.csr_array(smoother)
    n_src, n_times = estimate.shape
    if k.shape != (n_src, n_src):
        raise ValueError(f"'smoother' must be (n_sources, n_sources) = ({n_src}, {n_src}) to "
                         f"smooth an estimate of {n_src} sources, got {k.shape}: build it on "
                         "the estimate's fsaverage source vertices (resolve_smoother).")
    if out is None:
        out = np.empty((n_src, n_times), np.float32)
    for a in range(0, n_times, chunk_size):
        block = np.asarray(estimate[:, a:a + chunk_size], np.float64)
        if prior_mean is None:
            out[:, a:a + chunk_size] = k @ block
        else:
            m = prior_scale * np.asarray(prior_mean[:, a:a + chunk_size], np.float64)
            out[:, a:a + chunk_size] = m + k @ (block - m)
    return out


def source_adjacency_smoother(src, n_steps):
    """MNE-style step-wise smoothing on a source space: ``(D⁻¹ (A + I))^n_steps``.

    Each step replaces every source by the mean of itself and its neighbours in the source
    space's triangulation (:func:`mne.spatial_src_adjacency`), as the smoothing steps of an
    MNE surface morph do on the full mesh. An alternative to the model's Gaussian prior
    whose width is set in steps, not mm; hemispheres stay apart.

    Parameters
    ----------
    src : mne.SourceSpaces
        Surface source space whose sources are the estimate's rows (lh then rh).
    n_steps : int
        Number of smoothing steps (>= 1).

    Returns
    -------
    smoother : scipy.sparse.csr_array, shape (n_sources, n_sources)
        Row-normalised (each row sums to 1).
    """
    import mne
    import scipy.sparse

    n_steps = _check_int("n_steps", n_steps)
    adj = scipy.sparse.csr_array(mne.spatial_src_adjacency(src, verbose=False), dtype=np.float64)
    adj = adj + scipy.sparse.eye_array(adj.shape[0], format="csr")
    step = scipy.sparse.csr_array(scipy.sparse.diags_array(1.0 / adj.sum(axis=1)) @ adj)
    out = step
    for _ in range(n_steps - 1):
        out = scipy.sparse.csr_array(out @ step)
    return out


__all__ = ["SMOOTH_SUFFIX", "model_source_fwhm", "resolve_smoother", "smooth_estimate",
           "smooth_update", "smoothed_name", "source_adjacency_smoother"]

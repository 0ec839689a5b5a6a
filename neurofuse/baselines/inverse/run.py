"""All classical inverses of one MEG subject and story of a dataset store (appendix C)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..._checks import _check_option
from ..._logging import logger, verbose
from ._common import ALL_METHODS, DEFAULT_FLOOR
from .classical import apply_inverse_array, make_inverse
from .fmri import apply_fmne
from .fsaverage import bold_to_subject, fsaverage_map
from .noise import lambda2_from_cnr, noise_cov_from_noise
from .posterior import (
    POSTERIOR_METHODS,
    apply_posterior,
    fit_prior_scale,
    posterior_name,
    prior_gain,
)


@verbose
def run_inverses(ds, meg_subject, story, *, methods=ALL_METHODS, fmri_subjects=None,
                 repeat=None, noise_cov=None, lambda2=None, depth=0.8, floor=DEFAULT_FLOOR,
                 normalization="minmax", bold_lag=0, method_params=None, chunk_size=1024,
                 out_dir=None, prior_mean=None, prior_name="prior", prior_scale="fit",
                 fitted_scale=None, verbose=None) -> dict:
    """All classical inverses of one MEG subject and story, on fsaverage (appendix C).

    Steps: MEG averaged over repeats; noise covariance (diagonal) from the ground-truth noise
    ``data - L M s`` (``s``: ``ds.ground_truth("sources/<story>")``), or, for CNR = inf, the
    per-channel variance of the clean signal ``L M s`` (the shape the noise has at any
    finite CNR in the simulation); ``lambda2 = lambda2_from_cnr(ds.cnr(meg_subject)["meg"])``;
    :func:`make_inverse` with ``depth``; fMNE's BOLD from :func:`bold_to_subject`. Estimates
    are mapped to fsaverage with :func:`fsaverage_map` of the MEG subject's morph.

    Parameters
    ----------
    ds : neurofuse.data.store.Dataset
    meg_subject : str
    story : str
    methods : sequence of str
        Subset of ``('MNE', 'dSPM', 'sLORETA', 'eLORETA', 'fMNE')``.
    fmri_subjects : list of str | None
        Subjects whose BOLD forms the fMNE prior; None: all with fMRI for ``story``.
    repeat : int | None
        Which presentation of ``story`` to invert; None averages them all.
    noise_cov : mne.Covariance | None
        Overrides the ground-truth covariance (needed when the dataset has no ground-truth
        sources for ``story``).
    lambda2 : float | None
        Overrides ``1 / CNR**2``.
    depth, floor, normalization, bold_lag, method_params, chunk_size
        See :func:`make_inverse`, :func:`apply_fmne`, :func:`apply_inverse_array`.
    out_dir : path-like | None
        Write each estimate to ``<out_dir>/<meg_subject>_<story>_<method>.npy`` and return
        read-only memmaps (for long stories); None keeps float32 arrays in memory.
    prior_mean : array, shape (n_sources_fsaverage, n_times) | None
        A prior mean ``m`` of the story's sources on fsaverage (e.g. the joint model's
        prediction, may be a memmap): MNE and fMNE, where asked for in ``methods``, are also
        computed with it, ``m + K (y − G m)`` with the same operator, noise covariance,
        ``lambda2`` and fMRI prior (:func:`~neurofuse.baselines.inverse.apply_posterior`,
        ``G = L M`` from :func:`~neurofuse.baselines.inverse.prior_gain`), as methods
        ``"<prior_name>+MNE"`` and ``"<prior_name>+fMNE"``.
    prior_name : str
        The name of the prior mean in those methods' names.
    prior_scale : "fit" | float
        The prior mean used is ``a * prior_mean``: ``"fit"`` fits ``a`` to this recording
        (:func:`~neurofuse.baselines.inverse.fit_prior_scale`, once for MNE and fMNE; for a
        prior mean in model units such as the joint model's), a number uses it as it is.
    fitted_scale : dict | None
        If given, ``fitted_scale[prior_name]`` is set to the ``a`` used (e.g. to smooth the
        update ``estimate − a m`` only).
    verbose : bool | str | None
        Log level for this call.

    Returns
    -------
    estimates : dict of str to array, shape (n_sources_fsaverage, n_times)
        One float32 estimate per method (then per method with the prior mean), on fsaverage.
    """
    import scipy.sparse

    from ..._io import atomic_path, check_writable_dir, make_dir

    methods = list(methods) if not isinstance(methods, str) else [methods]
    for m in methods:
        _check_option("methods", m, ALL_METHODS)
    _check_option("meg_subject", meg_subject, [s for s in ds.subjects
                                               if "meg" in ds.modalities(s)])
    _check_option("story", story, ds.subject_stories(meg_subject, "meg"))
    meg = ds.meg(meg_subject, story)  # (n_repeats, n_channels, n_times)
    if repeat is None:  # one repeat at a time: never n_repeats × n_channels × n_times float64
        data = sum(np.asarray(meg[r], np.float64) for r in range(meg.shape[0]))
        data = (data / meg.shape[0]).astype(np.float32)
    else:
        _check_option("repeat", repeat, list(range(meg.shape[0])))
        data = np.asarray(meg[repeat], np.float32)
    info, fwd = ds.info(meg_subject), ds.forward(meg_subject)
    morph = scipy.sparse.csr_array(ds.morph(meg_subject), dtype=np.float64)
    cnr = ds.cnr(meg_subject).get("meg", float("inf"))
    if noise_cov is None:
        name = f"sources/{story}"
        if f"{name}.npy" not in ds.ground_truth_names:
            raise ValueError(f"Dataset has no ground-truth sources for {story!r} to compute the "
                             "noise covariance from: pass noise_cov=..., or use a story with "
                             f"saved sources ({[g for g in ds.ground_truth_names if g.startswith('sources/')]}).")
        truth = ds.ground_truth(name)  # (n_sources_fsaverage, n_times)
        gain_fs = np.asarray((morph.T @ np.asarray(ds.leadfield(meg_subject), np.float64).T).T)
        resid = np.empty(data.shape, np.float32)
        for a in range(0, data.shape[1], chunk_size):
            clean = gain_fs @ np.asarray(truth[:, a:a + chunk_size], np.float64)
            resid[:, a:a + chunk_size] = clean if math.isinf(cnr) else \
                data[:, a:a + chunk_size] - clean
        noise_cov = noise_cov_from_noise(resid, info)
        del resid
    if lambda2 is None:
        lambda2 = lambda2_from_cnr(cnr)
    posteriors = []
    if prior_mean is not None:
        posteriors = [m for m in methods if m in POSTERIOR_METHODS]
        if not posteriors:
            logger.warning("A prior mean was given but none of %s is among methods %s: it is "
                           "not used.", POSTERIOR_METHODS, methods)
        n_fs = morph.shape[1]
        if prior_mean.ndim != 2 or tuple(prior_mean.shape) != (n_fs, data.shape[1]):
            raise ValueError(
                f"'prior_mean' must have shape (n_sources_fsaverage, n_times) = ({n_fs}, "
                f"{data.shape[1]}) for story {story!r}, got {tuple(prior_mean.shape)}.")
    inverse = make_inverse(fwd, info, noise_cov, depth=depth)
    to_fs = fsaverage_map(morph)
    bold = None
    if "fMNE" in methods:
        if fmri_subjects is None:
            fmri_subjects = [s for s in ds.subjects if ds.has(s, "fmri", story)]
        if not fmri_subjects:
            raise ValueError(f"fMNE needs fMRI of story {story!r} but no subject has it; pass "
                             "fmri_subjects or drop 'fMNE' from methods.")
        for s in fmri_subjects:
            if not ds.has(s, "fmri", story):
                raise ValueError(f"fMRI subject {s!r} has no fMRI for story {story!r}.")
        bold = bold_to_subject([ds.fmri(s, story, average=True) for s in fmri_subjects],
                               [ds.morph(s) for s in fmri_subjects], morph)
    if out_dir is not None:
        out_dir = check_writable_dir(Path(out_dir), name="out_dir")
        make_dir(out_dir, what="source estimates ('out_dir')")

    gain_prior, scale = None, None
    if posteriors:
        gain_prior = prior_gain(ds.leadfield(meg_subject), morph)
        scale = fit_prior_scale(data, inverse, prior_mean, gain_prior, chunk_size=chunk_size) \
            if isinstance(prior_scale, str) and prior_scale == "fit" else prior_scale
        if fitted_scale is not None:
            fitted_scale[prior_name] = scale

    def compute(method, out):
        if isinstance(method, tuple):  # (prior_name, method): with the prior mean
            method = method[1]
            fmne = {} if method != "fMNE" else dict(
                bold=bold, sfreq=ds.sfreq, tr=ds.tr, floor=floor, normalization=normalization,
                bold_lag=bold_lag)
            return apply_posterior(data, inverse, prior_mean, gain_prior, lambda2=lambda2,
                                   method=method, to_fsaverage=to_fs, prior_scale=scale,
                                   chunk_size=chunk_size, out=out, **fmne)
        if method == "fMNE":
            return apply_fmne(data, inverse, bold, lambda2=lambda2, sfreq=ds.sfreq, tr=ds.tr,
                              floor=floor, normalization=normalization, bold_lag=bold_lag,
                              to_fsaverage=to_fs, out=out)
        return apply_inverse_array(data, inverse, lambda2=lambda2, method=method,
                                   method_params=method_params, chunk_size=chunk_size,
                                   to_fsaverage=to_fs, out=out)

    shape = (to_fs.shape[0], data.shape[1])
    results = {}
    for method in [*methods, *((prior_name, m) for m in posteriors)]:
        name = method if isinstance(method, str) else posterior_name(method[1], prior_name)
        logger.info("%s of %s / %s", name, meg_subject, story)
        if out_dir is None:
            results[name] = compute(method, None)
            continue
        fname = out_dir / f"{meg_subject}_{story}_{name}.npy"
        with atomic_path(fname, what=f"{name} estimate") as tmp:
            mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
            compute(method, mm)
            mm.flush()
            del mm
        results[name] = np.load(fname, mmap_mode="r")
    return results

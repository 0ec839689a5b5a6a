"""Volumetric BOLD: cortical sources → EPI volumes with drift and thermal noise at a CNR.

For one subject with a source → voxel map ``W`` (:func:`neurofuse.anatomy.volume.
make_source_voxel_map`) and a baseline EPI image ``S0`` (:func:`~neurofuse.anatomy.volume.
make_epi_baseline`), voxel ``v`` at volume ``k`` is::

    b_v[k]  = TR-mean(HRF * |W_v s + j H(W_v s)|)[k]          (measure_bold: one HRF, one envelope)
    Δ_v[k]  = percent_change · (b_v[k] - mean_k b_v) / scale  (% signal change)
    y_v[k]  = S0_v · (1 + Δ_v[k] / 100) + drift_v[k] + noise_v[k]

* the HRF convolution takes the sources before the run's first sample as silent (as
  :func:`~neurofuse.physics.hrf.make_bold` does for the source-level fMRI of a study), so
  each run starts with the rise of the BOLD to its mean over the first seconds;
* ``scale`` is the 99th percentile, over the voxels that receive sources, of the temporal
  s.d. of ``b_v`` in the run: the most responsive voxels fluctuate with an s.d. of about
  ``percent_change`` % (real language cortex: ~0.5-2 % at 3 T). Voxels whose row of ``W``
  is empty have ``Δ = 0``.
* drift (:func:`make_drift`): ``S0_v · drift_percent / 100 · d_v[k]``, ``d_v`` a random sum
  of the DCT-II basis functions with frequencies ``k / (2 N TR)`` at or below ``cutoff`` (SPM's
  default high-pass cut-off 1/128 Hz), scaled to unit s.d.; nothing above the cut-off.
* thermal noise: white Gaussian, ``σ_noise,v = σ_signal,v / cnr`` with ``σ_signal,v`` the
  temporal s.d. of ``S0_v Δ_v / 100`` (CNR = σ_signal / σ_noise per brain voxel with signal,
  DESIGN.md); voxels without signal get the median of those noise levels (the scanner's
  thermal floor, outside the head too). ``cnr = inf``: no noise.
"""

from __future__ import annotations

import math

import numpy as np

from .._checks import _check_int, _check_positive
from .measurement import measure_bold

__all__ = ["bold_percent_change", "make_drift", "measure_bold_volume"]

#: Percentile (over responsive voxels) of the BOLD s.d. that ``percent_change`` refers to.
SCALE_PERCENTILE = 99.0


def bold_percent_change(sources, sfreq, tr, source_map, *, percent_change=1.0, scale=None,
                        hrf_kwargs=None):
    """Noiseless BOLD % signal change of the voxels a source map reaches.

    Parameters
    ----------
    sources : array, shape (n_sources, n_times)
        Source activity at ``sfreq`` (may be memory-mapped).
    sfreq, tr : float
        Sampling rate (Hz) and repetition time (s); ``tr * sfreq`` whole.
    source_map : scipy.sparse array, shape (n_voxels, n_sources)
        Source → voxel weights.
    percent_change : float
        % change of the most responsive voxels (see the module docstring).
    scale : float | None
        Divisor of the centred BOLD; None: the 99th percentile of the per-voxel s.d. of this
        run (returned, so the same change can be recomputed).
    hrf_kwargs : dict | None
        Parameters of :func:`~neurofuse.physics.hrf.spm_hrf`.

    Returns
    -------
    rows : array of int64, shape (n_mapped,)
        Voxels (rows of ``source_map``) with at least one non-zero weight.
    change : array, shape (n_mapped, n_trs), float64
        ``percent_change · (b - mean_t b) / scale`` in %.
    scale : float
        The divisor used (units of ``sources``).
    """
    import scipy.sparse

    percent_change = _check_positive("percent_change", percent_change, allow_zero=True)
    source_map = scipy.sparse.csr_array(source_map)
    rows = np.flatnonzero(np.diff(source_map.indptr) > 0).astype(np.int64)
    if not len(rows):
        raise ValueError("'source_map' has no non-zero weight: no voxel receives a source.")
    bold = measure_bold(sources, sfreq, tr, morph=source_map[rows], hrf_kwargs=hrf_kwargs)
    centred = np.asarray(bold, np.float64)
    centred = centred - centred.mean(axis=1, keepdims=True)
    if scale is None:
        scale = float(np.percentile(centred.std(axis=1), SCALE_PERCENTILE))
    scale = _check_positive("scale", scale)
    return rows, centred * (percent_change / scale), scale


def make_drift(rng, n_voxels, n_trs, tr, *, cutoff=1 / 128):
    """Slow drifts: random DCT-II series with frequencies <= ``cutoff``, unit s.d. per voxel.

    ``d_v[n] = sqrt(N / K) Σ_{k=1..K} c_vk φ_k[n]``, ``φ_k[n] = sqrt(2/N) cos(π k (2n + 1) /
    2N)`` (the orthonormal DCT-II basis, ``scipy.fft.dct(..., norm="ortho")``), ``c ~ N(0, 1)``
    and ``K = floor(2 N TR cutoff)`` (basis ``k`` has frequency ``k / (2 N TR)`` Hz). Its
    DCT has no energy above index ``K``; ``K = 0`` (a run shorter than ``1 / (2 cutoff)``)
    gives zeros.

    Parameters
    ----------
    rng : numpy.random.Generator
        Draws one ``standard_normal((n_voxels, K))``.
    n_voxels, n_trs : int
    tr : float
        Repetition time, s.
    cutoff : float
        Highest drift frequency, Hz.

    Returns
    -------
    drift : array, shape (n_voxels, n_trs), float64
        Expected temporal variance 1 per voxel (exactly ``mean_v`` of it tends to 1).
    """
    n_voxels = _check_int("n_voxels", n_voxels, 0)
    basis = _drift_basis(n_trs, tr, cutoff)
    if basis is None:
        return np.zeros((n_voxels, n_trs))
    return rng.standard_normal((n_voxels, len(basis))) @ basis


def _drift_basis(n_trs, tr, cutoff):
    """The scaled DCT-II drift basis ``sqrt(N / K) φ_k``, shape (K, n_trs), or None if K = 0."""
    n_trs = _check_int("n_trs", n_trs, 1)
    tr = _check_positive("tr", tr)
    cutoff = _check_positive("cutoff", cutoff)
    n_basis = min(int(math.floor(2 * n_trs * tr * cutoff + 1e-9)), n_trs - 1)
    if n_basis < 1:
        return None
    n = np.arange(n_trs)
    k = np.arange(1, n_basis + 1)[:, None]
    basis = math.sqrt(2.0 / n_trs) * np.cos(np.pi * k * (2 * n + 1) / (2 * n_trs))  # (K, N)
    return math.sqrt(n_trs / n_basis) * basis


def measure_bold_volume(sources, sfreq, tr, source_map, baseline, *, percent_change=1.0,
                        cnr=math.inf, drift_percent=1.0, drift_cutoff=1 / 128, rng=None,
                        n_repeats=None, scale=None, out=None, hrf_kwargs=None,
                        voxels_per_chunk=16384):
    """EPI volumes of one run: baseline · (1 + BOLD change) + slow drift + thermal noise.

    See the module docstring for the model. Each repeat (a presentation of the same story)
    gets its own drift and noise.

    Parameters
    ----------
    sources : array, shape (n_sources, n_times)
        Source activity at ``sfreq``.
    sfreq, tr : float
        Hz and s; ``tr * sfreq`` whole.
    source_map : scipy.sparse array, shape (n_voxels, n_sources)
        ``n_voxels = baseline.size`` (C order).
    baseline : array, shape (n_x, n_y, n_z)
        Mean EPI image (a.u.).
    percent_change : float
        % change of the most responsive voxels.
    cnr : float
        σ_signal / σ_noise per voxel with signal; ``inf``: no noise.
    drift_percent : float
        Drift s.d. in % of the baseline (0: none).
    drift_cutoff : float
        Highest drift frequency, Hz.
    rng : numpy.random.Generator | None
        Drift and noise draws (per repeat: the drift coefficients, then the noise chunk by
        chunk); required unless ``cnr = inf`` and ``drift_percent = 0``.
    n_repeats : int | None
        Independent acquisitions; None: one, without the leading axis.
    scale : float | None
        See :func:`bold_percent_change`.
    out : array | None
        Where to write (e.g. a memory map) of the returned shape, any float dtype.
    hrf_kwargs : dict | None
        HRF parameters.
    voxels_per_chunk : int
        Voxels processed at once (memory control).

    Returns
    -------
    volumes : array, shape (n_repeats, n_x, n_y, n_z, n_trs) or (n_x, n_y, n_z, n_trs)
        float32 unless ``out`` says otherwise.
    info : dict
        ``scale`` (the BOLD divisor), ``rows`` (mapped voxels, flat C indices), ``change``
        (their noiseless % change, (n_mapped, n_trs)), ``sigma_noise_floor`` (noise s.d. of
        the voxels without signal).
    """
    cnr = _check_positive("cnr", cnr, allow_inf=True)
    drift_percent = _check_positive("drift_percent", drift_percent, allow_zero=True)
    voxels_per_chunk = _check_int("voxels_per_chunk", voxels_per_chunk, 1)
    baseline = np.asarray(baseline, np.float64)
    if baseline.ndim != 3 or baseline.size != source_map.shape[0]:
        raise ValueError(f"'baseline' must be a 3-D image with source_map.shape[0] = "
                         f"{source_map.shape[0]} voxels, got shape {baseline.shape}.")
    if rng is None and (not math.isinf(cnr) or drift_percent > 0):
        raise ValueError("'rng' (a numpy.random.Generator) is required for noise or drift; "
                         "pass rng=np.random.default_rng(seed), or cnr=inf and "
                         "drift_percent=0 for noiseless volumes.")
    rows, change, scale = bold_percent_change(sources, sfreq, tr, source_map,
                                              percent_change=percent_change, scale=scale,
                                              hrf_kwargs=hrf_kwargs)
    n_vox, n_trs = baseline.size, change.shape[1]
    single = n_repeats is None
    n_rep = 1 if single else _check_int("n_repeats", n_repeats, 1)
    s0 = baseline.ravel()
    where = np.full(n_vox, -1, np.int64)  # voxel -> row of `change` (-1: no signal)
    where[rows] = np.arange(len(rows))
    sigma_signal = s0[rows] * change.std(axis=1) / 100.0
    if math.isinf(cnr):
        sigma_noise, floor = np.zeros(n_vox), 0.0
    else:
        floor = float(np.median(sigma_signal)) / cnr
        sigma_noise = np.full(n_vox, floor)
        sigma_noise[rows] = sigma_signal / cnr
    shape = (n_rep, *baseline.shape, n_trs)
    if out is None:
        out = np.empty(shape, np.float32)
    elif tuple(out.shape) != shape:
        raise ValueError(f"'out' must have shape {shape}, got {tuple(out.shape)}.")
    for r in range(n_rep):
        flat = out[r].reshape(n_vox, n_trs)  # a view of C-contiguous storage
        basis = coef = None
        if drift_percent > 0:  # the draws of make_drift, applied chunk by chunk
            basis = _drift_basis(n_trs, tr, drift_cutoff)
            if basis is not None:
                coef = rng.standard_normal((n_vox, len(basis)))
        for a in range(0, n_vox, voxels_per_chunk):
            b = min(a + voxels_per_chunk, n_vox)
            idx = where[a:b]
            block = np.repeat(s0[a:b, None], n_trs, axis=1)  # (chunk, n_trs)
            sig = idx >= 0
            block[sig] *= 1.0 + change[idx[sig]] / 100.0
            if coef is not None:
                block += s0[a:b, None] * (drift_percent / 100.0) * (coef[a:b] @ basis)
            if not math.isinf(cnr):
                block += sigma_noise[a:b, None] * rng.standard_normal((b - a, n_trs))
            flat[a:b] = block
    info = {"scale": scale, "rows": rows, "change": change, "sigma_noise_floor": floor}
    return (out[0] if single else out), info

"""System D's baselines: classical inverses and a physics transfer, given the true physics.

Two baselines for the EEG↔fMRI transcoder (issue 14 items 3-4), both on a simulated data set
(:func:`~neurofuse.simulation.eeg_fmri.read_dataset`) whose lead field ``G``, ERP kernel
``d`` and HRF ``h`` are known (paper eqs. 1-3: ``F = X * h``, ``P = X * d``, ``E = G P``).

Classical inverses (paper Fig. 5, "MNE given the ground-truth leadfield")
------------------------------------------------------------------------
:func:`classical_inverses`: MNE, dSPM and eLORETA from MNE-Python
(``make_inverse_operator(loose=0, fixed=True, depth=0.8)``, applied as
``apply_inverse_raw`` does, through :func:`~neurofuse.baselines.inverse.apply_inverse_array`)
with the saved lead field wrapped unchanged in an ``mne.Forward``
(:func:`make_true_forward`). Choices:

* **noise covariance** from the *known sensor noise*: the simulator's noise is white with
  the s.d. it saves per run (``run.json`` ``eeg_noise_sd``) and average-referenced; the
  covariance is ``σ² I`` with the average-reference projector in the info, so MNE whitens
  with ``σ² (I - 11ᵀ/n)``, the noise's true covariance. ``σ`` is the median over the test
  runs (the kernels of MNE and eLORETA do not depend on the scale of the covariance, dSPM's
  only by a constant factor, so a per-run ``σ`` would not change any correlation). For
  noise-free data (``σ = 0``) the covariance keeps the same white shape (unit variance).
* **regularisation** by MNE's usual SNR rule, ``lambda2 = 1 / SNR²`` with the
  acquisition's nominal EEG SNR (``config.eeg_snr``, the SNR the scenario is defined by, the
  same for every run; never fitted to the ground truth), floored at 1e-6 for noise-free data
  (:func:`~neurofuse.baselines.inverse.lambda2_from_cnr`).

What they estimate: the EEG sees ``P = X * d``, so a minimum-norm estimate is a spatially
blurred ``P``, not the latent ``X``; scored against ``X`` (the paper's truth,
:mod:`neurofuse.evaluation.transcoder`) it also pays for the ~470 ms ERP kernel.

The physics baseline (issue 14 item 4, beyond the paper)
--------------------------------------------------------
* EEG → fMRI (:func:`physics_eeg_to_fmri`): ``P̂ = MNE(E)`` (true lead field), ``X̂`` =
  Wiener deconvolution of ``d`` from ``P̂`` (:func:`wiener_deconvolve`), ``F̂`` = ``X̂``
  convolved with the HRF and sampled at each voxel's slice time
  (:func:`~neurofuse.simulation.eeg_fmri.fmri.sample_bold`, the simulator's own operator).
  ``d`` has zero mean and is symmetric about ``T/2``, so its gain falls as ``f²`` towards
  0 Hz, exactly where the BOLD lives (< 0.25 Hz): the slow part of ``X`` is nearly absent
  from the EEG and the deconvolution can only restore it as far as the noise allows. With
  ``deconvolve_erp=False`` the chain is the literal "MNE → HRF" (``F̂ = P̂ * h``).
* fMRI → EEG (:func:`physics_fmri_to_eeg`): per slice, the BOLD series of each source voxel
  is deconvolved (Tikhonov = Wiener with white signal and noise spectra,
  :func:`tikhonov_deconvolve`) with the exact linear operator from TR-binned activity to the
  slice's samples; ``X̂`` is that activity spread evenly over each TR, and
  ``Ê = G (X̂ * d)``. The TR sampling limits this path: nothing above the Nyquist rate of the
  fMRI (``1 / (2 TR)``, 0.25 Hz) can be recovered, while ``d`` passes almost nothing below
  ~1 Hz, so the predicted EEG correlates with the true one only through its slowest,
  weakest part (an r near 0 is the expected, not a defect).

Both Wiener steps take their regularisation (the noise-to-signal ratio) from the data by
generalised cross-validation (GCV), never from the ground truth.
"""

from __future__ import annotations

import copy
import json

import numpy as np
from scipy.fft import next_fast_len

from ..._checks import _check_option, _check_positive
from ..._logging import logger, verbose
from ...baselines.inverse import apply_inverse_array, lambda2_from_cnr, make_inverse
from ...baselines.inverse.volume import make_fixed_forward
from ...physics.hrf import convolve_hrf

__all__ = ["METHODS", "classical_inverses", "eeg_noise_cov", "erp_to_fmri", "fmri_to_sources",
           "make_eeg_inverse", "make_true_forward", "tr_operators",
           "physics_eeg_to_fmri", "physics_fmri_to_eeg", "tikhonov_deconvolve",
           "wiener_deconvolve"]

#: The classical inverses of Fig. 5 (names as in the benchmark rows).
METHODS = ("MNE", "dSPM", "eLORETA")
#: Candidate regularisations for GCV, relative to the largest squared gain of the kernel.
_LAMBDAS = np.logspace(-14, 2, 65)


def _eeg_info(ds):
    """The data set's EEG info with the average-reference projector (MNE needs it)."""
    import mne

    info = ds.eeg_info()
    if list(info["ch_names"]) != list(ds.manifest["channels"]):
        raise RuntimeError("The data set's channels differ from its montage's; it was written "
                           "by another version of the simulator.")
    raw = mne.io.RawArray(np.zeros((len(info["ch_names"]), 1)), info, verbose="error")
    raw.set_eeg_reference(projection=True, verbose="error")
    return raw.info


def make_true_forward(ds):
    """The data set's true lead field as a fixed-orientation ``mne.Forward`` and its info.

    Parameters
    ----------
    ds : EEGfMRIDataset
        From :func:`~neurofuse.simulation.eeg_fmri.read_dataset`.

    Returns
    -------
    forward : mne.Forward
        ``sol["data"]`` is ``ds.truth("leadfield")`` (n_channels, n_sources), unchanged;
        discrete volume source space at ``ds.truth("source_pos")`` with
        ``ds.truth("source_ori")``, vertices ``0 .. n_sources - 1``.
    info : mne.Info
        EEG channels with the average-reference projector.
    """
    info = _eeg_info(ds)
    fwd = make_fixed_forward(ds.truth("leadfield"), ds.truth("source_pos"),
                             ds.truth("source_ori"), info)
    return fwd, info


def _test_runs(ds):
    test = [r for r in ds.manifest["split"]["test"] if r in ds.runs]
    return test or list(ds.runs)


def eeg_noise_cov(ds, info, runs=None):
    """Noise covariance from the known sensor noise (``σ² I``, see the module docstring).

    Parameters
    ----------
    ds : EEGfMRIDataset
    info : mne.Info
        From :func:`make_true_forward` (its projector is stored in the covariance).
    runs : list of str | None
        Runs whose saved noise s.d. is used (median); None: the test runs.

    Returns
    -------
    noise_cov : mne.Covariance
        Diagonal; unit variance when the data are noise-free.
    """
    import mne

    runs = _test_runs(ds) if runs is None else list(runs)
    missing = [r for r in runs if r not in ds.runs]
    if missing:
        raise ValueError(f"Invalid runs {missing}: expected completed runs of the data set, "
                         f"e.g. {ds.runs[:3]}.")
    sds = [float(json.loads((ds.path / "runs" / r / "run.json").read_text())["eeg_noise_sd"])
           for r in runs]
    sigma = float(np.median(sds)) if sds else 0.0
    if not sigma > 0:
        logger.info("Noise-free EEG: white noise covariance of unit variance (shape only).")
        sigma = 1.0
    n = len(info["ch_names"])
    return mne.Covariance(np.full(n, sigma**2), list(info["ch_names"]), [],
                          copy.deepcopy(info["projs"]), ds.config.n_times - 1,
                          verbose=False)


@verbose
def make_eeg_inverse(ds, *, depth=0.8, verbose=None):
    """The fixed-orientation inverse operator with the true lead field and known noise.

    Parameters
    ----------
    ds : EEGfMRIDataset
    depth : float | None
        Depth-weighting exponent (MNE's default 0.8); None: none.
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    inverse : mne.minimum_norm.InverseOperator
    """
    fwd, info = make_true_forward(ds)
    return make_inverse(fwd, info, eeg_noise_cov(ds, info), depth=depth)


def _lambda2(ds, lambda2):
    return lambda2_from_cnr(ds.config.eeg_snr) if lambda2 is None else lambda2


@verbose
def classical_inverses(ds, run, *, methods=METHODS, inverse=None, lambda2=None, depth=0.8,
                       chunk_size=2048, verbose=None):
    """MNE / dSPM / eLORETA of one run's EEG with the true lead field (paper Fig. 5).

    Parameters
    ----------
    ds : EEGfMRIDataset
    run : int | str
    methods : sequence of str
        Among ``('MNE', 'dSPM', 'sLORETA', 'eLORETA')``.
    inverse : mne.minimum_norm.InverseOperator | None
        From :func:`make_eeg_inverse` (reuse it across runs); None builds it.
    lambda2 : float | None
        None: ``1 / config.eeg_snr**2`` floored at 1e-6.
    depth : float | None
        Used when ``inverse`` is None.
    chunk_size : int
        Time samples per chunk.
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    estimates : dict of str to array, shape (n_sources, n_times)
        float32; equal to ``mne.minimum_norm.apply_inverse_raw(raw, inverse, lambda2,
        method).data``. A·m for MNE and eLORETA, noise-normalised for dSPM.
    """
    methods = [methods] if isinstance(methods, str) else list(methods)
    for m in methods:
        _check_option("methods", m, ("MNE", "dSPM", "sLORETA", "eLORETA"))
    if inverse is None:
        inverse = make_eeg_inverse(ds, depth=depth)
    lambda2 = _lambda2(ds, lambda2)
    eeg = ds.read_run(run)["eeg"]  # (n_channels, n_times), memmap
    return {m: apply_inverse_array(eeg, inverse, lambda2=lambda2, method=m,
                                   chunk_size=chunk_size) for m in methods}


# --------------------------------------------------------------------------------------------
# Wiener / Tikhonov deconvolution with GCV


def _gcv_pick(lambdas, gcv, what):
    i = int(np.nanargmin(gcv))
    if i in (0, len(lambdas) - 1):
        logger.info("GCV for %s chose the edge of its range (lambda=%.3g).", what, lambdas[i])
    return float(lambdas[i])


def _gcv_wiener(y, kernel):
    """GCV choice of the relative Wiener regularisation, FFT of length n_times + n_taps - 1."""
    nfft = y.shape[1] + len(kernel) - 1
    p = np.abs(np.fft.rfft(kernel, nfft)) ** 2
    p_max = p.max()
    yf = np.fft.rfft(y, nfft, axis=1)
    w = np.full(len(p), 2.0)  # weights of the one-sided spectrum in two-sided sums
    w[0] = 1.0
    if nfft % 2 == 0:
        w[-1] = 1.0
    power = w * np.sum(np.abs(yf) ** 2, axis=0)  # (n_freqs,)
    gcv = np.empty(len(_LAMBDAS))
    for i, lm in enumerate(_LAMBDAS):
        resid = (lm * p_max / (p + lm * p_max)) ** 2  # |1 - A(f)|²
        trace = nfft - np.sum(w * p / (p + lm * p_max))
        gcv[i] = nfft * np.sum(resid * power) / trace**2
    return _gcv_pick(_LAMBDAS, gcv, "the kernel deconvolution")


def wiener_deconvolve(y, kernel, *, lam=None, return_lambda=False):
    """Undo a causal convolution ``y = x * kernel`` with a Wiener filter (FFT, zero-padded).

    ``X̂(f) = K*(f) Y(f) / (|K(f)|² + lam · max|K|²)``: the Wiener filter for white signal
    and white noise, ``lam`` their variance ratio relative to the kernel's peak gain. The
    FFT is zero-padded to about twice ``n_times + n_taps - 1``: the start of ``x`` is then
    exact at high SNR, while its last samples, whose convolution runs past the end of ``y``,
    are not identifiable and come out attenuated.

    Parameters
    ----------
    y : array, shape (n_rows, n_times)
    kernel : array, shape (n_taps,)
    lam : float | None
        Relative noise-to-signal ratio; None: chosen by generalised cross-validation
        (GCV, circulant model of length ``n_times + n_taps - 1``) pooled over the rows,
        on a grid from 1e-14 to 1e2.
    return_lambda : bool
        Also return the ``lam`` used.

    Returns
    -------
    x : array, shape (n_rows, n_times)
        float64.
    lam : float
        Only if ``return_lambda``.
    """
    y = np.atleast_2d(np.asarray(y, np.float64))
    kernel = np.asarray(kernel, np.float64)
    n = y.shape[1]
    # y holds only the first n samples of the full convolution: its unobserved tail (taken as
    # 0) is the model's one error; padding to twice the length lets its effect spread into
    # the padding instead of wrapping around onto the start of x
    nfft = next_fast_len(2 * (n + len(kernel) - 1), real=True)
    if lam is None:  # GCV in the circulant model of the observed length (+ the kernel's)
        lam = _gcv_wiener(y, kernel)
    lam = _check_positive("lam", lam)
    k = np.fft.rfft(kernel, nfft)
    p = np.abs(k) ** 2
    yf = np.fft.rfft(y, nfft, axis=1)
    x = np.fft.irfft(yf * (np.conj(k) / (p + lam * p.max())), nfft, axis=1)[:, :n]
    return (x, lam) if return_lambda else x


def tikhonov_deconvolve(y, operators, groups, *, lam=None, return_lambda=False):
    """Solve ``y_v = H_g x_v`` for every row, Tikhonov-regularised, one ``lam`` for all.

    ``x̂ = (HᵀH + lam · s_max² I)⁻¹ Hᵀ y`` (through the SVD of each ``H_g``), the Wiener
    estimate for white signal and noise; ``lam`` by GCV pooled over all rows when None.

    Parameters
    ----------
    y : array, shape (n_rows, n_obs)
    operators : array, shape (n_groups, n_obs, n_unknowns)
        The linear forward operator of each group (e.g. of each fMRI slice).
    groups : array of int, shape (n_rows,)
        The operator of each row.
    lam : float | None
        Relative regularisation (times the largest squared singular value); None: GCV.
    return_lambda : bool

    Returns
    -------
    x : array, shape (n_rows, n_unknowns)
    lam : float
        Only if ``return_lambda``.
    """
    y = np.atleast_2d(np.asarray(y, np.float64))
    groups = np.asarray(groups)
    svds = [np.linalg.svd(h, full_matrices=False) for h in operators]
    s_max = max(float(s[0]) for _, s, _ in svds)
    n_obs = y.shape[1]
    if lam is None:
        gcv = np.zeros(len(_LAMBDAS))
        for g, (u, s, _) in enumerate(svds):
            rows = y[groups == g]
            if not len(rows):
                continue
            proj = rows @ u  # (n_rows_g, k)
            outside = np.sum(rows**2) - np.sum(proj**2)  # part of y outside range(H)
            b2 = np.sum(proj**2, axis=0)  # (k,)
            for i, lm in enumerate(_LAMBDAS):
                f = s**2 / (s**2 + lm * s_max**2)
                rss = np.sum((1 - f) ** 2 * b2) + max(outside, 0.0)
                gcv[i] += n_obs * rss / (n_obs - f.sum()) ** 2
        lam = _gcv_pick(_LAMBDAS, gcv, "the HRF deconvolution")
    lam = _check_positive("lam", lam)
    x = np.zeros((y.shape[0], operators[0].shape[1]))
    for g, (u, s, vt) in enumerate(svds):
        sel = groups == g
        if np.any(sel):
            x[sel] = ((y[sel] @ u) * (s / (s**2 + lam * s_max**2))) @ vt
    return (x, lam) if return_lambda else x


# --------------------------------------------------------------------------------------------
# The physics transfers


def _slices(ds):
    """Slice (z) of every source voxel, shape (n_sources,)."""
    return np.unravel_index(ds.truth("source_voxels"), tuple(ds.manifest["grid"]["shape"]))[2]


def _bold_at_slices(ds, drive):
    """``drive`` (n_sources, n_times) -> BOLD at each source's slice times (n_sources, n_trs)."""
    from ...simulation.eeg_fmri.fmri import sample_bold

    cfg = ds.config
    offsets = ds.truth("slice_offsets")
    z_src = _slices(ds)
    out = np.zeros((drive.shape[0], cfg.n_trs))
    for z in np.unique(z_src):
        sel = z_src == z
        out[sel] = sample_bold(drive[sel], cfg.sfreq, cfg.tr, offsets[[z]], cfg.hrf)[0]
    return out


def erp_to_fmri(ds, erp, *, deconvolve_erp=True, erp_lambda=None):
    """The physics of the EEG -> fMRI path after the inverse: undo ``d``, HRF, slice times.

    Parameters
    ----------
    ds : EEGfMRIDataset
    erp : array, shape (n_sources, n_times)
        An estimate of ``P = X * d`` (e.g. an inverse of the EEG; with the true ``P``, as an
        identity lead field would give, the chain is exact up to the ERP deconvolution).
    deconvolve_erp : bool
        Undo the ERP kernel (:func:`wiener_deconvolve`); False convolves ``erp`` directly.
    erp_lambda : float | None
        Regularisation of the ERP deconvolution; None: GCV.

    Returns
    -------
    sources : array, shape (n_sources, n_times)
        float32, the estimate of ``X`` (``erp`` itself if not ``deconvolve_erp``).
    fmri : array, shape (n_sources, n_trs)
        Predicted BOLD of the source voxels at their slice times.
    lam : float | None
        The ERP deconvolution's regularisation.
    """
    lam = None
    est = np.asarray(erp, np.float64)
    if deconvolve_erp:
        est, lam = wiener_deconvolve(est, ds.truth("erp_kernel"), lam=erp_lambda,
                                     return_lambda=True)
        logger.info("ERP deconvolution: lambda=%.3g", lam)
    drive = est
    if ds.config.bold_drive == "envelope":
        from ...physics.envelope import envelope

        drive = envelope(drive, axis=-1)
    return np.asarray(est, np.float32), _bold_at_slices(ds, drive), lam


@verbose
def physics_eeg_to_fmri(ds, run, *, method="MNE", inverse=None, lambda2=None,
                        deconvolve_erp=True, erp_lambda=None, verbose=None):
    """EEG → inverse (true lead field) → ERP deconvolution → HRF at slice times → fMRI.

    Parameters
    ----------
    ds : EEGfMRIDataset
    run : int | str
    method : str
        The inverse (``'MNE'`` by default).
    inverse, lambda2
        See :func:`classical_inverses`.
    deconvolve_erp, erp_lambda
        See :func:`erp_to_fmri`.
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    out : dict
        ``sources`` (n_sources, n_times) float32, the estimate of ``X`` (of ``P`` if not
        ``deconvolve_erp``); ``fmri`` (n_sources, n_trs) float64, the predicted BOLD of the
        source voxels (units of the sources: the HRF has unit sum); ``erp_lambda``.
    """
    est = classical_inverses(ds, run, methods=[method], inverse=inverse,
                             lambda2=lambda2)[method]  # (n_sources, n_times)
    sources, fmri, lam = erp_to_fmri(ds, est, deconvolve_erp=deconvolve_erp,
                                     erp_lambda=erp_lambda)
    return {"sources": sources, "fmri": fmri, "erp_lambda": lam}


def tr_operators(sfreq, tr, n_times, offsets, hrf_kwargs=None):
    """Per slice, the exact map from TR-binned activity to the slice's BOLD samples.

    Column ``n`` of operator ``z`` is the BOLD at slice ``z``'s acquisition times
    (``m TR + offsets[z]``) of a unit of activity spread evenly over the samples of TR ``n``
    (computed with the simulator's :func:`~neurofuse.simulation.eeg_fmri.fmri.sample_bold`),
    so for activity constant within each TR, ``operators[z] @ x_tr`` equals the simulated
    BOLD exactly.

    Parameters
    ----------
    sfreq, tr : float
        Hz, s; ``tr * sfreq`` whole.
    n_times : int
        Samples of the run.
    offsets : array, shape (n_slices,)
        Slice acquisition offsets, s.
    hrf_kwargs : dict | None

    Returns
    -------
    operators : array, shape (n_slices, n_trs, n_trs)
        (slice, observed volume, TR of the activity); ``n_trs = n_times // (tr * sfreq)``.
    """
    from ...simulation.eeg_fmri.fmri import sample_bold

    npt = int(round(tr * sfreq))
    n_trs = n_times // npt
    boxes = np.zeros((n_trs, n_times))
    for n in range(n_trs):
        boxes[n, n * npt:(n + 1) * npt] = 1.0 / npt
    bold = sample_bold(boxes, sfreq, tr, offsets, hrf_kwargs)  # (n_slices, n_trs, n_trs)
    return np.transpose(bold, (0, 2, 1))


def fmri_to_sources(ds, fmri, *, hrf_lambda=None):
    """HRF deconvolution of the source voxels' BOLD (per slice, one GCV ``lam``).

    Parameters
    ----------
    ds : EEGfMRIDataset
    fmri : array, shape (n_x, n_y, n_z, n_trs)
        A run's fMRI.
    hrf_lambda : float | None
        None: GCV over all source voxels.

    Returns
    -------
    sources : array, shape (n_sources, n_times)
        float32; each TR's estimated activity spread evenly over its samples (zero after the
        last whole TR). The per-voxel baseline is unknown: the constant is projected out of
        the data and the operators.
    lam : float
    """
    cfg = ds.config
    if cfg.bold_drive == "envelope":
        raise NotImplementedError("The fMRI -> EEG physics transfer assumes the BOLD is driven "
                                  "by the source amplitude (bold_drive='amplitude'); an "
                                  "envelope cannot be deconvolved back to a signed source.")
    voxels = ds.truth("source_voxels")
    bold = np.asarray(fmri, np.float64).reshape(-1, np.shape(fmri)[-1])[voxels]
    bold = bold - bold.mean(axis=1, keepdims=True)
    ops = tr_operators(cfg.sfreq, cfg.tr, cfg.n_times, ds.truth("slice_offsets"), cfg.hrf)
    ops = ops - ops.mean(axis=1, keepdims=True)
    x_tr, lam = tikhonov_deconvolve(bold, ops, _slices(ds), lam=hrf_lambda, return_lambda=True)
    logger.info("HRF deconvolution: lambda=%.3g", lam)
    npt = int(round(cfg.tr * cfg.sfreq))
    x = np.zeros((len(voxels), cfg.n_times), np.float32)
    x[:, :x_tr.shape[1] * npt] = np.repeat(x_tr / npt, npt, axis=1)
    return x, lam


@verbose
def physics_fmri_to_eeg(ds, run, *, hrf_lambda=None, chunk_size=512, verbose=None):
    """fMRI → HRF deconvolution (per slice, GCV) → activity at ``sfreq`` → ``G (X̂ * d)``.

    Parameters
    ----------
    ds : EEGfMRIDataset
    run : int | str
    hrf_lambda : float | None
        Regularisation of the deconvolution; None: GCV over all source voxels.
    chunk_size : int
        Sources per chunk of the EEG forward.
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    out : dict
        ``sources`` (n_sources, n_times) float32, ``X̂`` (each TR's activity spread evenly
        over its samples); ``eeg`` (n_channels, n_times) float64, average-referenced V;
        ``hrf_lambda``.
    """
    x, lam = fmri_to_sources(ds, ds.read_run(run)["fmri"], hrf_lambda=hrf_lambda)
    gain = ds.truth("leadfield")
    d = ds.truth("erp_kernel")
    eeg = np.zeros((gain.shape[0], x.shape[1]))
    for a in range(0, x.shape[0], chunk_size):
        eeg += gain[:, a:a + chunk_size] @ convolve_hrf(np.asarray(x[a:a + chunk_size],
                                                                   np.float64), d)
    return {"sources": x, "eeg": eeg, "hrf_lambda": lam}

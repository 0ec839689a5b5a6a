"""The fMRI side of the EEG–fMRI simulator: HRF convolution sampled at each slice's time.

Paper eq. 1: ``F = X * h + N_F``, sampled every TR. Here the BOLD of a source is the
continuous-time convolution of its activity (impulses and oscillations at ``sfreq``) with
the canonical HRF ``h`` (SPM double gamma, :func:`~neurofuse.physics.hrf.spm_hrf`):

    b(t) = sum_n x[n] h(t - n / sfreq)

evaluated exactly at the acquisition time of the voxel's slice in volume ``m``:
``t = m TR + δ_z`` with ``δ_z = position of slice z in the acquisition order × TR /
n_slices`` (:func:`slice_offsets`). ``h`` is the gamma formula normalised like ``spm_hrf``
at ``sfreq`` (unit sum of its samples), so with ``δ = 0`` the result equals
``convolve_hrf(x, spm_hrf(sfreq))[m * n_per_tr]``. For a slice time between samples
(``δ_z sfreq = q + r``, ``0 <= r < 1``) the sum is a causal convolution with the kernel
``h_r[k] = h((k + r) / sfreq)`` read at sample ``m n_per_tr + q``
(:func:`shifted_hrf`, :func:`sample_bold`).

Slice orders (axial slices along the grid's third axis, slice 0 the lowest):
``'sequential'``: 0, 1, 2, ...; ``'interleaved'`` with step ``k``: 0, k, 2k, ..., then 1,
1 + k, ..., then 2, ... (``k = 2`` is the usual odd/even interleave; the paper uses 5).
"""

from __future__ import annotations

import math

import numpy as np

from ..._checks import _check_int, _check_option, _check_positive
from ...physics.hrf import _gamma_pdf, _validate_hrf_kwargs, convolve_hrf, spm_hrf

__all__ = ["sample_bold", "shifted_hrf", "slice_offsets", "slice_order"]

_HRF_DEFAULTS = dict(peak=6.0, undershoot=16.0, ratio=1 / 6, length=32.0, dispersion=1.0,
                     undershoot_dispersion=1.0)


def slice_order(n_slices, order="sequential", interleave=5):
    """The acquisition order of the slices.

    Parameters
    ----------
    n_slices : int
    order : 'sequential' | 'interleaved'
    interleave : int
        Step of the interleaved order.

    Returns
    -------
    acquired : array of int64, shape (n_slices,)
        ``acquired[i]`` is the slice acquired ``i``-th.
    """
    n_slices = _check_int("n_slices", n_slices, 1)
    _check_option("order", order, ["sequential", "interleaved"])
    interleave = _check_int("interleave", interleave, 1)
    if order == "sequential":
        return np.arange(n_slices, dtype=np.int64)
    return np.concatenate([np.arange(s, n_slices, interleave)
                           for s in range(min(interleave, n_slices))]).astype(np.int64)


def slice_offsets(n_slices, tr, order="sequential", interleave=5):
    """Acquisition time of each slice after the start of its volume.

    Parameters
    ----------
    n_slices : int
    tr : float
        s.
    order : 'sequential' | 'interleaved'
    interleave : int

    Returns
    -------
    offsets : array, shape (n_slices,)
        ``offsets[z]`` (s) for slice ``z``; the slices are spread evenly over the TR.
    """
    tr = _check_positive("tr", tr)
    acquired = slice_order(n_slices, order, interleave)
    offsets = np.empty(n_slices)
    offsets[acquired] = np.arange(n_slices) * tr / n_slices
    return offsets


def shifted_hrf(sfreq, shift, hrf_kwargs=None):
    """The HRF sampled at ``(k + shift) / sfreq``, with :func:`spm_hrf`'s normalisation.

    Parameters
    ----------
    sfreq : float
        Hz.
    shift : float
        Fraction of a sample, ``0 <= shift < 1``.
    hrf_kwargs : dict | None
        Parameters of :func:`~neurofuse.physics.hrf.spm_hrf`.

    Returns
    -------
    kernel : array, shape (floor(length * sfreq) + 1,)
        ``kernel[k] = h((k + shift) / sfreq)`` for ``k + shift <= length * sfreq``, else 0;
        ``shifted_hrf(sfreq, 0) == spm_hrf(sfreq)``.
    """
    sfreq = _check_positive("sfreq", sfreq)
    if not 0 <= shift < 1:
        raise ValueError(f"'shift' must be in [0, 1) (a fraction of a sample), got {shift}.")
    kw = {**_HRF_DEFAULTS, **_validate_hrf_kwargs(hrf_kwargs)}
    base = spm_hrf(sfreq, **_validate_hrf_kwargs(hrf_kwargs))
    if shift == 0:
        return base
    t = (np.arange(len(base)) + shift) / sfreq

    def raw(tt):
        return (_gamma_pdf(tt, kw["peak"] / kw["dispersion"], kw["dispersion"])
                - kw["ratio"] * _gamma_pdf(tt, kw["undershoot"] / kw["undershoot_dispersion"],
                                           kw["undershoot_dispersion"]))

    norm = raw(np.arange(len(base)) / sfreq).sum()  # spm_hrf's unit-sum normalisation
    out = raw(t) / norm
    out[t > kw["length"] + 1e-12] = 0.0
    return out


def sample_bold(drive, sfreq, tr, offsets, hrf_kwargs=None):
    """BOLD of each row of ``drive`` at every slice time: ``b(m TR + δ_z)``.

    Parameters
    ----------
    drive : array, shape (n_rows, n_times)
        What the HRF convolves (e.g. region activity), at ``sfreq``; silent before 0.
    sfreq, tr : float
        Hz and s; ``tr * sfreq`` whole.
    offsets : array, shape (n_slices,)
        Slice acquisition offsets within the TR, s (:func:`slice_offsets`), in [0, tr).
    hrf_kwargs : dict | None

    Returns
    -------
    bold : array, shape (n_slices, n_rows, n_trs), float64
        ``n_trs = n_times // (tr * sfreq)``; units of ``drive`` (the HRF has unit sum).
    """
    drive = np.asarray(drive, np.float64)
    n_per_tr = tr * sfreq
    if abs(n_per_tr - round(n_per_tr)) > 1e-6:
        raise ValueError(f"'tr' * 'sfreq' must be whole, got {n_per_tr:g}.")
    n_per_tr = int(round(n_per_tr))
    n_times = drive.shape[1]
    n_trs = n_times // n_per_tr
    offsets = np.asarray(offsets, float)
    if offsets.min(initial=0) < 0 or offsets.max(initial=0) >= tr:
        raise ValueError(f"'offsets' must lie in [0, tr = {tr:g}), got range "
                         f"[{offsets.min():g}, {offsets.max():g}].")
    out = np.empty((len(offsets), drive.shape[0], n_trs))
    cache = {}
    for z, delta in enumerate(offsets):
        pos = delta * sfreq
        q = int(math.floor(pos + 1e-9))
        r = max(pos - q, 0.0)
        r = 0.0 if r < 1e-9 else r
        key = round(r, 12)
        if key not in cache:
            cache[key] = convolve_hrf(drive, shifted_hrf(sfreq, r, hrf_kwargs))
        idx = np.arange(n_trs) * n_per_tr + q
        out[z] = cache[key][:, idx]
    return out

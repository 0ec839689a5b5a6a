"""Axial slices of a volumetric fMRI run for MEG2fMRI pairing (paper §3.2).

* :func:`run_statistics`: the run's minimum and maximum (for its min-max normalisation) and
  every axial slice's mean time series (the mean over x and y), in one sequential read.
* :func:`slice_correlations`: per event, the Pearson r of every slice's time series over the
  event's window of volumes with the event's MEG time profile.
* :func:`best_slice`: the slice that correlates best on average over events.
* :func:`gather_slices`: one axial slice at one volume per event, in one sequential read.
* :func:`gather_volumes`: whole volumes at given time indices (volume and sequence targets),
  in one sequential read.
* :func:`resize_bilinear`: bilinear resizing with half-pixel centres (the convention of
  scikit-image's ``resize(order=1, mode="edge", anti_aliasing=False)``, of
  ``scipy.ndimage.zoom(order=1, mode="nearest", grid_mode=True)`` and of torch's
  ``interpolate(mode="bilinear", align_corners=False)``).

Runs are arrays (or memory maps) of shape (n_x, n_y, n_z, n_trs), time last as in the dataset
store. Such a run is stored x-major, so reading a few volumes touches every page of the file;
these functions therefore read the run once, front to back, in blocks of consecutive x
planes of at most ``block_bytes``, and never hold the whole run in memory (a 106 × 106 × 72 ×
600 float32 run is 2 GB).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..._checks import _check_int
from ...stats import pearson_r

__all__ = ["RunStatistics", "best_slice", "bilinear_matrix", "gather_slices", "gather_volumes",
           "resize_bilinear", "run_statistics", "slice_correlations"]

_BLOCK_BYTES = 64 * 2**20


class RunStatistics(NamedTuple):
    """What :func:`run_statistics` computes from one run.

    Attributes
    ----------
    vmin, vmax : float
        The smallest and largest voxel value of the run (all voxels, all volumes).
    slice_means : array, shape (n_z, n_trs)
        Mean over x and y of every axial slice at every volume (float64).
    """

    vmin: float
    vmax: float
    slice_means: np.ndarray


def _check_run(volumes) -> tuple:
    shape = tuple(getattr(volumes, "shape", ()))
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"'volumes' must have shape (n_x, n_y, n_z, n_trs) with every axis "
                         f"non-empty, got shape {shape}.")
    return shape


def _blocks(shape, block_bytes):
    """Slices of consecutive x planes holding at most ``block_bytes`` (float64) each."""
    plane = int(np.prod(shape[1:])) * 8
    step = max(1, int(block_bytes) // plane)
    return [slice(a, min(a + step, shape[0])) for a in range(0, shape[0], step)]


def run_statistics(volumes, *, block_bytes=_BLOCK_BYTES) -> RunStatistics:
    """Minimum, maximum and per-slice mean time series of a run, read once in x blocks.

    Parameters
    ----------
    volumes : array-like, shape (n_x, n_y, n_z, n_trs)
        The run (a memory map is read ``block_bytes`` at a time). Anything indexable along
        the first axis with a ``shape`` works.
    block_bytes : int
        Largest block read at once (as float64).

    Returns
    -------
    stats : RunStatistics
        ``(vmin, vmax, slice_means)``; ``slice_means`` has shape (n_z, n_trs).
    """
    n_x, n_y, n_z, n_trs = _check_run(volumes)
    sums = np.zeros((n_z, n_trs))
    vmin, vmax = np.inf, -np.inf
    for sl in _blocks((n_x, n_y, n_z, n_trs), block_bytes):
        block = np.asarray(volumes[sl], np.float64)  # (b, n_y, n_z, n_trs)
        if not np.isfinite(block).all():
            raise ValueError(f"'volumes' holds NaN or infinite values (in x planes "
                             f"{sl.start}-{sl.stop - 1}); all voxels must be finite. Mask or "
                             "fill them (e.g. with 0 outside the brain) before pairing.")
        vmin, vmax = min(vmin, block.min()), max(vmax, block.max())
        sums += block.sum(axis=(0, 1))
    return RunStatistics(float(vmin), float(vmax), sums / (n_x * n_y))


def slice_correlations(slice_means, volume_index, profiles, n_volumes):
    """Pearson r of every slice's window of volumes with each event's MEG time profile.

    For event ``e`` and slice ``z`` the slice series is ``slice_means[z, k:k + n_volumes]``
    with ``k = volume_index[e]``, z-scored over the window, and the profile is
    ``profiles[e]``; the two are compared over their common length ``L = min(n_volumes,
    n_samples)`` (the first ``L`` points of each), so r is the Pearson correlation of
    ``slice_means[z, k:k + L]`` with ``profiles[e, :L]`` (z-scoring changes no correlation).

    Parameters
    ----------
    slice_means : array, shape (n_z, n_trs)
        From :func:`run_statistics`.
    volume_index : array of int, shape (n_events,)
        First volume of each event's window (every window must lie inside the run).
    profiles : array, shape (n_events, n_samples)
        Each event's MEG time profile.
    n_volumes : int
        Volumes in the window.

    Returns
    -------
    r : array, shape (n_events, n_z)
        NaN where the slice series or the profile is constant over the common length.
    """
    slice_means = np.asarray(slice_means, np.float64)
    volume_index = np.asarray(volume_index, np.int64).reshape(-1)
    profiles = np.asarray(profiles, np.float64)
    n_volumes = _check_int("n_volumes", n_volumes, 1)
    if profiles.ndim != 2 or len(profiles) != len(volume_index):
        raise ValueError(f"'profiles' must have shape (n_events={len(volume_index)}, "
                         f"n_samples), got shape {profiles.shape}.")
    n_z, n_trs = slice_means.shape
    if len(volume_index) and (volume_index.min() < 0
                              or volume_index.max() + n_volumes > n_trs):
        raise ValueError(f"Every window of {n_volumes} volumes must lie inside the run of "
                         f"{n_trs} volumes; got first volumes {volume_index.min()} to "
                         f"{volume_index.max()}.")
    length = min(n_volumes, profiles.shape[1])
    windows = slice_means[:, volume_index[:, None] + np.arange(length)]  # (n_z, E, L)
    windows = np.moveaxis(windows, 0, 1)  # (E, n_z, L)
    prof = np.broadcast_to(profiles[:, None, :length], windows.shape)
    return pearson_r(windows, prof, axis=-1)


def best_slice(r) -> int:
    """The slice with the highest mean correlation over events (NaN entries left out).

    Parameters
    ----------
    r : array, shape (n_events, n_z) or (n_z,)
        Correlations from :func:`slice_correlations` (signed: the highest r wins, as in the
        paper; a strongly negative r does not).

    Returns
    -------
    z : int
        ``argmax`` over slices of the mean over events of the finite r; ties go to the lowest
        index.

    Raises
    ------
    ValueError
        If no slice has a finite correlation with any event (e.g. constant profiles).
    """
    r = np.atleast_2d(np.asarray(r, np.float64))
    finite = np.isfinite(r)
    n = finite.sum(axis=0)
    if not n.any():
        raise ValueError(f"No slice has a finite correlation with any of the {len(r)} events "
                         "(constant MEG profiles or constant slices): the slice cannot be "
                         "chosen. Check the MEG and fMRI runs, or fix the slice with "
                         "slice_selection=<int>.")
    mean = np.where(n > 0, np.where(finite, r, 0).sum(axis=0) / np.maximum(n, 1), -np.inf)
    return int(np.argmax(mean))


def gather_slices(volumes, z_index, t_index, *, block_bytes=_BLOCK_BYTES):
    """The axial slice ``volumes[:, :, z, t]`` for each (z, t) pair, read once in x blocks.

    Parameters
    ----------
    volumes : array-like, shape (n_x, n_y, n_z, n_trs)
    z_index, t_index : array of int, shape (n_events,)
        Slice and volume of each image.
    block_bytes : int
        Largest block read at once (as float64).

    Returns
    -------
    images : array, shape (n_events, n_x, n_y)
        float64, in voxel order (rows x, columns y).
    """
    n_x, n_y, n_z, n_trs = _check_run(volumes)
    z_index = np.asarray(z_index, np.int64).reshape(-1)
    t_index = np.asarray(t_index, np.int64).reshape(-1)
    if z_index.shape != t_index.shape:
        raise ValueError(f"'z_index' and 't_index' must have the same length, got "
                         f"{len(z_index)} and {len(t_index)}.")
    for name, idx, n in (("z_index", z_index, n_z), ("t_index", t_index, n_trs)):
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(f"'{name}' must be in [0, {n - 1}], got values from {idx.min()} "
                             f"to {idx.max()}.")
    out = np.empty((len(z_index), n_x, n_y))
    if not len(z_index):
        return out
    for sl in _blocks((n_x, n_y, n_z, n_trs), block_bytes):
        block = np.asarray(volumes[sl])  # (b, n_y, n_z, n_trs)
        out[:, sl] = np.moveaxis(block[:, :, z_index, t_index], -1, 0)
    return out


def gather_volumes(volumes, t_index, *, dtype=np.float64, block_bytes=_BLOCK_BYTES):
    """The whole volume ``volumes[..., t]`` for each ``t``, read once in x blocks.

    Parameters
    ----------
    volumes : array-like, shape (n_x, n_y, n_z, n_trs)
    t_index : array of int, shape (n_images,)
        Volume of each image (repeats allowed).
    dtype : numpy dtype
        Of the output (float32 halves the memory of many whole volumes).
    block_bytes : int
        Largest block read at once (as float64).

    Returns
    -------
    images : array, shape (n_images, n_x, n_y, n_z)
        In voxel order.
    """
    n_x, n_y, n_z, n_trs = _check_run(volumes)
    t_index = np.asarray(t_index, np.int64).reshape(-1)
    if len(t_index) and (t_index.min() < 0 or t_index.max() >= n_trs):
        raise ValueError(f"'t_index' must be in [0, {n_trs - 1}], got values from "
                         f"{t_index.min()} to {t_index.max()}.")
    out = np.empty((len(t_index), n_x, n_y, n_z), dtype)
    if not len(t_index):
        return out
    for sl in _blocks((n_x, n_y, n_z, n_trs), block_bytes):
        block = np.asarray(volumes[sl])  # (b, n_y, n_z, n_trs)
        out[:, sl] = np.moveaxis(block[..., t_index], -1, 0)
    return out


def bilinear_matrix(n_in, n_out):
    """Linear interpolation weights from ``n_in`` samples to ``n_out`` along one axis.

    Output sample ``i`` sits at input coordinate ``(i + 0.5) * n_in / n_out - 0.5``
    (half-pixel centres: the image's extent is kept), clamped to ``[0, n_in - 1]`` (the edge
    value is repeated); no anti-aliasing filter.

    Parameters
    ----------
    n_in, n_out : int

    Returns
    -------
    weights : array, shape (n_out, n_in)
        Each row holds at most two non-zero weights summing to 1.
    """
    n_in, n_out = _check_int("n_in", n_in, 1), _check_int("n_out", n_out, 1)
    coord = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
    lo = np.floor(coord).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = coord - lo
    weights = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(weights, (rows, lo), 1 - frac)
    np.add.at(weights, (rows, hi), frac)
    return weights


def resize_bilinear(images, shape):
    """Resize the last two axes bilinearly (see :func:`bilinear_matrix` for the convention).

    Parameters
    ----------
    images : array, shape (..., n_x, n_y)
    shape : tuple of 2 int
        ``(h, w)``, the output size.

    Returns
    -------
    resized : array, shape (..., h, w)
        float64. Every output value is a convex combination of input values, so an image in
        [0, 1] stays in [0, 1].
    """
    images = np.asarray(images, np.float64)
    if images.ndim < 2:
        raise ValueError(f"'images' must have shape (..., n_x, n_y), got shape {images.shape}.")
    h, w = (_check_int("shape[0]", shape[0], 1), _check_int("shape[1]", shape[1], 1))
    rows = bilinear_matrix(images.shape[-2], h)  # (h, n_x)
    cols = bilinear_matrix(images.shape[-1], w)  # (w, n_y)
    return np.einsum("hx,...xy,wy->...hw", rows, images, cols, optimize=True)

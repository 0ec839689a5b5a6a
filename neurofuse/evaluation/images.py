"""Image metrics of MEG→fMRI slice synthesis (system C): MSE and SSIM as the MEG2fMRI paper
computes them, and the correlation of the *activation* that tells whether a slice carries more
than anatomy.

Images are arrays of shape (n_images, h, w) (one 2-D image is taken as a batch of one). Every
metric is computed per image and then averaged over images. Whole volumes (``image_ndim=3``,
shape (n_images, n_x, n_y, n_z)) and sequences of volumes (``image_ndim=4``, shape
(n_images, n_frames, n_x, n_y, n_z)) are scored the same way: MSE over every voxel (of every
frame); SSIM in 3-D (scikit-image's 7 × 7 × 7 uniform window), for a sequence per frame and
then averaged over the frames whose target is not constant; activation r over every voxel of
every frame at once (one r per event, so a sequence's r also rewards the time course):

* :func:`mse`: mean over pixels of ``(pred - target) ** 2``;
* :func:`ssim`: :func:`skimage.metrics.structural_similarity` of each pair with ``data_range``
  the *target's* range (``target.max() - target.min()`` of that image) and scikit-image's other
  defaults (7 × 7 uniform window);
* :func:`activation_r`: Pearson r over pixels of ``pred - mean_slice`` with ``target -
  mean_slice``, ``mean_slice`` being the subject's mean training slice (a min-max normalised
  raw slice is mostly anatomy, which the mean slice already predicts);
* :func:`scores`: the three together.

Undefined values follow one rule: a pair where the metric is undefined — SSIM of a constant
target (zero data range), r where either activation is constant — gives NaN in the per-image
values, is left out of the average, and is counted in a warning. If every pair is
undefined the average is NaN.
"""

from __future__ import annotations

import numpy as np

from .._logging import logger
from ..stats import pearson_r

__all__ = ["activation_r", "mse", "scores", "ssim"]


_SHAPES = {2: "(n_images, h, w) or (h, w)", 3: "(n_images, n_x, n_y, n_z)",
           4: "(n_images, n_frames, n_x, n_y, n_z)"}


def _images(name, x, image_ndim=2):
    from .._checks import _check_option

    _check_option("image_ndim", image_ndim, tuple(_SHAPES))
    x = np.asarray(x, np.float64)
    if x.ndim == 2 and image_ndim == 2:
        x = x[np.newaxis]
    if x.ndim != image_ndim + 1 or not x.size:
        raise ValueError(f"'{name}' must have shape {_SHAPES[image_ndim]} (image_ndim="
                         f"{image_ndim}), got shape {x.shape}.")
    if not np.isfinite(x).all():
        raise ValueError(f"'{name}' holds NaN or infinite values; images must be finite.")
    return x


def _pair(pred, target, image_ndim=2):
    pred, target = _images("pred", pred, image_ndim), _images("target", target, image_ndim)
    if pred.shape != target.shape:
        raise ValueError(f"'pred' and 'target' must have the same shape {_SHAPES[image_ndim]}, "
                         f"got {pred.shape} and {target.shape}.")
    return pred, target


def _average(values, what):
    bad = ~np.isfinite(values)
    if bad.any():
        logger.warning("%s is undefined for %d of %d images (left out of the average).", what,
                       bad.sum(), len(values))
    return float(np.mean(values[~bad])) if not bad.all() else float("nan")


def mse(pred, target, *, per_image=False, image_ndim=2):
    """Mean squared error per image, averaged over images.

    Parameters
    ----------
    pred, target : array, shape (n_images, h, w) or (h, w)
        Or (n_images, n_x, n_y, n_z) with ``image_ndim=3``, (n_images, n_frames, n_x, n_y,
        n_z) with ``image_ndim=4``.
    per_image : bool
        Return the value of every image instead of their mean.
    image_ndim : 2 | 3 | 4
        Axes of one image: slices, volumes or sequences of volumes.

    Returns
    -------
    mse : float | array, shape (n_images,)
    """
    pred, target = _pair(pred, target, image_ndim)
    values = ((pred - target) ** 2).mean(axis=tuple(range(1, pred.ndim)))
    return values if per_image else float(values.mean())


def ssim(pred, target, *, per_image=False, image_ndim=2):
    """Structural similarity per image with the target's data range, averaged over images.

    Parameters
    ----------
    pred, target : array, shape (n_images, h, w) or (h, w)
        Each side at least 7 pixels (scikit-image's window). Or volumes (``image_ndim=3``)
        or sequences of volumes (``image_ndim=4``), as for :func:`mse`.
    per_image : bool
        Return the value of every image (NaN for a constant target) instead of their mean.
    image_ndim : 2 | 3 | 4
        Axes of one image. Volumes: SSIM in 3-D (7 × 7 × 7 window). Sequences: the 3-D SSIM
        of each frame with that frame's data range, averaged over the frames whose target
        is not constant (NaN if none is).

    Returns
    -------
    ssim : float | array, shape (n_images,)
        ``structural_similarity(target[i], pred[i], data_range=target[i].max() -
        target[i].min())`` (symmetric in its two images); the mean leaves out constant
        targets.
    """
    from skimage.metrics import structural_similarity

    pred, target = _pair(pred, target, image_ndim)
    spatial = pred.shape[-min(image_ndim, 3):]
    if min(spatial) < 7:
        raise ValueError(f"SSIM needs images of at least 7 pixels along every axis (its "
                         f"window), got {spatial}.")
    n_frames = pred.shape[1] if image_ndim == 4 else 1
    frames = np.full((len(pred), n_frames), np.nan)
    for i, (p, t) in enumerate(zip(pred.reshape(-1, *spatial), target.reshape(-1, *spatial))):
        data_range = t.max() - t.min()
        if data_range > 0:
            frames.flat[i] = structural_similarity(t, p, data_range=data_range)
    defined = np.isfinite(frames)
    values = np.full(len(pred), np.nan)
    ok = defined.any(axis=1)
    values[ok] = np.where(defined, frames, 0).sum(axis=1)[ok] / defined.sum(axis=1)[ok]
    return values if per_image else _average(values, "SSIM")


def activation_r(pred, target, mean_slice, *, pred_mean=None, per_image=False, image_ndim=2):
    """Pearson r of the activations ``pred - mean_slice`` and ``target - mean_slice``.

    Parameters
    ----------
    pred, target : array, shape (n_images, h, w) or (h, w)
        Or volumes / sequences with ``image_ndim`` 3 / 4 (as for :func:`mse`); the r is over
        every voxel (of every frame).
    mean_slice : array, shape (h, w) or (n_images, h, w)
        The mean slice the target's activation is taken from (one for all images, or one per
        image, e.g. each image's subject's).
    pred_mean : array, shape (h, w) or (n_images, h, w) | None
        Subtracted from ``pred`` instead of ``mean_slice``: e.g. the method's own mean over
        the subject's images, so that an offset common to all of a method's slices (its
        anatomy) does not count as activation. None: ``mean_slice``.
    per_image : bool
        Return the r of every image (NaN where either activation is constant) instead of
        their mean.
    image_ndim : 2 | 3 | 4
        Axes of one image.

    Returns
    -------
    r : float | array, shape (n_images,)
        Mean over images of the per-image r over pixels, NaN images left out.
    """
    pred, target = _pair(pred, target, image_ndim)
    means = []
    for name, m in (("mean_slice", mean_slice),
                    ("pred_mean", mean_slice if pred_mean is None else pred_mean)):
        m = np.asarray(m, np.float64)
        if m.shape not in (pred.shape[1:], pred.shape):
            raise ValueError(f"'{name}' must have shape {pred.shape[1:]} or {pred.shape}, got "
                             f"{m.shape}.")
        means.append(m)
    n = len(pred)
    values = pearson_r((pred - means[1]).reshape(n, -1), (target - means[0]).reshape(n, -1))
    return values if per_image else _average(values, "Activation r")


def scores(pred, target, mean_slice, *, pred_mean=None, image_ndim=2) -> dict:
    """MSE, SSIM and activation r of a set of predicted slices (volumes, sequences).

    Parameters
    ----------
    pred, target : array, shape (n_images, h, w)
        Or (n_images, [n_frames,] n_x, n_y, n_z) with ``image_ndim`` 3 or 4.
    mean_slice, pred_mean : array, shape (h, w) or (n_images, h, w)
        See :func:`activation_r` (the shapes of one image, or of all).
    image_ndim : 2 | 3 | 4
        Axes of one image (:func:`mse`).

    Returns
    -------
    scores : dict
        ``{"mse": float, "ssim": float, "activation_r": float}``, means over images (the
        images left out of a mean are counted in a log line).
    """
    kw = {"image_ndim": image_ndim}
    return {"mse": mse(pred, target, **kw), "ssim": ssim(pred, target, **kw),
            "activation_r": activation_r(pred, target, mean_slice, pred_mean=pred_mean, **kw)}

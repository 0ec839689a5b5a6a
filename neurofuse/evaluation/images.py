"""Image metrics of MEG→fMRI slice synthesis (system C): MSE and SSIM as the MEG2fMRI paper
computes them, and the correlation of the *activation* that tells whether a slice carries more
than anatomy.

Images are arrays of shape (n_images, h, w) (one 2-D image is taken as a batch of one). Every
metric is computed per image and then averaged over images:

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


def _images(name, x):
    x = np.asarray(x, np.float64)
    if x.ndim == 2:
        x = x[np.newaxis]
    if x.ndim != 3 or not x.size:
        raise ValueError(f"'{name}' must have shape (n_images, h, w) or (h, w), got shape "
                         f"{x.shape}.")
    if not np.isfinite(x).all():
        raise ValueError(f"'{name}' holds NaN or infinite values; images must be finite.")
    return x


def _pair(pred, target):
    pred, target = _images("pred", pred), _images("target", target)
    if pred.shape != target.shape:
        raise ValueError(f"'pred' and 'target' must have the same shape (n_images, h, w), got "
                         f"{pred.shape} and {target.shape}.")
    return pred, target


def _average(values, what):
    bad = ~np.isfinite(values)
    if bad.any():
        logger.warning("%s is undefined for %d of %d images (left out of the average).", what,
                       bad.sum(), len(values))
    return float(np.mean(values[~bad])) if not bad.all() else float("nan")


def mse(pred, target, *, per_image=False):
    """Mean squared error per image, averaged over images.

    Parameters
    ----------
    pred, target : array, shape (n_images, h, w) or (h, w)
    per_image : bool
        Return the value of every image instead of their mean.

    Returns
    -------
    mse : float | array, shape (n_images,)
    """
    pred, target = _pair(pred, target)
    values = ((pred - target) ** 2).mean(axis=(1, 2))
    return values if per_image else float(values.mean())


def ssim(pred, target, *, per_image=False):
    """Structural similarity per image with the target's data range, averaged over images.

    Parameters
    ----------
    pred, target : array, shape (n_images, h, w) or (h, w)
        Each side at least 7 pixels (scikit-image's window).
    per_image : bool
        Return the value of every image (NaN for a constant target) instead of their mean.

    Returns
    -------
    ssim : float | array, shape (n_images,)
        ``structural_similarity(target[i], pred[i], data_range=target[i].max() -
        target[i].min())`` (symmetric in its two images); the mean leaves out constant
        targets.
    """
    from skimage.metrics import structural_similarity

    pred, target = _pair(pred, target)
    if min(pred.shape[1:]) < 7:
        raise ValueError(f"SSIM needs images of at least 7 × 7 pixels (its window), got "
                         f"{pred.shape[1:]}.")
    values = np.full(len(pred), np.nan)
    for i, (p, t) in enumerate(zip(pred, target)):
        data_range = t.max() - t.min()
        if data_range > 0:
            values[i] = structural_similarity(t, p, data_range=data_range)
    return values if per_image else _average(values, "SSIM")


def activation_r(pred, target, mean_slice, *, pred_mean=None, per_image=False):
    """Pearson r of the activations ``pred - mean_slice`` and ``target - mean_slice``.

    Parameters
    ----------
    pred, target : array, shape (n_images, h, w) or (h, w)
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

    Returns
    -------
    r : float | array, shape (n_images,)
        Mean over images of the per-image r over pixels, NaN images left out.
    """
    pred, target = _pair(pred, target)
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


def scores(pred, target, mean_slice, *, pred_mean=None) -> dict:
    """MSE, SSIM and activation r of a set of predicted slices.

    Parameters
    ----------
    pred, target : array, shape (n_images, h, w)
    mean_slice, pred_mean : array, shape (h, w) or (n_images, h, w)
        See :func:`activation_r`.

    Returns
    -------
    scores : dict
        ``{"mse": float, "ssim": float, "activation_r": float}``, means over images (the
        images left out of a mean are counted in a log line).
    """
    return {"mse": mse(pred, target), "ssim": ssim(pred, target),
            "activation_r": activation_r(pred, target, mean_slice, pred_mean=pred_mean)}

"""Figures of 2-D fMRI slices (system C): targets beside generated slices, and slices over
training (as the MEG2fMRI paper's qualitative figures).

Slices are arrays ``(n_images, n_x, n_y)`` in voxel order (rows along x, columns along y, as
:class:`~neurofuse.systems.meg2fmri.paired.PairedSet` holds them); they are drawn with x to
the right and y up (``image.T``, ``origin="lower"``), the usual axial view.
"""

from __future__ import annotations

import numpy as np

from .figures import _new_figure

__all__ = ["plot_slice_grid", "plot_slice_snapshots"]


def _check_images(name, images):
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"'{name}' must have shape (n_images, n_x, n_y), got {images.shape}.")
    return images


def _draw(ax, image, vmin, vmax, cmap):
    ax.imshow(np.asarray(image).T, origin="lower", vmin=vmin, vmax=vmax, cmap=cmap,
              interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_slice_grid(rows, *, n_images=6, title=None, vmin=0.0, vmax=1.0, cmap="gray",
                    cell=1.3):
    """One row of slices per method, the same events in the columns.

    Parameters
    ----------
    rows : dict of str to array, shape (n_images, n_x, n_y)
        Row label → slices (e.g. ``{"target": Y, "cgan": pred, ...}``), all with the same
        events in the same order.
    n_images : int
        Columns: the first ``n_images`` events.
    title : str | None
    vmin, vmax : float
        Colour limits shared by every panel.
    cmap : str
    cell : float
        Inches per panel.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    rows = {str(k): _check_images(k, v) for k, v in dict(rows).items()}
    if not rows:
        raise ValueError("'rows' must hold at least one set of slices.")
    n = min([n_images] + [len(v) for v in rows.values()])
    if n < 1:
        raise ValueError("Every set of slices in 'rows' must hold at least one image.")
    fig = _new_figure((cell * n + 0.8, cell * len(rows) + 0.4))
    axes = np.atleast_2d(fig.subplots(len(rows), n, squeeze=False))
    for i, (label, images) in enumerate(rows.items()):
        for j in range(n):
            _draw(axes[i, j], images[j], vmin, vmax, cmap)
        axes[i, 0].set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def plot_slice_snapshots(epochs, images, targets, *, n_images=4, n_epochs=6, title=None,
                         vmin=0.0, vmax=1.0, cmap="gray", cell=1.3):
    """Generated slices for fixed inputs as training goes on, under their targets.

    Parameters
    ----------
    epochs : array of int, shape (n_recorded,)
        Epoch of each record (:func:`~neurofuse.systems.meg2fmri.task.read_snapshots`).
    images : array, shape (n_recorded, n_inputs, n_x, n_y)
        The generator's slices after those epochs.
    targets : array, shape (n_inputs, n_x, n_y)
        The real slices of the same inputs.
    n_images, n_epochs : int
        Columns (inputs) and generated rows (records evenly spaced, the last included).
    title, vmin, vmax, cmap, cell
        As in :func:`plot_slice_grid`.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    epochs = np.asarray(epochs).reshape(-1)
    images = np.asarray(images)
    if images.ndim != 4 or len(images) != len(epochs):
        raise ValueError(f"'images' must have shape (n_recorded={len(epochs)}, n_inputs, n_x, "
                         f"n_y), got {images.shape}.")
    targets = _check_images("targets", targets)
    if targets.shape != images.shape[1:]:
        raise ValueError(f"'targets' must have shape {images.shape[1:]} (one per input), got "
                         f"{targets.shape}.")
    if not len(epochs):
        raise ValueError("No snapshot was recorded.")
    picks = np.unique(np.linspace(0, len(epochs) - 1, min(n_epochs, len(epochs))).round()
                      .astype(int))
    rows = {"target": targets}
    rows.update({f"epoch {epochs[k]}": images[k] for k in picks})
    return plot_slice_grid(rows, n_images=n_images, title=title, vmin=vmin, vmax=vmax,
                           cmap=cmap, cell=cell)

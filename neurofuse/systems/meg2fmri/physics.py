"""The physics baseline of system C: MEG → minimum-norm inverse → envelope → HRF → voxels.

No learning from fMRI: the MEG of a story is inverted with MNE-Python's minimum-norm estimate
(:func:`neurofuse.baselines.inverse.run_inverses`, the subject's own forward model), mapped
to the voxels of the subject's grid by the source → voxel map, and turned into a BOLD change
exactly as the simulator turns true sources into one (envelope, HRF, TR means:
:func:`neurofuse.physics.bold_volume.bold_percent_change`). Each event's predicted change is
cut and resized like its target (:func:`event_images`; whole volumes and sequences:
:func:`event_targets`), and the slice is predicted as

    mean training slice + a · predicted change,

with one scale ``a`` fitted by least squares on calibration events of the *training* subjects
(:class:`PhysicsSlices`). Like minimum-norm "given the true lead field" in the other systems,
it is told the subject's anatomy (forward model and source → voxel map), never its fMRI.
"""

from __future__ import annotations

import numpy as np

from ..._logging import logger, verbose
from .slices import gather_slices, gather_volumes, resize_bilinear

__all__ = ["PhysicsSlices", "event_images", "event_targets", "physics_change"]


def event_images(volumes, slice_index, volume_index, *, time_index, image_shape):
    """The resized axial slices of a volume series at each event's target time.

    Parameters
    ----------
    volumes : array-like, shape (n_x, n_y, n_z, n_trs)
        One run (e.g. a predicted or true BOLD change).
    slice_index, volume_index : array of int, shape (n_events,)
        Each event's slice and first window volume (:class:`~.paired.PairedSet` ``slice`` and
        ``volume``); the image is at volume ``volume_index + time_index``.
    time_index : int
        As in :class:`~.config.PairingConfig`.
    image_shape : tuple of 2 int

    Returns
    -------
    images : array, shape (n_events, h, w)
        float64, resized exactly as the targets (:func:`~.slices.resize_bilinear`), not
        normalised.
    """
    volume_index = np.asarray(volume_index, np.int64)
    images = gather_slices(volumes, slice_index, volume_index + int(time_index))
    return resize_bilinear(images, tuple(image_shape))


def event_targets(volumes, slice_index, volume_index, config):
    """A volume series cut at each event as the targets of ``config`` are (not normalised).

    Parameters
    ----------
    volumes : array-like, shape (n_x, n_y, n_z, n_trs)
        One run (e.g. a predicted or true BOLD change).
    slice_index, volume_index : array of int, shape (n_events,)
        :class:`~.paired.PairedSet` ``slice`` and ``volume`` of the events.
    config : PairingConfig
        Its ``target``, ``time_index``, ``image_shape``, ``n_frames`` and ``frame_stride``.

    Returns
    -------
    images : array, shape (n_events, *target_shape)
        float64: resized slices (:func:`event_images`), whole volumes (n_events, n_x, n_y,
        n_z) or sequences (n_events, n_frames, n_x, n_y, n_z).
    """
    volume_index = np.asarray(volume_index, np.int64).reshape(-1)
    if config.target == "slice":
        return event_images(volumes, slice_index, volume_index, time_index=config.time_index,
                            image_shape=config.image_shape)
    offsets = config.frame_offsets
    images = gather_volumes(volumes, (volume_index[:, None] + offsets).reshape(-1))
    if config.target == "sequence":
        return images.reshape(len(volume_index), len(offsets), *images.shape[1:])
    return images


@verbose
def physics_change(dataset, subject, story, source_map, *, method="MNE", verbose=None):
    """The BOLD change that the MEG of one story predicts through physics alone.

    Parameters
    ----------
    dataset : neurofuse.data.store.Dataset
        A store with the subject's continuous ``meg`` (and its forward model) for ``story``.
    subject, story : str
    source_map : scipy.sparse array, shape (n_voxels, n_sources_fsaverage)
        fsaverage source → voxel weights of the subject's grid, voxels in C order.
    method : str
        The inverse (``"MNE"``, ``"dSPM"``, ``"sLORETA"`` or ``"eLORETA"``).
    verbose : bool | str | None

    Returns
    -------
    change : array, shape (n_x, n_y, n_z, n_trs)
        float32, in units of the run's own 99th-percentile voxel s.d. (the scale is fitted
        later, :class:`PhysicsSlices`); 0 where no source reaches.
    """
    from ...baselines.inverse import run_inverses
    from ...physics.bold_volume import bold_percent_change

    shape = dataset.spatial_shape(subject, "fmri-volume")
    if source_map.shape[0] != int(np.prod(shape)):
        raise ValueError(f"'source_map' must have one row per voxel of {subject!r}'s grid "
                         f"{tuple(shape)} ({int(np.prod(shape))}), got {source_map.shape[0]}.")
    estimate = run_inverses(dataset, subject, story, methods=(method,))[method]
    rows, change, _ = bold_percent_change(estimate, dataset.sfreq, dataset.tr, source_map)
    full = np.zeros((int(np.prod(shape)), change.shape[1]), np.float32)
    full[rows] = change
    logger.info("Physics BOLD of %s / %s from %s: %d voxels reached.", subject, story, method,
                len(rows))
    return full.reshape(*shape, change.shape[1])


class PhysicsSlices:
    """``mean slice + a · predicted change``, with ``a`` fitted on calibration events.

    Parameters
    ----------
    mean_slice : array, shape (h, w) or ([n_frames,] n_x, n_y, n_z)
        The mean training slice (volume, sequence).
    """

    def __init__(self, mean_slice):
        self.mean_slice = np.asarray(mean_slice, np.float64)
        if self.mean_slice.ndim not in (2, 3, 4):
            raise ValueError(f"'mean_slice' must have shape (h, w) or ([n_frames,] n_x, n_y, "
                             f"n_z), got {self.mean_slice.shape}.")

    def _check(self, name, images):
        images = np.asarray(images, np.float64)
        if images.shape[1:] != self.mean_slice.shape:
            raise ValueError(f"'{name}' must have shape (n_events, "
                             f"{', '.join(map(str, self.mean_slice.shape))}), got "
                             f"{images.shape}.")
        return images

    def fit(self, change, Y) -> PhysicsSlices:
        """Fit the scale ``a`` by least squares of ``Y - mean_slice`` on ``change``.

        Parameters
        ----------
        change : array, shape (n_events, *target_shape)
            Predicted change images of calibration events (:func:`event_targets`).
        Y : array, shape (n_events, *target_shape)
            Their targets.

        Returns
        -------
        self : PhysicsSlices
        """
        change, Y = self._check("change", change), self._check("Y", Y)
        if len(change) != len(Y):
            raise ValueError(f"'change' and 'Y' must have the same n_events, got "
                             f"{len(change)} and {len(Y)}.")
        denom = float(np.sum(change * change))
        self.scale_ = float(np.sum(change * (Y - self.mean_slice)) / denom) if denom > 0 else 0.0
        return self

    def predict(self, change) -> np.ndarray:
        """Predicted slices.

        Parameters
        ----------
        change : array, shape (n_events, *target_shape)

        Returns
        -------
        Y : array, shape (n_events, *target_shape)
            float32.
        """
        if not hasattr(self, "scale_"):
            raise RuntimeError("PhysicsSlices is not fitted: call fit(change, Y) first.")
        change = self._check("change", change)
        return (self.mean_slice + self.scale_ * change).astype(np.float32)

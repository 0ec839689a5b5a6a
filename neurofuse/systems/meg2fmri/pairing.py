"""The MEG2fMRI pairing pipeline (paper §3.2): one MEG vector and one fMRI slice per event.

Per run (a story of one subject), with MEG ``(n_channels, n_times)`` at ``sfreq`` and fMRI
volumes ``(n_x, n_y, n_z, n_trs)`` at ``tr`` on the same clock (t = 0 at the run's start):

1. **Event indices.** The epoch starts at MEG sample ``round(onset * sfreq)`` (the nearest
   sample, as MNE-Python places events) and the fMRI window at volume ``floor(onset / tr)``:
   volume ``k`` covers ``[k * tr, (k + 1) * tr)`` s, so the onset volume is the one the onset
   falls in (a relative tolerance of 1e-9 volume absorbs float error for onsets on a volume
   boundary). An event is kept only if its whole epoch ``[s, s + n_samples)`` lies in the MEG
   run and its whole window ``[k, k + n_volumes)`` in the fMRI run (an epoch ending exactly at
   the last sample is kept); other events are dropped — never wrapped or padded — and the
   drops counted in one log line per run. Kept events are in onset order.
2. **MEG.** Each channel is z-scored over the whole run; the epoch of ``n_samples`` samples
   from the onset is reduced to one value per channel by its time average (the paper) or its
   first sample (``reduce="first"``, the authors' code); the vector is then z-scored again
   *across its features* (each event's vector has mean 0 and s.d. 1). The paper's "consistent
   scale across samples" asks every sample to be on one scale; doing it per vector needs no
   statistics from other events, so it cannot leak held-out events into training features and
   is defined for one event per run (the authors' setting), where a z-score across events is
   not.
3. **MEG time profile.** The channel mean of the z-scored epoch, shape (n_samples,).
4. **fMRI.** The run is min-max normalised to [0, 1] (its minimum and maximum over all
   voxels and volumes). Per axial slice ``z`` the mean over x and y of the window's volumes is
   z-scored and correlated (Pearson r) with the MEG profile over their common length
   ``min(n_samples, n_volumes)`` (:func:`~neurofuse.systems.meg2fmri.slices.slice_correlations`).
   Note that the two clocks differ (MEG samples vs TRs): this is the paper's heuristic.
5. **Slice choice** (``slice_selection``): ``"train"`` (default) — one slice per subject,
   the one whose correlation is highest on average over the *training* events only, then
   used for every event of the subject, held-out ones included; ``"event"`` — per event, the
   slice that correlates best with that event's own MEG (the paper and the authors' code: it
   chooses the target with the very input it is predicted from, which leaks the input into
   the target); an int — a fixed slice.
6. **Target** (``target="slice"``, the paper). The chosen slice at volume
   ``k + time_index``, resized (n_x, n_y) → ``image_shape`` bilinearly
   (:func:`~neurofuse.systems.meg2fmri.slices.resize_bilinear`), in [0, 1] (the run's
   min-max, kept by bilinear interpolation; ``image_norm="image"`` instead rescales each
   resized slice to its own [0, 1]).
   With ``target="volume"`` (beyond the paper) the target is instead the whole volume at
   ``k + time_index`` on the native grid, normalised the same way (no resizing and no slice
   choice: step 5 is not used and ``PairedSet.slice`` is -1); with ``target="sequence"``
   the ``n_frames`` volumes at ``k + time_index + j * frame_stride``, shape (n_frames, n_x,
   n_y, n_z) per event. Every voxel of the grid is kept (float32; no brain mask).

The authors' public code departs from the paper; :meth:`PairingConfig.authors` sets each of
those choices (``reduce="first"``, ``onset_as_index=True``, ``events_per_run=1``,
``picks="all"``, ``slice_selection="event"``).
"""

from __future__ import annotations

import numpy as np

from ..._checks import _check_int, _check_option
from ..._logging import logger, verbose
from .config import PairingConfig
from .events import event_indices, meg_event_features, pick_inputs
from .paired import PairedSet, concatenate_paired
from .slices import (best_slice, gather_slices, gather_volumes, resize_bilinear, run_statistics,
                     slice_correlations)

__all__ = ["PairingConfig", "event_indices", "meg_event_features", "pair_run", "pair_subject",
           "select_slice"]


def _each_to_unit(images):
    """Each image (along the first axis) rescaled to [0, 1]; a constant one becomes zeros."""
    axes = tuple(range(1, images.ndim))
    lo = images.min(axis=axes, keepdims=True)
    span = images.max(axis=axes, keepdims=True) - lo
    return np.divide(images - lo, span, out=np.zeros_like(images), where=span > 0)


class _Run:
    """One run after the MEG pass and the volume statistics pass (small: no raw data)."""

    def __init__(self, meg, sfreq, volumes, tr, onsets, config, info):
        shape = getattr(volumes, "shape", ())
        if len(shape) != 4:
            raise ValueError(f"'volumes' must have shape (n_x, n_y, n_z, n_trs), got {shape}.")
        meg = np.asarray(meg)
        if meg.ndim != 2:
            raise ValueError(f"'meg' must have shape (n_channels, n_times), got {meg.shape}.")
        onsets = np.asarray(onsets, np.float64).reshape(-1)
        order = np.argsort(onsets, kind="stable")
        sample, volume, keep = event_indices(onsets[order], sfreq=sfreq, tr=tr,
                                             n_times=meg.shape[1], n_trs=shape[3],
                                             config=config)
        idx = np.flatnonzero(keep)[:config.events_per_run]
        picks = pick_inputs(info, config.picks, meg.shape[0])
        meg = meg if picks is None else meg[picks]
        self.onset, self.sample, self.volume = onsets[order][idx], sample[idx], volume[idx]
        self.X, self.profiles = meg_event_features(meg, self.sample, config)
        self.volumes, self.config = volumes, config
        self.stats = run_statistics(volumes)
        if self.stats.vmax <= self.stats.vmin:
            raise ValueError(f"The fMRI run is constant ({self.stats.vmin}): it cannot be "
                             "min-max normalised.")

    def correlations(self):
        """(n_events, n_z) r of every slice with each event's MEG profile."""
        return slice_correlations(self.stats.slice_means, self.volume, self.profiles,
                                  self.config.n_volumes)

    def pair(self, slice_index, story, subject) -> PairedSet:
        cfg = self.config
        if cfg.target != "slice":
            return self.pair_volumes(story, subject)
        if cfg.slice_selection == "event":
            r = self.correlations()
            ok = np.isfinite(r).any(axis=1)
            if not ok.all():
                logger.info("Dropped %d events whose MEG profile correlates with no slice "
                            "(constant).", (~ok).sum())
            z = np.array([best_slice(row) for row in r[ok]], np.int64)
        else:
            ok = np.ones(len(self.volume), bool)
            z = np.full(len(self.volume), slice_index, np.int64)
        n_z = self.volumes.shape[2]
        if len(z) and z.max() >= n_z:
            raise ValueError(f"The slice index must be < n_z = {n_z}, got {z.max()}.")
        images = gather_slices(self.volumes, z, self.volume[ok] + cfg.time_index)
        vmin, vmax = self.stats.vmin, self.stats.vmax
        y = np.clip(resize_bilinear((images - vmin) / (vmax - vmin), cfg.image_shape), 0, 1)
        if cfg.image_norm == "image":
            y = _each_to_unit(y)
        n = int(ok.sum())
        return PairedSet(X=self.X[ok], Y=y, subject=[subject] * n, story=[story] * n,
                         onset=self.onset[ok], sample=self.sample[ok], volume=self.volume[ok],
                         slice=z, config=cfg.to_dict())

    def pair_volumes(self, story, subject) -> PairedSet:
        """Whole volumes (``target="volume"``) or sequences of them (``"sequence"``)."""
        cfg = self.config
        n, offsets = len(self.volume), cfg.frame_offsets
        t = (self.volume[:, None] + offsets).reshape(-1)  # (n * n_frames,), event-major
        # float32 data is read as float32 (exact, half the memory), then normalised in
        # float64 one event at a time, as the slices are.
        dtype = np.result_type(getattr(self.volumes, "dtype", np.float64), np.float32)
        images = gather_volumes(self.volumes, t, dtype=dtype)  # (n * F, n_x, n_y, n_z)
        vmin, span = self.stats.vmin, self.stats.vmax - self.stats.vmin
        y = np.empty(images.shape, np.float32)
        for i, img in enumerate(images):
            v = np.clip((np.asarray(img, np.float64) - vmin) / span, 0, 1)
            y[i] = _each_to_unit(v[None])[0] if cfg.image_norm == "image" else v
        del images
        if cfg.target == "sequence":
            y = y.reshape(n, len(offsets), *y.shape[1:])  # (n, F, n_x, n_y, n_z)
        return PairedSet(X=self.X, Y=y, subject=[subject] * n, story=[story] * n,
                         onset=self.onset, sample=self.sample, volume=self.volume,
                         slice=np.full(n, -1, np.int64), config=cfg.to_dict())


@verbose
def select_slice(meg, sfreq, volumes, tr, onsets, config=None, *, info=None, verbose=None):
    """The slice whose time series correlates best, on average, with the events' MEG.

    Pass the *training* events only: the slice then says nothing about held-out events.

    Parameters
    ----------
    meg, sfreq, volumes, tr, onsets, config, info
        As for :func:`pair_run`; ``meg``, ``volumes`` and ``onsets`` may also be lists (one
        entry per run), the correlations of all runs' events then averaged together.
    verbose : bool | str | int | None

    Returns
    -------
    z : int
        The axial slice (see :func:`~neurofuse.systems.meg2fmri.slices.best_slice`).
    """
    config = PairingConfig() if config is None else config
    runs = (zip(meg, volumes, onsets) if isinstance(meg, (list, tuple))
            else [(meg, volumes, onsets)])
    r = [_Run(m, sfreq, v, tr, o, config, info).correlations() for m, v, o in runs]
    return best_slice(np.concatenate(r))


@verbose
def pair_run(meg, sfreq, volumes, tr, onsets, config=None, slice_index=None, *, info=None,
             story="", subject="", verbose=None) -> PairedSet:
    """Pair the events of one run: one MEG vector and one fMRI slice each (paper §3.2).

    Parameters
    ----------
    meg : array, shape (n_channels, n_times)
        The run's MEG at ``sfreq``. Its rows are the inputs as given unless ``info`` is given
        (then ``config.picks`` selects them) or ``config.picks == "all"``.
    sfreq : float
        MEG sampling rate (Hz).
    volumes : array-like, shape (n_x, n_y, n_z, n_trs)
        The run's fMRI at ``tr`` on the same clock (a memory map is read in blocks).
    tr : float
        Repetition time (s).
    onsets : array, shape (n_events,)
        Event onsets (s from the start of the run).
    config : PairingConfig | None
        The pairing choices (default: the paper's, with the slice chosen on training data).
    slice_index : int | None
        The slice chosen on training events (:func:`select_slice`), required when
        ``config.slice_selection == "train"``; not allowed otherwise.
    info : mne.Info | None
        Channel info of ``meg`` (to apply ``config.picks``).
    story, subject : str
        Recorded in the result.
    verbose : bool | str | int | None

    Returns
    -------
    paired : PairedSet
        ``X`` (n_kept, n_features), ``Y`` (n_kept, h, w) (``config.target="slice"``),
        (n_kept, n_x, n_y, n_z) (``"volume"``) or (n_kept, n_frames, n_x, n_y, n_z)
        (``"sequence"``); events in onset order.
    """
    config = PairingConfig() if config is None else config
    slice_index = _check_slice_index(config, slice_index)
    run = _Run(meg, sfreq, volumes, tr, onsets, config, info)
    out = run.pair(slice_index, story, subject)
    logger.info("Paired %d of %d events of %s.", len(out), np.size(onsets),
                " ".join(x for x in (subject, story) if x) or "the run")
    return out


def _check_slice_index(config, slice_index):
    sel = config.slice_selection
    if config.target != "slice":
        if slice_index is not None:
            raise ValueError(f"'slice_index' is only used with target='slice', got "
                             f"slice_index={slice_index!r} with target={config.target!r}.")
        return None
    if sel == "train":
        if slice_index is None:
            raise ValueError("slice_selection='train' needs the slice chosen on training "
                             "events: pass slice_index=select_slice(<training runs>), or use "
                             "pair_subject, which does it.")
        return _check_int("slice_index", slice_index, 0)
    if slice_index is not None and slice_index != sel:
        raise ValueError(f"'slice_index' is only used with slice_selection='train', got "
                         f"slice_index={slice_index!r} with slice_selection={sel!r}.")
    return None if sel == "event" else sel


class _RepeatMean:
    """The mean over repeats of a (n_repeats, *shape) memory map, read along axis 1 on demand."""

    def __init__(self, arr):
        self._arr = arr
        self.shape = tuple(arr.shape[1:])

    def __getitem__(self, key):
        return np.asarray(self._arr[(slice(None), key)], np.float64).mean(axis=0)


def _repeat(arr, repeat, what):
    if repeat == "mean":
        return _RepeatMean(arr)
    if repeat >= arr.shape[0]:
        raise ValueError(f"'repeat'={repeat} but the {what} run has {arr.shape[0]} repeats; use "
                         f"0..{arr.shape[0] - 1} or 'mean'.")
    return arr[repeat]


@verbose
def pair_subject(dataset, subject, onsets, config=None, *, stories=None, train_stories=None,
                 verbose=None) -> PairedSet:
    """Pair every event of one subject of a dataset store (modalities ``meg`` and ``fmri-volume``).

    A story's MEG run and fMRI run are paired by the story's name in the store (not by the
    order of files in a folder, as the authors' code does), on the story's clock.

    Parameters
    ----------
    dataset : Dataset | path-like
        A store (:func:`neurofuse.data.read_dataset`) with continuous ``meg`` (n_repeats,
        n_channels, n_times) at ``dataset.sfreq`` and ``fmri-volume`` (n_repeats, n_x, n_y,
        n_z, n_trs) at ``dataset.tr`` for the subject; ``config.repeat`` says which repeat.
    subject : str
    onsets : dict of str to array
        Event onsets (s) per story.
    config : PairingConfig | None
    stories : list of str | None
        Stories to pair (default: those with both modalities and an entry in ``onsets``, in
        the store's order).
    train_stories : list of str | None
        Stories whose events choose the slice when ``slice_selection == "train"`` (default:
        the store's ``"train"`` split among ``stories``). Held-out stories are never read for
        the choice.
    verbose : bool | str | int | None

    Returns
    -------
    paired : PairedSet
        Stories in order, events in onset order within each.
    """
    from ...data import Dataset, read_dataset

    config = PairingConfig() if config is None else config
    ds = dataset if isinstance(dataset, Dataset) else read_dataset(dataset)
    mods = ds.modalities(subject)
    for mod in ("meg", "fmri-volume"):
        _check_option("modality", mod, mods, extra=f"Subject {subject!r} must have continuous "
                      "'meg' and 'fmri-volume' data to be paired.")
    both = [s for s in ds.subject_stories(subject, "meg")
            if ds.has(subject, "fmri-volume", s)]
    if stories is None:
        stories = [s for s in both if s in onsets]
    for s in stories:
        _check_option("stories entry", s, both, extra=f"Subject {subject!r} has both MEG "
                      "and volumetric fMRI for these.")
        if s not in onsets:
            raise ValueError(f"'onsets' has no entry for story {s!r}: give its event onsets.")
    if not stories:
        raise ValueError(f"No story to pair for {subject!r}: 'onsets' names none of {both}.")
    info = None if config.picks == "all" else ds.info(subject, "meg")

    cache = {}  # story -> _Run (small), so a training story's volumes are read once

    def run(story):
        if story not in cache:
            meg = _repeat(ds.meg(subject, story), config.repeat, "MEG")
            vol = _repeat(ds.data(subject, "fmri-volume", story), config.repeat, "fMRI")
            meg = meg[:] if isinstance(meg, _RepeatMean) else meg
            cache[story] = _Run(meg, ds.sfreq, vol, ds.tr, onsets[story], config, info)
        return cache[story]

    slice_index = None
    if config.target != "slice":
        pass  # whole volumes: no slice to choose
    elif config.slice_selection == "train":
        if train_stories is None:
            train_stories = [s for s in ds.splits.get("train", []) if s in stories]
        train_stories = list(train_stories)
        for s in train_stories:
            _check_option("train_stories entry", s, [b for b in both if b in onsets],
                          extra="Training stories need both modalities and onsets.")
        r = [run(s).correlations() for s in train_stories]
        r = np.concatenate(r) if r else np.empty((0, 0))
        if not len(r):
            raise ValueError(f"slice_selection='train' needs training events, but "
                             f"train_stories={train_stories} hold none for {subject!r}. Pass "
                             "train_stories, or a fixed slice_selection=<int>.")
        slice_index = best_slice(r)
        logger.info("Slice %d chosen for %s on %d training events of %d stories.", slice_index,
                    subject, len(r), len(train_stories))
    elif isinstance(config.slice_selection, int):
        slice_index = config.slice_selection
    sets = [run(s).pair(slice_index, s, subject) for s in stories]
    cache.clear()
    out = concatenate_paired(sets)
    logger.info("Paired %d events of %s over %d stories.", len(out), subject, len(stories))
    return out

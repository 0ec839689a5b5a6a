"""The choices of the MEG2fMRI pairing, in one validated, JSON-serialisable dataclass.

What each choice does is told in :mod:`neurofuse.systems.meg2fmri.pairing`.
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass

import numpy as np

from ..._checks import _check_int, _check_keys, _check_option

__all__ = ["TARGETS", "PairingConfig"]

_SELECTIONS = ("train", "event")
#: What each event is paired with: one resized axial slice (the paper), the whole volume at the
#: native grid, or the sequence of whole volumes after the event.
TARGETS = ("slice", "volume", "sequence")
#: Fields that only matter for ``target="volume"`` / ``"sequence"``; left out of ``to_dict``
#: for ``target="slice"``, so the paper's configuration serialises as it always did.
_VOLUME_FIELDS = ("target", "n_frames", "frame_stride")


@dataclass(frozen=True)
class PairingConfig:
    """Every choice of the MEG2fMRI pairing (validated; ``to_dict`` / ``from_dict`` for JSON).

    Parameters
    ----------
    n_samples : int
        MEG samples per epoch, from the onset (paper: 64 at 100 Hz).
    n_volumes : int
        fMRI volumes per window, from the onset volume (paper: 64).
    time_index : int
        Index in the window of the target volume (paper: 32); ``< n_volumes``.
    image_shape : tuple of 2 int
        Size of the target slices (paper: 32 × 32).
    reduce : ``"mean"`` | ``"first"``
        Epoch → vector: the time average (paper) or the first sample (authors' code).
    onset_as_index : bool
        ``True``: the onset in seconds is used directly as the MEG sample and the fMRI volume
        index, ``int(onset)`` (authors' code, a bug unless sfreq = 1 Hz and tr = 1 s).
    events_per_run : int | None
        Keep the first ``n`` valid events of each run (onset order); ``None``: all (paper);
        1: the authors' code.
    picks : ``"meg"`` | ``"all"`` | tuple of str
        The MEG inputs: ``"meg"`` (default), the MEG sensors only (magnetometers and
        gradiometers; 306 on a Neuromag/TRIUX system); ``"all"``, every channel of the
        recording, trigger/EOG/ECG/misc included — the paper's 328 = 306 MEG + 22 other
        channels, as in the authors' code; or channel names and/or channel types. Applied
        where the channel info is known (``pair_subject``, or ``pair_run(..., info=...)``).
    slice_selection : ``"train"`` | ``"event"`` | int
        How the target slice is chosen (see the module notes): on training events only
        (default), per event from its own MEG (paper; leaks the input into the target), or a
        fixed z index.
    repeat : int | ``"mean"``
        Which repeat of a store's continuous data to pair (``pair_subject``): one recording,
        repeat 0 by default, as a real session; ``"mean"`` averages the repeats (less noise,
        unlike real data).
    image_norm : ``"run"`` | ``"image"``
        ``"run"`` (paper): the run's min-max; ``"image"``: each resized slice rescaled to
        [0, 1] (a constant slice becomes zeros).
    target : ``"slice"`` | ``"volume"`` | ``"sequence"``
        What each event is paired with (beyond the paper for the last two):
        ``"slice"`` (default, the paper), one resized axial slice, shape (h, w);
        ``"volume"``, the whole volume at the native grid at volume ``k + time_index``,
        shape (n_x, n_y, n_z); ``"sequence"``, the ``n_frames`` whole volumes at
        ``k + time_index + j * frame_stride`` (j = 0 .. n_frames - 1), shape (n_frames,
        n_x, n_y, n_z). Volumes are normalised like the slices (the run's min-max; with
        ``image_norm="image"`` each volume, or each frame, to its own [0, 1]); every voxel of
        the grid is kept (no brain mask) as float32; ``image_shape`` and ``slice_selection``
        are not used (no slice is chosen: ``PairedSet.slice`` is -1).
    n_frames : int
        Volumes per event for ``target="sequence"`` (default 1; e.g. 8); must be 1
        otherwise.
    frame_stride : int
        Volumes between consecutive frames (default 1: every TR). The last frame,
        ``time_index + (n_frames - 1) * frame_stride``, must lie in the window
        (``< n_volumes``).
    """

    n_samples: int = 64
    n_volumes: int = 64
    time_index: int = 32
    image_shape: tuple = (32, 32)
    reduce: str = "mean"
    onset_as_index: bool = False
    events_per_run: int | None = None
    picks: str | tuple = "meg"
    slice_selection: str | int = "train"
    repeat: int | str = 0
    image_norm: str = "run"
    target: str = "slice"
    n_frames: int = 1
    frame_stride: int = 1

    def __post_init__(self):
        _check_int("n_samples", self.n_samples, 1)
        _check_int("n_volumes", self.n_volumes, 1)
        _check_int("time_index", self.time_index, 0)
        if self.time_index >= self.n_volumes:
            raise ValueError(f"'time_index' must be < n_volumes = {self.n_volumes} (an index "
                             f"into the window), got {self.time_index}.")
        shape = tuple(self.image_shape) if isinstance(self.image_shape, (list, tuple)) else ()
        if len(shape) != 2:
            raise ValueError(f"'image_shape' must be 2 ints (h, w), got {self.image_shape!r}.")
        object.__setattr__(self, "image_shape",
                           tuple(_check_int(f"image_shape[{i}]", v, 1) for i, v in
                                 enumerate(shape)))
        _check_option("reduce", self.reduce, ("mean", "first"))
        if not isinstance(self.onset_as_index, bool):
            raise TypeError(f"'onset_as_index' must be a bool, got {self.onset_as_index!r}.")
        if self.events_per_run is not None:
            _check_int("events_per_run", self.events_per_run, 1,
                       how_to_fix="Use None to keep every event.")
        picks = self.picks
        if isinstance(picks, (list, tuple)):
            if not picks or not all(isinstance(p, str) for p in picks):
                raise ValueError(f"'picks' as a list must hold channel names or types (str), "
                                 f"got {picks!r}.")
            object.__setattr__(self, "picks", tuple(picks))
        else:
            _check_option("picks", picks, ("meg", "all"),
                          extra="Or give a list of channel names/types.")
        sel = self.slice_selection
        if isinstance(sel, numbers.Integral) and not isinstance(sel, bool):
            _check_int("slice_selection", sel, 0)
            object.__setattr__(self, "slice_selection", int(sel))
        else:
            _check_option("slice_selection", sel, _SELECTIONS, extra="Or give a slice index "
                          "(int >= 0).")
        if isinstance(self.repeat, str):
            _check_option("repeat", self.repeat, ("mean",), extra="Or give a repeat index.")
        else:
            _check_int("repeat", self.repeat, 0, how_to_fix="Or use repeat='mean'.")
        _check_option("image_norm", self.image_norm, ("run", "image"))
        _check_option("target", self.target, TARGETS)
        _check_int("n_frames", self.n_frames, 1)
        _check_int("frame_stride", self.frame_stride, 1)
        if self.target != "sequence" and self.n_frames != 1:
            raise ValueError(f"'n_frames' is for target='sequence' (got n_frames="
                             f"{self.n_frames} with target={self.target!r}); set "
                             "target='sequence' or leave n_frames at 1.")
        if self.target != "sequence" and self.frame_stride != 1:
            raise ValueError(f"'frame_stride' is for target='sequence' (got frame_stride="
                             f"{self.frame_stride} with target={self.target!r}).")
        last = self.time_index + (self.n_frames - 1) * self.frame_stride
        if last >= self.n_volumes:
            raise ValueError(f"The last frame, time_index + (n_frames - 1) * frame_stride = "
                             f"{last}, must be < n_volumes = {self.n_volumes} (inside the "
                             "window); lower time_index, n_frames or frame_stride, or raise "
                             "n_volumes.")

    @property
    def frame_offsets(self) -> np.ndarray:
        """Volume offsets from the window's first volume of each target frame (int64,
        shape (n_frames,)); one entry, ``time_index``, for slices and volumes."""
        return self.time_index + self.frame_stride * np.arange(self.n_frames, dtype=np.int64)

    def to_dict(self) -> dict:
        """The configuration as a JSON-serialisable dict."""
        out = asdict(self)
        out["image_shape"] = list(self.image_shape)
        out["picks"] = self.picks if isinstance(self.picks, str) else list(self.picks)
        if self.target == "slice":
            for key in _VOLUME_FIELDS:
                del out[key]
        return out

    @classmethod
    def from_dict(cls, params) -> PairingConfig:
        """A configuration from :meth:`to_dict`'s dict (unknown keys raise ValueError)."""
        _check_keys("PairingConfig", params, cls.__dataclass_fields__)
        return cls(**params)

    @classmethod
    def authors(cls, **overrides) -> PairingConfig:
        """The authors' public code: first sample, onset seconds as indices, one event per
        run, every channel as input, the slice chosen with each event's own MEG."""
        params = dict(reduce="first", onset_as_index=True, events_per_run=1, picks="all",
                      slice_selection="event")
        return cls(**{**params, **overrides})

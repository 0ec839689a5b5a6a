"""The sizes of the cyclic EEG↔fMRI transcoder, in one validated, JSON-serialisable dataclass.

What each size does is told in :mod:`neurofuse.systems.transcoder.nets`; the paper's choices
and the ones it leaves open are listed in ``docs/transcoder.md``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..._checks import _check_int, _check_keys, _check_option

__all__ = ["BLOCKS", "TranscoderConfig"]

#: What follows each hidden layer's ReLU: batch normalisation (the paper's group-level model)
#: or a residual layer (its subject-level model).
BLOCKS = ("batchnorm", "residual")


def _int_tuple(name, value, length=None, minimum=1):
    if not isinstance(value, (list, tuple)) or not value:
        raise TypeError(f"'TranscoderConfig.{name}' must be a non-empty tuple of ints, got "
                        f"{value!r}.")
    if length is not None and len(value) != length:
        raise ValueError(f"'TranscoderConfig.{name}' must hold {length} values, got "
                         f"{len(value)} ({tuple(value)}).")
    return tuple(_check_int(f"TranscoderConfig.{name}[{i}]", v, minimum)
                 for i, v in enumerate(value))


@dataclass(frozen=True)
class TranscoderConfig:
    """Every constructor argument of the transcoder's four networks.

    Parameters
    ----------
    n_channels : int
        EEG channels (64 in the paper; :func:`~neurofuse.systems.transcoder.trainer.fit`
        takes it from the data).
    volume_shape : tuple of 3 int
        Source (and fMRI) grid ``(n_x, n_y, n_z)`` at the model's resolution (the group
        level: the fMRI grid pooled to ~12 mm); from the data.
    steps_per_tr : int
        Source time steps per fMRI volume: the temporal up-sampling of the fMRI decoder and
        down-sampling of the fMRI encoder (5: 2.5 Hz at TR = 2 s; the paper's group level
        runs at ~2.7 Hz, which is not a whole number of steps per 2-s TR).
    n_layers : int
        Layers of each of the four networks (5, the paper's).
    block : 'batchnorm' | 'residual'
        What follows each hidden layer's ReLU (:data:`BLOCKS`): batch normalisation (group
        level) or a residual layer (subject level). The last layer of each network is a bare
        (transposed) convolution, so the outputs are signed and unbounded.
    eeg_channels : tuple of int
        Feature maps after each hidden layer of the EEG decoder, ``n_layers - 1`` values
        (coarse to fine); the EEG encoder uses them in reverse.
    eeg_upsamplings : int
        How many of the EEG decoder's transposed 3-D convolutions double the grid (stride 2,
        kernel 4); the others keep it (stride 1, kernel 3). The first layer maps the channels
        to a coarse block of ``ceil(volume_shape / 2**eeg_upsamplings)`` voxels (a transposed
        convolution of a 1-voxel input, written as a linear layer); the output is cropped to
        ``volume_shape``. At most ``n_layers - 1``.
    fmri_channels : tuple of int
        Feature maps after each hidden layer of the fMRI decoder, ``n_layers - 1`` values;
        the fMRI encoder uses them in reverse.
    fmri_kernel : int
        Odd kernel of the temporal layers that work at the TR rate ("same" padding); with
        the defaults the fMRI networks see ±12 TRs, the span of the HRF.
    """

    n_channels: int = 64
    volume_shape: tuple = (16, 16, 12)
    steps_per_tr: int = 5
    n_layers: int = 5
    block: str = "batchnorm"
    eeg_channels: tuple = (64, 32, 16, 8)
    eeg_upsamplings: int = 3
    fmri_channels: tuple = (16, 16, 16, 16)
    fmri_kernel: int = 7

    def __post_init__(self):
        _check_int("TranscoderConfig.n_channels", self.n_channels)
        object.__setattr__(self, "volume_shape", _int_tuple("volume_shape", self.volume_shape, 3))
        _check_int("TranscoderConfig.steps_per_tr", self.steps_per_tr)
        _check_int("TranscoderConfig.n_layers", self.n_layers, 2,
                   how_to_fix="Each network needs an input and an output layer (the paper: 5).")
        _check_option("TranscoderConfig.block", self.block, BLOCKS)
        for name in ("eeg_channels", "fmri_channels"):
            object.__setattr__(self, name, _int_tuple(name, getattr(self, name),
                                                      self.n_layers - 1))
        _check_int("TranscoderConfig.eeg_upsamplings", self.eeg_upsamplings, 0)
        if self.eeg_upsamplings > self.n_layers - 1:
            raise ValueError(f"'TranscoderConfig.eeg_upsamplings' ({self.eeg_upsamplings}) must "
                             f"be <= n_layers - 1 = {self.n_layers - 1}: only the transposed "
                             "convolutions after the first layer can double the grid.")
        _check_int("TranscoderConfig.fmri_kernel", self.fmri_kernel)
        if self.fmri_kernel % 2 == 0:
            raise ValueError(f"'TranscoderConfig.fmri_kernel' must be odd (a 'same' padding "
                             f"keeps the TR count), got {self.fmri_kernel}; use e.g. "
                             f"{self.fmri_kernel + 1}.")

    @property
    def coarse_shape(self) -> tuple:
        """Grid of the EEG decoder's first layer: ``ceil(volume_shape / 2**eeg_upsamplings)``."""
        f = 2 ** self.eeg_upsamplings
        return tuple(-(-n // f) for n in self.volume_shape)

    @property
    def n_voxels(self) -> int:
        """Voxels of the source grid."""
        x, y, z = self.volume_shape
        return x * y * z

    def replace(self, **changes) -> TranscoderConfig:
        """A copy with ``changes`` applied (validated; unknown keys raise)."""
        _check_keys("TranscoderConfig", changes, [f.name for f in dataclasses.fields(self)])
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The sizes as a JSON-serialisable dict."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, values) -> TranscoderConfig:
        """A configuration from :meth:`to_dict`'s dict (unknown keys raise ValueError)."""
        _check_keys("TranscoderConfig", values, [f.name for f in dataclasses.fields(cls)])
        return cls(**values)

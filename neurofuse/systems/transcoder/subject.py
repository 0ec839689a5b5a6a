"""The subject level (paper §4.3.3): from group-level source estimates to full resolution.

The group-level model is trained at ~12 mm / 2.5 Hz, but its EEG networks act on each time
step alone and its fMRI networks on each voxel alone, so it can be *applied* at full
resolution: its EEG decoder on every EEG sample gives an EEG-estimated source at 12 mm and the
EEG rate, its fMRI decoder on every voxel of the unpooled fMRI gives an fMRI-estimated source
at the fMRI grid and 2.5 Hz (:func:`group_sources`). Each is interpolated to the other's sharp
axis (trilinear in space, linear in time; :func:`upsample_sources`), epoched at the stimulus
onsets (paper: 0-3 s) and averaged over trials (:func:`epoch_average`), then cut into
overlapping spatial chunks (paper: 16 voxels; :func:`chunk_starts`).

The subject-level transcoder (:class:`SubjectTranscoder`) has the same four networks, at one
resolution: both of its inputs are source volumes ``(batch, n_x, n_y, n_z, n_times)``. Its
"EEG" is the EEG-estimated source (sharp in time, blurred in space) and its "fMRI" the
fMRI-estimated one (sharp in space, blurred in time); the EEG decoder and encoder are stacks of
spatial (transposed) convolutions applied to each time step, the fMRI decoder and encoder
stacks of temporal ones applied to each voxel, each hidden layer followed by a ReLU and a
residual layer (:data:`~neurofuse.systems.transcoder.config.BLOCKS`). The losses are the four
of :func:`~neurofuse.systems.transcoder.losses.transcoder_loss`. Its parameters are
initialised afresh for each subject, as the paper's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..._checks import _check_int, _check_keys, _check_option
from .config import BLOCKS
from .model import CYCLES, ModelFolder
from .nets import _post, init_weights

SUBJECT_FORMAT = "neurofuse.transcoder.subject"

__all__ = ["SUBJECT_FORMAT", "SubjectConfig", "SubjectTranscoder", "chunk_starts",
           "epoch_average", "group_sources", "subject_transcode", "upsample_sources",
           "upsample_space", "upsample_time"]


@dataclass(frozen=True)
class SubjectConfig:
    """Sizes of the subject-level transcoder.

    Parameters
    ----------
    n_layers : int
        Layers per network (5).
    channels : tuple of int
        Feature maps after each hidden layer, ``n_layers - 1`` values (all four networks).
    spatial_kernel, temporal_kernel : int
        Odd kernels of the spatial (3) and temporal (7) layers ("same" padding).
    block : 'residual' | 'batchnorm'
        What follows each hidden ReLU (paper: a residual layer at this level).
    """

    n_layers: int = 5
    channels: tuple = (16, 16, 16, 16)
    spatial_kernel: int = 3
    temporal_kernel: int = 7
    block: str = "residual"

    def __post_init__(self):
        _check_int("SubjectConfig.n_layers", self.n_layers, 2)
        ch = self.channels
        if not isinstance(ch, (list, tuple)) or len(ch) != self.n_layers - 1:
            raise ValueError(f"'SubjectConfig.channels' must hold n_layers - 1 = "
                             f"{self.n_layers - 1} ints, got {ch!r}.")
        object.__setattr__(self, "channels", tuple(
            _check_int(f"SubjectConfig.channels[{i}]", c) for i, c in enumerate(ch)))
        for name in ("spatial_kernel", "temporal_kernel"):
            k = _check_int(f"SubjectConfig.{name}", getattr(self, name))
            if k % 2 == 0:
                raise ValueError(f"'SubjectConfig.{name}' must be odd (\"same\" padding), got "
                                 f"{k}.")
        _check_option("SubjectConfig.block", self.block, BLOCKS)

    def to_dict(self) -> dict:
        """JSON-serialisable sizes."""
        return {**dataclasses.asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, values) -> SubjectConfig:
        """Build from :meth:`to_dict`'s dict (unknown keys raise)."""
        _check_keys("SubjectConfig", values, [f.name for f in dataclasses.fields(cls)])
        return cls(**values)


class _Stack(nn.Module):
    """n_layers (transposed) convolutions, 1 map in and out, "same" size."""

    def __init__(self, cfg, dim, transposed):
        super().__init__()
        conv = {(1, False): nn.Conv1d, (1, True): nn.ConvTranspose1d,
                (3, False): nn.Conv3d, (3, True): nn.ConvTranspose3d}[dim, transposed]
        k = cfg.temporal_kernel if dim == 1 else cfg.spatial_kernel
        ch = (1, *cfg.channels, 1)
        layers = []
        for i in range(cfg.n_layers):
            layers.append(conv(ch[i], ch[i + 1], k, padding=k // 2))
            if i < cfg.n_layers - 1:
                layers.append(_post(cfg.block, ch[i + 1], dim))
        self.layers = nn.Sequential(*layers)
        self.dim = dim

    def forward(self, x):
        """(batch, n_x, n_y, n_z, n_times) -> same shape."""
        if x.ndim != 5:
            raise ValueError(f"A source volume must have shape (batch, n_x, n_y, n_z, n_times), "
                             f"got {tuple(x.shape)}.")
        B, X, Y, Z, T = x.shape
        if self.dim == 3:                                                # space, each step
            h = x.permute(0, 4, 1, 2, 3).reshape(B * T, 1, X, Y, Z)
            return self.layers(h).view(B, T, X, Y, Z).permute(0, 2, 3, 4, 1)
        return self.layers(x.reshape(B * X * Y * Z, 1, T)).view(B, X, Y, Z, T)  # time, each voxel


class SubjectTranscoder(ModelFolder, nn.Module):
    """The subject-level cyclic transcoder: four networks on source volumes.

    Parameters
    ----------
    config : SubjectConfig
    """

    FORMAT = SUBJECT_FORMAT

    def __init__(self, config):
        super().__init__()
        if not isinstance(config, SubjectConfig):
            raise TypeError(f"'config' must be a SubjectConfig, got {type(config).__name__}.")
        self.config = config
        self.eeg_decoder = _Stack(config, 3, transposed=True)
        self.eeg_encoder = _Stack(config, 3, transposed=False)
        self.fmri_decoder = _Stack(config, 1, transposed=True)
        self.fmri_encoder = _Stack(config, 1, transposed=False)
        init_weights(self)

    def forward(self, eeg, fmri, *, cycle="transcode"):
        """The signals of the four losses (as :meth:`Transcoder.forward`).

        Parameters
        ----------
        eeg : Tensor, shape (batch, n_x, n_y, n_z, n_times)
            EEG-estimated source (group level, interpolated in space).
        fmri : Tensor, shape (batch, n_x, n_y, n_z, n_times)
            fMRI-estimated source (group level, interpolated in time).
        cycle : 'transcode' | 'direct'

        Returns
        -------
        out : dict of str to Tensor
            ``eeg_sources``, ``fmri_sources``, ``eeg2fmri``, ``fmri2eeg``, ``eeg_cycle``,
            ``fmri_cycle``, each shaped as the inputs.
        """
        _check_option("cycle", cycle, CYCLES)
        if eeg.shape != fmri.shape:
            raise ValueError(f"'eeg' {tuple(eeg.shape)} and 'fmri' {tuple(fmri.shape)} must be "
                             "source volumes of the same shape at the subject level.")
        s_eeg, s_fmri = self.eeg_decoder(eeg), self.fmri_decoder(fmri)
        fmri_hat, eeg_hat = self.fmri_encoder(s_eeg), self.eeg_encoder(s_fmri)
        if cycle == "transcode":
            eeg_cycle = self.eeg_encoder(self.fmri_decoder(fmri_hat))
            fmri_cycle = self.fmri_encoder(self.eeg_decoder(eeg_hat))
        else:
            eeg_cycle, fmri_cycle = self.eeg_encoder(s_eeg), self.fmri_encoder(s_fmri)
        return {"eeg_sources": s_eeg, "fmri_sources": s_fmri, "eeg2fmri": fmri_hat,
                "fmri2eeg": eeg_hat, "eeg_cycle": eeg_cycle, "fmri_cycle": fmri_cycle}


def subject_transcode(model, eeg, fmri, *, block=4096):
    """The subject model's source estimates and transcodings of one pair of source volumes.

    The same as ``model(eeg, fmri)`` (its ``eeg_sources``, ``fmri_sources``, ``eeg2fmri``,
    ``fmri2eeg``) computed in blocks of ``block`` time steps (spatial networks, which act on
    each step alone) or voxels (temporal networks, on each voxel alone), in eval mode without
    gradients: whole volumes at full resolution fit in memory.

    Parameters
    ----------
    model : SubjectTranscoder
    eeg, fmri : array, shape (n_x, n_y, n_z, n_times)
        EEG- and fMRI-estimated sources (the subject level's inputs).
    block : int

    Returns
    -------
    out : dict of str to array of float32, each shape (n_x, n_y, n_z, n_times)
    """
    block = _check_int("block", block)
    device = next(model.parameters()).device
    X, Y, Z, T = np.shape(eeg)
    if np.shape(fmri) != (X, Y, Z, T):
        raise ValueError(f"'eeg' {np.shape(eeg)} and 'fmri' {np.shape(fmri)} must be source "
                         "volumes of the same shape.")

    def spatial(stack, x):                                         # each time step alone
        return torch.cat([stack(x[None, ..., t0:t0 + block])[0]
                          for t0 in range(0, T, block)], -1)

    def temporal(stack, x):                                        # each voxel alone
        flat = x.reshape(X * Y * Z, 1, T)
        return torch.cat([stack.layers(flat[v0:v0 + block])
                          for v0 in range(0, flat.shape[0], block)]).reshape(X, Y, Z, T)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            e = torch.as_tensor(np.ascontiguousarray(eeg, np.float32), device=device)
            f = torch.as_tensor(np.ascontiguousarray(fmri, np.float32), device=device)
            s_eeg, s_fmri = spatial(model.eeg_decoder, e), temporal(model.fmri_decoder, f)
            out = {"eeg_sources": s_eeg, "fmri_sources": s_fmri,
                   "eeg2fmri": temporal(model.fmri_encoder, s_eeg),
                   "fmri2eeg": spatial(model.eeg_encoder, s_fmri)}
    finally:
        model.train(was_training)
    return {k: v.cpu().numpy() for k, v in out.items()}


def group_sources(model, eeg, fmri, *, block=4096):
    """A group-level model's source estimates at the data's full resolution.

    Parameters
    ----------
    model : Transcoder
        The trained group-level model (run in eval mode, without gradients).
    eeg : array, shape (n_channels, n_times)
        EEG at its own rate, scaled as in training (e.g. divided by the run's EEG scale).
    fmri : array, shape (n_x, n_y, n_z, n_trs)
        fMRI at its own grid (not pooled), scaled as in training.
    block : int
        Time steps (EEG) or voxels (fMRI) per forward pass (memory).

    Returns
    -------
    eeg_sources : array of float32, shape (*model.config.volume_shape, n_times)
        EEG-estimated source: group grid, EEG rate.
    fmri_sources : array of float32, shape (n_x, n_y, n_z, n_trs * steps_per_tr)
        fMRI-estimated source: fMRI grid, group rate.
    """
    block = _check_int("block", block)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            e = torch.as_tensor(np.ascontiguousarray(eeg, np.float32), device=device)
            parts = [model.eeg_decoder(e[None, :, t0:t0 + block])[0].cpu()
                     for t0 in range(0, e.shape[1], block)]
            s_eeg = torch.cat(parts, -1).numpy()
            f = torch.as_tensor(np.ascontiguousarray(fmri, np.float32), device=device)
            X, Y, Z, N = f.shape
            flat = f.reshape(X * Y * Z, 1, N)
            parts = [model.fmri_decoder.layers(flat[v0:v0 + block]).cpu()  # per voxel: any grid
                     for v0 in range(0, flat.shape[0], block)]
            s_fmri = torch.cat(parts).reshape(X, Y, Z, -1).numpy()
    finally:
        model.train(was_training)
    return s_eeg, s_fmri


def upsample_space(sources, pool, grid_shape):
    """Trilinear interpolation of group-grid sources to the fine grid.

    Parameters
    ----------
    sources : array, shape (n_gx, n_gy, n_gz, n_times)
        Group voxel ``i`` covers fine voxels ``[i p, (i + 1) p)``.
    pool : tuple of 3 int
        Fine voxels per group voxel, ``p``.
    grid_shape : tuple of 3 int
        The fine grid.

    Returns
    -------
    sources : array of float32, shape (*grid_shape, n_times)
        ``align_corners=False``: block centres map to block centres.
    """
    import torch.nn.functional as F

    e = torch.as_tensor(np.ascontiguousarray(sources, np.float32)).permute(3, 0, 1, 2)
    size = tuple(g * p for g, p in zip(e.shape[1:], pool))
    X, Y, Z = grid_shape
    with torch.no_grad():
        e = F.interpolate(e[:, None], size=size, mode="trilinear", align_corners=False)[:, 0]
    return e[:, :X, :Y, :Z].permute(1, 2, 3, 0).contiguous().numpy()     # (X, Y, Z, T)


def upsample_time(sources, samples_per_step, n_times):
    """Linear interpolation of group-rate sources to the full rate.

    Parameters
    ----------
    sources : array, shape (..., n_steps)
        Step ``j`` covers samples ``[j d, (j + 1) d)``.
    samples_per_step : int
        ``d``.
    n_times : int
        Samples wanted (the result is cut or zero-padded to it).

    Returns
    -------
    sources : array of float32, shape (..., n_times)
    """
    import torch.nn.functional as F

    f = torch.as_tensor(np.ascontiguousarray(sources, np.float32))
    lead, n_steps = f.shape[:-1], f.shape[-1]
    with torch.no_grad():
        f = F.interpolate(f.reshape(-1, 1, n_steps), size=n_steps * samples_per_step,
                          mode="linear", align_corners=False).reshape(*lead, -1)
    f = f[..., :n_times]
    if f.shape[-1] < n_times:
        f = F.pad(f, (0, n_times - f.shape[-1]))
    return f.numpy()


def upsample_sources(eeg_sources, fmri_sources, *, pool, grid_shape, samples_per_step):
    """Interpolate the group estimates to the full grid (EEG) and the full rate (fMRI).

    Parameters
    ----------
    eeg_sources : array, shape (n_gx, n_gy, n_gz, n_times)
        From :func:`group_sources` (see :func:`upsample_space`).
    fmri_sources : array, shape (n_x, n_y, n_z, n_steps)
        From :func:`group_sources` (see :func:`upsample_time`).
    pool : tuple of 3 int
        Fine voxels per group voxel.
    grid_shape : tuple of 3 int
        The fine grid.
    samples_per_step : int
        EEG samples per group step.

    Returns
    -------
    eeg_sources, fmri_sources : arrays of float32, shape (*grid_shape, n_times)
    """
    n_times = eeg_sources.shape[-1]
    return (upsample_space(eeg_sources, pool, grid_shape),
            upsample_time(fmri_sources, samples_per_step, n_times))


def epoch_average(sources, onsets, sfreq, duration):
    """The mean of the epochs ``[onset, onset + duration)`` that fit in the run.

    Parameters
    ----------
    sources : array, shape (..., n_times)
    onsets : array of float, shape (n_events,)
        Event onsets, s.
    sfreq : float
        Sampling rate of ``sources``, Hz.
    duration : float
        Epoch length, s (paper: 3).

    Returns
    -------
    average : array of float32, shape (..., round(duration * sfreq))
    n_epochs : int
        Epochs averaged (those that end before the run does).
    """
    n = int(round(duration * sfreq))
    starts = [int(round(o * sfreq)) for o in np.asarray(onsets, float)]
    starts = [s for s in starts if 0 <= s and s + n <= sources.shape[-1]]
    if not starts:
        raise ValueError(f"No epoch of {duration} s fits in the run ({sources.shape[-1]} "
                         f"samples at {sfreq} Hz) after the {len(onsets)} onsets given.")
    total = np.zeros(sources.shape[:-1] + (n,), np.float64)
    for s in starts:
        total += sources[..., s:s + n]
    return (total / len(starts)).astype(np.float32), len(starts)


def chunk_starts(length, size, step):
    """Starts of overlapping windows of ``size`` covering ``range(length)`` (the last one
    flush with the end; one window of ``length`` when ``size >= length``).

    Parameters
    ----------
    length, size, step : int

    Returns
    -------
    starts : list of int
    """
    length, size, step = (_check_int(n, v) for n, v in (("length", length), ("size", size),
                                                         ("step", step)))
    if size >= length:
        return [0]
    starts = list(range(0, length - size + 1, step))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts

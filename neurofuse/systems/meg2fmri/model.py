"""The MEG2fMRI conditional GAN (paper §3.3): generator, discriminator, model folder, synthesis.

Generator (fully connected; the MEG input is a vector, not an image)::

    meg (B, n_features) -> Linear 512 -> ReLU -> Linear 1024 -> ReLU -> Linear 1024 -> ReLU
        -> Linear 32*32 -> tanh -> (B, 32, 32)

Discriminator (PatchGAN-like, conditioned on the MEG)::

    meg (B, n_features) -> Linear 32*32 -> (B, 1, 32, 32)  ─┐
    image (B, 32, 32)                 -> (B, 1, 32, 32)  ─┴─ concat -> (B, 2, 32, 32)
        -> Conv(2 -> 64, k4 s2 p1) -> LeakyReLU 0.2                        (B, 64, 16, 16)
        -> Conv(64 -> 128, k4 s2 p1) -> BatchNorm -> LeakyReLU 0.2         (B, 128, 8, 8)
        -> Conv(128 -> 1, k4 s1 p1)                                         (B, 1, 7, 7)

The final map holds one real/fake *logit* per overlapping image patch (no sigmoid: the loss is
BCE-with-logits). Padding 1 is Pix2Pix's, which gives 16, 8 and 7 x 7 maps for a 32 x 32 image;
the paper does not state it. As in Pix2Pix, the first convolution has no normalisation and
BatchNorm sits between the second convolution and its LeakyReLU; convolutions keep PyTorch's
default bias. The MEG projection is linear (no activation), as the paper describes it.

Output range. The targets are min-max normalised slices in [0, 1]. The authors' code trains the
tanh output, in [-1, 1], directly against them. By default (``output_range="unit"``) the
generator's image is ``(tanh + 1) / 2``, in [0, 1], for the losses, the discriminator and
synthesis; ``output_range="authors"`` reproduces the authors' behaviour (the raw tanh is the
image everywhere).

Whole volumes and sequences of volumes (beyond the paper): a 3-D ``image_shape`` selects the
3-D generator and discriminator of :mod:`.volume_nets` (same trunk, same conditioning, same
task, trainer and files); ``n_frames`` makes the output a sequence, frames as channels.

A model folder holds ``model.json`` (format, version and :class:`CganConfig`) and
``model.safetensors`` (the weights; no pickle), written atomically.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..._checks import _check_int, _check_keys, _check_ndim, _check_option, _check_positive
from ...nn.mlp import mlp_layers
from ...training.model_folder import read_model_folder, save_model_folder
from .volume_nets import VolumeDiscriminator, VolumeGenerator, to_output_range

__all__ = ["MODEL_FORMAT", "CganConfig", "Discriminator", "Generator", "MEG2fMRICGAN",
           "load_model", "synthesize"]

MODEL_FORMAT = "neurofuse.meg2fmri.cgan"
MODEL_FORMAT_VERSION = 1
OUTPUT_RANGES = ("unit", "authors")
#: Settings of the 3-D networks only; left out of ``to_dict`` for a 2-D model, so that its
#: ``model.json`` is what it always was.
_VOLUME_FIELDS = ("n_frames", "g_channels", "project_stride")


@dataclass(frozen=True)
class CganConfig:
    """Sizes of the cGAN: every constructor argument of its two networks.

    Parameters
    ----------
    n_features : int
        Width of the MEG input vector (328 in the paper; 306 for a simulated Elekta/MEGIN
        system). :func:`~neurofuse.systems.meg2fmri.trainer.fit` takes it from the data.
    hidden : tuple of int
        Widths of the generator's hidden layers, each followed by ReLU ((512, 1024, 1024)).
    image_shape : tuple of int
        ``(height, width)`` of the slice ((32, 32)), or ``(n_x, n_y, n_z)`` of a whole volume
        (the 3-D networks of :mod:`.volume_nets`).
    d_channels : tuple of int
        Output channels of the discriminator's two strided convolutions ((64, 128)).
    kernel_size : int
        Kernel of the three convolutions (4).
    padding : int
        Zero padding of the three convolutions (1, as Pix2Pix; gives a 7 x 7 patch map).
    leaky_slope : float
        Negative slope of the discriminator's LeakyReLUs (0.2).
    output_range : 'unit' | 'authors'
        ``'unit'``: the image is ``(tanh + 1) / 2``, in [0, 1] like the targets.
        ``'authors'``: the image is the raw tanh, in [-1, 1], as in the authors' code.
    n_frames : int | None
        3-D only: ``None``, one volume per event; an int, a sequence of that many volumes
        (the generator's output channels).
    g_channels : tuple of int
        3-D only: channels of the FC trunk's coarse grid and after each transposed
        convolution but the last; one doubling of the grid per entry ((64, 32, 16)).
    project_stride : int
        3-D only: the discriminator projects the MEG to a grid this many times coarser, then
        up-samples it (4; 1 projects to every voxel, as the paper does in 2-D).
    """

    n_features: int = 328
    hidden: tuple = (512, 1024, 1024)
    image_shape: tuple = (32, 32)
    d_channels: tuple = (64, 128)
    kernel_size: int = 4
    padding: int = 1
    leaky_slope: float = 0.2
    output_range: str = "unit"
    n_frames: int | None = None
    g_channels: tuple = (64, 32, 16)
    project_stride: int = 4

    def __post_init__(self):
        _check_int("CganConfig.n_features", self.n_features)
        for name in ("hidden", "image_shape", "d_channels", "g_channels"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)) or not value:
                raise TypeError(f"'CganConfig.{name}' must be a non-empty tuple of ints, got "
                                f"{value!r}.")
            value = tuple(_check_int(f"CganConfig.{name}[{i}]", v) for i, v in enumerate(value))
            object.__setattr__(self, name, value)
        if len(self.image_shape) not in (2, 3):
            raise ValueError("'CganConfig.image_shape' must be (height, width) or (n_x, n_y, "
                             f"n_z), got {self.image_shape}.")
        if self.n_frames is not None:
            _check_int("CganConfig.n_frames", self.n_frames)
            if len(self.image_shape) != 3:
                raise ValueError("'CganConfig.n_frames' needs a 3-D image_shape (sequences of "
                                 f"volumes), got image_shape {self.image_shape}.")
        _check_int("CganConfig.project_stride", self.project_stride)
        if len(self.d_channels) != 2:
            raise ValueError("'CganConfig.d_channels' must hold the 2 strided convolutions' "
                             f"channels, e.g. (64, 128), got {self.d_channels}.")
        _check_int("CganConfig.kernel_size", self.kernel_size)
        _check_int("CganConfig.padding", self.padding, minimum=0)
        _check_positive("CganConfig.leaky_slope", self.leaky_slope, allow_zero=True)
        _check_option("CganConfig.output_range", self.output_range, OUTPUT_RANGES)
        if min(self.patch_shape) < 1:
            raise ValueError(f"An image of {self.image_shape} is too small for the "
                             f"discriminator (kernel {self.kernel_size}, padding "
                             f"{self.padding}): its patch map would be {self.patch_shape}.")

    @property
    def output_shape(self) -> tuple:
        """Shape of one generated target: ``image_shape``, with ``n_frames`` first for a
        sequence."""
        return self.image_shape if self.n_frames is None else (self.n_frames,
                                                               *self.image_shape)

    @property
    def patch_shape(self) -> tuple:
        """Shape of the discriminator's logit map (7 x 7 for 32 x 32 with padding 1; 3-D for
        volumes)."""
        def out(n, stride):
            return (n + 2 * self.padding - self.kernel_size) // stride + 1

        return tuple(out(out(out(n, 2), 2), 1) for n in self.image_shape)

    @classmethod
    def from_dict(cls, values: dict) -> CganConfig:
        """Build from a JSON/TOML dict (unknown keys raise; lists become tuples)."""
        _check_keys("model setting (CganConfig)", values,
                    [f.name for f in dataclasses.fields(cls)])
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def to_dict(self) -> dict:
        """JSON-serialisable settings (a 2-D model leaves out the 3-D-only fields)."""
        out = {k: list(v) if isinstance(v, tuple) else v
               for k, v in dataclasses.asdict(self).items()}
        if len(self.image_shape) == 2:
            for key in _VOLUME_FIELDS:
                del out[key]
        return out


class Generator(nn.Module):
    """Fully connected generator: MEG vector -> slice (paper §3.3).

    Parameters
    ----------
    config : CganConfig
        Sizes and output range.
    """

    def __init__(self, config: CganConfig):
        super().__init__()
        self.config = config
        widths = (config.n_features, *config.hidden)
        layers = mlp_layers(widths)
        layers += [nn.Linear(widths[-1], int(np.prod(config.image_shape))), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, meg):
        """Generate slices.

        Parameters
        ----------
        meg : Tensor, shape (B, n_features)

        Returns
        -------
        image : Tensor, shape (B, height, width)
            In [0, 1] (``output_range='unit'``) or [-1, 1] (``'authors'``).
        """
        out = self.net(meg).reshape(meg.shape[0], *self.config.image_shape)  # (B, H, W)
        return to_output_range(out, self.config.output_range)


class Discriminator(nn.Module):
    """MEG-conditioned patch discriminator (paper §3.3).

    Parameters
    ----------
    config : CganConfig
        Sizes.
    """

    def __init__(self, config: CganConfig):
        super().__init__()
        self.config = config
        c1, c2 = config.d_channels
        k, p, slope = config.kernel_size, config.padding, config.leaky_slope
        self.project = nn.Linear(config.n_features, int(np.prod(config.image_shape)))
        self.net = nn.Sequential(
            nn.Conv2d(2, c1, k, stride=2, padding=p), nn.LeakyReLU(slope),
            nn.Conv2d(c1, c2, k, stride=2, padding=p), nn.BatchNorm2d(c2), nn.LeakyReLU(slope),
            nn.Conv2d(c2, 1, k, stride=1, padding=p),
        )

    def forward(self, meg, image):
        """Patch logits of ``image`` being a real slice given ``meg``.

        Parameters
        ----------
        meg : Tensor, shape (B, n_features)
        image : Tensor, shape (B, height, width)

        Returns
        -------
        logits : Tensor, shape (B, h, w)
            ``(h, w)`` is :attr:`CganConfig.patch_shape`.
        """
        meg_map = self.project(meg).reshape(meg.shape[0], 1, *self.config.image_shape)
        x = torch.cat([meg_map, image[:, None]], dim=1)  # (B, 2, H, W): MEG map, image
        return self.net(x)[:, 0]  # (B, h, w)


class MEG2fMRICGAN(nn.Module):
    """The generator and the discriminator, trained together.

    One call of :meth:`forward` is one pass of a training step, so that data-parallel
    training (which synchronises gradients per forward call) sees each step as one pass.

    Parameters
    ----------
    config : CganConfig | dict
        Sizes of both networks.
    """

    def __init__(self, config: CganConfig | dict):
        super().__init__()
        if isinstance(config, dict):
            config = CganConfig.from_dict(config)
        self.config = config
        volume = len(config.image_shape) == 3
        self.generator = (VolumeGenerator if volume else Generator)(config)
        self.discriminator = (VolumeDiscriminator if volume else Discriminator)(config)

    def forward(self, meg, real=None, *, step="synthesize"):
        """Run the pass of one step.

        Parameters
        ----------
        meg : Tensor, shape (B, n_features)
        real : Tensor, shape (B, *output_shape) | None
            Targets (``step='discriminator'`` only).
        step : 'synthesize' | 'discriminator' | 'generator'
            ``'synthesize'``: the generated images. ``'discriminator'``: the patch logits of
            the real and of the (detached) generated images. ``'generator'``: the generated
            images and their patch logits.

        Returns
        -------
        images : Tensor, shape (B, *output_shape)
            For ``'synthesize'``.
        real_logits, fake_logits : Tensor, shape (B, *patch_shape)
            For ``'discriminator'``.
        fake, fake_logits : Tensor, shape (B, *output_shape) and (B, *patch_shape)
            For ``'generator'``.
        """
        if step == "synthesize":
            return self.generator(meg)
        if step == "discriminator":
            with torch.no_grad():
                fake = self.generator(meg)
            return self.discriminator(meg, real), self.discriminator(meg, fake)
        if step == "generator":
            fake = self.generator(meg)
            return fake, self.discriminator(meg, fake)
        raise ValueError(f"Invalid value for the 'step' parameter: expected one of "
                         f"['synthesize', 'discriminator', 'generator'], got {step!r}.")

    def config_dict(self) -> dict:
        """JSON description of the model (everything but the weights)."""
        return {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION,
                "config": self.config.to_dict()}

    def save(self, path, *, overwrite=False):
        """Write the model folder ``path`` (``model.json`` + ``model.safetensors``) atomically.

        Parameters
        ----------
        path : path-like
            The folder.
        overwrite : bool
            Replace an existing folder (only once the new one is complete).

        Returns
        -------
        path : Path
        """
        return save_model_folder(path, self, self.config_dict(), overwrite=overwrite)


def load_model(path) -> MEG2fMRICGAN:
    """Read a model folder written by :meth:`MEG2fMRICGAN.save` (safetensors; no pickle).

    Parameters
    ----------
    path : path-like
        The model folder (e.g. ``out/model`` of a fit).

    Returns
    -------
    model : MEG2fMRICGAN
        On the CPU, in eval mode.
    """
    meta, state = read_model_folder(path, formats=[MODEL_FORMAT], version=MODEL_FORMAT_VERSION,
                                    made_by="the MEG2fMRI fit")
    model = MEG2fMRICGAN(CganConfig.from_dict(meta["config"]))
    model.load_state_dict(state)
    return model.eval()


def synthesize(model, X, *, batch_size=256, device=None):
    """Generate slices from MEG vectors (eval mode, no gradients).

    Parameters
    ----------
    model : MEG2fMRICGAN | path-like
        A model, or a model folder (read with :func:`load_model`).
    X : array, shape (n_pairs, n_features)
        MEG vectors, prepared as for training.
    batch_size : int
        Pairs per forward pass.
    device : str | torch.device | None
        Where to run (None: where the model is).

    Returns
    -------
    images : array of float32, shape (n_pairs, height, width)
        Or (n_pairs, [n_frames,] n_x, n_y, n_z) for a 3-D model. In [0, 1]
        (``output_range='unit'``), or the raw tanh in [-1, 1] (``'authors'``).
    """
    if not isinstance(model, nn.Module):
        model = load_model(model)
    X = _check_ndim("X", X, 2, "(n_pairs, n_features)")
    if X.shape[1] != model.config.n_features:
        raise ValueError(f"'X' has {X.shape[1]} features per pair but the model was trained on "
                         f"{model.config.n_features}. Prepare the MEG as for training.")
    batch_size = _check_int("batch_size", batch_size)
    if device is None:
        device = next(model.parameters()).device
    model = model.to(device)
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for b0 in range(0, len(X), batch_size):
                chunk = np.ascontiguousarray(X[b0:b0 + batch_size], dtype=np.float32)
                meg = torch.as_tensor(chunk, device=device)
                out.append(model(meg).float().cpu().numpy())
    finally:
        model.train(was_training)
    if not out:
        return np.zeros((0, *model.config.output_shape), np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)

"""The cyclic convolutional transcoder (paper §4.3.2): four networks, two pathways, two cycles.

::

    EEG  E ──dec_EEG──► S_E ──enc_fMRI──► F̂   (EEG→fMRI transcoding)
    fMRI F ──dec_fMRI─► S_F ──enc_EEG───► Ê   (fMRI→EEG transcoding)

The cycles (``cycle="transcode"``, default: CycleGAN's cycle consistency, through the other
modality) send the transcoded signal back: ``Ê' = enc_EEG(dec_fMRI(F̂))``,
``F̂' = enc_fMRI(dec_EEG(Ê))``. ``cycle="direct"`` reads the paper's "cross encoding
pathways" literally instead: ``Ê' = enc_EEG(S_E)``, ``F̂' = enc_fMRI(S_F)`` (cheaper; an
auto-encoder per modality). ``S_E`` and ``S_F`` are the EEG- and fMRI-estimated sources.

A model folder holds ``model.json`` (format, version, :class:`TranscoderConfig` and a
checksum of the weights) and ``model.safetensors`` (no pickle), written atomically.
"""

from __future__ import annotations


import numpy as np
import torch
from torch import nn

from ..._checks import _check_option
from ...training.model_folder import read_model_folder, save_model_folder
from .config import TranscoderConfig
from .nets import EEGDecoder, EEGEncoder, FMRIDecoder, FMRIEncoder, init_weights

__all__ = ["CYCLES", "MODEL_FORMAT", "ModelFolder", "Transcoder", "load_model", "transcode"]

MODEL_FORMAT = "neurofuse.transcoder"
MODEL_FORMAT_VERSION = 1
CYCLES = ("transcode", "direct")


class ModelFolder:
    """Saving of a model with ``config`` (a dataclass with ``to_dict``) and ``FORMAT``."""

    FORMAT = MODEL_FORMAT

    def config_dict(self) -> dict:
        """JSON description of the model (everything but the weights)."""
        return {"format": self.FORMAT, "format_version": MODEL_FORMAT_VERSION,
                "config": self.config.to_dict()}

    def save(self, path, *, overwrite=False, extra=None):
        """Write the model folder ``path`` (``model.json`` + ``model.safetensors``) atomically.

        Parameters
        ----------
        path : path-like
            The folder.
        overwrite : bool
            Replace an existing folder (only once the new one is complete).
        extra : dict | None
            More JSON entries of ``model.json`` (e.g. the data's resolution and scaling).

        Returns
        -------
        path : Path
        """
        return save_model_folder(path, self, {**self.config_dict(), **dict(extra or {})},
                                 overwrite=overwrite)


class Transcoder(ModelFolder, nn.Module):
    """The four networks of the cyclic EEG↔fMRI transcoder.

    Parameters
    ----------
    config : TranscoderConfig
        Every size (see :class:`~neurofuse.systems.transcoder.config.TranscoderConfig`).
    """

    def __init__(self, config):
        super().__init__()
        if not isinstance(config, TranscoderConfig):
            raise TypeError(f"'config' must be a TranscoderConfig, got "
                            f"{type(config).__name__}.")
        self.config = config
        self.eeg_decoder = EEGDecoder(config)
        self.eeg_encoder = EEGEncoder(config)
        self.fmri_decoder = FMRIDecoder(config)
        self.fmri_encoder = FMRIEncoder(config)
        init_weights(self)

    def _check_pair(self, eeg, fmri):
        s = self.config.steps_per_tr
        if eeg.shape[0] != fmri.shape[0] or eeg.shape[-1] != fmri.shape[-1] * s:
            raise ValueError(f"'eeg' {tuple(eeg.shape)} and 'fmri' {tuple(fmri.shape)} do not "
                             f"cover the same time: batch sizes must match and the EEG must "
                             f"hold steps_per_tr ({s}) steps per fMRI volume.")

    def forward(self, eeg, fmri, *, cycle="transcode"):
        """Every signal of the four losses.

        Parameters
        ----------
        eeg : Tensor, shape (batch, n_channels, n_trs * steps_per_tr)
        fmri : Tensor, shape (batch, n_x, n_y, n_z, n_trs)
        cycle : 'transcode' | 'direct'
            How the cycles run (module docstring).

        Returns
        -------
        out : dict of str to Tensor
            ``eeg_sources``, ``fmri_sources`` (batch, n_x, n_y, n_z, n_steps); ``eeg2fmri``,
            ``fmri_cycle`` shaped as ``fmri``; ``fmri2eeg``, ``eeg_cycle`` shaped as ``eeg``.
        """
        _check_option("cycle", cycle, CYCLES)
        self._check_pair(eeg, fmri)
        s_eeg = self.eeg_decoder(eeg)
        s_fmri = self.fmri_decoder(fmri)
        fmri_hat = self.fmri_encoder(s_eeg)
        eeg_hat = self.eeg_encoder(s_fmri)
        if cycle == "transcode":
            eeg_cycle = self.eeg_encoder(self.fmri_decoder(fmri_hat))
            fmri_cycle = self.fmri_encoder(self.eeg_decoder(eeg_hat))
        else:
            eeg_cycle = self.eeg_encoder(s_eeg)
            fmri_cycle = self.fmri_encoder(s_fmri)
        return {"eeg_sources": s_eeg, "fmri_sources": s_fmri, "eeg2fmri": fmri_hat,
                "fmri2eeg": eeg_hat, "eeg_cycle": eeg_cycle, "fmri_cycle": fmri_cycle}

    def eeg_to_fmri(self, eeg):
        """Transcoded fMRI, shape (batch, n_x, n_y, n_z, n_steps // steps_per_tr), from EEG
        (batch, n_channels, n_steps)."""
        return self.fmri_encoder(self.eeg_decoder(eeg))

    def fmri_to_eeg(self, fmri):
        """Transcoded EEG, shape (batch, n_channels, n_trs * steps_per_tr), from fMRI
        (batch, n_x, n_y, n_z, n_trs)."""
        return self.eeg_encoder(self.fmri_decoder(fmri))


def load_model(path, *, return_meta=False):
    """Read a model folder written by :meth:`Transcoder.save` (safetensors; no pickle).

    Parameters
    ----------
    path : path-like
        The model folder (e.g. ``out/model`` of a fit).
    return_meta : bool
        Also return the contents of ``model.json``.

    Returns
    -------
    model : Transcoder | SubjectTranscoder
        On the CPU, in eval mode (a group- or a subject-level model, as saved).
    meta : dict
        Only with ``return_meta``.
    """
    from .subject import SUBJECT_FORMAT, SubjectConfig, SubjectTranscoder

    classes = {MODEL_FORMAT: (Transcoder, TranscoderConfig),
               SUBJECT_FORMAT: (SubjectTranscoder, SubjectConfig)}
    meta, state = read_model_folder(path, formats=list(classes), version=MODEL_FORMAT_VERSION,
                                    made_by="the transcoder's fit")
    cls, cfg_cls = classes[meta["format"]]
    model = cls(cfg_cls.from_dict(meta["config"]))
    model.load_state_dict(state)
    model.eval()
    return (model, meta) if return_meta else model


def transcode(model, eeg, fmri, *, cycle="transcode", device=None):
    """Run the model on one item (eval mode, no gradients) and return numpy arrays.

    Parameters
    ----------
    model : Transcoder | path-like
        A model, or a model folder (read with :func:`load_model`).
    eeg : array, shape (n_channels, n_trs * steps_per_tr)
        EEG prepared as for training (e.g. :meth:`TranscoderData.load`).
    fmri : array, shape (n_x, n_y, n_z, n_trs)
        fMRI prepared as for training.
    cycle : 'transcode' | 'direct'
        See :meth:`Transcoder.forward`.
    device : str | torch.device | None
        Where to run (None: where the model is).

    Returns
    -------
    out : dict of str to array of float32
        :meth:`Transcoder.forward`'s outputs without the batch axis: ``eeg_sources`` and
        ``fmri_sources`` (n_x, n_y, n_z, n_steps), ``eeg2fmri`` and ``fmri_cycle`` shaped as
        ``fmri``, ``fmri2eeg`` and ``eeg_cycle`` shaped as ``eeg``.
    """
    if not isinstance(model, nn.Module):
        model = load_model(model)
    if device is None:
        device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(_as_tensor(eeg, device)[None], _as_tensor(fmri, device)[None],
                        cycle=cycle)
    finally:
        model.train(was_training)
    return {k: v[0].float().cpu().numpy() for k, v in out.items()}


def _as_tensor(x, device):
    return torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32), device=device)

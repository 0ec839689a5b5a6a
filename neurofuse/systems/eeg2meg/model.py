"""The trained generator's folder, and synthesis of MEG from EEG with it.

A model folder (:func:`save_generator`) holds ``model.safetensors`` (every weight, the
encoder's included), ``model.json`` (the generator's and the encoder's sizes, where the
encoder came from, the data's channels and per-channel scale) and ``meg-info.fif`` (the MEG
channels the synthetic MEG is written with). :func:`load_generator` reads it back;
:func:`synthesize` maps EEG epochs in volts to MEG epochs in tesla (and T/m), as an array or
as an :class:`mne.EpochsArray` with the real 306-channel ``Info``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..._io import atomic_path
from ...training.model_folder import read_model_folder, save_model_folder

__all__ = ["MODEL_FORMAT", "load_generator", "save_generator", "synthesize"]

MODEL_FORMAT = "neurofuse.eeg2meg.generator"
MODEL_FORMAT_VERSION = 1
MEG_INFO = "meg-info.fif"


def save_generator(path, model, *, encoder_info, data, meg_info, overwrite=False) -> Path:
    """Write a generator's model folder (atomically).

    Parameters
    ----------
    path : path-like
    model : EEG2MEGGenerator
    encoder_info : dict
        JSON: the encoder's origin and sizes (from
        :func:`~neurofuse.systems.eeg2meg.trainer.build_generator`).
    data : dict
        :meth:`~neurofuse.systems.eeg2meg.data.PairedEpochs.describe`: channels and scales.
    meg_info : mne.Info
        The MEG channels of the training data.
    overwrite : bool

    Returns
    -------
    path : Path
    """
    import mne

    path = save_model_folder(path, model, {
        "format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION,
        "generator": model.config.to_dict(), "encoder": encoder_info, "data": data},
        overwrite=overwrite)
    with atomic_path(Path(path) / MEG_INFO, what="MEG info") as tmp:
        mne.io.write_info(tmp, meg_info)
    return Path(path)


def load_generator(path, *, return_meta=False):
    """Read a generator folder (:func:`save_generator`; ``fit``'s ``out/model``).

    Parameters
    ----------
    path : path-like
        The model folder, or a fit's output folder holding ``model/``.
    return_meta : bool
        Also return ``model.json``.

    Returns
    -------
    model : EEG2MEGGenerator
        On the CPU, in eval mode.
    meta : dict
        Only with ``return_meta``.
    """
    from ...nn.labram import LaBraM, LaBraMConfig, freeze
    from .config import GeneratorConfig
    from .generator import EEG2MEGGenerator

    path = Path(path).expanduser()
    if not (path / "model.json").is_file() and (path / "model" / "model.json").is_file():
        path = path / "model"
    meta, state = read_model_folder(path, formats=[MODEL_FORMAT], version=MODEL_FORMAT_VERSION,
                                    made_by="neurofuse eeg2meg fit")
    # folders written before the time-aligned condition existed have no "aligned_dim": they
    # were cross-attention only
    cfg = GeneratorConfig.from_dict({"aligned_dim": 0, **meta["generator"]})
    encoder = LaBraM(LaBraMConfig.from_dict(meta["encoder"]["config"]))
    if cfg.encoder == "pretrained":
        encoder = freeze(encoder)
    model = EEG2MEGGenerator(cfg, encoder)
    model.load_state_dict(state)
    model.eval()
    meta["path"] = str(path)
    return (model, meta) if return_meta else model


def _meg_info(meta):
    import mne

    fname = Path(meta["path"]) / MEG_INFO
    return mne.io.read_info(fname, verbose="error")


def synthesize(model, eeg, *, meta=None, batch_size=32, deterministic=True, steps=None,
               seed=None, as_epochs=False, device=None):
    """Synthesise MEG from EEG epochs.

    Parameters
    ----------
    model : path-like | EEG2MEGGenerator
        A model folder, or a loaded model with its ``meta`` (from :func:`load_generator`).
    eeg : array, shape (n_epochs, n_eeg, n_times) | mne.Epochs
        EEG in volts, the model's channels in its order, at its rate and length.
    meta : dict | None
        The model's ``model.json`` (needed with a loaded model).
    batch_size : int
        Epochs per forward pass.
    deterministic, steps : bool, int | None
        As :meth:`~neurofuse.systems.eeg2meg.generator.EEG2MEGGenerator.generate`.
    seed : int | None
        Seed of the sampler's draws (None with ``deterministic``: from the prior's mean).
    as_epochs : bool
        Return an :class:`mne.EpochsArray` with the training MEG ``Info`` (events and
        ``tmin`` from ``eeg`` when it is an ``mne.Epochs``).
    device : str | None
        Torch device (None: the CPU).

    Returns
    -------
    meg : array, shape (n_epochs, n_meg, n_times) | mne.EpochsArray
        In tesla (magnetometers) and T/m (gradiometers).
    """
    import torch

    if not hasattr(model, "generate"):
        model, meta = load_generator(model, return_meta=True)
    if meta is None:
        raise ValueError("'meta' is needed with a loaded model: use load_generator(path, "
                         "return_meta=True), or pass the model folder.")
    epochs = None
    if hasattr(eeg, "get_data"):
        epochs = eeg
        names = meta["data"]["eeg_names"]
        missing = [n for n in names if n not in epochs.ch_names]
        if missing:
            raise ValueError(f"The EEG epochs lack {len(missing)} of the model's channels "
                             f"(e.g. {missing[:3]}); the model needs {len(names)} channels "
                             "named as in its training data.")
        if abs(epochs.info["sfreq"] - meta["data"]["sfreq"]) > 1e-6:
            raise ValueError(f"The EEG epochs are sampled at {epochs.info['sfreq']} Hz; the "
                             f"model was trained at {meta['data']['sfreq']} Hz: resample them.")
        eeg = epochs.get_data(picks=names)
    eeg = np.asarray(eeg, dtype=np.float64)
    cfg = model.config
    if eeg.ndim != 3 or eeg.shape[1:] != (cfg.n_eeg, cfg.n_times):
        raise ValueError(f"'eeg' must have shape (n_epochs, {cfg.n_eeg}, {cfg.n_times}) (the "
                         f"model's channels and epoch length), got {eeg.shape}. Crop the "
                         "epochs to the model's length.")
    emean, estd = (np.asarray(v, dtype=np.float64) for v in meta["data"]["eeg_scale"])
    mmean, mstd = (np.asarray(v, dtype=np.float64) for v in meta["data"]["meg_scale"])
    x = ((eeg - emean[:, None]) / estd[:, None]).astype(np.float32)
    dev = torch.device(device or "cpu")
    model = model.to(dev).eval()
    gen = None
    if seed is not None:
        gen = torch.Generator(device=dev)
        gen.manual_seed(int(seed))
    out = []
    for b0 in range(0, len(x), int(batch_size)):
        xb = torch.as_tensor(x[b0:b0 + batch_size], device=dev)
        yb = model.generate(xb, deterministic=deterministic, steps=steps, generator=gen)
        out.append(yb.float().cpu().numpy())
    meg = np.concatenate(out).astype(np.float64) * mstd[:, None] + mmean[:, None]
    if not np.isfinite(meg).all():
        raise FloatingPointError("The generator produced non-finite MEG; the model folder may "
                                 "be damaged or the EEG far outside its training range.")
    if not as_epochs:
        return meg
    import mne

    info = _meg_info(meta)
    events, tmin = None, 0.0
    if epochs is not None:
        events, tmin = epochs.events, epochs.tmin
    return mne.EpochsArray(meg, info, events=events, tmin=tmin, verbose="error")

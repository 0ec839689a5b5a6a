"""Memory and disk the joint model's jobs need, estimated before they start.

* :func:`estimate_predict` -- :func:`~neurofuse.systems.joint.predict.write_predictions` for
  a stimulus of ``n_times`` samples: the source estimate it holds (``4 d_src n_times`` bytes),
  plus the largest transient of its steps (the encoder's chunk, the STC writer's copies, one
  subject's MEG or BOLD), and the files it writes;
* :func:`estimate_fit` -- :func:`~neurofuse.systems.joint.trainer.fit`: the model's weights,
  gradients and AdamW moments, the activations one batch keeps for the backward pass, and the
  training data held in memory.

The ``check_*`` functions refuse a job that does not fit
(:func:`neurofuse._resources.check_memory`), naming the setting to reduce; ``--force`` or
``NEUROFUSE_IGNORE_LIMITS=1`` turns the refusal into a warning.
"""

from __future__ import annotations

import numpy as np

from ..._resources import available_memory, check_disk, check_memory

__all__ = ["check_fit_dataset", "check_fit_resources", "check_predict_resources",
           "estimate_fit", "estimate_fit_dataset", "estimate_predict"]

_F32, _F64 = 4, 8


def _morph_columns(morph, rows_per_chunk):
    """Largest number of fsaverage sources one chunk of ``rows_per_chunk`` morph rows reads."""
    crow = morph.crow_indices().cpu().numpy()
    cols = morph.col_indices().cpu().numpy()
    most = 0
    for r0 in range(0, len(crow) - 1, rows_per_chunk):
        r1 = min(r0 + rows_per_chunk, len(crow) - 1)
        most = max(most, len(np.unique(cols[crow[r0]:crow[r1]])))
    return most


def estimate_predict(model, n_times, subjects=None, *, chunk_seconds=60.0):
    """Peak memory and bytes written by ``write_predictions`` for ``n_times`` samples.

    Parameters
    ----------
    model : JointModel
    n_times : int
        Stimulus length, samples.
    subjects : list of str | None
        Subjects predicted (default: all of the model's).
    chunk_seconds : float
        Encoder block length of :func:`~neurofuse.systems.joint.predict.iter_sources`.

    Returns
    -------
    memory : dict
        ``{"total": bytes, part: bytes, ...}``: the peak and the parts held at that peak.
    disk : dict
        ``{"total": bytes, file kind: bytes, ...}``.
    """
    from .predict import (
        BOLD_BYTES_PER_ELEMENT,
        bold_rows_per_chunk,
        meg_chunk_samples,
        model_subjects,
    )

    cfg = model.encoder.config
    n = int(n_times)
    subjects = model_subjects(model) if subjects is None else list(subjects)
    sources = _F32 * cfg.d_src * n
    # encoder blocks: input, a few activations per layer, the source layer's output (+ smoother)
    block = min(n, round(chunk_seconds * model.sfreq)) + cfg.n_layers * (cfg.window - 1)
    encoder = _F32 * block * (cfg.d_stim + 8 * cfg.n_layers * cfg.d_model + 2 * cfg.d_src)
    phases = {"checking the stimulus": {"stimulus finite mask": n * cfg.d_stim},
              "encoding": {"source estimate": sources, "encoder block": encoder},
              # STC files are written a few thousand samples at a time (two copies of them)
              "writing the STC": {"source estimate": sources,
                                  "STC block": 2 * _F32 * cfg.d_src * min(n, 4096)}}
    disk = {"STC": _F32 * cfg.d_src * n, "MEG": 0, "EEG": 0, "BOLD": 0}
    for sub in subjects:
        for kind, heads in (("MEG", model.meg_heads), ("EEG", getattr(model, "eeg_heads", {}))):
            if sub not in heads:
                continue
            n_ch = heads[sub].n_channels
            step = meg_chunk_samples(cfg.d_src)
            phases[f"{kind} of {sub}"] = {"source estimate": sources,
                                          f"{kind} of {sub}": _F64 * n_ch * n,
                                          "gain (float64)": _F64 * n_ch * cfg.d_src,
                                          f"{kind} block": _F64 * (cfg.d_src + n_ch) * min(n, step)}
            disk[kind] += _F32 * n_ch * n
        if sub in model.fmri_heads:
            head = model.fmri_heads[sub]
            n_tr = n // head.samples_per_tr
            rows = bold_rows_per_chunk(n_tr * head.samples_per_tr)
            rows_now = min(rows, head.n_sources)
            cols = _morph_columns(head.morph, rows)
            t = n_tr * head.samples_per_tr
            phases[f"BOLD of {sub}"] = {
                "source estimate": sources, f"BOLD of {sub}": _F32 * head.n_sources * n_tr,
                "morph (scipy copy)": 12 * head.morph.values().numel() + 8 * head.n_sources,
                "BOLD block": (BOLD_BYTES_PER_ELEMENT * rows_now + _F64 * cols) * t}
            disk["BOLD"] += _F32 * head.n_sources * n_tr
    peak = max(phases.values(), key=lambda p: sum(p.values()))
    memory = {"total": int(sum(peak.values())), **peak}
    disk = {"total": int(sum(disk.values())), **{k: v for k, v in disk.items() if v}}
    return memory, disk


def check_predict_resources(model, n_times, subjects, out):
    """Refuse a prediction that does not fit in memory or on the disk of ``out``.

    Parameters
    ----------
    model : JointModel
    n_times : int
        Stimulus length, samples.
    subjects : list of str
    out : path-like
        The output folder.

    Raises
    ------
    neurofuse._resources.ResourceError
        Naming both sizes and the longest stimulus part that fits.
    """
    memory, disk = estimate_predict(model, n_times, subjects)
    per_sample = memory["total"] / max(n_times, 1)
    available = available_memory()
    fits = int(available / per_sample)
    secs = fits / model.sfreq
    what = f"Predicting for a stimulus of {n_times} samples ({n_times / model.sfreq:,.0f} s)"
    check_memory(memory["total"], what=what, available=available,
                 parts={k: v for k, v in memory.items() if k != "total"},
                 reduce=f"the stimulus length: split it into parts of at most about {fits} "
                        f"samples ({secs:,.0f} s) and predict each with the preceding "
                        "receptive field of context; or predict fewer --subjects")
    check_disk(disk["total"], out, what=what,
               parts={k: v for k, v in disk.items() if k != "total"},
               reduce="the stimulus length or the --subjects predicted")
    return memory, disk


def _n_params(cfg, meg_channels, fmri_sources):
    """Learnable numbers and buffers of a JointModel (see encoder.py / heads.py)."""
    d, L, ff = cfg.d_model, cfg.n_layers, cfg.d_ff
    # q, k, v, out projections (k without bias), lag embeddings, feed-forward, two norms
    layer = 4 * d * d + 3 * d + cfg.window * d + 2 * d * ff + ff + d + 4 * d
    learn = cfg.d_stim * d + d + L * layer + d * cfg.d_src + cfg.d_src
    learn += len(fmri_sources) * 5  # HRF parameters
    buffers = sum(n_ch * cfg.d_src for n_ch in meg_channels)  # dense gains (float32)
    return learn, buffers


def estimate_fit(encoder_config, train_config, *, sfreq, meg_channels, fmri_sources,
                 data_bytes=0, longest_story=None):
    """Peak memory of training the joint model.

    Parameters
    ----------
    encoder_config : EncoderConfig
    train_config : TrainConfig
    sfreq : float
        Sampling rate of the pieces, Hz.
    meg_channels : list of int
        Channels of each MEG subject.
    fmri_sources : list of int
        Sources of each fMRI subject.
    data_bytes : int
        Training and validation data held in memory.
    longest_story : int | None
        Samples of the longest training story (pieces are never longer; a piece longer than
        every story is the training task's own error).

    Returns
    -------
    memory : dict
        ``{"total": bytes, part: bytes}``: weights (with their gradients and the two AdamW
        moments), activations of one batch kept for the backward pass, data.
    """
    cfg, t = encoder_config, train_config
    learn, buffers = _n_params(cfg, meg_channels, fmri_sources)
    T = max(1, round(t.piece_seconds * sfreq))
    if longest_story is not None:
        T = min(T, int(longest_story))
    B = t.batch_size
    d, L = cfg.d_model, cfg.n_layers
    # per layer: attention scores and weights of each query block over its window (+ the
    # block), and about ten (B, T, d_model)-sized tensors (projections, residuals, norms, FF)
    scores = 3 * B * cfg.n_heads * T * (min(cfg.window, T) + min(cfg.block_size, T))
    per_layer = scores + 10 * B * T * d + 3 * B * T * cfg.d_ff
    # sources (B, T, d_src) and the heads: each MEG head's prediction, the envelopes of fMRI
    n_heads_out = sum(meg_channels) + 4 * sum(fmri_sources)
    heads = 3 * B * T * cfg.d_src + 2 * B * T * n_heads_out / max(1, len(meg_channels)
                                                                   + len(fmri_sources))
    memory = {
        "weights, gradients, AdamW moments": _F32 * (4 * learn + buffers),
        "activations of one batch": _F32 * (L * per_layer + heads + B * T * cfg.d_stim),
        "training data": int(data_bytes),
    }
    return {"total": int(sum(memory.values())), **memory}


def check_fit_resources(encoder_config, train_config, **kwargs):
    """Refuse a training run whose model and batch do not fit in memory.

    Parameters
    ----------
    encoder_config, train_config
        As :func:`estimate_fit`.
    **kwargs
        More :func:`estimate_fit` arguments.

    Raises
    ------
    neurofuse._resources.ResourceError
        Naming the sizes (d_model, n_layers, batch_size, piece_seconds) to reduce.
    """
    memory = estimate_fit(encoder_config, train_config, **kwargs)
    cfg, t = encoder_config, train_config
    learn, _ = _n_params(cfg, kwargs.get("meg_channels", []), kwargs.get("fmri_sources", []))
    what = (f"Training a joint model of {learn:,} weights (d_model "
            f"{cfg.d_model}, n_layers {cfg.n_layers}, d_ff {cfg.d_ff}, window {cfg.window}) "
            f"on batches of {t.batch_size} pieces of {t.piece_seconds:g} s")
    check_memory(memory["total"], what=what,
                 parts={k: v for k, v in memory.items() if k != "total"},
                 reduce="encoder d_model / n_layers / d_ff / window, or train batch_size / "
                        "piece_seconds")
    return memory



def _dataset_sizes(dataset, train_config, encoder_kwargs):
    from .encoder import EncoderConfig

    summary = dataset.summary()["subjects"]
    meg = [s for s in dataset.subjects if "meg" in dataset.modalities(s)]
    fmri = [s for s in dataset.subjects if "fmri" in dataset.modalities(s)]
    # EEG heads cost what MEG heads of as many channels cost (a dense gain each)
    eeg = [summary[s]["shapes"]["eeg"][0] for s in dataset.subjects
           if "eeg" in dataset.modalities(s)]
    template = dataset.metadata.get("template", {}).get("vertices")
    if template:
        d_src = sum(len(v) for v in template)
    else:
        d_src = dataset.morph(dataset.subjects[0]).shape[1]
    kwargs = {"block_size": train_config.block_size, **dict(encoder_kwargs or {}),
              "d_stim": dataset.n_features, "d_src": d_src}
    config = EncoderConfig.from_dict(kwargs)
    longest = max((dataset.n_times(s) for s in dataset.splits.get("train", [])), default=None)
    return config, dict(sfreq=dataset.sfreq, longest_story=longest,
                        meg_channels=[summary[s]["n_channels"] for s in meg] + eeg,
                        fmri_sources=[summary[s]["n_sources"] for s in fmri])


def estimate_fit_dataset(dataset, train_config, encoder_kwargs=None):
    """:func:`estimate_fit` for training on ``dataset`` (sizes read from its manifest).

    Parameters
    ----------
    dataset : Dataset
    train_config : TrainConfig
    encoder_kwargs : dict | None
        Encoder sizes (``d_stim`` and ``d_src`` come from the dataset).

    Returns
    -------
    memory : dict
        As :func:`estimate_fit`.
    """
    config, sizes = _dataset_sizes(dataset, train_config, encoder_kwargs)
    return estimate_fit(config, train_config, **sizes)


def check_fit_dataset(dataset, train_config, encoder_kwargs=None):
    """:func:`check_fit_resources` for training on ``dataset``, before anything is built.

    Parameters
    ----------
    dataset : Dataset
    train_config : TrainConfig
    encoder_kwargs : dict | None

    Returns
    -------
    memory : dict
    """
    config, sizes = _dataset_sizes(dataset, train_config, encoder_kwargs)
    return check_fit_resources(config, train_config, **sizes)

"""Outputs a neuroscientist can use: source estimates, predicted MEG and BOLD for any stimulus.

* :func:`predict_sources`: fsaverage source activity for a stimulus of any length, computed in
  chunks with exactly enough left context (``n_layers * (window - 1)`` samples) that the result
  equals one pass over the whole stimulus.
* :func:`to_source_estimate`: as an ``mne.SourceEstimate`` on fsaverage, or morphed to a subject.
* :func:`predict_meg`: a subject's predicted MEG as ``mne.io.RawArray`` with its ``Info``.
* :func:`predict_bold`: a subject's predicted source-level BOLD, shape (n_sources, n_trs).

Units: the correlation loss is blind to scale, so source estimates are in model units
(proportional to A·m, not calibrated); predicted MEG is in those units times the gain.
"""

from __future__ import annotations

import numpy as np
import torch

from ..._checks import _check_finite, _check_ndim, _check_option, _check_sfreq


def _check_features(model, features, sfreq):
    features = _check_ndim("features", features, 2, "(n_times, n_features)")
    if sfreq is not None:
        _check_sfreq("sfreq", sfreq, model.sfreq, how_to_fix=(
            f"The model was trained at {model.sfreq:g} Hz: resample the features to that rate."))
    d = model.encoder.config.d_stim
    if features.shape[1] != d:
        raise ValueError(f"Features of the wrong dimension: the model expects {d} features per "
                         f"sample (its d_stim), got {features.shape[1]}.")
    return _check_finite("features", features)


@torch.no_grad()
def iter_sources(model, features, *, sfreq=None, chunk_seconds=60.0, device=None):
    """fsaverage source activity for a stimulus, block by block.

    Each block is computed from the stimulus with the encoder's receptive field of left
    context, so the blocks equal one pass over the whole stimulus.

    Parameters
    ----------
    model : JointModel
    features : array, shape (n_times, d_stim)
        Stimulus features at the model's sampling rate.
    sfreq : float | None
        Sampling rate of ``features``; checked against the model's when given.
    chunk_seconds : float
        Length of each block (memory control); the values do not depend on it.
    device : str | torch.device | None
        Where to compute; defaults to the model's device.

    Yields
    ------
    start, stop : int
        Sample range of the block; blocks tile ``[0, n_times)`` in order.
    block : array, shape (n_sources, stop - start), float32
    """
    features = _check_features(model, features, sfreq)
    device = next(model.parameters()).device if device is None else torch.device(device)
    was_training = model.training
    model.eval()
    cfg = model.encoder.config
    context = cfg.n_layers * (cfg.window - 1)  # receptive field of the stacked windows
    chunk = max(1, round(chunk_seconds * model.sfreq))
    n_times = len(features)
    try:
        for a in range(0, n_times, chunk):
            b = min(a + chunk, n_times)
            a0 = max(0, a - context)
            x = torch.as_tensor(np.asarray(features[a0:b], np.float32), device=device)[None]
            s = model.encoder(x)[0, a - a0:]  # (b - a, d_src)
            yield a, b, s.T.float().cpu().numpy()
    finally:
        model.train(was_training)


def predict_sources(model, features, *, sfreq=None, chunk_seconds=60.0, device=None):
    """fsaverage source activity for a stimulus.

    Parameters
    ----------
    model : JointModel
    features : array, shape (n_times, d_stim)
        Stimulus features at the model's sampling rate.
    sfreq : float | None
        Sampling rate of ``features``; checked against the model's when given.
    chunk_seconds : float
        Output computed this many seconds at a time (memory control); the result does not
        depend on it.
    device : str | torch.device | None
        Where to compute; defaults to the model's device.

    Returns
    -------
    sources : array, shape (n_sources, n_times), float32
    """
    out = np.empty((model.encoder.config.d_src, len(features)), np.float32)
    for a, b, block in iter_sources(model, features, sfreq=sfreq, chunk_seconds=chunk_seconds,
                                    device=device):
        out[:, a:b] = block
    return out


def _subject_morph(model, subject):
    if subject in model.meg_heads and model.meg_heads[subject].morph is not None:
        return model.meg_heads[subject].morph
    if subject in model.fmri_heads:
        return model.fmri_heads[subject].morph
    raise ValueError(f"Unknown subject {subject!r}: the model has subjects "
                     f"{sorted(set(model.meg_heads) | set(model.fmri_heads))}.")


def _csr_to_scipy(t):
    import scipy.sparse

    return scipy.sparse.csr_array((t.values().cpu().numpy(), t.col_indices().cpu().numpy(),
                                   t.crow_indices().cpu().numpy()), shape=tuple(t.shape))


def to_source_estimate(model, sources, *, subject=None, tmin=0.0):
    """Wrap source activity as an ``mne.SourceEstimate``.

    Parameters
    ----------
    model : JointModel
    sources : array, shape (n_sources_fsaverage, n_times)
        From :func:`predict_sources`.
    subject : str | None
        ``None``: on fsaverage (vertex numbers of the embedded fsaverage5 oct6 source space,
        valid on a full fsaverage too). A subject name: morphed to that subject with its
        fsaverage -> subject morph.
    tmin : float
        Time of the first sample (s).

    Returns
    -------
    stc : mne.SourceEstimate
    """
    import mne

    if subject is None:
        if model.vertices is None:
            raise ValueError("This model does not record its fsaverage vertex numbers.")
        vertices = [np.asarray(v) for v in model.vertices]
        data, name = sources, "fsaverage"
    else:
        morph = _csr_to_scipy(_subject_morph(model, subject))
        data = morph @ np.asarray(sources)
        vertices = [np.asarray(v) for v in model.subject_vertices[subject]]
        name = subject
    return mne.SourceEstimate(data, vertices, tmin=tmin, tstep=1.0 / model.sfreq, subject=name)


@torch.no_grad()
def predict_meg(model, subject, sources):
    """A subject's predicted MEG as ``mne.io.RawArray``.

    Parameters
    ----------
    model : JointModel
    subject : str
        An MEG subject of the model.
    sources : array, shape (n_sources_fsaverage, n_times)

    Returns
    -------
    raw : mne.io.RawArray
        Channels and geometry of the subject's ``Info``; data = ``L M s`` in model units
        (the head's normalisation undone).
    """
    import mne

    _check_option("subject", subject, list(model.meg_heads))
    head = model.meg_heads[subject]
    gain = head.gain.double().cpu().numpy() / head.scale
    data = gain @ np.asarray(sources, np.float64)
    info = model.infos.get(subject)
    if info is None:
        info = mne.create_info(head.n_channels, model.sfreq, "misc")
    return mne.io.RawArray(data, info, verbose="error")


@torch.no_grad()
def predict_bold(model, subject, sources, *, rows_per_chunk=1024):
    """A subject's predicted source-level BOLD.

    Parameters
    ----------
    model : JointModel
    subject : str
        An fMRI subject of the model.
    sources : array, shape (n_sources_fsaverage, n_times)
        ``n_times`` must be a whole number of TRs (a trailing partial TR is dropped).

    Returns
    -------
    bold : array, shape (n_sources_subject, n_trs), float32
    """
    _check_option("subject", subject, list(model.fmri_heads))
    head = model.fmri_heads[subject]
    n = head.samples_per_tr
    n_times = (np.shape(sources)[1] // n) * n
    morph = _csr_to_scipy(head.morph)
    dtype = head.hrf.log_params.dtype
    out = np.empty((morph.shape[0], n_times // n), np.float32)
    for r0 in range(0, morph.shape[0], rows_per_chunk):
        x = morph[r0:r0 + rows_per_chunk] @ np.asarray(sources[:, :n_times], np.float64)
        # The head's own envelope -> TR mean -> HRF, on these rows over the whole stimulus.
        bold = head.bold(torch.as_tensor(x, dtype=dtype)[:, None])  # (1, n_trs, rows)
        out[r0:r0 + len(x)] = bold[0].T.cpu().numpy()
    return out


def write_predictions(model, stimulus, out, *, sfreq=None, subjects=None, overwrite=False):
    """Predict for a stimulus and write MNE-readable files (atomically, into ``out``).

    Writes ``sources-lh.stc``/``sources-rh.stc`` (fsaverage), ``<subject>_pred-raw.fif`` for
    MEG subjects and ``<subject>_bold.npy`` (n_sources, n_trs) for fMRI subjects.

    Parameters
    ----------
    model : JointModel | path-like
    stimulus : array | path-like
        Features (n_times, d_stim) or a ``.npy`` file holding them.
    out : path-like
    sfreq : float | None
        Sampling rate of the features (checked against the model's).
    subjects : list of str | None
        Default: every subject of the model.
    overwrite : bool

    Returns
    -------
    written : list of Path
    """
    from pathlib import Path

    from ..._io import atomic_dir
    from .model import JointModel

    if not isinstance(model, JointModel):
        model = JointModel.load(model)
    if not isinstance(stimulus, np.ndarray):
        fname = Path(stimulus).expanduser()
        if not fname.is_file():
            raise FileNotFoundError(f"Stimulus file '{fname}' not found (expected a .npy array "
                                    "of shape (n_times, d_stim)).")
        stimulus = np.load(fname, allow_pickle=False)
    everyone = list(model.meg_heads) + [s for s in model.fmri_heads if s not in model.meg_heads]
    subjects = everyone if not subjects else list(subjects)
    for sub in subjects:
        _check_option("subjects", sub, everyone)
    sources = predict_sources(model, stimulus, sfreq=sfreq)
    out = Path(out).expanduser()
    names = []
    with atomic_dir(out, overwrite=overwrite, what="predictions") as tmp:
        to_source_estimate(model, sources).save(tmp / "sources", ftype="stc", verbose="error")
        names += ["sources-lh.stc", "sources-rh.stc"]
        for sub in subjects:
            if sub in model.meg_heads:
                predict_meg(model, sub, sources).save(tmp / f"{sub}_pred-raw.fif", verbose="error")
                names.append(f"{sub}_pred-raw.fif")
            if sub in model.fmri_heads:
                np.save(tmp / f"{sub}_bold.npy", predict_bold(model, sub, sources))
                names.append(f"{sub}_bold.npy")
    return [out / n for n in names]

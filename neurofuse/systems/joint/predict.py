"""Outputs a neuroscientist can use: source estimates, predicted MEG and BOLD for any stimulus.

* :func:`predict_sources`: fsaverage source activity for a stimulus of any length, computed in
  chunks with exactly enough left context (``n_layers * (window - 1)`` samples) that the result
  equals one pass over the whole stimulus.
* :func:`to_source_estimate`: as an ``mne.SourceEstimate`` on fsaverage, or morphed to a subject.
* :func:`predict_meg`: a subject's predicted MEG as ``mne.io.RawArray`` with its ``Info``.
* :func:`predict_eeg`: a subject's predicted average-referenced EEG, likewise.
* :func:`predict_bold`: a subject's predicted source-level BOLD, shape (n_sources, n_trs).
* :func:`write_predictions`: all of them written as MNE-readable files, after checking that
  the stimulus is long enough, that the job fits in memory and on disk
  (:mod:`neurofuse.systems.joint.resources`), and that the model's outputs are finite.

Units: the correlation loss is blind to scale, so source estimates are in model units
(proportional to A·m, not calibrated); predicted MEG is in those units times the gain.
"""

from __future__ import annotations

import numpy as np
import torch

from ..._checks import _check_finite, _check_ndim, _check_option, _check_sfreq
from ..._logging import logger
from ...training.device import select_device

#: Bytes of the transient arrays of :func:`predict_bold` per subject source and sample (the
#: morphed rows in float64, their float32 tensor, the envelope's FFTs); sets its row chunks.
BOLD_BYTES_PER_ELEMENT = 48
#: Target size of those transients (bytes): long stimuli get fewer rows per chunk.
BOLD_CHUNK_BYTES = 2 ** 28
#: Target size (bytes) of the float64 source columns :func:`predict_meg` copies at once.
MEG_CHUNK_BYTES = 2 ** 26


def meg_chunk_samples(n_sources: int) -> int:
    """Samples of the MEG product ``G s`` computed at once (``MEG_CHUNK_BYTES`` of float64)."""
    return max(1, MEG_CHUNK_BYTES // (8 * n_sources))


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
    device = next(model.parameters()).device if device is None else select_device(device)
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
            # a copy: the features may be a read-only memory map
            x = torch.as_tensor(np.array(features[a0:b], np.float32), device=device)[None]
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


def model_subjects(model) -> list:
    """Every subject of ``model``, once each: MEG subjects, then fMRI, then EEG.

    Parameters
    ----------
    model : JointModel

    Returns
    -------
    subjects : list of str
    """
    heads = [model.meg_heads, model.fmri_heads, getattr(model, "eeg_heads", {})]
    return list(dict.fromkeys(s for h in heads for s in h))


def _subject_morph(model, subject):
    if subject in model.meg_heads and model.meg_heads[subject].morph is not None:
        return model.meg_heads[subject].morph
    if subject in model.fmri_heads:
        return model.fmri_heads[subject].morph
    eeg_heads = getattr(model, "eeg_heads", {})
    if subject in eeg_heads and eeg_heads[subject].morph is not None:
        return eeg_heads[subject].morph
    raise ValueError(f"Unknown subject {subject!r}: the model has subjects "
                     f"{sorted(model_subjects(model))}.")


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
    _check_option("subject", subject, list(model.meg_heads))
    return _predict_sensors(model, model.meg_heads[subject], model.infos.get(subject), sources)


@torch.no_grad()
def predict_eeg(model, subject, sources):
    """A subject's predicted EEG (average reference) as ``mne.io.RawArray``.

    Parameters
    ----------
    model : JointModel
    subject : str
        An EEG subject of the model.
    sources : array, shape (n_sources_fsaverage, n_times)

    Returns
    -------
    raw : mne.io.RawArray
        Electrodes of the subject's EEG ``Info`` (with its average-reference projector);
        data = ``P L M s`` in model units (the head's normalisation undone), zero mean over
        electrodes at every sample.
    """
    eeg_heads = getattr(model, "eeg_heads", {})
    _check_option("subject", subject, list(eeg_heads))
    return _predict_sensors(model, eeg_heads[subject], model.eeg_infos.get(subject), sources,
                            kind="eeg")


def _predict_sensors(model, head, info, sources, *, kind="misc"):
    """``gain / scale @ sources`` in float64 column blocks, as a RawArray with ``info``."""
    import mne

    gain = head.gain.double().cpu().numpy() / head.scale
    n_times = np.shape(sources)[1]
    data = np.empty((gain.shape[0], n_times))
    step = meg_chunk_samples(gain.shape[1])
    for a in range(0, n_times, step):  # float64 copies of a few columns at a time
        b = min(a + step, n_times)
        data[:, a:b] = gain @ np.asarray(sources[:, a:b], np.float64)
    if info is None:
        info = mne.create_info(head.n_channels, model.sfreq, kind)
    return mne.io.RawArray(data, info, verbose="error")


def bold_rows_per_chunk(n_times: int) -> int:
    """Subject sources :func:`predict_bold` morphs at once for ``n_times`` samples.

    At most 1024, fewer for long stimuli so that a chunk's transients stay near
    ``BOLD_CHUNK_BYTES`` (256 MiB).
    """
    return int(max(1, min(1024, BOLD_CHUNK_BYTES // (BOLD_BYTES_PER_ELEMENT * max(n_times, 1)))))


@torch.no_grad()
def predict_bold(model, subject, sources, *, rows_per_chunk=None):
    """A subject's predicted source-level BOLD.

    Parameters
    ----------
    model : JointModel
    subject : str
        An fMRI subject of the model.
    sources : array, shape (n_sources_fsaverage, n_times)
        ``n_times`` must be at least one TR (a trailing partial TR is dropped).
    rows_per_chunk : int | None
        Subject sources computed at once (memory control; the values do not depend on it).
        None: :func:`bold_rows_per_chunk`.

    Returns
    -------
    bold : array, shape (n_sources_subject, n_trs), float32
    """
    _check_option("subject", subject, list(model.fmri_heads))
    head = model.fmri_heads[subject]
    n = head.samples_per_tr
    n_times = (np.shape(sources)[1] // n) * n
    if n_times == 0:
        raise ValueError(f"'sources' has {np.shape(sources)[1]} samples, less than one TR "
                         f"({n} samples = {head.tr:g} s at {model.sfreq:g} Hz): BOLD needs at "
                         "least one whole TR. Predict for a longer stimulus.")
    if rows_per_chunk is None:
        rows_per_chunk = bold_rows_per_chunk(n_times)
    morph = _csr_to_scipy(head.morph)
    dtype = head.hrf.log_params.dtype
    out = np.empty((morph.shape[0], n_times // n), np.float32)
    for r0 in range(0, morph.shape[0], rows_per_chunk):
        rows = morph[r0:r0 + rows_per_chunk]
        cols = np.unique(rows.indices)  # the fsaverage sources these rows read: copy only them
        x = rows[:, cols] @ np.asarray(sources[cols, :n_times], np.float64)
        # The head's own envelope -> TR mean -> HRF, on these rows over the whole stimulus.
        bold = head.bold(torch.as_tensor(x, dtype=dtype)[:, None])  # (1, n_trs, rows)
        out[r0:r0 + len(x)] = bold[0].T.cpu().numpy()
    return out


def write_stc(fname, sources, vertices, *, tmin=0.0, tstep, step=4096):
    """Write one hemisphere's ``.stc`` file, time block by time block.

    The bytes of MNE's own writer (``SourceEstimate.save(ftype="stc")``), without its two
    full-size copies of the data: a few thousand samples are converted at a time.

    Parameters
    ----------
    fname : path-like
        The file (``...-lh.stc`` or ``...-rh.stc``).
    sources : array, shape (n_vertices, n_times)
        This hemisphere's rows.
    vertices : array of int, shape (n_vertices,)
    tmin, tstep : float
        Time of the first sample and between samples, s.
    step : int
        Samples converted at once.
    """
    with open(fname, "wb") as fid:
        fid.write(np.array(1000 * tmin, ">f4").tobytes())
        fid.write(np.array(1000 * tstep, ">f4").tobytes())
        fid.write(np.array(len(vertices), ">u4").tobytes())
        fid.write(np.asarray(vertices, ">u4").tobytes())
        fid.write(np.array(np.shape(sources)[1], ">u4").tobytes())
        for a in range(0, np.shape(sources)[1], step):  # time-major: (n_times, n_vertices)
            fid.write(np.asarray(sources[:, a:a + step].T, ">f4").tobytes())


def _check_outputs_finite(what, data, model_name, *, step=4096):
    """Refuse non-finite model outputs (column blocks: no full-size boolean copy)."""
    n_times = np.shape(data)[1]
    for a in range(0, n_times, step):
        if not np.isfinite(data[:, a:a + step]).all():
            block = np.asarray(data[:, a:a + step])
            bad = int((~np.isfinite(block)).sum())
            raise ValueError(
                f"The model {model_name} predicts NaN or infinite {what} for this stimulus "
                f"({bad} non-finite values in samples {a} to {a + block.shape[1] - 1}, and "
                "maybe more), although the stimulus is finite: the model is likely damaged or "
                "its training diverged. Nothing was written. Retrain it (check the training "
                "data for NaN/Inf values) or use another model.")


def _check_stimulus_length(model, n_times, fmri_subjects):
    cfg = model.encoder.config
    field = cfg.n_layers * (cfg.window - 1) + 1  # samples one output can depend on
    if n_times < field:  # a warning: the first samples of any stimulus lack context too
        logger.warning(
            "The stimulus has %d samples (%g s at %g Hz), shorter than the model's receptive "
            "field of %d samples (%g s = n_layers %d x (window %d - 1) + 1): every prediction "
            "rests on less context than the model was scored with. Pass the stimulus that "
            "preceded this part too (then keep the predictions of the last samples).",
            n_times, n_times / model.sfreq, model.sfreq, field, field / model.sfreq,
            cfg.n_layers, cfg.window)
    spt = {model.fmri_heads[s].samples_per_tr for s in fmri_subjects}
    if spt and n_times < max(spt):
        raise ValueError(
            f"The stimulus has {n_times} samples, less than one TR ({max(spt)} samples): "
            f"BOLD cannot be predicted for fMRI subjects {sorted(fmri_subjects)}. Pass a "
            "longer stimulus, or only MEG subjects (--subjects).")


def write_predictions(model, stimulus, out, *, sfreq=None, subjects=None, overwrite=False):
    """Predict for a stimulus and write MNE-readable files (atomically, into ``out``).

    Writes ``sources-lh.stc``/``sources-rh.stc`` (fsaverage), ``<subject>_pred-raw.fif`` for
    MEG subjects, ``<subject>_eeg_pred-raw.fif`` for EEG subjects and ``<subject>_bold.npy``
    (n_sources, n_trs) for fMRI subjects.

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

    from ..._io import atomic_dir, load_npy
    from .model import JointModel
    from .resources import check_predict_resources

    model_name = "given"
    if not isinstance(model, JointModel):
        model_name = f"in '{model}'"
        model = JointModel.load(model)
    if not isinstance(stimulus, np.ndarray):
        fname = Path(stimulus).expanduser()
        if not fname.is_file():
            raise FileNotFoundError(f"Stimulus file '{fname}' not found (expected a .npy array "
                                    "of shape (n_times, d_stim)).")
        stimulus = load_npy(fname, what="stimulus file",  # shape first, data later
                            expected="features of shape (n_times, d_stim)")
    everyone = model_subjects(model)
    subjects = everyone if not subjects else list(subjects)
    for sub in subjects:
        _check_option("subjects", sub, everyone)
    stimulus = _check_ndim("stimulus", stimulus, 2, "(n_times, d_stim)")
    d = model.encoder.config.d_stim
    if stimulus.shape[1] != d:
        raise ValueError(f"Features of the wrong dimension: the model expects {d} features per "
                         f"sample (its d_stim), got {stimulus.shape[1]}.")
    if sfreq is not None:
        _check_features(model, stimulus[:1], sfreq)
    _check_stimulus_length(model, len(stimulus), [s for s in subjects if s in model.fmri_heads])
    out = Path(out).expanduser()
    check_predict_resources(model, len(stimulus), subjects, out)
    sources = predict_sources(model, stimulus, sfreq=sfreq)
    _check_outputs_finite("sources", sources, model_name)
    names = []
    with atomic_dir(out, overwrite=overwrite, what="predictions") as tmp:  # all or nothing
        if model.vertices is None:
            raise ValueError("This model does not record its fsaverage vertex numbers.")
        n_lh = len(model.vertices[0])
        for hemi, rows, vert in (("lh", slice(0, n_lh), model.vertices[0]),
                                 ("rh", slice(n_lh, None), model.vertices[1])):
            write_stc(tmp / f"sources-{hemi}.stc", sources[rows], vert, tstep=1 / model.sfreq)
        names += ["sources-lh.stc", "sources-rh.stc"]
        for sub in subjects:
            if sub in model.meg_heads:
                raw = predict_meg(model, sub, sources)
                _check_outputs_finite(f"MEG of {sub}", raw._data, model_name)
                raw.save(tmp / f"{sub}_pred-raw.fif", verbose="error")
                names.append(f"{sub}_pred-raw.fif")
                del raw
            if sub in model.eeg_heads:
                raw = predict_eeg(model, sub, sources)
                _check_outputs_finite(f"EEG of {sub}", raw._data, model_name)
                raw.save(tmp / f"{sub}_eeg_pred-raw.fif", verbose="error")
                names.append(f"{sub}_eeg_pred-raw.fif")
                del raw
            if sub in model.fmri_heads:
                bold = predict_bold(model, sub, sources)
                _check_outputs_finite(f"BOLD of {sub}", bold, model_name)
                np.save(tmp / f"{sub}_bold.npy", bold)
                names.append(f"{sub}_bold.npy")
                del bold
    return [out / n for n in names]

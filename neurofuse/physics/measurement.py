"""How each modality measures cortical sources, and measurement noise at a CNR.

Every simulator (naturalistic MEG + fMRI studies, ECoG, and the EEG-MEG and EEG-fMRI worlds
to come) measures the same ground-truth sources ``s`` (fsaverage, A·m) through these
functions, so the physics is written once:

* sensors (MEG, EEG, ECoG): ``y = G s`` with the gain ``G = L M`` (:func:`make_gain`) of a
  lead field or electrode weighting ``L`` (n_channels, n_sources_subject) and an optional
  morph ``M`` (n_sources_subject, n_sources_fsaverage, scipy sparse), applied with
  :func:`apply_gain`;
* BOLD (fMRI on the cortical source space): ``b = TR-mean(HRF * |M s + j H(M s)|)``
  (:func:`measure_bold`, the physics of :func:`neurofuse.physics.hrf.make_bold`);
* noise (:func:`add_noise`): white Gaussian noise with ``sigma_noise = sigma_signal / cnr``
  per channel or source (paper footnote 3: CNR = sigma_signal / sigma_noise); ``cnr=inf``
  adds none. Average-referenced EEG: :func:`referenced_noise_sigma` gives the s.d. to draw
  the noise with *before* referencing so that the referenced noise has the requested CNR on
  every electrode.
"""

from __future__ import annotations

import math

import numpy as np

from .._checks import _check_int, _check_positive
from .._logging import logger
from .hrf import make_bold

__all__ = ["add_noise", "apply_gain", "make_gain", "measure_bold", "referenced_noise_sigma"]


def _is_sparse(a) -> bool:
    import scipy.sparse

    return scipy.sparse.issparse(a)


def make_gain(leadfield, morph=None, *, dtype=None):
    """The gain ``G = L M`` from fsaverage sources to a subject's sensors.

    Parameters
    ----------
    leadfield : array | scipy.sparse array, shape (n_channels, n_sources_subject)
        Lead field of the subject's sources (MEG, EEG), or a sparse electrode weighting
        (ECoG: each electrode a weighted mean of the sources around it).
    morph : scipy.sparse array, shape (n_sources_subject, n_sources) | None
        Morph from the source space ``s`` lives on (fsaverage) to the subject's; ``None``:
        ``s`` is already on the subject's sources (``G = L``).
    dtype : numpy dtype | None
        Cast the gain to this dtype (``None``: as computed, float64 for float64 inputs).

    Returns
    -------
    gain : array | scipy.sparse.csr_array, shape (n_channels, n_sources)
        Dense for a dense lead field (computed as ``(M.T @ L.T).T``, one sparse-dense
        product), CSR for a sparse one.
    """
    import scipy.sparse

    if leadfield.ndim != 2:
        raise ValueError(f"'leadfield' must have shape (n_channels, n_sources_subject), got "
                         f"shape {leadfield.shape}.")
    if morph is not None and (morph.ndim != 2 or morph.shape[0] != leadfield.shape[1]):
        raise ValueError(
            f"'morph' must have shape (n_sources_subject, n_sources) with n_sources_subject = "
            f"{leadfield.shape[1]} (the lead field's columns), got shape {morph.shape}; pass "
            "the morph to the lead field's source space.")
    if _is_sparse(leadfield):
        gain = scipy.sparse.csr_array(leadfield if morph is None else leadfield @ morph)
    elif morph is None:
        gain = np.asarray(leadfield)
    else:
        gain = np.asarray((scipy.sparse.csr_array(morph).T @ np.asarray(leadfield).T).T)
    return gain if dtype is None else gain.astype(dtype)


def apply_gain(gain, sources):
    """Sensor signals ``y = G s`` (noiseless).

    Parameters
    ----------
    gain : array | scipy.sparse array, shape (n_channels, n_sources)
        From :func:`make_gain`.
    sources : array, shape (n_sources, n_times)
        Source activity (any block of time samples).

    Returns
    -------
    data : array, shape (n_channels, n_times)
        In the units of the lead field times those of ``sources`` (e.g. T for A·m).
    """
    if np.ndim(sources) != 2 or sources.shape[0] != gain.shape[1]:
        raise ValueError(f"'sources' must have shape (n_sources, n_times) with n_sources = "
                         f"{gain.shape[1]} (the gain's columns), got shape {np.shape(sources)}.")
    return gain @ sources


def measure_bold(sources, sfreq, tr, *, morph=None, hrf_kwargs=None, hrf_labels=None,
                 rows_per_chunk=1024):
    """Source-level BOLD of one subject: ``TR-mean(HRF * envelope(M s))``.

    The morph is applied ``rows_per_chunk`` subject sources at a time, so only one chunk of
    morphed sources is held; see :func:`neurofuse.physics.hrf.make_bold` for the envelope,
    the HRF convolution at ``sfreq`` and the TR average.

    Parameters
    ----------
    sources : array, shape (n_sources, n_times)
        Source activity at ``sfreq`` (may be memory-mapped).
    sfreq : float
        Sampling rate of ``sources``, Hz.
    tr : float
        Repetition time, s (``tr * sfreq`` whole).
    morph : scipy.sparse array, shape (n_sources_subject, n_sources) | None
        Morph to the subject's sources; ``None``: BOLD of ``sources`` themselves. Cast to
        float32 when ``sources`` is float32, so a chunk is never upcast.
    hrf_kwargs : dict | None
        Parameters of :func:`~neurofuse.physics.hrf.spm_hrf`; with ``hrf_labels``, a list
        of them (one HRF per label).
    hrf_labels : array of int, shape (n_sources_subject,) | None
        HRF of each subject source (index into ``hrf_kwargs``); None: one HRF for all.
    rows_per_chunk : int
        Subject sources morphed at once.

    Returns
    -------
    bold : array, shape (n_sources_subject, n_trs)
        ``n_trs = n_times // (tr * sfreq)``; float32 for float32 sources.
    """
    rows_per_chunk = _check_int("rows_per_chunk", rows_per_chunk, 1)
    if morph is None:
        return make_bold(sources, sfreq, tr, hrf_kwargs=hrf_kwargs, hrf_labels=hrf_labels)
    if np.ndim(sources) != 2 or morph.shape[1] != sources.shape[0]:
        raise ValueError(f"'sources' must have shape (n_sources, n_times) with n_sources = "
                         f"{morph.shape[1]} (the morph's columns), got shape "
                         f"{np.shape(sources)}.")
    # float32 like the sources: a float64 morph would upcast (copy) the whole story per chunk.
    morph = morph.astype(np.promote_types(np.float32, sources.dtype))
    parts = []
    for r0 in range(0, morph.shape[0], rows_per_chunk):
        block = morph[r0:r0 + rows_per_chunk] @ sources  # (rows, n_times)
        labels = None if hrf_labels is None else hrf_labels[r0:r0 + rows_per_chunk]
        parts.append(make_bold(block, sfreq, tr, hrf_kwargs=hrf_kwargs, hrf_labels=labels))
    return np.concatenate(parts)


def add_noise(rng, signal, cnr, *, sigma_signal=None, n_repeats=None, axis=-1,
              noise_dtype=np.float64):
    """Noisy measurement(s) of ``signal`` at a contrast-to-noise ratio.

    ``signal + sigma_noise * z`` with ``z`` standard normal (independent per repeat) and
    ``sigma_noise = sigma_signal / cnr`` (paper footnote 3), where ``sigma_signal`` is by
    default the s.d. of each row of ``signal`` over ``axis`` (so every channel or source
    gets the requested CNR), or a given reference (e.g. one scale for all electrodes).
    ``cnr = inf`` returns the signal unchanged and draws nothing from ``rng``.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of the noise. Draws: one ``standard_normal(signal.shape, dtype=noise_dtype)``
        per repeat, in repeat order.
    signal : array, shape (n_rows, n_times)
        The noiseless measurement (any float dtype).
    cnr : float
        sigma_signal / sigma_noise, > 0; ``inf`` for no noise.
    sigma_signal : float | array | None
        Reference signal s.d., broadcastable to ``signal`` (e.g. shape (n_rows, 1));
        ``None``: ``signal.std(axis, keepdims=True)``.
    n_repeats : int | None
        Number of independent noisy copies (repeated presentations); ``None``: one, without
        the leading axis.
    axis : int
        Time axis of ``signal`` (for the default ``sigma_signal``).
    noise_dtype : numpy dtype
        Precision of the draws and of ``sigma_noise``.

    Returns
    -------
    data : array, shape (n_repeats, n_rows, n_times) or (n_rows, n_times), float32
    """
    cnr = _check_positive("cnr", cnr, allow_inf=True)
    single = n_repeats is None
    n_repeats = 1 if single else _check_int("n_repeats", n_repeats, 1)
    signal = np.asarray(signal)
    if math.isinf(cnr):
        out = np.repeat(signal[None].astype(np.float32), n_repeats, axis=0)
        return out[0] if single else out
    if sigma_signal is None:
        sigma = signal.std(axis=axis, keepdims=True) / cnr  # (n_rows, 1)
    else:
        sigma = np.asarray(sigma_signal) / cnr
    sigma = np.asarray(sigma).astype(noise_dtype)
    out = np.empty((n_repeats, *signal.shape), np.float32)
    for r in range(n_repeats):
        out[r] = signal + sigma * rng.standard_normal(signal.shape, dtype=noise_dtype)
    return out[0] if single else out


def referenced_noise_sigma(sigma_signal):
    """Per-electrode noise s.d. to draw *before* an average reference, for a CNR per electrode.

    Noise drawn with s.d. ``tau_i`` on each of ``n`` electrodes and then referenced to the
    average, ``e - mean(e)``, has variance ``tau_i^2 (1 - 2/n) + S / n^2`` on electrode ``i``
    with ``S = sum_j tau_j^2``. For the referenced noise to have s.d. ``v_i = sigma_i / cnr``
    (the requested CNR on *every* electrode), ``S = sum_j v_j^2 / (1 - 1/n)`` and
    ``tau_i^2 = (v_i^2 - S / n^2) / (1 - 2/n)`` — exact; with equal ``sigma_i`` it is the
    familiar uniform ``v / sqrt(1 - 1/n)``, which misses by up to ~9 % per electrode when the
    electrodes' powers differ. The CNR scales every ``v_i`` alike, so this works on the signal
    s.d.; pass the result as ``sigma_signal`` to :func:`add_noise` and reference its output.
    With fewer than three electrodes, or an electrode whose signal is too weak for any
    non-negative ``tau_i`` to reach its target, the uniform correction is returned (logged).

    Parameters
    ----------
    sigma_signal : array, shape (n_electrodes,) or (n_electrodes, 1)
        s.d. of the (average-referenced) signal per electrode.

    Returns
    -------
    sigma : array, same shape as ``sigma_signal``
        The s.d. to give :func:`add_noise` as ``sigma_signal`` for the unreferenced draws.
    """
    sigma = np.asarray(sigma_signal, np.float64)
    n = sigma.shape[0] if sigma.ndim else 0
    if n < 2 or sigma.size != n:
        raise ValueError(f"'sigma_signal' must have shape (n_electrodes,) or (n_electrodes, 1) "
                         f"with n_electrodes >= 2, got shape {sigma.shape}.")
    uniform = sigma / math.sqrt(1.0 - 1.0 / n)
    if n < 3:
        return uniform
    total = float(np.sum(sigma**2)) / (1.0 - 1.0 / n)  # S * cnr^2
    tau2 = (sigma**2 - total / n**2) / (1.0 - 2.0 / n)
    if np.any(tau2 <= 0):
        logger.warning("referenced_noise_sigma: %d of %d electrodes are too weak for the exact "
                       "per-electrode CNR; using the uniform 1/sqrt(1 - 1/n) correction.",
                       int(np.sum(tau2 <= 0)), n)
        return uniform
    return np.sqrt(tau2)

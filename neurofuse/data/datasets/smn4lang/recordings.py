"""One MEG run cut to its story window, and one BOLD run copied volume block by volume block.

MEG (:func:`read_meg_window`)
    The ``.fif`` is opened without loading it; only the story window, widened by ``pad``
    seconds on each side (within the recording), is read, ``block`` channels at a time, for
    the MEG channels (``picks``: magnetometers and gradiometers by default, bad channels
    included; the trigger, EOG, ECG and misc channels that the MEG2fMRI authors' code fed to
    the model are never inputs here). Then, per channel, in this order: the optional band-pass ``l_freq``–``h_freq``
    (:meth:`mne.io.Raw.filter`, zero-phase FIR), the resampling to ``sfreq``
    (:meth:`mne.io.Raw.resample`), and the cut of ``n_times`` samples from the window start.
    The pad keeps the filters' and the resampling's edge effects out of the window; its
    length in input samples is a whole number of output samples, so output sample ``j`` is
    input time ``start + j / sfreq`` exactly when the rates are in an integer ratio
    (1000 → 100 Hz), else to within one input sample.
    With ``preprocessing`` (a :class:`~neurofuse.preprocessing.meg.MEGPreprocessing`), the
    padded window of *all* channels goes through
    :func:`~neurofuse.preprocessing.meg.preprocess_meg` (tSSS, filters, ICA — which needs the
    EOG/ECG channels — and the resampling to its ``sfreq``) before the MEG channels are
    picked: for raw (not yet cleaned) recordings.
BOLD (:func:`copy_bold`)
    ``img.dataobj[..., k:k + n]`` (scaling applied, float32) in blocks of volumes, so a run
    of 106 × 106 × 72 × ~900 volumes never sits in memory whole.
"""

from __future__ import annotations

import math

import numpy as np

from ...._logging import logger

__all__ = ["bold_header", "copy_bold", "meg_header", "read_meg_window"]

#: Channel selections offered for the MEG inputs (the store's ``meg`` holds mag/grad only).
PICKS = ("meg", "mag", "grad")


def _pick(info, picks):
    import mne

    meg = {"meg": True, "mag": "mag", "grad": "grad"}[picks]
    idx = mne.pick_types(info, meg=meg, ref_meg=False, exclude=[])
    if not len(idx):
        raise ValueError(f"picks={picks!r} selects no channel of the recording.")
    return idx


def meg_header(path) -> dict:
    """Channel info, rate and length of a MEG run, without loading its data."""
    import mne

    raw = mne.io.read_raw_fif(path, preload=False, allow_maxshield=False, verbose="error")
    return {"info": raw.info, "sfreq": float(raw.info["sfreq"]), "n_times": int(raw.n_times),
            "duration": raw.n_times / raw.info["sfreq"]}


def read_meg_window(path, start, n_times, *, sfreq, picks="meg", l_freq=None, h_freq=None,
                    preprocessing=None, pad=5.0, line_freq=None, block=32):
    """The MEG channels of a story window of one run, at ``sfreq``.

    Parameters
    ----------
    path : path-like
        The ``.fif`` run.
    start : float
        Window start, s from the file's first sample (rounded to the nearest sample).
    n_times : int
        Samples to return at ``sfreq``.
    sfreq : float
        Output rate (Hz); with ``preprocessing``, its ``sfreq``.
    picks : ``"meg"`` | ``"mag"`` | ``"grad"``
    l_freq, h_freq : float | None
        Band-pass edges (Hz) of the plain path; ``None`` for none.
    preprocessing : MEGPreprocessing | None
        The full pipeline instead of the plain path.
    pad : float
        Seconds read on each side of the window (within the recording).
    line_freq : float | None
        Mains frequency for the pipeline's notch when the file does not give it.
    block : int
        Channels read, filtered and resampled at a time on the plain path (memory: a
        10-minute run at 1 kHz is ~80 MB per 32 channels, not 1.5 GB for 306).

    Returns
    -------
    data : array, shape (n_channels, n_times)
        float64, T (magnetometers) and T/m (gradiometers).
    info : mne.Info
        Of the returned channels, at ``sfreq``.
    """
    import mne

    raw = mne.io.read_raw_fif(path, preload=False, verbose="error")
    sf_in = float(raw.info["sfreq"])
    ratio = sf_in / sfreq
    first = int(round(start * sf_in))
    n_pad = min(math.ceil(pad * sfreq), int(first // ratio))
    a = first - int(round(n_pad * ratio))
    need = int(math.ceil((n_pad + n_times) * ratio))
    if first + int(math.ceil(n_times * ratio)) > raw.n_times + 1e-9 or a < 0:
        raise ValueError(f"'{path}': the window {start:.3f} s + {n_times / sfreq:.3f} s runs "
                         f"past the recording ({raw.n_times / sf_in:.3f} s).")
    b = min(raw.n_times, a + need + int(math.ceil(pad * sfreq) * ratio))
    if preprocessing is None:  # channel blocks: each channel is filtered and resampled alone
        idx = _pick(raw.info, picks)
        out, info = np.empty((len(idx), n_times)), None
        for i in range(0, len(idx), block):
            sub = idx[i:i + block]
            chunk = mne.io.RawArray(raw.get_data(picks=sub, start=a, stop=b),
                                    mne.pick_info(raw.info, sub), verbose="error")
            if l_freq is not None or h_freq is not None:
                chunk.filter(l_freq, h_freq, verbose="error")
            chunk.resample(sfreq, verbose="error")
            out[i:i + len(sub)] = _window(chunk, n_pad, n_times, path)
            if info is None:
                info = mne.pick_info(raw.info, idx)
                with info._unlock():
                    for key in ("sfreq", "lowpass", "highpass"):
                        info[key] = chunk.info[key]
        return out, info
    else:
        from ....preprocessing.meg import preprocess_meg

        # every channel of the padded window: tSSS and ICA need them
        chunk = raw.crop(a / sf_in, (b - 1) / sf_in, verbose="error").load_data(verbose="error")
        if chunk.info.get("line_freq") is None and line_freq is not None:
            with chunk.info._unlock():
                chunk.info["line_freq"] = float(line_freq)
        chunk, report = preprocess_meg(chunk, config=preprocessing, verbose="error")
        logger.debug("%s: %s", path, report)
        chunk.pick(_pick(chunk.info, picks))
    return _window(chunk, n_pad, n_times, path), chunk.info


def _window(chunk, n_pad, n_times, path):
    out = chunk.get_data(start=n_pad, stop=n_pad + n_times)
    if out.shape[1] != n_times:
        raise ValueError(f"'{path}': {out.shape[1]} samples in the window, expected {n_times}.")
    return out


def bold_header(path) -> dict:
    """Shape, affine and volume count of a BOLD run (header only)."""
    import nibabel as nib

    img = nib.load(path)
    if len(img.shape) != 4:
        raise ValueError(f"'{path}' is not a 4-D BOLD run: its shape is {img.shape}.")
    return {"shape": tuple(int(s) for s in img.shape[:3]), "n_volumes": int(img.shape[3]),
            "affine": np.asarray(img.affine, np.float64)}


def copy_bold(path, start, out, *, block=32):
    """Copy volumes ``start:start + out.shape[-1]`` of a BOLD run into ``out`` (float32).

    Parameters
    ----------
    path : path-like
    start : int
        First volume.
    out : array, shape (n_x, n_y, n_z, n_trs)
        Writable (a memory map of the store).
    block : int
        Volumes per read.
    """
    import nibabel as nib

    img = nib.load(path)
    n = out.shape[-1]
    for t in range(0, n, block):
        stop = min(n, t + block)
        out[..., t:stop] = np.asarray(img.dataobj[..., start + t:start + stop], np.float32)

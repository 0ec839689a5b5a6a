"""fMRI timing on arrays: TR resampling and the story window a run's volumes cover.

Functions of arrays, TRs and rates only (no dataset layout): the dataset loaders
(:mod:`neurofuse.data.datasets.lebel`) read the volumes and call these.

* :func:`resample_volumes` — volumes onto another TR grid (cubic spline through the volume
  centres);
* :func:`story_window` — the part of a story's audio that its (trimmed) fMRI covers, in
  feature frames, with the store volumes kept.
"""

from __future__ import annotations

import math

import numpy as np

from .._checks import _check_int, _check_positive

__all__ = ["resample_volumes", "story_window"]


def resample_volumes(data, *, tr, new_tr, shift=0.0, n_out=None):
    """Resample fMRI volumes onto another TR grid (cubic spline through the volume centres).

    Input volume ``j`` covers ``[j * tr, (j + 1) * tr)`` and output volume ``k`` covers
    ``[shift + k * new_tr, shift + (k + 1) * new_tr)``, both in s from the same origin; each
    output is the not-a-knot cubic spline through the input volumes (placed at their centres),
    evaluated at its centre. For slow signals the error is small: below 1e-3 of the amplitude
    for periods >= 20 s and 2.0 s volumes (see the tests); windowed-sinc (Lanczos-3)
    interpolation is ~10x worse there.

    Parameters
    ----------
    data : array, shape (..., n_in)
    tr, new_tr : float
        Input and output TR in s.
    shift : float
        Start of the output grid in s (>= 0).
    n_out : int | None
        Output volumes; default all whose interval lies within the input's.

    Returns
    -------
    out : array, shape (..., n_out), the dtype of ``data``
    """
    from scipy.interpolate import CubicSpline

    data = np.asarray(data)
    n_in = data.shape[-1]
    tr, new_tr = _check_positive("tr", tr), _check_positive("new_tr", new_tr)
    shift = _check_positive("shift", shift, allow_zero=True)
    n_max = math.floor((n_in * tr - shift) / new_tr + 1e-9)
    n_out = n_max if n_out is None else _check_int("n_out", n_out, minimum=0)
    if n_out > n_max:
        raise ValueError(f"n_out = {n_out} volumes of {new_tr:g} s (from {shift:g} s) run past "
                         f"the {n_in} input volumes of {tr:g} s.")
    if n_in < 2:
        raise ValueError(f"Resampling needs >= 2 volumes, got {n_in}.")
    t_in = (np.arange(n_in) + 0.5) * tr
    t_out = shift + (np.arange(n_out) + 0.5) * new_tr
    spline = CubicSpline(t_in, data.astype(np.float64), axis=-1, bc_type="not-a-knot")
    return spline(t_out).astype(data.dtype)


def story_window(n_rows, audio_duration, *, tr, sfreq, store_tr, resample, sound_start,
                 trim_start, trim_end, tolerance, story="story"):
    """The part of a story's audio that its fMRI covers, in feature frames.

    Returns
    -------
    window : dict
        ``start`` (first frame), ``n_times`` (frames), ``n_trs`` (store volumes), ``shift``
        (s from the first ``.hf5`` volume's start to the first store volume's start),
        ``offset_error`` (s; rounding of the start without resampling), ``dropped`` (store
        volumes dropped at the end because the audio ends within ``tolerance`` before them),
        ``start_s`` / ``stop_s`` (audio time), ``audio_duration``.
    """
    t0 = trim_start * tr - sound_start  # audio time of the first .hf5 volume
    if t0 < -1e-9:
        raise ValueError(
            f"Story {story!r}: the first .hf5 volume would start at {t0:g} s of audio time "
            f"(trim_start * tr - sound_start = {trim_start} * {tr:g} - {sound_start:g}), "
            "before the audio. Check 'trim_start', 'tr' and 'sound_start'.")
    t0 = max(t0, 0.0)
    if resample:
        start = math.ceil(t0 * sfreq - 1e-6)
        shift, offset_error = start / sfreq - t0, 0.0
        n_trs = math.floor((n_rows * tr - shift) / store_tr + 1e-9)
    else:
        start = round(t0 * sfreq)
        shift, offset_error, n_trs = 0.0, start / sfreq - t0, n_rows
    n_audio = math.floor(audio_duration * sfreq + 1e-9)  # frames the features will have

    def frames(n):
        return math.ceil(n * store_tr * sfreq - 1e-6)

    dropped = 0
    over = (start + frames(n_trs) - n_audio) / sfreq
    if over > 1e-9:
        if over > tolerance:
            raise ValueError(
                f"Stories of inconsistent length: the fMRI of story {story!r} ({n_rows} "
                f"volumes of {tr:g} s from {t0:.3f} s of audio time) ends {over:.3f} s after "
                f"its audio ({audio_duration:.3f} s), more than the tolerance of "
                f"{tolerance:g} s. Check 'tr', 'sound_start' and 'trim_start', and that the "
                ".hf5 and the .wav belong to the same story.")
        while n_trs > 0 and start + frames(n_trs) > n_audio:
            n_trs, dropped = n_trs - 1, dropped + 1
    if n_trs < 1:
        raise ValueError(f"Story {story!r} has no fMRI volume within its audio.")
    n_times = frames(n_trs)
    tail = audio_duration - (start + n_times) / sfreq
    if tail > trim_end * tr + tolerance:
        raise ValueError(
            f"Stories of inconsistent length: the fMRI of story {story!r} ({n_rows} volumes of "
            f"{tr:g} s) covers audio time {t0:.3f} to {t0 + n_rows * tr:.3f} s, but the audio "
            f"lasts {audio_duration:.3f} s: {tail:.1f} s are left after it, more than the "
            f"{trim_end} trimmed end volumes ({trim_end * tr:g} s) plus the tolerance "
            f"({tolerance:g} s). Check 'tr' and 'trim_end', and that the .hf5 and the .wav "
            "belong to the same story.")
    return {"start": start, "n_times": n_times, "n_trs": n_trs, "shift": shift,
            "offset_error": offset_error, "dropped": dropped, "start_s": start / sfreq,
            "stop_s": (start + n_times) / sfreq, "audio_duration": audio_duration}

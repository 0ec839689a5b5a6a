"""The amplitude envelope ``|x + j H(x)|`` of real signals (numpy; the torch twin is in
:mod:`neurofuse.physics.torch_ops`).

Used by the BOLD measurement (:func:`neurofuse.physics.hrf.make_bold`), the ECoG high-gamma
envelope of the Podcast loader and the audio-envelope reference of the MEG ICA.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sp_fft

from .._checks import _check_finite, _check_int

__all__ = ["envelope"]


def envelope(x, axis=-1, *, n_fft=None):
    """Amplitude envelope ``|x + j H(x)|`` (modulus of the analytic signal), via the FFT.

    Same definition as ``np.abs(scipy.signal.hilbert(x, N=n_fft, axis=axis))`` cut to the
    input's length: the spectrum's negative frequencies are zeroed, positive ones doubled,
    DC (and Nyquist for even lengths) kept; the signal (zero-padded to ``n_fft``) is treated
    as periodic over that length.

    Parameters
    ----------
    x : array, shape (..., n_times, ...)
        Real signal(s). float32 input gives float32 output, anything else float64.
    axis : int
        The time axis.
    n_fft : int | 'fast' | None
        FFT length: ``None`` is ``n_times`` (no padding); ``'fast'`` the next fast length
        >= ``n_times`` (:func:`scipy.fft.next_fast_len`, as MNE's ``apply_hilbert``); an
        int >= ``n_times`` pads to that length.

    Returns
    -------
    env : array, same shape as ``x``
        The envelope (>= 0).
    """
    x = np.asarray(x)
    if np.iscomplexobj(x):
        raise TypeError("'x' must be real-valued for envelope(), got a complex array.")
    _check_finite("x", x)
    if x.dtype != np.float32:
        x = x.astype(np.float64, copy=False)
    n = x.shape[axis]
    if n == 0:
        raise ValueError(f"'x' has no samples along axis {axis} (shape {x.shape}).")
    if n_fft is None:
        n_fft = n
    elif isinstance(n_fft, str):
        if n_fft != "fast":
            raise ValueError(f"'n_fft' must be None, 'fast' or an int >= n_times, got {n_fft!r}.")
        n_fft = sp_fft.next_fast_len(n, real=False)
    else:
        n_fft = _check_int("n_fft", n_fft, n)
    # Analytic signal x + j H(x): H(x) has spectrum -j X at positive frequencies (0 at DC
    # and, for even n_fft, at Nyquist), so it is real and needs only a half-size inverse FFT.
    spec = sp_fft.rfft(x, n=n_fft, axis=axis)  # (..., n_fft // 2 + 1, ...)
    weights = np.full(spec.shape[axis], -1j, dtype=spec.dtype)
    weights[0] = 0.0
    if n_fft % 2 == 0:
        weights[-1] = 0.0
    shape = [1] * x.ndim
    shape[axis] = -1
    spec *= weights.reshape(shape)
    hx = sp_fft.irfft(spec, n=n_fft, axis=axis)
    if n_fft != n:
        hx = np.take(hx, np.arange(n), axis=axis)
    return np.hypot(x, hx)

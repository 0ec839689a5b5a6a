"""Input validation with error messages that say what, where, expected vs got, and how to fix."""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import numpy as np


def _check_option(name: str, value, allowed: Iterable, *, extra: str = ""):
    """Raise ValueError unless ``value`` is one of ``allowed``; return ``value``."""
    allowed = list(allowed)
    if value not in allowed:
        msg = f"Invalid value for the '{name}' parameter: expected one of {allowed}, got {value!r}."
        if extra:
            msg += " " + extra
        raise ValueError(msg)
    return value


def _check_type(name: str, value, types, type_name: str | None = None):
    if not isinstance(value, types):
        type_name = type_name or (
            " or ".join(t.__name__ for t in types) if isinstance(types, tuple) else types.__name__
        )
        raise TypeError(f"'{name}' must be {type_name}, got {type(value).__name__} ({value!r:.80}).")
    return value


def _check_positive(name: str, value, *, allow_inf: bool = False, allow_zero: bool = False):
    """Check a positive real number (optionally +inf); return it as float."""
    if isinstance(value, str) and value.strip().lower() in ("inf", "infinity") and allow_inf:
        return float("inf")
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"'{name}' must be a real number, got {type(value).__name__} ({value!r}).")
    value = float(value)
    if np.isnan(value) or (np.isinf(value) and not allow_inf):
        raise ValueError(f"'{name}' must be a finite positive number, got {value}.")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"'{name}' must be {bound}, got {value}.")
    return value


def _check_finite(name: str, data, *, how_to_fix: str = "") -> np.ndarray:
    """Raise ValueError naming how many NaN/Inf values ``data`` holds and where the first is."""
    arr = np.asarray(data)
    if not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"'{name}' must be a numeric array, got dtype {arr.dtype}.")
    finite = np.isfinite(arr)
    if not finite.all():
        bad = np.argwhere(~finite)
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(bad.shape[0] - n_nan)
        msg = (
            f"'{name}' contains {n_nan} NaN and {n_inf} infinite values out of {arr.size} "
            f"(first at index {tuple(int(i) for i in bad[0])}); all values must be finite."
        )
        msg += " " + (how_to_fix or "Interpolate or drop the bad samples/channels before passing them in.")
        raise ValueError(msg)
    return arr


def _check_ndim(name: str, arr, ndim: int, shape_doc: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != ndim:
        raise ValueError(f"'{name}' must have shape {shape_doc} ({ndim}-D), got shape {arr.shape}.")
    return arr


def _check_sfreq(name: str, got: float, expected: float, *, how_to_fix: str = "", rtol: float = 1e-6):
    """Raise ValueError if a sampling rate differs from the expected one."""
    got = _check_positive(name, got)
    if abs(got - expected) > rtol * expected:
        msg = f"Wrong sampling rate for '{name}': expected {expected:g} Hz, got {got:g} Hz."
        msg += " " + (how_to_fix or f"Resample the data to {expected:g} Hz (e.g. with mne's .resample()).")
        raise ValueError(msg)
    return got


def _check_random_state(seed) -> np.random.Generator:
    """Turn None, an int, or a Generator into a numpy Generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)):
        return np.random.default_rng(seed)
    raise TypeError(f"'seed' must be None, an int or a numpy Generator, got {type(seed).__name__}.")


def _check_int(name: str, value, minimum: int | None = 1, *, how_to_fix: str = "") -> int:
    """Check an integer (not a bool) >= ``minimum`` (None: any int); return it as int.

    ``how_to_fix``, when given, is appended to the message of a too-small value.
    """
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"'{name}' must be an int, got {type(value).__name__} ({value!r:.80}).")
    if minimum is not None and value < minimum:
        msg = f"'{name}' must be an int >= {minimum}, got {value}."
        if how_to_fix:
            msg += " " + how_to_fix
        raise ValueError(msg)
    return int(value)


def _check_keys(what: str, given, valid) -> None:
    """Raise ValueError naming unknown keys of a config, with close matches and valid keys."""
    import difflib

    valid = list(valid)
    unknown = sorted(set(given) - set(valid))
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), valid, 1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(f"Unknown {what} key(s): {', '.join(hints)}. Valid keys: {valid}.")

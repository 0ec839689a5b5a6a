"""The package logger and the ``verbose`` convention borrowed from MNE-Python.

Every public function that logs takes ``verbose=None``: ``None`` keeps the package
level, a bool or a level name (``"debug"``, ``"info"``, ``"warning"``...) sets it for
the duration of the call.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging

logger = logging.getLogger("neurofuse")
if not logger.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def _to_level(verbose) -> int:
    if isinstance(verbose, bool):
        return logging.INFO if verbose else logging.WARNING
    if isinstance(verbose, int):
        return verbose
    if isinstance(verbose, str) and verbose.lower() in _LEVELS:
        return _LEVELS[verbose.lower()]
    raise ValueError(
        f"verbose must be None, a bool, an int or one of {sorted(_LEVELS)}; got {verbose!r}."
    )


def set_log_level(verbose=None) -> int:
    """Set the package log level and return the previous one.

    Parameters
    ----------
    verbose : bool | int | str | None
        ``True``/``"info"`` shows progress messages, ``False``/``"warning"`` hides them.
        ``None`` means ``"warning"``.
    """
    old = logger.level
    logger.setLevel(_to_level("warning" if verbose is None else verbose))
    return old


@contextlib.contextmanager
def use_log_level(verbose=None):
    """Context manager that temporarily sets the package log level (``None``: unchanged)."""
    if verbose is None:
        yield
        return
    old = logger.level
    logger.setLevel(_to_level(verbose))
    try:
        yield
    finally:
        logger.setLevel(old)


def verbose(func):
    """Decorate ``func`` so that its ``verbose`` keyword sets the log level for the call."""
    sig = inspect.signature(func)
    if "verbose" not in sig.parameters:
        raise TypeError(f"{func.__name__} has no 'verbose' parameter")

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        bound = sig.bind_partial(*args, **kwargs)
        with use_log_level(bound.arguments.get("verbose")):
            return func(*args, **kwargs)

    return wrapper


def progress_enabled() -> bool:
    """Whether progress bars should be drawn (only when the logger shows INFO)."""
    return logger.isEnabledFor(logging.INFO)

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


class _LogCapture:
    """What :func:`catch_logging` captured: the records and their formatted text."""

    def __init__(self):
        self.records: list[logging.LogRecord] = []

    @property
    def messages(self) -> list[str]:
        """The messages, ``%``-arguments filled in, in the order they were logged."""
        return [r.getMessage() for r in self.records]

    @property
    def text(self) -> str:
        """All messages, one ``LEVEL: message`` line each (empty if nothing was logged)."""
        return "".join(f"{r.levelname}: {r.getMessage()}\n" for r in self.records)

    def getvalue(self) -> str:
        """The same as :attr:`text` (the name MNE-Python's ``catch_logging`` uses)."""
        return self.text


class _ListHandler(logging.Handler):
    def __init__(self, records):
        super().__init__(logging.NOTSET)
        self._records = records

    def emit(self, record):
        self._records.append(record)


@contextlib.contextmanager
def catch_logging(verbose=None):
    """Capture what the package logger emits inside the block (for tests, as in MNE-Python).

    The handler is attached to the ``neurofuse`` logger itself, so records are captured
    whatever its ``propagate`` (pytest's ``caplog`` listens on the root logger, which the
    package logger does not propagate to). The package's own stderr handler still prints.

    Parameters
    ----------
    verbose : bool | int | str | None
        Log level inside the block (as for :func:`use_log_level`); ``None`` keeps the
        current package level (``'warning'`` unless changed).

    Yields
    ------
    log : object
        ``log.records`` (list of ``logging.LogRecord``), ``log.messages`` (list of str) and
        ``log.text`` (``'LEVEL: message'`` lines; also ``log.getvalue()``), filled as
        records arrive.
    """
    log = _LogCapture()
    handler = _ListHandler(log.records)
    logger.addHandler(handler)
    try:
        with use_log_level(verbose):
            yield log
    finally:
        logger.removeHandler(handler)


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

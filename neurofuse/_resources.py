"""Memory and disk checked before work: what a job will need against what the machine has.

A command that would run out of memory after minutes (or hours) of work, or fill the disk
half-way through, is refused up front with one message: what it needs, what is available,
and which setting to reduce. The estimates themselves live beside the code they describe
(e.g. :mod:`neurofuse.systems.joint.resources`); this module holds what they share:

* :func:`available_memory` -- what a new allocation can get: ``psutil`` when installed, else
  ``MemAvailable`` of ``/proc/meminfo`` (else ``os.sysconf``), capped by the cgroup's limit
  (containers, batch jobs);
* :func:`free_disk` -- free bytes where a path is (or will be) written;
* :func:`check_memory` / :func:`check_disk` -- raise :class:`ResourceError` when an estimate
  does not fit;
* :func:`ignore_limits` -- the override for people who know better (``--force`` on the
  command line, or ``NEUROFUSE_IGNORE_LIMITS=1`` in the environment): the checks then only
  log a warning.

Estimates are of what the job holds at its peak (arrays and tensors), not of the Python
interpreter and libraries around it; they are honest to a factor of about 2 (the tests
compare them with measured allocations).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import shutil
from pathlib import Path

from ._logging import logger

#: Environment variable that turns the refusals of :func:`check_memory` and
#: :func:`check_disk` into warnings (any value but ``""``, ``"0"``, ``"false"``, ``"no"``).
ENV_IGNORE = "NEUROFUSE_IGNORE_LIMITS"

#: The override as the command line spells it, quoted in every refusal.
OVERRIDE = f"pass --force (or set {ENV_IGNORE}=1) to try anyway"

_IGNORE = contextvars.ContextVar("neurofuse_ignore_limits", default=False)

GiB = 1024 ** 3


class ResourceError(ValueError):
    """A job was refused before it started: it would not fit in memory or on disk."""


def limits_ignored() -> bool:
    """Whether the checks only warn (inside :func:`ignore_limits` or with the variable set)."""
    if _IGNORE.get():
        return True
    return os.environ.get(ENV_IGNORE, "").strip().lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def ignore_limits(ignore: bool = True):
    """Within this block, refusals of :func:`check_memory`/:func:`check_disk` only warn.

    Parameters
    ----------
    ignore : bool
        False leaves the checks as they are (handy for ``with ignore_limits(args.force)``).
    """
    token = _IGNORE.set(bool(ignore) or _IGNORE.get())
    try:
        yield
    finally:
        _IGNORE.reset(token)


def format_bytes(n: float) -> str:
    """``n`` bytes as ``'1.5 GiB'``, ``'12 MiB'`` or ``'3 KiB'``."""
    n = float(n)
    for unit, size in (("TiB", 1024 ** 4), ("GiB", GiB), ("MiB", 1024 ** 2)):
        if n >= size:
            value = n / size
            return f"{value:.3g} {unit}" if value < 1000 else f"{value:,.0f} {unit}"
    return f"{max(n, 0) / 1024:.3g} KiB"


def _read_int(path) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except (OSError, ValueError):
        return None
    try:
        return int(text)
    except ValueError:
        return None  # "max": no limit


def _cgroup_free() -> int | None:
    """Bytes the cgroup of this process may still allocate (None: no limit found)."""
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                          "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        cap = _read_int(limit)
        if cap is None or cap >= 2 ** 60:  # v1 writes "no limit" as a huge number
            continue
        used = _read_int(usage) or 0
        return max(cap - used, 0)
    return None


def available_memory() -> int:
    """Bytes of memory a new allocation can get now.

    Returns
    -------
    n_bytes : int
        ``psutil.virtual_memory().available`` when psutil is installed, else
        ``MemAvailable`` from ``/proc/meminfo``, else free physical pages
        (``os.sysconf``); at most what the process's cgroup (v1 or v2) still allows.
    """
    avail = None
    try:
        import psutil

        avail = int(psutil.virtual_memory().available)
    except ImportError:
        try:
            with open("/proc/meminfo") as fid:
                for line in fid:
                    if line.startswith("MemAvailable:"):
                        avail = int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
        if avail is None:
            try:
                avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            except (ValueError, OSError, AttributeError):
                avail = 2 ** 62  # unknown: let the job try
    cgroup = _cgroup_free()
    return avail if cgroup is None else min(avail, cgroup)


def free_disk(path) -> int:
    """Free bytes (for this user) on the file system that holds ``path`` or would hold it.

    Parameters
    ----------
    path : path-like
        A file or folder; when it does not exist yet, its nearest existing parent is used.

    Returns
    -------
    n_bytes : int
    """
    return int(shutil.disk_usage(_existing_parent(path)).free)


def _existing_parent(path) -> Path:
    """``path`` if it exists, else its nearest existing parent."""
    path = Path(path).expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _parts_text(parts):
    if not parts:
        return ""
    top = sorted(((k, v) for k, v in parts.items() if v > 0), key=lambda kv: -kv[1])[:3]
    if not top:
        return ""
    return " (largest: " + ", ".join(f"{k} {format_bytes(v)}" for k, v in top) + ")"


def _refuse(message):
    if limits_ignored():
        logger.warning("%s Continuing anyway (limits ignored).", message)
        return
    raise ResourceError(f"{message} Or {OVERRIDE}.")


def check_memory(need, *, what, reduce, parts=None, available=None) -> int:
    """Refuse a job whose estimated peak memory exceeds what is available.

    Parameters
    ----------
    need : int
        Estimated peak bytes.
    what : str
        The job, e.g. ``"Predicting 5000000 samples"``.
    reduce : str
        What to change, e.g. ``"the stimulus length (split it into parts of at most N
        samples)"``; the message reads ``"...; reduce <reduce>."``.
    parts : dict | None
        ``{name: bytes}`` of the estimate; the largest are named in the message.
    available : int | None
        Bytes available; default :func:`available_memory`.

    Returns
    -------
    need : int

    Raises
    ------
    ResourceError
        Unless limits are ignored (:func:`ignore_limits`), when a warning is logged instead.
    """
    available = available_memory() if available is None else int(available)
    logger.debug("%s: needs about %s of memory (%s available)%s", what, format_bytes(need),
                 format_bytes(available), _parts_text(parts))
    if need > available:
        _refuse(f"{what} needs about {format_bytes(need)} of memory, {format_bytes(available)}"
                f" available{_parts_text(parts)}; reduce {reduce}.")
    return int(need)


def check_disk(need, path, *, what, reduce, parts=None, available=None) -> int:
    """Refuse a job whose output would not fit on the disk that holds ``path``.

    Parameters
    ----------
    need : int
        Estimated bytes written.
    path : path-like
        Where they are written (need not exist yet).
    what, reduce, parts
        As :func:`check_memory`.
    available : int | None
        Free bytes; default :func:`free_disk` of ``path``.

    Returns
    -------
    need : int

    Raises
    ------
    ResourceError
        Unless limits are ignored, when a warning is logged instead.
    """
    existing = _existing_parent(path)
    if os.statvfs(existing).f_flag & os.ST_RDONLY:  # a fact, not an estimate: no override
        raise ResourceError(
            f"{what} cannot write to '{path}': '{existing}' is on a read-only file system. "
            "Choose another location (--out), or remount that disk read-write.")
    available = free_disk(path) if available is None else int(available)
    logger.debug("%s: writes about %s to '%s' (%s free)", what, format_bytes(need), path,
                 format_bytes(available))
    if need > available:
        _refuse(f"{what} writes about {format_bytes(need)} to '{path}', {format_bytes(available)}"
                f" free there{_parts_text(parts)}; choose another location, free some space, "
                f"or reduce {reduce}.")
    return int(need)


__all__ = ["ENV_IGNORE", "ResourceError", "available_memory", "check_disk", "check_memory",
           "format_bytes", "free_disk", "ignore_limits", "limits_ignored"]

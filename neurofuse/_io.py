"""Atomic file and directory writes, content hashing, and the cache location.

Everything neurofuse writes goes through :func:`atomic_path` or :func:`atomic_dir`: the data
is written under a temporary name in the destination folder and renamed into place only when
complete, so an interrupted or failed write never leaves a half-written file behind and
never destroys the previous good version.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ._logging import logger


def _explain_oserror(exc: OSError, path: Path, what: str) -> OSError:
    if exc.errno == errno.ENOSPC:
        hint = "The disk is full: free some space or choose another location."
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "The location is not writable: choose a folder you can write to."
    else:
        hint = "Check that the folder exists and is writable."
    return type(exc)(exc.errno, f"Could not write {what} to '{path}': {exc.strerror}. {hint}")


def check_writable_dir(path, name: str = "out") -> Path:
    """Create ``path``'s parent if needed and check we can write in it.

    Raises
    ------
    OSError
        Naming the parameter, the location and how to fix it.
    """
    path = Path(path).expanduser()
    parent = path if path.is_dir() else path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".nf-probe-"):
            pass
    except OSError as exc:
        raise _explain_oserror(exc, parent, f"the '{name}' output") from None
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or unknown: leave its files alone
    return True


def clean_stale_temporaries(path) -> list:
    """Remove what interrupted atomic writes of ``path`` left beside it.

    A process killed during :func:`atomic_path` / :func:`atomic_dir` leaves its temporary
    ``.tmp-<pid>-...-<name>`` behind; the next write of the same ``path`` removes those whose
    process is gone (never a live process's), and the ``.old-<name>-*`` copy of a replaced
    folder once ``path`` itself exists again.

    Parameters
    ----------
    path : path-like
        The file or folder being written.

    Returns
    -------
    removed : list of Path
    """
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    name = path.name
    for entry in path.parent.iterdir():
        parts = entry.name.split("-", 2)
        stale = False
        if entry.name.startswith(".tmp-") and len(parts) == 3 and parts[1].isdigit():
            pid, rest = int(parts[1]), parts[2]
            stale = (rest.endswith(f"-{name}") or rest.startswith(f"{name}-")) and not _pid_alive(pid)
        elif entry.name.startswith(f".old-{name}-") and path.exists():
            stale = True
        if stale:
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                _remove(entry)
            removed.append(entry)
    if removed:
        logger.info("Removed %d leftover(s) of an interrupted write of '%s'.", len(removed), path)
    return removed


@contextlib.contextmanager
def atomic_path(path, *, what: str = "file"):
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    The temporary name keeps the suffix of ``path`` (MNE checks file name endings such as
    ``-fwd.fif``). On error the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _explain_oserror(exc, path.parent, what) from None
    clean_stale_temporaries(path)
    name = path.name
    tmp = path.parent / f".tmp-{os.getpid()}-{os.urandom(4).hex()}-{name}"
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise _explain_oserror(exc, path, what) from exc
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path, *, overwrite: bool = False, what: str = "dataset"):
    """Yield a temporary directory next to ``path``; move it to ``path`` when the block succeeds.

    If ``path`` exists and ``overwrite`` is False a FileExistsError is raised before anything
    is written. With ``overwrite=True`` the old directory is only removed after the new one
    is complete.
    """
    path = Path(path).expanduser()
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"The output location '{path}' already exists. Choose a new folder or pass "
            "overwrite=True (--overwrite on the command line) to replace it."
        )
    check_writable_dir(path, name=what)
    clean_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{os.getpid()}-{path.name}-", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; give the folder normal permissions
    try:
        yield tmp
        if path.exists():
            old = path.parent / f".old-{path.name}-{os.urandom(4).hex()}"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _explain_oserror(exc, path, what) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove(path: Path):
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def write_json(path, obj, *, what: str = "JSON file"):
    """Write ``obj`` as pretty JSON, atomically."""
    with atomic_path(path, what=what) as tmp:
        with open(tmp, "w") as fid:
            json.dump(obj, fid, indent=2, sort_keys=False, default=_json_default)
            fid.write("\n")


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def save_npy(path, arr, *, what: str = "array"):
    """Save a numpy array atomically (``allow_pickle`` is never needed to read it back)."""
    arr = np.asarray(arr)
    if arr.dtype == object:
        raise TypeError(f"Refusing to save an object array as {what}: it would need pickle.")
    with atomic_path(path, what=what) as tmp:
        with open(tmp, "wb") as fid:
            np.save(fid, arr, allow_pickle=False)


def hash_arrays(*items) -> str:
    """A short, stable SHA-256 key of arrays, strings, numbers and nested lists/dicts."""
    h = hashlib.sha256()
    _update(h, items)
    return h.hexdigest()[:16]


def _update(h, obj):
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj)
        h.update(f"nd{arr.dtype.str}{arr.shape}".encode())
        h.update(arr.tobytes())
    elif isinstance(obj, dict):
        h.update(b"{")
        for key in sorted(obj, key=str):
            h.update(str(key).encode())
            _update(h, obj[key])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for item in obj:
            _update(h, item)
        h.update(b"]")
    elif isinstance(obj, Path):
        h.update(b"path" + str(obj).encode())
    elif isinstance(obj, (float, np.floating)):
        h.update(repr(float(obj)).encode())
    else:
        h.update(repr(obj).encode())


def hash_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fid:
        for chunk in iter(lambda: fid.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


class DamagedFileError(ValueError):
    """A file's content no longer matches the checksum recorded when it was written."""


def check_file_hash(path, expected, *, record, what="file") -> None:
    """Raise :class:`DamagedFileError` if ``path``'s :func:`hash_file` is not ``expected``.

    Parameters
    ----------
    path : path-like
        The file to check.
    expected : str | None
        The checksum recorded when it was written; None (files written before checksums
        were recorded) checks nothing.
    record : path-like
        Where ``expected`` was read from (named in the error).
    what : str
        What the file is, for the error (e.g. ``"model weights"``).
    """
    if expected is None:
        return
    got = hash_file(path)
    if got != expected:
        raise DamagedFileError(
            f"The {what} '{path}' are damaged or were changed after they were written: their "
            f"SHA-256 checksum starts {got}, but '{record}' recorded {expected}. Restore the "
            "file from a backup, or write it again (train again, or resume from an earlier "
            "copy of the run).")


def get_cache_dir() -> Path:
    """Where neurofuse caches anatomy, BEM solutions, lead fields and morphs.

    ``$NEUROFUSE_CACHE_DIR`` if set, otherwise the platform's user cache directory
    (e.g. ``~/.cache/neurofuse`` on Linux).
    """
    env = os.environ.get("NEUROFUSE_CACHE_DIR")
    if env:
        path = Path(env).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_cache_dir("neurofuse", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path

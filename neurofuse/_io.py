"""Atomic file and directory writes, content hashing, and the cache location.

Everything neurofuse writes goes through :func:`atomic_path` or :func:`atomic_dir`: the data
is written under a temporary name in the destination folder and renamed into place only when
complete, so an interrupted or failed write never leaves a half-written file behind and
never destroys the previous good version. When the storage fails (disk full, quota, read-only,
permission denied, a file where a folder is expected or the reverse) these writers raise one
:class:`StorageError` that says which, names the file (where it would have gone, never a
temporary name), the free space, and the fix; failures that libraries report their own way
(safetensors' ``SafetensorError``, numpy's errno-less short write) are recognised too.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ._logging import logger


# --------------------------------------------------------------------------- OS errors
#: errno -> the kind of storage failure it is.
_KINDS = {
    errno.ENOSPC: "disk full", errno.EDQUOT: "quota exceeded", errno.EFBIG: "file too large",
    errno.EROFS: "read-only", errno.EACCES: "permission", errno.EPERM: "permission",
    errno.ENOTDIR: "not a folder", errno.EEXIST: "not a folder", errno.EISDIR: "not a file",
}
#: How libraries that bypass Python's OSError report the same failures: safetensors'
#: ``SafetensorError("Error while serializing: I/O error: No space left on device (os error
#: 28)")``, numpy's short write ``OSError("N requested and M written")`` (errno None).
_OS_ERROR_NUMBER = re.compile(r"os error (\d+)")
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")
_STRERRORS = {os.strerror(number): number for number in _KINDS}


class StorageError(OSError):
    """A write failed for a reason of the storage: disk full, read-only, permission denied,
    or a file where a folder is expected (and vice versa).

    Its message names what was being written, where, the cause, and the fix; it is an
    :class:`OSError` whose ``errno`` is the operating system's.

    Attributes
    ----------
    kind : str
        ``"disk full"``, ``"quota exceeded"``, ``"file too large"``, ``"read-only"``,
        ``"permission"``, ``"not a folder"`` or ``"not a file"``.
    path : Path
        The file or folder that was being written.
    what : str
        What it is (e.g. ``"model"``).
    """

    def __init__(self, errno_, message, *, kind=None, path=None, what=None, blocker=None):
        super().__init__(errno_, message)
        self.message, self.kind, self.what = message, kind, what
        self.path = None if path is None else Path(path)
        self.blocker = None if blocker is None else Path(blocker)

    def __str__(self):
        return self.message

    def __reduce__(self):
        return (_rebuild_storage_error, (self.errno, self.message, self.kind, self.path,
                                         self.what, self.blocker))


def _rebuild_storage_error(errno_, message, kind, path, what, blocker):
    return StorageError(errno_, message, kind=kind, path=path, what=what, blocker=blocker)


def _os_errno(exc):
    """The errno behind ``exc`` (an OSError or a library's wrapper of one), or None."""
    if isinstance(exc, OSError) and exc.errno in _KINDS:
        return exc.errno
    text = str(exc)
    match = _OS_ERROR_NUMBER.search(text)
    if match and int(match.group(1)) in _KINDS:
        return int(match.group(1))
    if isinstance(exc, OSError) and exc.errno is None and _SHORT_WRITE.search(text):
        # a regular file takes fewer bytes than asked only when the disk is full or the file
        # reached this process's size limit (``ulimit -f``)
        return errno.EFBIG if _file_size_limited() else errno.ENOSPC
    if type(exc).__name__ == "SafetensorError" or isinstance(exc, OSError):
        for strerror, number in _STRERRORS.items():
            if strerror in text:
                return number
    return None


def _file_size_limited() -> bool:
    try:
        import resource
    except ImportError:  # not on POSIX
        return False
    return resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY


def _free_mib(mount: Path) -> str:
    try:
        return f"{shutil.disk_usage(mount).free / 2**20:.1f} MiB"
    except OSError:
        return "an unknown amount of space"


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing ancestor."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _mount_point(path: Path) -> Path:
    path = _existing(path)
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def _file_in_the_way(path: Path):
    """The first of ``path``'s ancestors (or ``path``) that is a file, or None."""
    path = Path(os.path.abspath(path))
    for part in [*reversed(path.parents), path]:
        if part.exists() and not part.is_dir():
            return part
    return None


def _within(path, folder) -> bool:
    try:
        Path(os.path.abspath(path)).relative_to(os.path.abspath(folder))
    except ValueError:
        return False
    return True


def storage_error(exc, path, what="output", *, existed=None, part_of=None, atomic=True,
                  create=False, started=True, option="--out"):
    """Translate an OS-level write failure into a :class:`StorageError` with a clear message.

    Parameters
    ----------
    exc : BaseException
        The error raised while writing ``path`` (an :class:`OSError`, or a library's wrapper
        of one such as safetensors' ``SafetensorError``).
    path : path-like
        The file or folder being written (what the user will look for, not a temporary).
    what : str
        What is written there, for the message (e.g. ``"model"``).
    existed : bool | None
        Whether an earlier version of ``path`` was there (and was kept); None: not known.
    part_of : tuple of (str, path-like) | None
        ``(what, path)`` of the folder being written that ``path`` is a part of.
    atomic : bool
        Whether ``path`` was written atomically (the message then says nothing was left
        half-written); False: it says ``path`` may be incomplete.
    create : bool
        ``path`` is a folder being created (not a file or folder being written).
    started : bool
        False when the write was refused before anything was written.
    option : str
        How the user chooses another location (named in the fix).

    Returns
    -------
    error : StorageError | None
        None when ``exc`` is not a storage failure (it is then best raised unchanged). An
        ``exc`` that already is a :class:`StorageError` is returned as it is.
    """
    if isinstance(exc, StorageError):
        return exc
    number = _os_errno(exc)
    if number is None:
        return None
    kind = _KINDS[number]
    path = Path(os.path.abspath(Path(path).expanduser()))
    blocker = None
    if kind == "not a file":
        blocker = path
    elif kind == "not a folder":
        blocker = _file_in_the_way(path)
        if blocker is None and number == errno.EEXIST:
            return None  # an ordinary "already exists": its own message says more
        blocker = path if blocker is None else blocker
    elif kind == "permission":
        filename = getattr(exc, "filename", None)
        blocker = Path(filename) if filename else path
    message = _message(kind, path, what, blocker, existed, part_of, atomic, create, started)
    if option != "--out":
        message = message.replace("(--out)", f"({option})")
    return StorageError(number, message, kind=kind, path=path, what=what, blocker=blocker)


def _kept(what, path, existed, part_of, atomic=True):
    target = part_of[1] if part_of is not None else path
    if not atomic:
        return f"'{target}' may be incomplete; outputs written before it are kept."
    if existed:
        return (f"Nothing half-written was left behind; the earlier '{target}' and outputs "
                "written before it are kept.")
    return "Nothing half-written was left behind; outputs written before it are kept."


def _message(kind, path, what, blocker, existed, part_of, atomic=True, create=False,
             started=True):
    inside = "" if part_of is None else f" (part of the {part_of[0]} '{part_of[1]}')"
    where = f"the {what} {'' if create else 'to '}'{path}'{inside}"
    write, writing = ("create", "creating") if create else ("write", "writing")
    kept = ("Nothing was written." if create or not started
            else _kept(what, path, existed, part_of, atomic))
    mount = _mount_point(path)
    if kind == "file too large":
        return (f"file too large while {writing} {where}: it would exceed the largest file "
                "this process may write (its file-size limit, `ulimit -f`) or that the file "
                f"system of '{mount}' allows. Raise the limit, or choose an output location on "
                f"another file system (--out). {kept}")
    if kind in ("disk full", "quota exceeded"):
        free = _free_mib(mount)
        after = "" if create or not atomic or not started else " after clean-up"
        first = (f"disk full while {writing} {where}: {free} free on '{mount}'{after}"
                 if kind == "disk full" else
                 f"disk quota exceeded while {writing} {where}: your quota on '{mount}' is "
                 f"used up ({free} free on the disk)")
        return (f"{first}. Free some space there or choose another output location (--out). "
                f"{kept}")
    if kind == "read-only":
        return (f"read-only file system: cannot {write} {where}: '{mount}' is mounted read-only. "
                "Choose an output location on a writable disk (--out), or remount "
                f"'{mount}' read-write. {kept}")
    if kind == "permission":
        folder = blocker if blocker.is_dir() else _existing(blocker.parent)
        return (f"permission denied: cannot {write} {where}; this user may not write in "
                f"'{folder}'. Choose a folder you can write to (--out), or get write "
                f"permission for it (e.g. chmod u+w '{folder}'). {kept}")
    if kind == "not a folder":
        return (f"a file is where a folder is expected: cannot {write} {where}, because "
                f"'{blocker}' is a file, not a folder. Move or rename '{blocker}', or choose "
                f"another output location (--out). {kept}")
    return (f"a folder is where a file is expected: cannot {write} {where}, because '{blocker}' "
            f"is a folder, not a file. Move or rename the folder '{blocker}', or choose "
            f"another name. {kept}")


def _raise_storage(exc, path, what, *, tmp=None, existed=None, started=True):
    """Re-raise ``exc`` from a failed write of ``path`` as a :class:`StorageError` if it is
    one (with paths under the temporary ``tmp`` named by where they would have gone)."""
    part_of = None
    if isinstance(exc, StorageError) and tmp is not None and exc.path is not None \
            and _within(exc.path, tmp):
        inner = path / Path(os.path.abspath(exc.path)).relative_to(os.path.abspath(tmp))
        blocker = exc.blocker
        if blocker is not None and _within(blocker, tmp):
            blocker = path / Path(os.path.abspath(blocker)).relative_to(os.path.abspath(tmp))
        part_of = (what, path)
        raise StorageError(exc.errno, _message(exc.kind, inner, exc.what, blocker, existed,
                                               part_of),
                           kind=exc.kind, path=inner, what=exc.what, blocker=blocker) from exc
    if isinstance(exc, StorageError):
        raise exc
    filename = getattr(exc, "filename", None)
    if filename and tmp is not None and _within(filename, tmp):
        inner = path / Path(os.path.abspath(filename)).relative_to(os.path.abspath(tmp))
        err = storage_error(exc, inner, "file", existed=existed,
                            part_of=(what, path))
    elif filename and not _within(filename, path.parent) and _KINDS.get(
            getattr(exc, "errno", None)) in ("permission", "not a folder", "not a file"):
        err = None  # about another file (an input being read): its own message is right
    else:
        err = storage_error(exc, path, what, existed=existed, started=started)
    if err is None:
        raise exc
    raise err from exc


def make_dir(path, *, what="output folder", option="--out") -> Path:
    """Create the folder ``path`` (and its parents) if needed.

    Parameters
    ----------
    path : path-like
    what : str
        What the folder is for, for the error message.
    option : str
        How the user chooses another location, for the error message.

    Returns
    -------
    path : Path

    Raises
    ------
    StorageError
        When it cannot be created (a file in the way, read-only, permission, disk full).
    """
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        err = storage_error(exc, path, what, existed=False, create=True, option=option)
        if err is None:
            raise
        raise err from None
    return path


def _make_parent(path: Path, what: str):
    """Create the folder ``path`` goes in; a failure names ``path`` and ``what``."""
    if _file_in_the_way(path.parent) is not None:
        raise storage_error(NotADirectoryError(errno.ENOTDIR, "Not a directory", str(path)),
                            path, what, existed=False, started=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _raise_storage(exc, path, what, existed=False, started=False)


def check_writable_dir(path, name: str = "out") -> Path:
    """Create ``path``'s parent if needed and check we can write in it.

    Raises
    ------
    StorageError
        Naming the parameter, the location, the cause and how to fix it.
    """
    path = Path(path).expanduser()
    full = Path(os.path.abspath(path))
    parent = full if full.is_dir() else full.parent
    what = f"output ('{name}')"
    if _file_in_the_way(parent) is not None:
        raise storage_error(NotADirectoryError(errno.ENOTDIR, "Not a directory", str(parent)),
                            full, what, existed=False, started=False)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".nf-probe-"):
            pass
    except OSError as exc:
        _raise_storage(exc, full, what, existed=full.exists(), started=False)
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
    A failure of the storage (disk full, read-only, permission, a folder where the file goes),
    raised by Python or by a library writing the temporary (safetensors, MNE, numpy), becomes
    a :class:`StorageError` that says so.
    """
    path = Path(os.path.abspath(Path(path).expanduser()))
    _make_parent(path, what)
    if path.is_dir():
        raise storage_error(IsADirectoryError(errno.EISDIR, "Is a directory", str(path)),
                            path, what, existed=True, started=False)
    clean_stale_temporaries(path)
    existed = path.exists()
    name = path.name
    tmp = path.parent / f".tmp-{os.getpid()}-{os.urandom(4).hex()}-{name}"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        _remove(tmp)
        if isinstance(exc, Exception):
            _raise_storage(exc, path, what, existed=existed)
        raise


@contextlib.contextmanager
def atomic_dir(path, *, overwrite: bool = False, what: str = "dataset"):
    """Yield a temporary directory next to ``path``; move it to ``path`` when the block succeeds.

    If ``path`` exists and ``overwrite`` is False a FileExistsError is raised before anything
    is written. With ``overwrite=True`` the old directory is only removed after the new one
    is complete. Storage failures inside the block or when moving the folder in (disk full,
    read-only, permission, a file in the way) become a :class:`StorageError` naming where the
    file would have gone in ``path``.
    """
    path = Path(os.path.abspath(Path(path).expanduser()))
    if _file_in_the_way(path) is not None:
        raise storage_error(NotADirectoryError(errno.ENOTDIR, "Not a directory", str(path)),
                            path, what, existed=path.exists(), started=False)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"The output location '{path}' already exists. Choose a new folder or pass "
            "overwrite=True (--overwrite on the command line) to replace it."
        )
    _make_parent(path, what)
    clean_stale_temporaries(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{os.getpid()}-{path.name}-", dir=path.parent))
    except OSError as exc:
        _raise_storage(exc, path, what, existed=path.exists(), started=False)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; give the folder normal permissions
    existed = path.exists()
    try:
        yield tmp
        if path.exists():
            old = path.parent / f".old-{path.name}-{os.urandom(4).hex()}"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, Exception):
            _raise_storage(exc, path, what, tmp=tmp, existed=existed)
        raise


def _remove(path: Path):
    # absent (never created), or on a read-only disk (where it cannot have been created)
    with contextlib.suppress(OSError):
        os.remove(path)


def write_json(path, obj, *, what: str = "JSON file"):
    """Write ``obj`` as pretty JSON, atomically."""
    with atomic_path(path, what=what) as tmp:
        with open(tmp, "w") as fid:
            json.dump(obj, fid, indent=2, sort_keys=False, default=_json_default)
            fid.write("\n")


def load_npy(path, *, what="array", expected="a numeric array", mmap_mode="r"):
    """Open a ``.npy`` file without pickle, naming the file and what it should hold on failure.

    Parameters
    ----------
    path : path-like
        An existing file.
    what : str
        What the file is, for messages (e.g. ``"stimulus file"``).
    expected : str
        What it should hold, for messages (e.g. ``"shape (n_times, d_stim)"``).
    mmap_mode : str | None
        As :func:`numpy.load`.

    Returns
    -------
    array : numpy.ndarray | numpy.memmap

    Raises
    ------
    ValueError
        The file is not a ``.npy`` array (text, ``.npz``, truncated), or holds Python objects
        (which would need pickle, never used here).
    """
    path = Path(path)
    fix = f"save {expected} with numpy.save (allow_pickle=False)"
    try:
        array = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except ValueError as exc:
        with open(path, "rb") as fid:
            magic = fid.read(6)
        if magic == b"\x93NUMPY" and re.search("pickle|object", str(exc), re.I):
            raise ValueError(f"The {what} '{path}' holds Python objects (an object array), "
                             f"which neurofuse never unpickles; {fix}.") from None
        if magic == b"\x93NUMPY":
            raise ValueError(f"The {what} '{path}' is damaged or truncated ({exc}); "
                             f"{fix}.") from None
        raise ValueError(f"The {what} '{path}' is not a .npy array (its first bytes are "
                         f"{magic!r}); {fix}.") from None
    except (OSError, EOFError) as exc:
        raise ValueError(f"The {what} '{path}' is damaged or truncated ({exc}); {fix}.") from None
    if not isinstance(array, np.ndarray):  # an .npz archive
        array.close()
        raise ValueError(f"The {what} '{path}' is an .npz archive, not one .npy array; {fix}.")
    return array


def read_config(path, *, what="config file", fix="fix or replace the file") -> dict:
    """Read a JSON or TOML table (by the suffix; JSON otherwise), naming the file on failure.

    Parameters
    ----------
    path : path-like
        An existing file; ``.toml`` is read as TOML, anything else as JSON.
    what : str
        What the file is, for messages (e.g. ``"model description"``).
    fix : str
        What to do about a damaged file, appended to the message.

    Returns
    -------
    table : dict
        The file's top-level table.

    Raises
    ------
    ValueError
        The file is not valid JSON/TOML (with the line and column), not text, or its top
        level is not a table.
    """
    path = Path(path)
    kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
    try:
        text = path.read_text(encoding="utf-8")
        if kind == "TOML":
            import tomllib

            table = tomllib.loads(text)
        else:
            table = json.loads(text)
    except UnicodeDecodeError:
        raise ValueError(f"The {what} '{path}' is not a text file (expected {kind}); "
                         f"{fix}.") from None
    except (ValueError, json.JSONDecodeError) as exc:  # tomllib.TOMLDecodeError is a ValueError
        raise ValueError(f"The {what} '{path}' is not valid {kind}: {exc}; {fix}.") from None
    if not isinstance(table, dict):
        raise ValueError(f"The {what} '{path}' must hold a {kind} table ({{...}}), got a "
                         f"{type(table).__name__}; {fix}.")
    return table


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
    return make_dir(path, what="cache folder", option="set $NEUROFUSE_CACHE_DIR")

"""The ``neurofuse`` command: finds the command groups and runs the one asked for.

Each public module of :mod:`neurofuse.cli` is one top-level command (or group of commands),
found by scanning the package the way MNE-Python finds ``mne/commands/mne_*.py``: it defines
``NAME`` and ``add_parser(subparsers)``, and imports nothing heavy at module level (library
modules are imported inside the command functions, so ``--help`` stays fast). Each command
parses its arguments and calls one library function.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from .. import __version__
from .._logging import logger, set_log_level
from ._utils import log_level

#: Today's spellings of commands that moved into groups -> their new spelling. They keep
#: working for one release and log a deprecation warning.
DEPRECATED = {
    "fit": ("joint", "fit"),
    "predict": ("joint", "predict"),
    "benchmark": ("joint", "benchmark"),
    "ecog": ("joint", "ecog"),
    "simulate-ecog": ("simulate", "ecog"),
    "prepare": ("data", "prepare"),
    "merge": ("data", "merge"),
    "info": ("data", "info"),
}


def command_modules():
    """The command modules of :mod:`neurofuse.cli`, sorted by name.

    Returns
    -------
    modules : list of module
        Every public module of the package except this one; each has ``NAME`` and
        ``add_parser``.
    """
    package = importlib.import_module(__package__)
    names = sorted(m.name for m in pkgutil.iter_modules(package.__path__)
                   if not m.name.startswith("_") and m.name != "main")
    return [importlib.import_module(f"{__package__}.{name}") for name in names]


def build_parser() -> argparse.ArgumentParser:
    """The ``neurofuse`` argument parser, with one sub-command per command module."""
    parser = argparse.ArgumentParser(
        prog="neurofuse",
        description="Cortical source activity at millisecond and millimetre resolution from a "
                    "joint MEG-fMRI encoding model.",
        epilog="Deprecated spellings (removed in the next release): " + "; ".join(
            f"{old} -> {' '.join(new)}" for old, new in DEPRECATED.items())
            + "; simulate PRESET -> simulate study PRESET.",
    )
    parser.add_argument("--version", action="version", version=f"neurofuse {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in command_modules():
        module.add_parser(sub)
    return parser


def _new_spelling(argv):
    """``argv`` in today's spelling, and the deprecation message (None when nothing changed)."""
    if not argv or argv[0].startswith("-"):
        return argv, None
    head = argv[0]
    if head in DEPRECATED:
        new = list(DEPRECATED[head])
        return [*new, *argv[1:]], (f"'neurofuse {head}' is deprecated and will be removed in "
                                   f"the next release; use 'neurofuse {' '.join(new)}'.")
    if head == "simulate" and len(argv) > 1:
        from .simulate import WORLDS

        if argv[1] not in (*WORLDS, "-h", "--help"):
            word = "PRESET|CONFIG" if argv[1].startswith("-") else argv[1]
            return ["simulate", "study", *argv[1:]], (
                f"'neurofuse simulate {word}' is deprecated and will be removed in the next "
                f"release; use 'neurofuse simulate study {word}'.")
    return argv, None


def main(argv=None) -> int:
    """Run the ``neurofuse`` command.

    Parameters
    ----------
    argv : list of str | None
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    code : int
        0 on success, 1 on an error the message explains, 2 on a usage error (argparse exits
        with 2 itself), 130 when interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, deprecation = _new_spelling(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    set_log_level(log_level(args))
    if deprecation:
        logger.warning(deprecation)
    name = getattr(args, "command_name", args.command)
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("neurofuse: interrupted; nothing half-written was left behind.", file=sys.stderr)
        return 130
    except Exception as exc:
        error = _explained(exc, getattr(args, "out", None))
        if error is None or log_level(args) == "debug":
            raise
        print(f"neurofuse {name}: error: {error}", file=sys.stderr)
        return 1
    return 0


#: Storage failures that can only come from writing (a failed read is never "disk full").
_WRITE_ONLY = ("disk full", "quota exceeded", "file too large", "read-only")


def _explained(exc, out=None):
    """The error to print for ``exc``, or None when it is a bug (its traceback is shown).

    Input errors (ValueError, TypeError, OSError) are printed as they are, except storage
    failures that did not pass through :mod:`neurofuse._io`'s writers (raised by a library
    writing directly, or wrapped by one, such as safetensors' ``SafetensorError``): those are
    explained as :func:`neurofuse._io.storage_error` does, naming the file when the error does,
    else the ``--out`` location.
    """
    from .._io import _KINDS, StorageError, storage_error

    if isinstance(exc, StorageError):
        return exc
    seen, link = set(), exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if not isinstance(link, StorageError):
            path = getattr(link, "filename", None) or out
            err = None if path is None else storage_error(link, path, atomic=False)
            if err is not None and (err.kind in _WRITE_ONLY or not isinstance(link, OSError)
                                    or _KINDS.get(link.errno) is None):
                return err
        else:
            return link
        link = link.__cause__ or link.__context__
    return exc if isinstance(exc, (ValueError, TypeError, OSError)) else None


if __name__ == "__main__":
    sys.exit(main())

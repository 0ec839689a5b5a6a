"""What every command group shares: building a command, its options, parsing helpers.

The one rule of the options: **the CLI passes on only what the user typed.** An option that
maps to a keyword of the library function a command calls has ``default=argparse.SUPPRESS``,
so a run without it leaves the keyword to the library's own default, and ``--help`` quotes that
default from the function's signature (nothing is copied here that could drift from it).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import math
from pathlib import Path

SUPPRESS = argparse.SUPPRESS


def resolve(target):
    """The object a ``"package.module:name"`` reference names (imported on demand)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def library_default(target, keyword):
    """The default of ``keyword`` in the signature of the function ``target`` names.

    Parameters
    ----------
    target : str
        ``"package.module:function"``.
    keyword : str

    Returns
    -------
    default : object
        ``inspect.Parameter.empty`` when the keyword has no default.
    """
    params = inspect.signature(resolve(target)).parameters
    if keyword not in params:
        raise ValueError(f"{target} has no keyword {keyword!r} (it has {sorted(params)}).")
    return params[keyword].default


def _show(value):
    if isinstance(value, (tuple, list)):
        return " ".join(_show(v) for v in value)
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return str(value)


class LazyChoices:
    """``choices=`` read from a library constant when first needed (not at start-up)."""

    def __init__(self, target):
        self.target = target

    def __iter__(self):
        return iter(resolve(self.target))

    def __contains__(self, value):
        return value in tuple(self)


class _Formatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to a library option's help, X read from the library."""

    def _get_help_string(self, action):
        text = action.help or ""
        target = getattr(action, "library_target", None)
        # flags (nargs 0: --overwrite, --no-...) say what they do; values quote the default
        if target and action.default is SUPPRESS and action.nargs != 0 and "default" not in text:
            value = library_default(target, action.dest)
            if value is not None and value is not inspect.Parameter.empty:
                text += f" (default: {_show(value)})".replace("%", "%%")
        return text


def add_group(subparsers, name, *, help, doc, dest, metavar="COMMAND"):
    """Add a group of commands (``neurofuse joint``...); returns its sub-parsers.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
    name : str
    help : str
        One line for the list of commands.
    doc : str
        The group module's docstring; its first paragraph describes the group.
    dest : str
        Where the chosen command's name is stored.
    metavar : str

    Returns
    -------
    subparsers : argparse._SubParsersAction
        Where the group's commands are added.
    """
    group = subparsers.add_parser(name, help=help,
                                  description=doc.split("\n\n")[0].replace("``", ""))
    return group.add_subparsers(dest=dest, metavar=metavar, required=True)


def add_command(subparsers, name, func, *, help, target=None, **kwargs):
    """Add one leaf command, which runs ``func(args)``.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
    name : str
    func : callable
        Takes the parsed arguments.
    help : str
    target : str | None
        ``"package.module:function"`` the command calls; options added with :func:`option`
        quote its defaults in ``--help``.
    **kwargs
        More :meth:`argparse._SubParsersAction.add_parser` arguments.

    Returns
    -------
    parser : argparse.ArgumentParser
    """
    p = subparsers.add_parser(name, help=help, description=kwargs.pop("description", help),
                              formatter_class=_Formatter, **kwargs)
    p.set_defaults(func=func, command_name=p.prog.split(" ", 1)[-1])
    p.library_target = target
    add_verbosity(p)
    return p


def option(parser, *flags, keyword=True, **kwargs):
    """An option the command passes on only when given (``default=SUPPRESS``).

    Parameters
    ----------
    parser : argparse.ArgumentParser
        A command from :func:`add_command`.
    *flags : str
    keyword : bool
        Whether its ``dest`` is a keyword of the command's library function (``--help`` then
        quotes that keyword's default); False for an option the command itself interprets.
    **kwargs
        More :meth:`argparse.ArgumentParser.add_argument` arguments.
    """
    kwargs.setdefault("default", SUPPRESS)
    action = parser.add_argument(*flags, **kwargs)
    action.library_target = getattr(parser, "library_target", None) if keyword else None
    return action


def _resume_value(text):
    if text != "override":
        raise argparse.ArgumentTypeError(f"expected nothing or 'override', got {text!r}")
    return text


def add_resume(parser):
    """``--resume [override]``: continue an interrupted run (``override``: even with changed
    training settings)."""
    return option(parser, "--resume", nargs="?", const=True, type=_resume_value,
                  metavar="override",
                  help="continue an interrupted run exactly; '--resume override' continues "
                       "even when the training settings differ from the run's (they are "
                       "named in the error otherwise)")


def passed(args, *names):
    """``{name: value}`` of the options among ``names`` that were given."""
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


def add_verbosity(p):
    p.add_argument("-v", "--verbose", action="count", default=1,
                   help="more output (-v: progress and info, the default; -vv: debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")


def log_level(args):
    """The package log level ``-v``/``-q`` ask for."""
    if getattr(args, "quiet", False):
        return "warning"
    return "debug" if getattr(args, "verbose", 1) >= 2 else "info"


def parse_splits(items):
    """``story=split`` pairs or one JSON file -> dict (None when not given)."""
    if not items:
        return None
    if len(items) == 1 and "=" not in items[0]:
        return json.loads(Path(items[0]).expanduser().read_text())
    out = {}
    for item in items:
        story, sep, split = item.partition("=")
        if not sep:
            raise ValueError(f"--splits expects STORY=SPLIT pairs or one JSON file, got {item!r}.")
        out[story] = split
    return out


def parse_pairs(option_name, items, kind):
    """``KEY=VALUE`` pairs -> dict (None when not given)."""
    if not items:
        return None
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{option_name} expects KEY=VALUE pairs, got {item!r}.")
        try:
            out[key] = kind(value)
        except ValueError:
            raise ValueError(f"{option_name}: {item!r} does not have a valid {kind.__name__} "
                             "value.") from None
    return out


def none_or_float(text):
    """``'none'`` -> None, else a float (an argparse ``type``)."""
    return None if text.lower() == "none" else float(text)


def cnr(text):
    """A positive number or ``'inf'`` (an argparse ``type``)."""
    try:
        val = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive number or 'inf', got {text!r}") from None
    if not (val > 0) or math.isnan(val):
        raise argparse.ArgumentTypeError(f"expected a positive number or 'inf', got {text!r}")
    return val


def device(text):
    """A torch device this machine has (an argparse ``type``): checked when parsed, before
    any work, by :func:`neurofuse.training.device.select_device`; returned as given."""
    from ..training.device import select_device

    try:
        select_device(text, name="--device")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_device(parser, help="training device: cpu, cuda, cuda:1 ... (default: a CUDA GPU "
                            "when available, else the CPU)", keyword=True):
    """``--device``, checked against this machine's devices when the command line is parsed
    (``keyword``: as :func:`option`)."""
    return option(parser, "--device", type=device, help=help, keyword=keyword)


def add_force(parser):
    """``--force``: run even when the up-front memory or disk estimate says it will not fit."""
    return option(parser, "--force", action="store_true", keyword=False,
                  help="run even if the memory or disk estimate says the job does not fit "
                       "(same as NEUROFUSE_IGNORE_LIMITS=1)")


def format_summary(summary: dict, path) -> str:
    """A human-readable description of a dataset summary (from ``Dataset.summary()``)."""
    tr = "no TR" if summary.get("tr") is None else f"TR {summary['tr']:g} s"
    lines = [(f"Dataset {path}  (schema v{summary['schema_version']}, "
             f"sfreq {summary['sfreq']:g} Hz, {tr})")]
    stories = summary["stories"]
    by_split = {}
    for name, st in stories.items():
        by_split.setdefault(st["split"], []).append((name, st["duration"]))
    lines.append(f"Stories: {len(stories)}")
    for split, items in by_split.items():
        durs = [d for _, d in items]
        lines.append(f"  {split:<6} {len(items):>3} stories, {sum(durs) / 60:7.1f} min "
                     f"({min(durs):.0f}-{max(durs):.0f} s each)")
    lines.append(f"Subjects: {len(summary['subjects'])}")
    for name, sub in summary["subjects"].items():
        cnrs = ", ".join(f"{m} CNR {v}" for m, v in sub["cnr"].items())
        n = ", ".join(f"{m}: {k} stories" for m, k in sub["n_stories"].items())
        chans = f"{sub['n_channels']} channels, " if sub.get("n_channels") else ""
        epochs = "".join(f"; {m}: {k} epochs" for m, k in sub.get("n_epochs", {}).items())
        lines.append(f"  {name}  {'+'.join(sub['modalities']):<8} {chans}"
                     f"{sub['n_sources']} sources; {n}{epochs}; {cnrs}")
    for mod, dur in summary.get("total_duration", {}).items():
        lines.append(f"Total {mod} recording (all subjects and repeats): {dur / 3600:.2f} h")
    return "\n".join(lines)


def print_summary(path):
    """Print the summary of the dataset store at ``path``."""
    from ..data.store import read_dataset

    print(format_summary(read_dataset(path).summary(), path))

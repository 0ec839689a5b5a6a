"""``neurofuse demo``: the README's set-up command, the same as ``neurofuse joint demo``."""

from __future__ import annotations

from .joint import add_demo

NAME = "demo"


def add_parser(subparsers):
    """Register ``neurofuse demo``."""
    return add_demo(subparsers)

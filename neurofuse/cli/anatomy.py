"""``neurofuse anatomy``: the embedded template anatomy and sensors."""

from __future__ import annotations

import json

from ._utils import add_command, option, passed

NAME = "anatomy"
HELP = "describe the embedded template anatomy and sensors"


def _cmd_anatomy(args):
    from ..anatomy.summary import describe_template

    desc = describe_template(**passed(args, "spacing", "montage"))
    if getattr(args, "json", False):
        print(json.dumps(desc, indent=2))
    else:
        for key, val in desc.items():
            print(f"{key:>24}: {val}")


def add_parser(subparsers):
    """Register ``neurofuse anatomy``."""
    p = add_command(subparsers, NAME, _cmd_anatomy, help=HELP,
                    target="neurofuse.anatomy.summary:describe_template")
    option(p, "--json", action="store_true", keyword=False, help="print JSON")
    option(p, "--spacing", help="source space")
    option(p, "--montage", help="EEG montage (MNE built-in)")
    return p

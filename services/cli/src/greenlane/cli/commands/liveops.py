"""`greenlane liveops`: the fleet feed in the terminal, with the flags of greenlane.liveops."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Final

from greenlane.core.errors import ConfigurationError
from greenlane.liveops.cli import execute
from greenlane.liveops.options import DESCRIPTION, add_arguments, options_from_args

EXIT_USAGE: Final = 2


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "liveops",
        help="follow the fleet events live: coloured lines, events/s, battery statistics",
        description=DESCRIPTION,
    )
    add_arguments(parser)


def main(args: argparse.Namespace) -> int:
    try:
        options = options_from_args(args)
    except ConfigurationError as exc:  # a bad GREENLANE_ variable or dev.env value
        sys.stderr.write(f"greenlane liveops: error: {exc}\n")
        return EXIT_USAGE
    return execute(options)

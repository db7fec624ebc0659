"""`greenlane events`: the event topic's records, like `kcat -C -o -N -e`, on any broker."""

from __future__ import annotations

import argparse
from typing import Any

from greenlane.liveops.events import DESCRIPTION, add_arguments, execute


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "events",
        help="print fleet-events records (last N per partition, --from-beginning, --follow)",
        description=DESCRIPTION,
    )
    add_arguments(parser)


def main(args: argparse.Namespace) -> int:
    return execute(args)

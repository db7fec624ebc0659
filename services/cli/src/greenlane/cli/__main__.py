"""Entry point of the greenlane command; each subcommand lives in greenlane.cli.commands."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Subcommand name -> module in greenlane.cli.commands. A module exposes
# add_parser(subparsers) and main(args) -> int.
COMMANDS = ("dev", "events", "liveops", "migrate", "plan", "report", "simulate", "stations")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="greenlane",
        description="GreenLane: charging coordination for electric-vehicle fleets.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"greenlane.cli.commands.{name}")
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    module = importlib.import_module(f"greenlane.cli.commands.{args.command}")
    return int(module.main(args))


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()

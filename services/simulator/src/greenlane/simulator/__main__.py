"""Entry point: `python -m greenlane.simulator` and the `greenlane-simulator` script."""

from __future__ import annotations

import functools

from greenlane.core.lifecycle import run_service
from greenlane.simulator.cli import main, parse_options


def run() -> None:
    # Flags are parsed before the loop starts: a bad one exits 2 with argparse's message.
    options = parse_options()
    run_service(functools.partial(main, options))


if __name__ == "__main__":
    run()

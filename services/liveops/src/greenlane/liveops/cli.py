"""The process around the feed: its own event loop, logging, exit code; shared by both commands."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence

from greenlane.core.logs import setup_logging
from greenlane.liveops.feed import EXIT_OK, amain
from greenlane.liveops.options import Options, parse_options


def execute(options: Options) -> int:
    """Run the feed in a fresh event loop; shared with `greenlane liveops`."""
    # Warnings only: the events are the output, but aiokafka's connection errors still show.
    setup_logging("liveops", "WARNING")
    try:
        code = asyncio.run(amain(options))
    except KeyboardInterrupt:
        # Ctrl+C before the signal handlers were installed: still a deliberate, clean stop.
        sys.stderr.write("liveops: interrupted while starting\n")
        code = EXIT_OK
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader of the pipe left (`| head`); spare the interpreter's complaint at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return code


def main(argv: Sequence[str] | None = None) -> int:
    return execute(parse_options(argv))


def run() -> None:
    sys.exit(main())

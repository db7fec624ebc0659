"""Process lifecycle: the event loop, SIGTERM/SIGINT handling, start-up errors."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from greenlane.core.errors import ConfigurationError


def shutdown_event() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT, so main() can drain and return."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def run_service(main: Callable[[], Coroutine[Any, Any, int | None]]) -> None:
    """Run main() on uvloop; bad configuration exits 2 with the message, not a traceback."""
    try:
        import uvloop

        runner: Callable[[Coroutine[Any, Any, int | None]], int | None] = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run
    try:
        code = runner(main())
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201 - start-up error for the operator
        sys.exit(2)
    except KeyboardInterrupt:
        code = 130
    sys.exit(code or 0)

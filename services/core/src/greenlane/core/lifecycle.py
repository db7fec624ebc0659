"""Process lifecycle: the event loop, SIGTERM/SIGINT handling, start-up errors."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from greenlane.core.errors import ConfigurationError

T = TypeVar("T")


def shutdown_event() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT, so main() can drain and return."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def unless_stopped(stop: asyncio.Event, start: Awaitable[T]) -> T | None:
    """Await start-up (which may wait for a backend as long as it takes), unless SIGTERM
    comes first: then start-up is cancelled and None is returned."""
    starting = asyncio.ensure_future(start)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if starting.done():
        return starting.result()
    starting.cancel()
    await asyncio.gather(starting, return_exceptions=True)
    return None


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

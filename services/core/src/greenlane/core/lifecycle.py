"""Process lifecycle: the event loop, SIGTERM/SIGINT, readiness, start-up that cleans up.

Start-up follows one pattern in every service: each resource is entered into a
`contextlib.AsyncExitStack` as soon as it is opened, so a failure halfway (a port
taken, a bad setting found late) closes what was opened, in reverse order, and the
process exits 2 with one line naming what to change. `/readyz` reports a `Readiness`
registry that start-up fills as it goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from greenlane.core.errors import ConfigurationError

T = TypeVar("T")
log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[bool] | bool]
CheckGroup = Callable[[], Awaitable[Mapping[str, bool]]]


class Readiness:
    """What /readyz reports: named checks added as start-up opens each part.

    A check is a flag (`flag(name)`: false until set), a function returning a bool
    (sync or async), or a group returning several named results. A check that raises
    or takes longer than `timeout` reads false: a probe must never hang or fail itself.
    """

    def __init__(self, timeout: float = 1.0) -> None:
        self.timeout = timeout
        self._checks: dict[str, Check] = {}
        self._groups: list[CheckGroup] = []

    def add(self, name: str, check: Check) -> None:
        """Register (or replace) one named check."""
        self._checks[name] = check

    def add_group(self, checks: CheckGroup) -> None:
        """Register a function whose results are merged in (a worker's own health)."""
        self._groups.append(checks)

    def flag(self, name: str) -> asyncio.Event:
        """A check that reads false until the returned event is set."""
        event = asyncio.Event()
        self._checks[name] = event.is_set
        return event

    async def _one(self, check: Check) -> bool:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, self.timeout)
            return bool(result)
        except Exception:  # a failed probe is a "no", not an error page
            return False

    async def _group(self, group: CheckGroup) -> Mapping[str, bool]:
        try:
            return await asyncio.wait_for(group(), self.timeout)
        except Exception:
            return {}

    async def __call__(self) -> dict[str, bool]:
        names = list(self._checks)
        values = await asyncio.gather(*(self._one(self._checks[n]) for n in names))
        results = dict(zip(names, values, strict=True))
        for group in self._groups:
            results.update(await self._group(group))
        return results


def bind_socket(host: str, port: int, variable: str) -> socket.socket:
    """A listening socket bound now, so a taken port is a clear start-up error.

    variable names the setting(s) that move the port; SO_REUSEADDR only (never
    SO_REUSEPORT, which would let a second instance share the port silently).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"{variable}: cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    sock.setblocking(False)
    return sock


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
    """Run main() on uvloop; a start-up error exits 2 with its message, not a traceback."""
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


async def restarting(
    what: str,
    run: Callable[[asyncio.Event], Awaitable[None]],
    stop: asyncio.Event,
    logger: logging.Logger,
    pause_seconds: float = 2.0,
) -> None:
    """Run a service's loop until `stop`; a crash is logged (naming `what`) and the loop
    starts again after a pause, so one failing part never takes the service down."""
    while not stop.is_set():
        try:
            await run(stop)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("%s failed; restarting it in %g s", what, pause_seconds)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause_seconds)


async def start_in_stack(start: Callable[[contextlib.AsyncExitStack], Awaitable[T]]) -> T:
    """Start a service whose parts `start` enters into one AsyncExitStack (which the
    started service then owns and closes on stop); a failed start closes what it had
    opened, in reverse order, and raises."""
    stack = contextlib.AsyncExitStack()
    try:
        return await start(stack)
    except BaseException:
        await stack.aclose()
        raise


A = TypeVar("A")


class EntryPoint(Protocol):
    def __call__(self, argv: Sequence[str] | None = None) -> None: ...


def console_script(
    parse: Callable[[Sequence[str] | None], A],
    main: Callable[[A], Coroutine[Any, Any, int | None]],
) -> EntryPoint:
    """A service's console-script entry point: parse the flags first (a bad one exits 2
    with argparse's message), then run main(args) under run_service."""

    def run(argv: Sequence[str] | None = None) -> None:
        args = parse(argv)
        run_service(lambda: main(args))

    return run

"""Serving an ASGI app from a service's main(): bind first, serve until SIGTERM, drain."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp

from greenlane.core.edge import EdgeLimits, TlsFiles, server_config
from greenlane.core.errors import ConfigurationError
from greenlane.core.telemetry import SignalNeutralServer


def bind_listener(host: str, port: int, variables: str) -> socket.socket:
    """A bound TCP socket; a taken port or a bad address is a start-up error naming the
    settings that choose them (`variables`, e.g. "GREENLANE_PLANNER_HOST/..._PORT")."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"{variables}: cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    return sock


async def serve_until_stopped(
    app: ASGIApp,
    sock: socket.socket,
    stop: asyncio.Event,
    grace_seconds: float,
    *,
    tls: TlsFiles | None = None,
    limits: EdgeLimits | None = None,
) -> bool:
    """Serve app on sock until stop is set, then let in-flight requests finish (up to
    grace_seconds). True when it stopped because stop was set, False when the server
    ended on its own."""
    config = server_config(app, tls=tls, limits=limits, graceful_seconds=grace_seconds)
    return await run_until_stopped(SignalNeutralServer(config), sock, stop)


async def run_until_stopped(
    server: SignalNeutralServer,
    sock: socket.socket,
    stop: asyncio.Event,
    before_drain: Callable[[], Awaitable[None]] | None = None,
) -> bool:
    """Run a configured server on sock until stop is set; then `before_drain` (e.g. close
    long-lived WebSockets, which would hold the graceful shutdown) and the drain. True
    when it stopped because stop was set, False when the server ended on its own."""
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        stopping.cancel()
        if before_drain is not None:
            await before_drain()
        await serving
    return stop.is_set()


def exit_code(stopped: bool, name: str, logger: logging.Logger) -> int:
    """A served service's exit code: 0 when it stopped because it was asked to, else 1."""
    if not stopped:
        logger.error("%s server stopped without being asked to", name)
        return 1
    logger.info("%s stopped", name)
    return 0

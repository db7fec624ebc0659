"""Serving an ASGI app from a service's main(): bind first, serve until SIGTERM, drain."""

from __future__ import annotations

import asyncio
import socket

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
    server = SignalNeutralServer(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        stopping.cancel()
        await serving
    return stop.is_set()

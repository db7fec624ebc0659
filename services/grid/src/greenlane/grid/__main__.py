"""Entry point: python -m greenlane.grid serves the tariff over HTTP until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import Sequence

from greenlane.core import cliargs
from greenlane.core.edge import edge_limits, server_config, tls_files
from greenlane.core.lifecycle import bind_socket, console_script, shutdown_event
from greenlane.core.logs import setup_logging
from greenlane.core.redis_state import connect
from greenlane.core.settings import load_settings
from greenlane.core.telemetry import SignalNeutralServer
from greenlane.core.tracing import setup_tracing
from greenlane.grid.app import create_app
from greenlane.grid.settings import GridSettings

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_SECONDS = 10
PORT_VARIABLES = "GREENLANE_GRID_HOST/GREENLANE_GRID_PORT (or --host/--port)"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; they override the GREENLANE_* environment."""
    parser = argparse.ArgumentParser(
        prog="python -m greenlane.grid",
        description=(
            "GreenLane grid service: the time-of-use tariff over HTTP "
            "(GET /api/pricing, /api/pricing/forecast, /healthz, /readyz, /metrics). "
            "Configured by GREENLANE_* environment variables; stops cleanly on SIGTERM."
        ),
    )
    parser.add_argument("--host", help="address to listen on (default: $GREENLANE_GRID_HOST)")
    parser.add_argument(
        "--port", type=cliargs.port, help="TCP port to listen on (default: $GREENLANE_GRID_PORT)"
    )
    return parser.parse_args(argv)


async def main(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT, then drain in-flight requests and return 0."""
    settings = load_settings(GridSettings)
    overrides: dict[str, object] = {}
    if args.host is not None:
        overrides["grid_host"] = args.host
    if args.port is not None:
        overrides["grid_port"] = args.port
    settings = settings.model_copy(update=overrides)
    setup_logging("grid", settings.log_level, settings.log_format)
    async with contextlib.AsyncExitStack() as stack:
        provider = setup_tracing("grid")
        stack.push_async_callback(asyncio.to_thread, provider.shutdown)
        stop = shutdown_event()
        # Bound before serving, so a taken port is a clear start-up error (exit 2).
        sock = stack.enter_context(
            bind_socket(settings.grid_host, settings.grid_port, PORT_VARIABLES)
        )
        redis = None
        if settings.demand_prices:  # GET /api/pricing?station_id= follows demand
            redis = connect(settings.redis_url, cluster=settings.redis_cluster, max_connections=8)
            stack.push_async_callback(redis.aclose)
        config = server_config(
            create_app(settings, redis=redis),
            tls=tls_files(settings),
            limits=edge_limits(settings),
            graceful_seconds=GRACEFUL_SHUTDOWN_SECONDS,
        )
        server = SignalNeutralServer(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        stack.push_async_callback(_drain, server, serving)
        host, port = sock.getsockname()[:2]
        log.info(
            "grid service listening on http://%s:%s (tariff time zone %s)",
            host,
            port,
            settings.tariff_timezone,
        )
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not stop.is_set():
            log.error("grid server stopped without being asked to")
            return 1
    log.info("grid service stopped")
    return 0


async def _drain(server: SignalNeutralServer, serving: asyncio.Task[None]) -> None:
    """Stop accepting, let in-flight requests finish (uvicorn's graceful timeout)."""
    server.should_exit = True
    await serving


# The console script (greenlane-grid) and python -m greenlane.grid.
run = console_script(parse_args, main)


if __name__ == "__main__":
    run()

"""Entry point: python -m greenlane.hub serves the live fleet until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
from collections.abc import Sequence

from greenlane.core import cliargs
from greenlane.core.edge import edge_limits, server_config, tls_files
from greenlane.core.lifecycle import console_script, shutdown_event
from greenlane.core.logs import setup_logging
from greenlane.core.serving import bind_listener, exit_code, run_until_stopped
from greenlane.core.settings import load_settings
from greenlane.core.telemetry import SignalNeutralServer
from greenlane.core.tracing import setup_tracing
from greenlane.hub.app import assets_present, create_app
from greenlane.hub.service import HubService, web_dir
from greenlane.hub.settings import HubSettings

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_SECONDS = 5


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; they override the GREENLANE_* environment."""
    parser = argparse.ArgumentParser(
        prog="python -m greenlane.hub",
        description=(
            "GreenLane hub: follows fleet-events and serves the live fleet "
            "(GET /api/snapshot, WS /ws?since=SEQ, GET /api/cars/ID, the web map at /, "
            "/healthz, /readyz, /metrics). Configured by GREENLANE_* environment variables; "
            "stops cleanly on SIGTERM."
        ),
    )
    parser.add_argument("--host", help="address to listen on (default: $GREENLANE_HUB_HOST)")
    parser.add_argument(
        "--port",
        type=cliargs.port,
        help="TCP port to listen on (default: $GREENLANE_HUB_PORT, 8090)",
    )
    return parser.parse_args(argv)


def bind(host: str, port: int) -> socket.socket:
    """Bind before serving, so a taken port is a clear start-up error."""
    return bind_listener(host, port, "GREENLANE_HUB_HOST/GREENLANE_HUB_PORT (or --host/--port)")


def server_for(service: HubService) -> SignalNeutralServer:
    config = server_config(
        create_app(service),
        tls=tls_files(service.settings),
        limits=edge_limits(service.settings),
        graceful_seconds=GRACEFUL_SHUTDOWN_SECONDS,
        ws="websockets-sansio",
        ws_per_message_deflate=False,  # one encoding of a frame serves every client
    )
    return SignalNeutralServer(config)


async def main(args: argparse.Namespace) -> int:
    settings = load_settings(HubSettings)
    overrides: dict[str, object] = {}
    if args.host is not None:
        overrides["hub_host"] = args.host
    if args.port is not None:
        overrides["hub_port"] = args.port
    settings = settings.model_copy(update=overrides)
    setup_logging("hub", settings.log_level, settings.log_format)
    provider = setup_tracing("hub")
    stop = shutdown_event()
    service = HubService(settings)
    try:
        sock = bind(settings.hub_host, settings.hub_port)
        if not assets_present(web_dir(settings)):
            log.warning(
                "the dashboard is not built (%s is missing): run `make web` with Node.js 20+; "
                "the API and the WebSocket work without it",
                web_dir(settings) / "index.html",
            )
        await service.start()
        server = server_for(service)
        with sock:
            host, port = sock.getsockname()[:2]
            log.info(
                "hub listening on http://%s:%s (topic %s)", host, port, settings.fleet_events_topic
            )
            stopped = await run_until_stopped(server, sock, stop, before_drain=service.stop)
        return exit_code(stopped, "hub", log)
    finally:
        await asyncio.to_thread(provider.shutdown)


# The console script (greenlane-hub) and python -m greenlane.hub.
run = console_script(parse_args, main)


if __name__ == "__main__":
    run()

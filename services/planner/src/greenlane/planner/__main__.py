"""Entry point: python -m greenlane.planner runs the live planner and serves its API until
SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence

from greenlane.core import cliargs
from greenlane.core.edge import edge_limits, tls_files
from greenlane.core.lifecycle import console_script, shutdown_event
from greenlane.core.logs import setup_logging
from greenlane.core.serving import bind_listener, exit_code, serve_until_stopped
from greenlane.core.settings import load_settings
from greenlane.core.tracing import setup_tracing
from greenlane.planner.api import create_app
from greenlane.planner.live import LivePlanner
from greenlane.planner.settings import PlannerSettings

log = logging.getLogger("greenlane.planner")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; they override the GREENLANE_* environment."""
    parser = argparse.ArgumentParser(
        prog="python -m greenlane.planner",
        description=(
            "GreenLane planner: one joint charging plan per site, re-planned live from "
            "fleet-events and published to Redis, Kafka and the cars' streams. Serves "
            "POST /api/planner/solve (what-if), GET /api/plans/{car_id}, GET "
            "/api/sites/{site_id}/schedule, PUT /api/cars/{car_id}/goal, /healthz, /readyz "
            "and /metrics. Configured by GREENLANE_* environment variables "
            "(credentials are required: docs/security.md); stops cleanly on SIGTERM."
        ),
    )
    parser.add_argument("--host", help="address to listen on (default: $GREENLANE_PLANNER_HOST)")
    parser.add_argument(
        "--port", type=cliargs.port, help="TCP port to listen on (default: $GREENLANE_PLANNER_PORT)"
    )
    return parser.parse_args(argv)


async def main(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT, then let in-flight solves finish and return 0."""
    settings = load_settings(PlannerSettings)
    overrides: dict[str, object] = {}
    if args.host is not None:
        overrides["planner_host"] = args.host
    if args.port is not None:
        overrides["planner_port"] = args.port
    settings = settings.model_copy(update=overrides)
    setup_logging("planner", settings.log_level, settings.log_format)
    # One line per forecast poll is noise; failures are logged by the planner itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    provider = setup_tracing("planner")
    stop = shutdown_event()
    live = LivePlanner(settings) if settings.planner_live else None
    try:
        sock = bind_listener(
            settings.planner_host,
            settings.planner_port,
            "GREENLANE_PLANNER_HOST/GREENLANE_PLANNER_PORT (or --host/--port)",
        )
        with sock:
            host, port = sock.getsockname()[:2]
            log.info("planner listening on http://%s:%s", host, port)
            if live is not None:
                await live.start()
                log.info(
                    "live planner %s: %d-minute slots over %g h, grid %s",
                    live.me,
                    settings.planner_slot_minutes,
                    settings.planner_horizon_hours,
                    settings.grid_url,
                )
            try:
                stopped = await serve_until_stopped(
                    create_app(settings, live=live),
                    sock,
                    stop,
                    settings.shutdown_grace_seconds,
                    tls=tls_files(settings),
                    limits=edge_limits(settings),
                )
            finally:
                if live is not None:
                    await live.stop()
        return exit_code(stopped, "planner", log)
    finally:
        await asyncio.to_thread(provider.shutdown)


# The console script (greenlane-planner) and python -m greenlane.planner.
run = console_script(parse_args, main)


if __name__ == "__main__":
    run()

"""Entry point: python -m greenlane.ingestion."""

from __future__ import annotations

import argparse
import logging

from greenlane.core.lifecycle import run_service, shutdown_event, unless_stopped
from greenlane.core.logs import setup_logging
from greenlane.core.settings import load_settings
from greenlane.core.tracing import setup_tracing
from greenlane.ingestion.server import start_server
from greenlane.ingestion.settings import IngestionSettings

log = logging.getLogger("greenlane.ingestion")


async def main() -> int:
    settings = load_settings(IngestionSettings)
    setup_logging("ingestion", settings.log_level, settings.log_format)
    provider = setup_tracing("ingestion")
    try:
        stop = shutdown_event()
        # A start-up failure has closed what it opened; ConfigurationError exits 2.
        running = await unless_stopped(stop, start_server(settings))
        if running is None:
            log.info("stopped before start-up completed")
            return 0
        await stop.wait()
        log.info("shutting down: draining streams for up to %.1fs", settings.shutdown_grace_seconds)
        await running.stop(settings.shutdown_grace_seconds)
        log.info("stopped")
        return 0
    finally:
        provider.shutdown()


def run() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m greenlane.ingestion",
        description="GreenLane ingestion: gRPC telemetry streams into Redis and Kafka. "
        "Configured by GREENLANE_* environment variables (see docs/configuration.md).",
    )
    parser.parse_args()
    run_service(main)


if __name__ == "__main__":
    run()

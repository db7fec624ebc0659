"""Entry point: python -m greenlane.pricing_worker."""

from __future__ import annotations

import argparse
import asyncio
import logging

from greenlane.core.lifecycle import run_service, shutdown_event, unless_stopped
from greenlane.core.logs import setup_logging
from greenlane.core.settings import load_settings
from greenlane.core.tracing import setup_tracing
from greenlane.pricing_worker.service import start_worker
from greenlane.pricing_worker.settings import PricingWorkerSettings

log = logging.getLogger("greenlane.pricing_worker")


async def main() -> int:
    settings = load_settings(PricingWorkerSettings)
    setup_logging("pricing-worker", settings.log_level, settings.log_format)
    if settings.log_level != "DEBUG":
        # One line per grid request is noise; failures are logged by the worker itself.
        logging.getLogger("httpx").setLevel(logging.WARNING)
    provider = setup_tracing("pricing-worker")
    try:
        return await _serve(settings)
    finally:
        provider.shutdown()


async def _serve(settings: PricingWorkerSettings) -> int:
    stop = shutdown_event()
    # Start-up waits for Kafka as long as it takes; SIGTERM must still end it. A failed
    # start has closed what it opened; ConfigurationError exits 2.
    running = await unless_stopped(stop, start_worker(settings))
    if running is None:
        log.info("stopped before start-up completed")
        return 0
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({stopped, running.task}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if running.task.done() and not stop.is_set():
        code = 1  # the consumer loop died: exit, and let the supervisor restart us
        log.error("the consumer loop stopped unexpectedly", exc_info=running.task.exception())
    else:
        log.info("shutting down: finishing the batch in flight")
    stopped.cancel()
    try:
        await running.stop()
    except Exception:
        log.exception("error while stopping")
        code = 1
    log.info("stopped")
    return code


def run() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m greenlane.pricing_worker",
        description="GreenLane pricing worker: prices fleet events by the grid tariff and "
        "stores them in charging_sessions. Configured by GREENLANE_* environment variables "
        "(see services/pricing_worker/README.md).",
    )
    parser.parse_args()
    run_service(main)


if __name__ == "__main__":
    run()

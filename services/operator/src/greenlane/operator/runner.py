"""Run the operator: kopf with our handlers, the metrics endpoint, a clean stop."""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

import kopf

from greenlane.core.telemetry import HttpServer as ProbeServer
from greenlane.core.telemetry import probes_app
from greenlane.operator.handlers import Runtime, build_registry, kopf_settings
from greenlane.operator.settings import OperatorSettings

log = logging.getLogger(__name__)


async def run_operator(
    settings: OperatorSettings,
    *,
    namespaces: Collection[str] = (),
    clusterwide: bool = False,
    liveness_endpoint: str | None = None,
    stop_flag: Any = None,
    ready_flag: Any = None,
) -> int:
    """Until SIGTERM/SIGINT (main thread) or `stop_flag` (an asyncio or threading Event).

    kopf installs its own SIGTERM/SIGINT handlers when it runs in the main thread.
    """
    if clusterwide == bool(namespaces):
        raise ValueError("watch either some namespaces or the whole cluster")
    runtime = Runtime(settings=settings)
    probes = ProbeServer(probes_app(), settings.metrics_host, settings.metrics_port)
    await probes.start()
    log.info(
        "operator watching %s; metrics on port %d",
        "all namespaces" if clusterwide else ", ".join(namespaces),
        probes.port,
    )
    try:
        await kopf.operator(
            registry=build_registry(),
            settings=kopf_settings(),
            memo=kopf.Memo(runtime=runtime),
            standalone=True,  # one replica (Recreate): no peering objects needed
            clusterwide=clusterwide,
            namespaces=list(namespaces),
            liveness_endpoint=liveness_endpoint,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    finally:
        await runtime.client.close()
        await probes.stop()
    log.info("operator stopped")
    return 0

"""Assembles the ingestion server: backends, pipeline, gRPC services, probes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from redis.asyncio import Redis

from greenlane.core.kafka import ensure_topic, make_producer, start_with_retry
from greenlane.core.telemetry import ProbeServer, probes_app
from greenlane.ingestion import metrics
from greenlane.ingestion.auth import TokenAuthInterceptor
from greenlane.ingestion.pipeline import IngestPipeline
from greenlane.ingestion.service import FleetTelemetryService
from greenlane.ingestion.settings import IngestionSettings
from greenlane.v1 import fleet_pb2, fleet_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = fleet_pb2.DESCRIPTOR.services_by_name["FleetTelemetry"].full_name


@dataclass
class RunningServer:
    """Handles of a started ingestion server, for main() and for tests."""

    grpc_server: grpc.aio.Server
    port: int
    probes: ProbeServer
    pipeline: IngestPipeline
    health: health.aio.HealthServicer
    redis: Redis
    producer: object

    async def stop(self, grace: float) -> None:
        """Refuse new calls, let open ones finish within grace, drain the pipeline."""
        await self.health.enter_graceful_shutdown()
        await self.grpc_server.stop(grace)
        await self.pipeline.close()
        await self.producer.stop()  # type: ignore[attr-defined]
        await self.redis.aclose()
        await self.probes.stop()


async def start_server(settings: IngestionSettings) -> RunningServer:
    redis = Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
    producer = make_producer(settings.kafka_bootstrap_servers, client_id="greenlane-ingestion")

    async def ready() -> Mapping[str, bool]:
        try:
            redis_ok = bool(await asyncio.wait_for(redis.ping(), 1.0))
        except Exception:
            redis_ok = False
        return {"redis": redis_ok, "kafka": pipeline.healthy, "started": serving.is_set()}

    serving = asyncio.Event()
    probes = ProbeServer(probes_app(ready), settings.metrics_host, settings.metrics_port)
    await probes.start()

    await start_with_retry(producer.start, "Kafka broker " + settings.kafka_bootstrap_servers)
    await start_with_retry(
        lambda: ensure_topic(
            settings.kafka_bootstrap_servers,
            settings.fleet_events_topic,
            partitions=settings.fleet_events_partitions,
        ),
        "Kafka topic creation",
    )
    pipeline = IngestPipeline(
        redis,
        producer,
        settings.fleet_events_topic,
        max_flush_size=settings.max_flush_size,
        ack_timeout=settings.ack_timeout_seconds,
        max_pending=settings.max_pending,
    )
    pipeline.start()

    server = grpc.aio.server(
        interceptors=[
            TokenAuthInterceptor(settings.api_tokens, lambda _m: metrics.AUTH_FAILURES.inc())
        ],
        options=[
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.http2.max_pings_without_data", 0),
        ],
    )
    fleet_pb2_grpc.add_FleetTelemetryServicer_to_server(
        FleetTelemetryService(
            pipeline,
            max_in_flight=settings.max_in_flight_per_stream,
            max_batch=settings.max_batch_statuses,
        ),
        server,
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(f"{settings.ingestion_host}:{settings.ingestion_port}")
    if port == 0:
        raise OSError(
            f"cannot listen on {settings.ingestion_host}:{settings.ingestion_port} "
            "(GREENLANE_INGESTION_PORT): the port is taken"
        )
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    serving.set()
    log.info(
        "ingestion listening on %s:%d (metrics on :%d)",
        settings.ingestion_host,
        port,
        probes.port,
    )
    return RunningServer(server, port, probes, pipeline, health_servicer, redis, producer)

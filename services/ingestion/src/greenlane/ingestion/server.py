"""Assembles the ingestion server: backends, pipeline, gRPC services, probes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from greenlane.core.kafka import ensure_topic, make_producer, start_with_retry
from greenlane.core.keys import Region
from greenlane.core.redis_state import CarStateStore, RedisClient, connect
from greenlane.core.telemetry import ProbeServer, probes_app
from greenlane.ingestion import metrics
from greenlane.ingestion.api import create_api
from greenlane.ingestion.auth import TokenAuthInterceptor
from greenlane.ingestion.booking_store import BookingStore
from greenlane.ingestion.desk import BookingDesk
from greenlane.ingestion.pipeline import IngestPipeline
from greenlane.ingestion.publisher import KafkaEventLog
from greenlane.ingestion.servicer import FleetTelemetryService
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
    redis: RedisClient
    producer: object
    api: ProbeServer
    desk: BookingDesk
    sweeper: asyncio.Task[None]

    async def stop(self, grace: float) -> None:
        """Refuse new calls, let open ones finish within grace, drain the pipeline."""
        await self.health.enter_graceful_shutdown()
        await self.grpc_server.stop(grace)
        self.sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.sweeper
        await self.api.stop()
        await self.pipeline.close()
        await self.producer.stop()  # type: ignore[attr-defined]
        await self.redis.aclose()
        await self.probes.stop()


async def start_server(settings: IngestionSettings) -> RunningServer:
    redis = connect(settings.redis_url, cluster=settings.redis_cluster)
    # Flushes are whole record batches: waiting to fill them (linger) only adds latency.
    producer = make_producer(
        settings.kafka_bootstrap_servers, client_id="greenlane-ingestion", linger_ms=0
    )

    async def ready() -> Mapping[str, bool]:
        try:
            redis_ok = bool(await asyncio.wait_for(redis.ping(), 1.0))
        except Exception:
            redis_ok = False
        # Until the pipeline exists (waiting for the broker), Kafka counts as not ready.
        kafka_ok = pipelines[0].healthy if pipelines else False
        return {"redis": redis_ok, "kafka": kafka_ok, "started": serving.is_set()}

    serving = asyncio.Event()
    pipelines: list[IngestPipeline] = []
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
        CarStateStore(redis),
        KafkaEventLog(producer, settings.fleet_events_topic),
        max_flush_size=settings.max_flush_size,
        ack_timeout=settings.ack_timeout_seconds,
        max_pending=settings.max_pending,
    )
    pipeline.start()
    pipelines.append(pipeline)
    desk = BookingDesk(
        BookingStore(
            redis,
            region=Region(settings.region),
            ttl_ms=int(settings.booking_ttl_seconds * 1000),
            max_radius_km=settings.booking_max_radius_km,
            max_candidates=settings.booking_max_candidates,
        ),
        redis,
        producer,
        settings.fleet_events_topic,
        threshold=settings.booking_threshold_percent,
    )
    api = ProbeServer(
        create_api(desk, settings.api_tokens), settings.ingestion_host, settings.booking_api_port
    )
    await api.start()
    sweeper = asyncio.create_task(_sweep_forever(desk, settings.booking_sweep_seconds))

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
            desk=desk,
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
        "ingestion listening on %s:%d (booking API on :%d, metrics on :%d)",
        settings.ingestion_host,
        port,
        api.port,
        probes.port,
    )
    return RunningServer(
        server, port, probes, pipeline, health_servicer, redis, producer, api, desk, sweeper
    )


async def _sweep_forever(desk: BookingDesk, every: float) -> None:
    """Expired bookings give their slot back even at stations nobody asks about."""
    while True:
        await asyncio.sleep(every)
        try:
            await desk.sweep()
        except Exception as exc:  # Redis down: the next sweep catches up
            log.warning("booking sweep failed: %s", type(exc).__name__)

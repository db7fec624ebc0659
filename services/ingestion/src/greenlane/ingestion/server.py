"""Assembles the ingestion server: backends, pipeline, gRPC services, probes.

Start-up enters every part into one AsyncExitStack as it opens it: a failure at any
step (the gRPC port taken, the booking API's port taken, ...) closes what was opened,
in reverse order, and stop() later closes the same parts the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation

from greenlane.core.auth import Authenticator
from greenlane.core.authenticator import build_authenticator
from greenlane.core.demand import BookingWeights
from greenlane.core.edge import edge_limits, tls_files
from greenlane.core.errors import ConfigurationError
from greenlane.core.kafka import ensure_topic, make_producer, start_with_retry
from greenlane.core.keys import Region
from greenlane.core.lifecycle import Check, Readiness, bind_socket, start_in_stack
from greenlane.core.redis_state import CarStateStore, RedisClient, connect
from greenlane.core.telemetry import HttpServer, probes_app
from greenlane.core.tracing import exporting
from greenlane.ingestion import metrics
from greenlane.ingestion.api import create_api
from greenlane.ingestion.auth import AuthInterceptor
from greenlane.ingestion.booking_store import BookingStore
from greenlane.ingestion.desk import BookingDesk
from greenlane.ingestion.limits import LimitDefaults, Limiter
from greenlane.ingestion.pipeline import IngestPipeline
from greenlane.ingestion.publisher import KafkaEventLog
from greenlane.ingestion.servicer import FleetTelemetryService
from greenlane.ingestion.settings import IngestionSettings
from greenlane.ingestion.tracing import instrument_clients, server_interceptors
from greenlane.v1 import fleet_pb2, fleet_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = fleet_pb2.DESCRIPTOR.services_by_name["FleetTelemetry"].full_name
PORT_VARIABLES = "GREENLANE_INGESTION_HOST/GREENLANE_INGESTION_PORT"
# Streams that may wait to be served: a whole fleet's reconnection (gRPC's default is 1000).
MAX_PENDING_STREAMS = 20_000


@dataclass
class RunningServer:
    """Handles of a started ingestion server, for main() and for tests."""

    grpc_server: grpc.aio.Server
    port: int
    probes: HttpServer
    pipeline: IngestPipeline
    health: health.aio.HealthServicer
    redis: RedisClient
    producer: object
    api: HttpServer
    desk: BookingDesk
    readiness: Readiness
    _stack: contextlib.AsyncExitStack = field(repr=False)
    _grace: float = 0.0

    async def stop(self, grace: float) -> None:
        """Refuse new calls, let open ones finish within grace, drain the pipeline."""
        self._grace = grace
        await self._stack.aclose()

    async def _stop_grpc(self) -> None:
        await self.health.enter_graceful_shutdown()
        await self.grpc_server.stop(self._grace)


def grpc_options(settings: IngestionSettings) -> list[tuple[str, int]]:
    """gRPC core's per-connection limits (docs/security.md, "Limits")."""

    def ms(seconds: float) -> int:
        return int(seconds * 1000)

    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        # Advertised in the HTTP/2 SETTINGS: a client opens at most this many streams at
        # once on one connection (more wait at the client).
        ("grpc.max_concurrent_streams", settings.max_streams_per_connection),
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.http2.max_pings_without_data", 0),
        # Keepalive enforcement: pings more often than this earn strikes; two and the
        # connection is closed with GOAWAY (ENHANCE_YOUR_CALM, too_many_pings).
        ("grpc.http2.min_ping_interval_without_data_ms", ms(settings.min_ping_interval_seconds)),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.max_connection_idle_ms", ms(settings.max_connection_idle_seconds)),
        ("grpc.max_connection_age_ms", ms(settings.max_connection_age_seconds)),
        ("grpc.max_connection_age_grace_ms", ms(settings.max_connection_age_grace_seconds)),
        # A connection that has not finished its TLS handshake and HTTP/2 settings in this
        # time is closed (half-open connections hold no descriptor for long).
        ("grpc.server_handshake_timeout_ms", ms(settings.handshake_timeout_seconds)),
    ]


def server_credentials(settings: IngestionSettings) -> grpc.ServerCredentials | None:
    """TLS (and with a client CA, mTLS: a client without a certificate is refused in the
    handshake) from GREENLANE_TLS_*; None: plaintext."""
    files = tls_files(settings)
    if files is None:
        return None
    with open(files.cert_file, "rb") as f:
        cert = f.read()
    with open(files.key_file, "rb") as f:
        key = f.read()
    ca = None
    if files.client_ca_file:
        with open(files.client_ca_file, "rb") as f:
            ca = f.read()
    return grpc.ssl_server_credentials([(key, cert)], ca, require_client_auth=ca is not None)


def _grpc_server(
    settings: IngestionSettings,
    authenticator: Authenticator,
    tracing: list[grpc.aio.ServerInterceptor],
) -> tuple[grpc.aio.Server, int]:
    """The gRPC server with its port bound: the first thing, so a taken port costs nothing."""
    server = grpc.aio.server(
        interceptors=[
            # First: a refused call costs nothing else, not even a span.
            AuthInterceptor(authenticator, lambda _m: metrics.AUTH_FAILURES.inc()),
            *tracing,
        ],
        options=[
            *grpc_options(settings),
            # gRPC sets SO_REUSEPORT by default: a second ingestion would then share the
            # port with the first, silently, instead of failing to start.
            ("grpc.so_reuseport", 0),
            # New streams wait in gRPC core until grpc.aio's loop takes them, one per turn;
            # beyond 1000 waiting (3000 hard) core cancels them at random (CANCELLED at the
            # client). A fleet reconnecting at once, while flushes keep the loop busy,
            # exceeds that: measured in docs/benchmarks.md ("broken streams").
            ("grpc.server.max_pending_requests", MAX_PENDING_STREAMS),
            ("grpc.server.max_pending_requests_hard_limit", 2 * MAX_PENDING_STREAMS),
        ],
    )
    address = f"{settings.ingestion_host}:{settings.ingestion_port}"
    if settings.ingestion_port:
        # The system's own reason ("Address already in use"), before gRPC logs its own.
        bind_socket(settings.ingestion_host, settings.ingestion_port, PORT_VARIABLES).close()
    credentials = server_credentials(settings)
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError:  # grpcio raises when the bind fails
        port = 0
    if port == 0:
        raise ConfigurationError(
            f"{PORT_VARIABLES}: cannot listen on {address}: the address is in use or invalid"
        )
    return server, port


async def start_server(
    settings: IngestionSettings, *, tracer_provider: trace.TracerProvider | None = None
) -> RunningServer:
    """Start every part; on any failure, close what was started and re-raise.

    Spans go to the global tracer provider, instrumented only when it exports
    (core.tracing.exporting); a given provider (tests) is always instrumented.
    """
    return await start_in_stack(lambda stack: _start(settings, stack, tracer_provider))


async def _start(
    settings: IngestionSettings,
    stack: contextlib.AsyncExitStack,
    tracer_provider: trace.TracerProvider | None,
) -> RunningServer:
    authenticator = build_authenticator(settings)
    # An untraced ingestion keeps its hot path free of the interceptor's wrapping.
    traced = tracer_provider is not None or exporting()
    server, port = _grpc_server(
        settings, authenticator, server_interceptors(tracer_provider) if traced else []
    )
    listener = _Listener(server)
    stack.push_async_callback(listener.release_unstarted)

    readiness = Readiness()
    started = readiness.flag("started")
    readiness.add("kafka", lambda: False)  # until the pipeline exists (waiting for the broker)
    probes = await stack.enter_async_context(
        HttpServer(
            probes_app(readiness),
            settings.metrics_host,
            settings.metrics_port,
            variable="GREENLANE_METRICS_PORT",
        )
    )

    # Callers wait for a free connection (bounded) rather than fail when all are busy.
    redis = connect(settings.redis_url, cluster=settings.redis_cluster)
    stack.push_async_callback(redis.aclose)
    readiness.add("redis", _untraced(redis.ping))
    if traced:
        instrument_clients(redis, tracer_provider)

    # Flushes are whole record batches: waiting to fill them (linger) only adds latency.
    producer = make_producer(
        settings.kafka_bootstrap_servers, client_id="greenlane-ingestion", linger_ms=0
    )
    await start_with_retry(producer.start, "Kafka broker " + settings.kafka_bootstrap_servers)
    stack.push_async_callback(producer.stop)
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
        tracer_provider=tracer_provider,
    )
    pipeline.start()
    stack.push_async_callback(pipeline.close)
    readiness.add("kafka", lambda: pipeline.healthy)

    desk = BookingDesk(
        BookingStore(
            redis,
            ttl_ms=int(settings.booking_ttl_seconds * 1000),
            max_radius_km=settings.booking_max_radius_km,
            max_candidates=settings.booking_max_candidates,
            region=Region(settings.region),
        ),
        redis,
        producer,
        settings.fleet_events_topic,
        threshold=settings.booking_threshold_percent,
        max_per_fleet=settings.booking_max_per_fleet,
        tracer_provider=tracer_provider,
        policy=settings.booking_policy,
        margin_km=settings.booking_margin_km,
        horizon_s=settings.booking_horizon_seconds,
        weights=BookingWeights(
            speed_kmh=settings.booking_speed_kmh,
            value_per_minute=settings.booking_value_per_minute,
            energy_kwh=settings.booking_energy_kwh,
        ),
        tariff=settings.booking_tariff,
        demand_prices=settings.demand_prices,
        max_reach_km=settings.booking_max_reach_km,
        recheck_s=settings.booking_recheck_seconds,
    )
    api = await stack.enter_async_context(
        HttpServer(
            create_api(desk, authenticator),
            settings.ingestion_host,
            settings.booking_api_port,
            variable="GREENLANE_BOOKING_API_PORT",
            tls=tls_files(settings),
            limits=edge_limits(settings),
        )
    )
    sweeper = asyncio.create_task(_sweep_forever(desk, settings.booking_sweep_seconds))
    stack.push_async_callback(_cancel, sweeper)

    fleet_pb2_grpc.add_FleetTelemetryServicer_to_server(
        FleetTelemetryService(
            pipeline,
            desk=desk,
            max_in_flight=settings.max_in_flight_per_stream,
            max_batch=settings.max_batch_statuses,
            limiter=Limiter(
                LimitDefaults(
                    statuses_per_second=settings.limit_statuses_per_second,
                    burst=settings.limit_burst,
                    streams=settings.limit_streams,
                    batch=settings.max_batch_statuses,
                )
            ),
            tracer_provider=tracer_provider,
            trace_statuses=traced,
        ),
        server,
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    running = RunningServer(
        server,
        port,
        probes,
        pipeline,
        health_servicer,
        redis,
        producer,
        api,
        desk,
        readiness,
        stack,
    )
    await listener.start()
    # Last in, first out: streams drain before the sweeper, API and pipeline close.
    stack.push_async_callback(running._stop_grpc)
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    started.set()
    log.info(
        "ingestion listening on %s:%d (booking API on :%d, metrics on :%d)",
        settings.ingestion_host,
        port,
        api.port,
        probes.port,
    )
    return running


@dataclass
class _Listener:
    """The gRPC server from its bind to its start: frees the port if start-up fails first.

    grpc.aio keeps a bound, never-started server's socket even after stop(); starting
    it (no service is registered yet) and stopping it releases the port.
    """

    server: grpc.aio.Server
    started: bool = False

    async def start(self) -> None:
        await self.server.start()
        self.started = True

    async def release_unstarted(self) -> None:
        if not self.started:
            await self.server.start()
            await self.server.stop(None)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _untraced(check: Check) -> Check:
    """A readiness check without spans: probes run every few seconds, worth no trace."""

    async def run() -> bool:
        with suppress_instrumentation():
            result = check()
            return bool(await result) if inspect.isawaitable(result) else bool(result)

    return run


async def _sweep_forever(desk: BookingDesk, every: float) -> None:
    """Expired bookings give their slot back even at stations nobody asks about; the cars'
    latest drain predictions reach Redis as often."""
    while True:
        await asyncio.sleep(every)
        try:
            # A background chore every few seconds: its Redis calls are no trace each.
            with suppress_instrumentation():
                await desk.sweep()
        except Exception as exc:  # Redis down: the next sweep catches up
            log.warning("booking sweep failed: %s", type(exc).__name__)
        try:
            with suppress_instrumentation():
                await desk.publish_predictions()
        except Exception as exc:  # the next round writes the newer ones
            log.warning("drain predictions not written: %s", type(exc).__name__)

"""Assembles the pricing worker: Kafka, the database pool, the grid client, probes.

Every part is entered into one AsyncExitStack as it is opened: a failed start closes
what it had opened (in reverse order), and stop() closes the same parts the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import psycopg_pool
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from opentelemetry.trace import TracerProvider

from greenlane.core.kafka import ensure_topic, make_producer, start_with_retry
from greenlane.core.keys import Region
from greenlane.core.lifecycle import Readiness, start_in_stack
from greenlane.core.redis_state import connect
from greenlane.core.telemetry import HttpServer, probes_app
from greenlane.core.tracing import exporting
from greenlane.pricing_worker.demand import DemandFactors
from greenlane.pricing_worker.grid import GridClient
from greenlane.pricing_worker.pricer import Pricer
from greenlane.pricing_worker.settings import PricingWorkerSettings
from greenlane.pricing_worker.store import make_pool
from greenlane.pricing_worker.worker import PricingWorker

log = logging.getLogger(__name__)

CLIENT_ID = "greenlane-pricing-worker"
DLQ_PARTITIONS = 1  # dead letters are rare; one partition keeps them in order


@dataclass
class RunningWorker:
    """Handles of a started pricing worker, for main() and for tests."""

    worker: PricingWorker
    pricer: Pricer
    probes: HttpServer
    consumer: AIOKafkaConsumer
    producer: AIOKafkaProducer
    pool: psycopg_pool.AsyncConnectionPool
    client: GridClient
    task: asyncio.Task[None]
    refresher: asyncio.Task[None]
    stop_event: asyncio.Event
    _stack: contextlib.AsyncExitStack = field(repr=False)

    async def stop(self) -> None:
        """Finish and commit the batch in flight, leave the group, close everything."""
        await self._stack.aclose()

    async def _finish(self) -> None:
        self.stop_event.set()
        try:
            await self.task
        finally:
            with contextlib.suppress(asyncio.CancelledError):
                await self.refresher


async def start_worker(
    settings: PricingWorkerSettings, *, tracer_provider: TracerProvider | None = None
) -> RunningWorker:
    """Connect, subscribe and start consuming in the background.

    Spans go to the global tracer provider unless one is given (tests do).
    """
    return await start_in_stack(lambda stack: _start(settings, stack, tracer_provider))


async def _start(
    settings: PricingWorkerSettings,
    stack: contextlib.AsyncExitStack,
    tracer_provider: TracerProvider | None,
) -> RunningWorker:
    bootstrap = settings.kafka_bootstrap_servers
    readiness = Readiness()
    started = readiness.flag("started")
    probes = await stack.enter_async_context(
        HttpServer(probes_app(readiness), settings.metrics_host, settings.metrics_port)
    )

    producer = make_producer(bootstrap, client_id=CLIENT_ID)
    await start_with_retry(producer.start, "Kafka broker " + bootstrap)
    stack.push_async_callback(producer.stop)
    for topic, partitions in (
        (settings.fleet_events_topic, settings.fleet_events_partitions),
        (settings.dlq_topic, DLQ_PARTITIONS),
    ):
        await start_with_retry(
            lambda t=topic, p=partitions: ensure_topic(bootstrap, t, partitions=p),
            f"creation of Kafka topic {topic}",
        )

    # Spans of the grid calls and SQL statements when they go somewhere (or to a test's
    # provider); the batch's own spans are there either way (unsampled when untraced).
    traced = tracer_provider is not None or exporting()
    pool = make_pool(
        settings.database_url.get_secret_value(),
        size=settings.pricing_db_pool_size,
        timeout=settings.pricing_db_timeout_seconds,
        traced=traced,
        tracer_provider=tracer_provider,
    )
    await pool.open(wait=False)  # a database still starting is retried per batch
    stack.push_async_callback(pool.close)

    client = GridClient(
        settings.grid_url,
        timeout=settings.pricing_http_timeout_seconds,
        max_connections=settings.pricing_http_concurrency,
        traced=traced,
        tracer_provider=tracer_provider,
    )
    stack.push_async_callback(client.aclose)
    pricer = Pricer(
        client,
        resolution_ms=settings.pricing_quote_resolution_ms,
        cache_ttl=settings.pricing_quote_cache_ttl_seconds,
        cache_max_age=settings.pricing_cache_max_age_seconds,
        max_attempts=settings.pricing_max_attempts,
        concurrency=settings.pricing_http_concurrency,
        curve_past_hours=settings.pricing_curve_past_hours,
        curve_future_hours=settings.pricing_curve_future_hours,
    )
    # The curve's first fetch is the refresher's (run_refresher starts with one).
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=settings.pricing_group_id,
        client_id=CLIENT_ID,
        enable_auto_commit=False,
        # A new group prices everything still in the topic: nothing is skipped.
        auto_offset_reset="earliest",
        max_poll_records=settings.pricing_batch_size,
        session_timeout_ms=settings.pricing_session_timeout_ms,
        heartbeat_interval_ms=max(300, settings.pricing_session_timeout_ms // 3),
    )
    demand = None
    if settings.demand_prices:  # GREENLANE_DEMAND_PRICES
        redis = connect(settings.redis_url, cluster=settings.redis_cluster, max_connections=8)
        stack.push_async_callback(redis.aclose)
        demand = DemandFactors(redis, Region(settings.region))
    worker = PricingWorker(
        settings,
        consumer,
        producer,
        pool,
        pricer,
        tracer_provider=tracer_provider,
        demand=demand,
    )
    readiness.add_group(worker.ready)
    consumer.subscribe([settings.fleet_events_topic], listener=worker.listener)
    await start_with_retry(consumer.start, "Kafka consumer " + bootstrap)
    stack.push_async_callback(consumer.stop)

    stop = asyncio.Event()
    refresher = asyncio.create_task(
        pricer.run_refresher(
            stop,
            settings.pricing_curve_refresh_seconds,
            settings.pricing_retry_initial_seconds,
            settings.pricing_retry_max_seconds,
        )
    )
    task = asyncio.create_task(worker.run(stop))
    running = RunningWorker(
        worker, pricer, probes, consumer, producer, pool, client, task, refresher, stop, stack
    )
    # Last in, first out: the batch in flight is finished before the consumer closes.
    stack.push_async_callback(running._finish)
    started.set()
    log.info(
        "pricing worker consuming %s as group %s (grid %s, metrics on :%d)",
        settings.fleet_events_topic,
        settings.pricing_group_id,
        settings.grid_url,
        probes.port,
    )
    return running

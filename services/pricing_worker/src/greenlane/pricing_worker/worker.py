"""The consumer loop: a batch of fleet events is priced, accounted, stored, then committed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

import psycopg
import psycopg_pool
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from opentelemetry import trace
from opentelemetry.trace import SpanContext, SpanKind, StatusCode
from redis.exceptions import RedisError

from greenlane.core.errors import InvalidField
from greenlane.core.events import CarState, parse_event, row_values
from greenlane.core.telemetry import continue_and_link, traced_record
from greenlane.pricing_worker import metrics
from greenlane.pricing_worker.demand import DemandFactors
from greenlane.pricing_worker.dlq import DeadLetter, DlqReason, send_dead_letters
from greenlane.pricing_worker.pricer import GridDown, Priced, Pricer
from greenlane.pricing_worker.prices import Quote, instant_of, iso_at
from greenlane.pricing_worker.sessions import (
    CarSession,
    SessionParams,
    account_batch,
    stored_battery,
)
from greenlane.pricing_worker.settings import PricingWorkerSettings
from greenlane.pricing_worker.store import Row, event_key, insert_rows, load_last_sessions

log = logging.getLogger(__name__)

T = TypeVar("T")


class Record(Protocol):
    """The parts of an aiokafka ConsumerRecord the worker reads (aiokafka is untyped)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


IDLE_POLL_MS: Final = 500
BATCH_SPAN: Final = "pricing batch"
GRID_SPAN: Final = "grid price"
DB_SPAN: Final = "database write"
DLQ_SPAN: Final = "dead letters"
LAG_INTERVAL_SECONDS: Final = 1.0
# Every other registered kind (booking events, plans) carries no energy of its own: it
# is skipped, not dead-lettered; an unregistered kind is invalid.
PRICED_EVENT_TYPES: Final = frozenset({"telemetry"})
_DB_ERRORS: Final = (psycopg.Error, psycopg_pool.PoolTimeout, OSError, TimeoutError)


class BatchAbandoned(Exception):
    """A blocked batch was dropped uncommitted because the worker stops or loses its
    partitions; its messages will be consumed again from the committed offsets."""


@dataclass(frozen=True, slots=True)
class _Event:
    record: Record
    state: CarState
    event_type: str
    instant: int  # the instant it is priced at (ms)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one batch did (for logs, spans and tests)."""

    messages: int
    inserted: int
    priced: int
    cache_priced: int
    dead_lettered: int
    skipped: int


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: PricingWorker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._worker.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._worker.on_assigned(assigned)


class PricingWorker:
    """Consumes fleet events in batches; a batch's offsets are committed only after
    its rows are in PostgreSQL and its dead letters are in Kafka."""

    def __init__(
        self,
        settings: PricingWorkerSettings,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        pool: psycopg_pool.AsyncConnectionPool,
        pricer: Pricer,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        demand: DemandFactors | None = None,
    ) -> None:
        self._demand = demand
        self._settings = settings
        self._consumer = consumer
        self._producer = producer
        self._pool = pool
        self._pricer = pricer
        self._params = SessionParams(
            pack_capacity_kwh=settings.pricing_pack_capacity_kwh,
            gap_ms=round(settings.pricing_session_gap_seconds * 1000),
        )
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        # Per-car state of the session model, least recently used first. It only
        # ever holds what is durable in the table, so it can be dropped any time.
        self._states: OrderedDict[str, CarSession] = OrderedDict()
        # Held while a batch is processed; a rebalance waits for it (flush, then revoke).
        self._lock = asyncio.Lock()
        self._generation = 0
        # Set on stop or rebalance: a batch blocked in a retry gives up, uncommitted.
        self._interrupt = asyncio.Event()
        self._stopping = False
        self._health: dict[str, bool] = {"database": True, "grid": True, "dead_letters": True}
        self._lag_checked = 0.0
        self.listener = _Listener(self)
        self.batches = 0

    async def ready(self) -> Mapping[str, bool]:
        return dict(self._health)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        self._interrupt.set()
        async with self._lock:  # the batch in flight is written and committed first
            self._generation += 1
            # Another worker may own these cars next; what it writes is not in our memory.
            self._states.clear()
            for tp in revoked:
                try:
                    metrics.CONSUMER_LAG.remove(tp.topic, str(tp.partition))
                except KeyError:
                    pass
        log.info("partitions revoked: %s", sorted(tp.partition for tp in revoked))

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        if not self._stopping:
            self._interrupt.clear()
        log.info("partitions assigned: %s", sorted(tp.partition for tp in assigned))

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until stop is set; the batch in flight is finished and committed."""

        async def watch() -> None:
            await stop.wait()
            self._stopping = True
            self._interrupt.set()

        watcher = asyncio.create_task(watch())
        try:
            while not stop.is_set():
                generation = self._generation
                records = await self._collect(stop)
                if records:
                    async with self._lock:
                        if generation != self._generation:
                            # Positions were reset to the committed offsets: these come again.
                            log.info("dropped %d messages fetched before a rebalance", len(records))
                        else:
                            try:
                                await self.process(records)
                            except BatchAbandoned as exc:
                                log.warning("batch of %d not committed: %s", len(records), exc)
                await self._update_lag()
        finally:
            watcher.cancel()

    async def _collect(self, stop: asyncio.Event) -> list[Record]:
        """Up to pricing_batch_size messages, or what came within the linger time."""
        size = self._settings.pricing_batch_size
        linger = self._settings.pricing_batch_linger_ms / 1000
        loop = asyncio.get_running_loop()
        records: list[Record] = []
        deadline: float | None = None
        while len(records) < size and not stop.is_set():
            if deadline is None:
                timeout_ms = IDLE_POLL_MS
            else:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                timeout_ms = max(1, int(remaining * 1000))
            fetched = await self._consumer.getmany(
                timeout_ms=timeout_ms, max_records=size - len(records)
            )
            for partition_records in fetched.values():
                records.extend(partition_records)
            if not records:
                break
            if deadline is None:
                deadline = loop.time() + linger
        return records

    def _decode(self, records: Sequence[Record]) -> tuple[list[_Event], list[DeadLetter], int]:
        events: list[_Event] = []
        dead: list[DeadLetter] = []
        skipped = 0
        for r in records:
            try:
                if r.value is None:
                    raise InvalidField("value", "is missing (a tombstone)")
                event = parse_event(r.value)
            except InvalidField as exc:
                dead.append(self._dead_letter(r, "invalid_event", str(exc)))
                continue
            state, event_type = event.state, event.event_type
            if event_type not in PRICED_EVENT_TYPES or state is None:
                skipped += 1
                continue
            try:
                iso_at(state.timestamp)
            except (OverflowError, ValueError):
                dead.append(
                    self._dead_letter(
                        r, "unpriceable", "timestamp: beyond the range the grid can price"
                    )
                )
                continue
            events.append(_Event(r, state, event_type, self._pricer.instant_for(state.timestamp)))
        return events, dead, skipped

    @staticmethod
    def _dead_letter(r: Record, code: DlqReason, reason: str) -> DeadLetter:
        return DeadLetter(
            code, reason, r.topic, r.partition, r.offset, r.key, r.value, tuple(r.headers or ())
        )

    async def process(self, records: Sequence[Record]) -> BatchResult:
        """One batch, from messages to committed offsets; BatchAbandoned if interrupted.

        Its span continues the trace of its first traced record and links every other
        one (core.telemetry.continue_and_link): each priced row's span is reachable from
        the trace of the status it came from.
        """
        traced: list[SpanContext] = []
        for r in records:
            context = traced_record(r.headers)
            if context is not None:
                traced.append(context)
        parent, links, dropped = continue_and_link(traced)
        tracer = self._tracer
        with tracer.start_as_current_span(
            BATCH_SPAN, context=parent, kind=SpanKind.CONSUMER, links=links
        ) as span:
            span.set_attribute("messaging.system", "kafka")
            span.set_attribute("messaging.batch.message_count", len(records))
            span.set_attribute("greenlane.batch.messages", len(records))
            span.set_attribute("greenlane.batch.traced", len(traced))
            if dropped:
                span.set_attribute("greenlane.links.dropped", dropped)
            events, dead, skipped = self._decode(records)
            instants = {e.instant for e in events}
            priced = Priced({}, {})
            if instants:
                with tracer.start_as_current_span(GRID_SPAN) as step:
                    step.set_attribute("greenlane.grid.instants", len(instants))
                    priced = await self._retry(
                        "grid", lambda: self._pricer.price(instants), (GridDown,)
                    )
            kept: list[_Event] = []
            for e in events:
                why = priced.failed.get(e.instant)
                if why is None:
                    kept.append(e)
                else:
                    dead.append(self._dead_letter(e.record, "unpriceable", why))
            factors: dict[tuple[str, int], float] = {}
            demand = self._demand
            # The snapshot in force at the event's own instant (ms), not the tariff's
            # rounded one: a site's load changes from one millisecond to the next.
            at_stations = {
                (s.station_id, s.timestamp) for s in (e.state for e in kept) if s.station_id
            }
            if demand is not None and at_stations:
                factors = await self._retry(
                    "demand", lambda: demand.factors(at_stations), (RedisError, OSError)
                )
            with tracer.start_as_current_span(DB_SPAN, kind=SpanKind.CLIENT) as step:
                step.set_attribute("db.system.name", "postgresql")
                step.set_attribute("db.collection.name", "charging_sessions")
                inserted, cache_priced = await self._retry(
                    "database", lambda: self._write(kept, priced.quotes, factors), _DB_ERRORS
                )
                step.set_attribute("greenlane.rows.offered", len(kept))
                step.set_attribute("greenlane.rows.inserted", inserted)
            if dead:
                with tracer.start_as_current_span(DLQ_SPAN, kind=SpanKind.PRODUCER) as step:
                    step.set_attribute("messaging.destination.name", self._settings.dlq_topic)
                    step.set_attribute("messaging.batch.message_count", len(dead))
                    await self._retry(
                        "dead_letters",
                        lambda: send_dead_letters(self._producer, self._settings.dlq_topic, dead),
                        (KafkaError, OSError),
                    )
            await self._commit(records)
            result = BatchResult(
                len(records), inserted, len(kept), cache_priced, len(dead), skipped
            )
            self._count(result, dead)
            span.set_attribute("greenlane.batch.rows_inserted", inserted)
            span.set_attribute("greenlane.batch.cache_priced", cache_priced)
            span.set_attribute("greenlane.batch.dead_lettered", len(dead))
            if dead:
                span.set_status(StatusCode.ERROR, f"{len(dead)} messages dead-lettered")
            return result

    def _count(self, result: BatchResult, dead: Sequence[DeadLetter]) -> None:
        self.batches += 1
        metrics.BATCH_SIZE.observe(result.messages)
        metrics.ROWS_WRITTEN.inc(result.inserted)
        metrics.CACHE_PRICED_ROWS.inc(result.cache_priced)
        metrics.MESSAGES.labels("priced").inc(result.priced)
        metrics.MESSAGES.labels("skipped").inc(result.skipped)
        metrics.MESSAGES.labels("dead_lettered").inc(result.dead_lettered)
        for d in dead:
            metrics.DLQ_MESSAGES.labels(d.code).inc()
            log.warning(
                "dead-lettered %s[%d]@%d: %s: %s", d.topic, d.partition, d.offset, d.code, d.reason
            )
        log.debug("batch: %s", result)

    async def _retry(
        self,
        stage: str,
        attempt: Callable[[], Awaitable[T]],
        errors: tuple[type[BaseException], ...],
    ) -> T:
        """Repeat a step with back-off until it succeeds; never skip it."""
        delay = self._settings.pricing_retry_initial_seconds
        while True:
            try:
                result = await attempt()
            except errors as exc:
                self._health[stage] = False
                metrics.RETRIES.labels(stage).inc()
                if self._interrupt.is_set():
                    raise BatchAbandoned(f"{stage}: {exc}") from None
                log.warning("%s: %s; retrying the batch in %.1fs", stage, exc, delay)
                try:
                    await asyncio.wait_for(self._interrupt.wait(), delay)
                except TimeoutError:
                    pass
                else:
                    raise BatchAbandoned(f"{stage}: {exc}") from None
                delay = min(delay * 2, self._settings.pricing_retry_max_seconds)
                continue
            self._health[stage] = True
            return result

    async def _write(
        self,
        events: Sequence[_Event],
        quotes: Mapping[int, Quote],
        factors: Mapping[tuple[str, int], float] | None = None,
    ) -> tuple[int, int]:
        """One transaction: seed unknown cars from the table, account, COPY, INSERT."""
        if not events:
            return 0, 0
        started = time.perf_counter()
        async with asyncio.timeout(self._settings.pricing_db_timeout_seconds):
            async with self._pool.connection() as conn, conn.transaction():
                known: dict[str, CarSession | None] = {}
                unknown: list[str] = []
                for car in dict.fromkeys(e.state.car_id for e in events):
                    state = self._states.get(car)
                    if state is None:
                        unknown.append(car)
                    else:
                        known[car] = state
                known.update(await load_last_sessions(conn, unknown))
                accounted, states = account_batch(known, [e.state for e in events], self._params)
                factors = factors or {}
                rows = [
                    self._row(
                        e,
                        a.kwh_usage,
                        a.session_kind,
                        a.session_id,
                        quotes[e.instant],
                        factors.get((e.state.station_id, e.state.timestamp), 1.0),
                    )
                    for e, a in zip(events, accounted, strict=True)
                ]
                inserted = await insert_rows(conn, rows)
        metrics.DB_WRITE_SECONDS.observe(time.perf_counter() - started)
        self._remember(states)  # only now: the rows it follows from are durable
        return inserted, sum(r.priced_from_cache for r in rows)

    @staticmethod
    def _row(
        e: _Event, kwh: float, kind: str, session: str, quote: Quote, factor: float = 1.0
    ) -> Row:
        s = e.state
        # The car-state columns come from the event table; time and battery as stored.
        values = row_values(s)
        values.update(time=instant_of(s.timestamp), battery=stored_battery(s.battery))
        return Row(
            **values,
            event_key=event_key(s.car_id, s.timestamp, e.event_type),
            session_id=session,
            event_type=e.event_type,
            session_kind=kind,
            kwh_usage=kwh,
            price_rate=round(quote.price_per_kwh * factor, 5),
            energy_source=quote.energy_source,
            grid_load=quote.grid_load,
            priced_from_cache=quote.from_cache,
            demand_factor=factor,
        )

    def _remember(self, states: Mapping[str, CarSession]) -> None:
        for car, state in states.items():
            self._states[car] = state
            self._states.move_to_end(car)
        while len(self._states) > self._settings.pricing_max_cars:
            self._states.popitem(last=False)

    async def _commit(self, records: Sequence[Record]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            # The rows are durable; a replay of this batch only hits the idempotency key,
            # and the next successful commit covers these offsets too.
            metrics.COMMIT_FAILURES.inc()
            log.warning("offset commit failed (%s); the batch may be replayed", exc)

    async def _update_lag(self) -> None:
        now = time.monotonic()
        if now - self._lag_checked < LAG_INTERVAL_SECONDS:
            return
        self._lag_checked = now
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            if highwater is None:
                continue
            try:
                position = await asyncio.wait_for(self._consumer.position(tp), 1.0)
            except (KafkaError, TimeoutError):
                continue
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(
                max(highwater - position, 0)
            )

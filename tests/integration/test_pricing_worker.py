"""The pricing worker against a real broker, PostgreSQL and the real grid service."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY

from greenlane.cli.embedded import EmbeddedKafka, EmbeddedPostgres, free_port
from greenlane.core.events import CarState, encode_event
from greenlane.core.kafka import ensure_topic, make_producer
from greenlane.core.migrations import apply_migrations
from greenlane.core.telemetry import HttpServer
from greenlane.grid.app import create_app
from greenlane.grid.settings import GridSettings
from greenlane.pricing_worker.prices import iso_at, priced_instant
from greenlane.pricing_worker.service import RunningWorker, start_worker
from greenlane.pricing_worker.sessions import SessionParams, account_batch
from greenlane.pricing_worker.settings import PricingWorkerSettings

pytestmark = pytest.mark.integration

PARTITIONS = 3
MINUTE = 60_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- servers -------------------------------------------------------------------------


class Grid:
    """The real grid app, served by uvicorn in the test's loop; can be stopped and restarted."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: HttpServer | None = None

    async def start(self) -> None:
        app = create_app(GridSettings.model_validate({}))
        self._server = HttpServer(app, "127.0.0.1", self.port)
        await self._server.start()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None

    async def quotes(self, instants: Iterable[int]) -> dict[int, dict[str, Any]]:
        """GET /api/pricing?at=<instant> from the running grid service, for each instant."""
        found: dict[int, dict[str, Any]] = {}
        async with httpx.AsyncClient(base_url=self.url) as client:
            for instant in sorted(set(instants)):
                response = await client.get("/api/pricing", params={"at": iso_at(instant)})
                response.raise_for_status()
                found[instant] = response.json()
        return found


@pytest.fixture
async def grid() -> AsyncIterator[Grid]:
    g = Grid()
    await g.start()
    yield g
    await g.stop()


@pytest.fixture
async def database(postgres_server: EmbeddedPostgres) -> AsyncIterator[str]:
    """A fresh database with the migrations applied, dropped after the test."""
    name = f"pricing_{uuid.uuid4().hex[:10]}"
    admin = postgres_server.url.rsplit("/", 1)[0] + "/postgres"
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    url = postgres_server.url.rsplit("/", 1)[0] + "/" + name
    await asyncio.to_thread(apply_migrations, url)
    yield url
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
        await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def settings_values(
    kafka: EmbeddedKafka, database: str, grid: Grid, topic: str, **overrides: object
) -> dict[str, object]:
    values: dict[str, object] = {
        "kafka_bootstrap_servers": kafka.url,
        "database_url": database,
        "grid_url": grid.url,
        "fleet_events_topic": topic,
        "fleet_events_partitions": PARTITIONS,
        "pricing_group_id": f"pricing-{uuid.uuid4().hex[:8]}",
        "metrics_host": "127.0.0.1",
        "metrics_port": 0,
        "pricing_batch_size": 25,
        "pricing_batch_linger_ms": 50,
        "pricing_retry_initial_seconds": 0.1,
        "pricing_retry_max_seconds": 0.5,
        "pricing_session_timeout_ms": 6000,
    }
    values.update(overrides)
    return values


@pytest.fixture
async def workers() -> AsyncIterator[list[RunningWorker]]:
    """Workers started by a test are stopped at its end, even when it fails."""
    running: list[RunningWorker] = []
    yield running
    for w in running:
        if not w.task.done() or not w.stop_event.is_set():
            await w.stop()


async def run_worker(values: dict[str, object], into: list[RunningWorker]) -> RunningWorker:
    worker = await start_worker(PricingWorkerSettings.model_validate(values))
    into.append(worker)
    return worker


# --- Kafka and SQL helpers -----------------------------------------------------------


def event(car: str, ts: int, battery: float, velocity: float = 0.0, station: str = "") -> CarState:
    return CarState(
        car_id=car,
        lat=40.75,
        lon=-73.98,
        battery=battery,
        velocity=velocity,
        timestamp=ts,
        station_id=station,
    )


class Stream:
    """Produces to the test's topic (key = car id) and remembers where each partition ends.

    The end offsets come from the produce results: the embedded broker answers
    ListOffsets with the base offset of the last record batch, not the partition's end.
    """

    def __init__(self, kafka: EmbeddedKafka, topic: str) -> None:
        self.kafka = kafka
        self.topic = topic
        self.ends = dict.fromkeys(range(PARTITIONS), 0)

    async def send(self, messages: Iterable[tuple[str, bytes]]) -> list[tuple[int, int]]:
        """Send (key, value) pairs; returns each one's (partition, offset)."""
        await ensure_topic(self.kafka.url, self.topic, partitions=PARTITIONS)
        producer = make_producer(self.kafka.url, client_id="test-fleet")
        await producer.start()
        try:
            futures = [
                await producer.send(self.topic, value=value, key=key.encode())
                for key, value in messages
            ]
            sent = [(m.partition, m.offset) for m in await asyncio.gather(*futures)]
        finally:
            await producer.stop()
        for partition, offset in sent:
            self.ends[partition] = max(self.ends[partition], offset + 1)
        return sent

    async def send_events(self, events: Sequence[CarState]) -> None:
        await self.send([(e.car_id, e.to_json()) for e in events])


async def fetch_rows(url: str) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = conn.cursor(row_factory=psycopg.rows.dict_row)
        await cur.execute("SELECT * FROM charging_sessions ORDER BY car_id, time")
        return await cur.fetchall()


async def count_rows(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        row = await (await conn.execute("SELECT count(*) FROM charging_sessions")).fetchone()
        assert row is not None
        return int(row[0])


async def wait_for_rows(url: str, expected: int, within: float = 20.0) -> int:
    deadline = time.monotonic() + within
    n = await count_rows(url)
    while n < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        n = await count_rows(url)
    return n


async def committed(kafka: EmbeddedKafka, topic: str, group: str) -> dict[int, int]:
    """The group's committed offset per partition (0 when none), without joining it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.url, group_id=group)
    await consumer.start()
    try:
        offsets = {}
        for p in range(PARTITIONS):
            offsets[p] = await consumer.committed(TopicPartition(topic, p)) or 0
        return offsets
    finally:
        await consumer.stop()


async def wait_for_commit(stream: Stream, group: str) -> dict[int, int]:
    """Wait until the group has committed every offset produced so far."""
    deadline = time.monotonic() + 15
    offsets = await committed(stream.kafka, stream.topic, group)
    while offsets != stream.ends and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        offsets = await committed(stream.kafka, stream.topic, group)
    assert offsets == stream.ends
    return offsets


def expected_model(events: Sequence[CarState]) -> dict[str, tuple[float, str, str]]:
    """event_key -> (kwh, kind, session id) by the session model over the whole stream."""
    accounted, _ = account_batch({}, events, SessionParams(75.0, 300_000))
    return {
        f"{e.car_id}:{e.timestamp}:telemetry": (a.kwh_usage, a.session_kind, a.session_id)
        for e, a in zip(events, accounted, strict=True)
    }


# --- (a) a known stream ----------------------------------------------------------------


def known_stream(cars: int, start: int) -> list[CarState]:
    """Per car: 5 statuses driving, 5 at a station charging, a 7-minute gap, 5 driving."""
    events: list[CarState] = []
    for c in range(cars):
        car, station = f"car-{c}", f"station-{c}"
        t = start + 137 * c
        battery = 80.0 - 3.3 * c
        for i in range(15):
            if i < 5:
                battery -= 0.37 if i else 0.0
                e = event(car, t, battery, velocity=42.5)
            elif i < 10:
                battery += 1.13 if i > 5 else 0.0
                e = event(car, t, battery, station=station)
            else:
                battery -= 0.29
                e = event(car, t, battery, velocity=30.0)
            events.append(e)
            t += 420_000 + 1 if i == 9 else 61_003
    return events


async def test_a_known_stream_gives_one_row_per_event_priced_at_its_instant(
    kafka_server: EmbeddedKafka,
    database: str,
    grid: Grid,
    topic: str,
    workers: list[RunningWorker],
) -> None:
    start = now_ms() - 3 * 3_600_000 + 789
    events = known_stream(4, start)
    values = settings_values(kafka_server, database, grid, topic, pricing_quote_resolution_ms=1)
    worker = await run_worker(values, workers)
    stream = Stream(kafka_server, topic)
    await stream.send_events(events)

    assert await wait_for_rows(database, len(events)) == len(events)
    rows = {r["event_key"]: r for r in await fetch_rows(database)}
    assert set(rows) == {f"{e.car_id}:{e.timestamp}:telemetry" for e in events}
    model = expected_model(events)
    quotes = await grid.quotes(e.timestamp for e in events)
    for e in events:
        row = rows[f"{e.car_id}:{e.timestamp}:telemetry"]
        quote = quotes[e.timestamp]  # the grid's price at the event's instant
        assert row["price_rate"] == Decimal(str(quote["price_per_kwh"]))
        assert row["energy_source"] == quote["energy_source"]
        assert row["grid_load"] == pytest.approx(quote["grid_load"], abs=1e-4)
        assert row["priced_from_cache"] is False
        assert int(row["time"].timestamp() * 1000) == e.timestamp
        kwh, kind, session = model[row["event_key"]]
        assert row["kwh_usage"] == pytest.approx(kwh)
        assert (row["session_kind"], row["session_id"]) == (kind, session)
        assert row["cost"] == pytest.approx(
            Decimal(str(row["kwh_usage"])) * row["price_rate"], abs=Decimal("0.00001")
        )
        assert row["station_id"] == (e.station_id or None)
        assert row["battery"] == pytest.approx(e.battery)

    # The model, spelled out for one car: three sessions, energy from battery steps.
    car0 = [rows[f"car-0:{e.timestamp}:telemetry"] for e in events if e.car_id == "car-0"]
    assert [r["session_kind"] for r in car0] == ["driving"] * 5 + ["charging"] * 5 + ["driving"] * 5
    starts = [events[0].timestamp, events[5].timestamp, events[10].timestamp]
    assert [r["session_id"] for r in car0] == [
        f"car-0:{starts[0]}:driving",
        *[f"car-0:{starts[0]}:driving"] * 4,
        *[f"car-0:{starts[1]}:charging"] * 5,
        *[f"car-0:{starts[2]}:driving"] * 5,
    ]
    expected_kwh = [0] + [0.37 * 0.75] * 4 + [0] + [1.13 * 0.75] * 4 + [0.29 * 0.75] * 5
    assert [r["kwh_usage"] for r in car0] == pytest.approx(expected_kwh, abs=1e-4)
    assert {r["station_id"] for r in car0[5:10]} == {"station-0"}

    # Every offset is committed, and a replay of the same events adds nothing.
    group = str(values["pricing_group_id"])
    await wait_for_commit(stream, group)
    written = REGISTRY.get_sample_value("greenlane_pricing_worker_rows_written_total")
    await stream.send_events(events[:10])
    await wait_for_commit(stream, group)
    assert await count_rows(database) == len(events)
    assert REGISTRY.get_sample_value("greenlane_pricing_worker_rows_written_total") == written

    async with httpx.AsyncClient() as client:
        base = f"http://127.0.0.1:{worker.probes.port}"
        assert (await client.get(f"{base}/readyz")).status_code == 200
        exposition = (await client.get(f"{base}/metrics")).text
    for name in (
        "greenlane_pricing_worker_consumer_lag{",
        "greenlane_pricing_worker_batch_size_bucket",
        "greenlane_pricing_worker_rows_written_total",
        "greenlane_pricing_worker_db_write_seconds_bucket",
        "greenlane_pricing_worker_grid_request_seconds_bucket",
        "greenlane_pricing_worker_cache_priced_rows_total",
    ):
        assert name in exposition


# --- (b) kill and restart mid-stream -------------------------------------------------


def worker_process(values: dict[str, object], log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLANE_")}
    env.update({f"GREENLANE_{k.upper()}": str(v) for k, v in values.items()})
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "greenlane.pricing_worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def test_a_worker_killed_mid_stream_and_restarted_loses_and_duplicates_nothing(
    kafka_server: EmbeddedKafka,
    database: str,
    grid: Grid,
    topic: str,
    tmp_path: Path,
) -> None:
    # A short session timeout: the group lets go of the killed worker's partitions sooner.
    values = settings_values(kafka_server, database, grid, topic, pricing_session_timeout_ms=3000)
    cars, rounds = 12, 30
    start = now_ms() - 3_600_000
    events = [
        event(f"car-{c}", start + r * 20_011 + c, 90.0 - 0.41 * r - c, velocity=25.0 + r % 3)
        for r in range(rounds)
        for c in range(cars)
    ]
    log = tmp_path / "worker.log"
    stream = Stream(kafka_server, topic)

    async def feed() -> None:
        for r in range(1, rounds):
            await stream.send_events(events[r * cars : (r + 1) * cars])
            await asyncio.sleep(0.06)

    first = worker_process(values, log)
    second: subprocess.Popen[bytes] | None = None
    feeding: asyncio.Task[None] | None = None
    try:
        await stream.send_events(events[:cars])
        assert await wait_for_rows(database, cars) == cars, log.read_text()
        # The stream keeps coming; the worker dies without warning in the middle of it.
        feeding = asyncio.create_task(feed())
        await wait_for_rows(database, 8 * cars)
        first.send_signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
        killed_at = await count_rows(database)
        await feeding
        assert 8 * cars <= killed_at < len(events)

        second = worker_process(values, log)
        assert await wait_for_rows(database, len(events), 25) == len(events), log.read_text()
        await wait_for_commit(stream, str(values["pricing_group_id"]))
        # SIGTERM: the batch in flight is finished and committed, then it exits 0.
        second.send_signal(signal.SIGTERM)
        assert second.wait(15) == 0, log.read_text()
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
        if feeding is not None:
            feeding.cancel()

    rows = await fetch_rows(database)
    keys = [r["event_key"] for r in rows]
    assert len(keys) == len(set(keys)) == len(events)
    assert set(keys) == {f"{e.car_id}:{e.timestamp}:telemetry" for e in events}
    # Rows written after the restart continue each car's sessions as if nothing happened.
    model = expected_model(events)
    quotes = await grid.quotes(priced_instant(e.timestamp, 1000) for e in events)
    for r in rows:
        kwh, kind, session = model[r["event_key"]]
        assert (r["kwh_usage"], r["session_kind"], r["session_id"]) == (
            pytest.approx(kwh),
            kind,
            session,
        )
        instant = priced_instant(int(r["time"].timestamp() * 1000), 1000)
        assert r["price_rate"] == Decimal(str(quotes[instant]["price_per_kwh"]))


# --- (c) the grid goes down ----------------------------------------------------------


async def test_a_grid_outage_prices_from_the_curve_then_blocks_until_it_is_back(
    kafka_server: EmbeddedKafka,
    database: str,
    grid: Grid,
    topic: str,
    workers: list[RunningWorker],
) -> None:
    values = settings_values(
        kafka_server,
        database,
        grid,
        topic,
        pricing_cache_max_age_seconds=3,
        pricing_curve_refresh_seconds=0.5,
    )
    group = str(values["pricing_group_id"])
    worker = await run_worker(values, workers)
    probes = f"http://127.0.0.1:{worker.probes.port}/readyz"
    base = now_ms() - 30 * MINUTE
    stream = Stream(kafka_server, topic)

    def phase(n: int) -> list[CarState]:
        return [
            event(f"car-{c}", base + n * 5 * MINUTE + c * 7_777 + 123, 70.0 - n - c, 20.0)
            for c in range(6)
        ]

    await stream.send_events(phase(0))
    assert await wait_for_rows(database, 6) == 6

    # Down, with a curve fetched less than the maximum age ago: rows marked from cache.
    await grid.stop()
    cache_priced = REGISTRY.get_sample_value("greenlane_pricing_worker_cache_priced_rows_total")
    await stream.send_events(phase(1))
    assert await wait_for_rows(database, 12) == 12
    offsets_with_cache = await wait_for_commit(stream, group)
    assert (
        REGISTRY.get_sample_value("greenlane_pricing_worker_cache_priced_rows_total")
        == (cache_priced or 0) + 6
    )

    # Past the maximum age: nothing is written, nothing committed, not ready.
    await asyncio.sleep(3.5)
    await stream.send_events(phase(2))
    await asyncio.sleep(2.0)
    assert await count_rows(database) == 12
    assert await committed(kafka_server, topic, group) == offsets_with_cache
    async with httpx.AsyncClient() as client:
        ready = await client.get(probes)
    assert ready.status_code == 503
    assert ready.json()["checks"]["grid"] is False

    # The grid is back: every blocked row appears, priced by the grid itself.
    await grid.start()
    assert await wait_for_rows(database, 18) == 18
    await wait_for_commit(stream, group)
    async with httpx.AsyncClient() as client:
        assert (await client.get(probes)).status_code == 200

    rows = {r["event_key"]: r for r in await fetch_rows(database)}
    quotes = await grid.quotes(
        priced_instant(e.timestamp, 1000) for n in range(3) for e in phase(n)
    )
    for n, from_cache in ((0, False), (1, True), (2, False)):
        for e in phase(n):
            row = rows[f"{e.car_id}:{e.timestamp}:telemetry"]
            quote = quotes[priced_instant(e.timestamp, 1000)]
            assert row["priced_from_cache"] is from_cache
            assert row["energy_source"] == quote["energy_source"]
            if from_cache:  # interpolated from the hourly curve
                assert float(row["price_rate"]) == pytest.approx(quote["price_per_kwh"], abs=1e-3)
            else:
                assert row["price_rate"] == Decimal(str(quote["price_per_kwh"]))


# --- (d) poison messages -------------------------------------------------------------


@dataclass
class DeadLetterRecord:
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]


async def read_dead_letters(
    kafka: EmbeddedKafka, topic: str, expect: int, within: float = 15.0
) -> list[DeadLetterRecord]:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.url, auto_offset_reset="earliest")
    await consumer.start()
    found: list[DeadLetterRecord] = []
    try:
        tps: list[TopicPartition] = []
        deadline = time.monotonic() + within
        while not tps and time.monotonic() < deadline:
            await consumer.topics()
            tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while len(found) < expect and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for r in records:
                    headers = {k: v.decode() for k, v in r.headers}
                    found.append(DeadLetterRecord(r.key, r.value, headers))
    finally:
        await consumer.stop()
    return found


async def test_poison_messages_go_to_the_dead_letter_topic_and_the_next_ones_are_stored(
    kafka_server: EmbeddedKafka,
    database: str,
    grid: Grid,
    topic: str,
    workers: list[RunningWorker],
) -> None:
    values = settings_values(kafka_server, database, grid, topic)
    await run_worker(values, workers)
    t = now_ms() - 10 * MINUTE
    good = [event("car-p", t + i * 2000, 60.0 - i, 30.0) for i in range(5)]
    no_battery = {k: v for k, v in good[0].to_event().items() if k != "battery"}
    poison: list[tuple[bytes, str]] = [
        (b'{"car_id": "car-p", "lat": 40.7', "value: is not JSON"),
        (json.dumps(no_battery).encode(), "battery: must be a number"),
        (event("car-p", t + 500, 150.0).to_json(), "battery: must be within [0, 100]"),
        (json.dumps({**good[0].to_event(), "event_type": "teleport"}).encode(), "event_type"),
        (event("car-p", 253_402_300_800_000, 50.0).to_json(), "unpriceable: timestamp"),
    ]
    # Kinds the worker does not price are skipped, not dead-lettered: a booking event
    # and the planner's charging plan.
    booking = encode_event(
        "booking_created", event("car-p", t + 900, 59.5), station_id="st-1", booking_id="b1"
    )
    plan = encode_event(
        "charging_plan", car_id="car-p", site_id="site-a", station_id="st-1", timestamp=t + 950
    )
    skipped_before = REGISTRY.get_sample_value(
        "greenlane_pricing_worker_messages_total", {"outcome": "skipped"}
    )
    messages = [("car-p", good[0].to_json())]
    messages += [("car-p", value) for value, _ in poison]
    messages += [("car-p", booking), ("car-p", plan)] + [("car-p", e.to_json()) for e in good[1:]]
    dlq_before = REGISTRY.get_sample_value(
        "greenlane_pricing_worker_dlq_messages_total", {"reason": "invalid_event"}
    )

    stream = Stream(kafka_server, topic)
    positions = await stream.send(messages)

    assert await wait_for_rows(database, len(good)) == len(good)
    letters = await read_dead_letters(kafka_server, f"{topic}.dlq", expect=len(poison))
    assert len(letters) == len(poison)
    for letter, (value, reason), (partition, offset) in zip(
        letters, poison, positions[1:6], strict=True
    ):
        assert letter.value == value
        assert letter.key == b"car-p"
        assert reason in letter.headers["x-dlq-reason"]
        assert letter.headers["x-original-topic"] == topic
        assert letter.headers["x-original-partition"] == str(partition)
        assert letter.headers["x-original-offset"] == str(offset)
    assert (
        REGISTRY.get_sample_value(
            "greenlane_pricing_worker_dlq_messages_total", {"reason": "invalid_event"}
        )
        == (dlq_before or 0) + 4
    )
    assert (
        REGISTRY.get_sample_value("greenlane_pricing_worker_messages_total", {"outcome": "skipped"})
        == (skipped_before or 0) + 2
    )
    # The good statuses around the poison are all stored (the booking and the plan are
    # not priced), and consumption went past the poison: everything is committed.
    rows = await fetch_rows(database)
    assert [r["event_key"] for r in rows] == [f"car-p:{e.timestamp}:telemetry" for e in good]
    assert [r["kwh_usage"] for r in rows] == pytest.approx([0.0] + [0.75] * 4)
    await wait_for_commit(stream, str(values["pricing_group_id"]))


# --- tracing ---------------------------------------------------------------------------


async def test_a_batch_span_continues_its_first_traced_message_links_the_others_and_spans_its_steps(
    kafka_server: EmbeddedKafka,
    database: str,
    grid: Grid,
    topic: str,
    workers: list[RunningWorker],
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    values = settings_values(kafka_server, database, grid, topic, pricing_batch_linger_ms=300)
    worker = await start_worker(
        PricingWorkerSettings.model_validate(values), tracer_provider=provider
    )
    workers.append(worker)
    t = now_ms() - MINUTE
    untraced = event("car-t", t, 51.0, 10.0)
    traced = [(f"{i:032x}", event("car-t", t + i * 1000, 50.0 - i, 10.0)) for i in range(1, 4)]
    producer = make_producer(kafka_server.url, client_id="test-traced")
    await producer.start()
    try:
        # An untraced message first: the batch continues the first *traced* one.
        await producer.send_and_wait(topic, untraced.to_json(), key=b"car-t")
        for trace_id, e in traced:
            header = f"00-{trace_id}-{'ab' * 8}-01".encode()
            await producer.send_and_wait(
                topic, e.to_json(), key=b"car-t", headers=[("traceparent", header)]
            )
    finally:
        await producer.stop()

    assert await wait_for_rows(database, 4) == 4
    finished = exporter.get_finished_spans()
    spans = [s for s in finished if s.name == "pricing batch"]
    assert spans
    first = spans[0]
    assert first.context is not None and first.parent is not None
    assert f"{first.context.trace_id:032x}" == traced[0][0]
    assert first.attributes is not None
    assert first.attributes["greenlane.batch.rows_inserted"] == 4
    linked = {f"{link.context.trace_id:032x}" for s in spans for link in s.links}
    continued = {f"{s.context.trace_id:032x}" for s in spans if s.context is not None}
    assert {trace_id for trace_id, _ in traced} <= linked | continued

    def children(parent: Any, name: str | None = None) -> list[Any]:
        under = [s for s in finished if s.parent and s.parent.span_id == parent.context.span_id]
        return [s for s in under if name is None or s.name == name]

    # The grid call (httpx instrumentation) under the batch's grid step; the SQL
    # statements (psycopg instrumentation) under its database write.
    (grid_step,) = children(first, "grid price")
    calls = children(grid_step, "GET")  # one per instant to price
    assert calls and {c.kind for c in calls} == {SpanKind.CLIENT}
    assert all("/api/pricing" in str(c.attributes["http.url"]) for c in calls)
    (db_step,) = children(first, "database write")
    assert db_step.attributes is not None and db_step.attributes["greenlane.rows.inserted"] == 4
    assert "INSERT" in [s.name for s in children(db_step)]


# --- rebalancing -----------------------------------------------------------------------


async def test_workers_joining_and_leaving_a_group_store_every_event_exactly_once(
    kafka_server: EmbeddedKafka,
    database: str,
    grid: Grid,
    topic: str,
    workers: list[RunningWorker],
) -> None:
    values = settings_values(kafka_server, database, grid, topic)
    stream = Stream(kafka_server, topic)
    cars, rounds = 9, 24
    start = now_ms() - 2 * 3_600_000
    events = [
        event(f"car-{c}", start + r * 30_007 + c, 80.0 - 0.53 * r, velocity=20.0 + c)
        for r in range(rounds)
        for c in range(cars)
    ]

    def round_of(r: int) -> list[CarState]:
        return events[r * cars : (r + 1) * cars]

    a = await run_worker(values, workers)
    for r in range(8):
        await stream.send_events(round_of(r))
    assert await wait_for_rows(database, 8 * cars) == 8 * cars
    # B joins: A gives partitions up only after its batch in flight is committed.
    b = await run_worker(values, workers)
    for r in range(8, 16):
        await stream.send_events(round_of(r))
        await asyncio.sleep(0.2)
    assert await wait_for_rows(database, 16 * cars) == 16 * cars
    # A leaves: B takes its cars over, continuing their sessions from the table.
    await a.stop()
    for r in range(16, rounds):
        await stream.send_events(round_of(r))
    assert await wait_for_rows(database, len(events)) == len(events)
    await wait_for_commit(stream, str(values["pricing_group_id"]))
    assert b.worker.batches > 0

    rows = await fetch_rows(database)
    assert len(rows) == len(events)
    model = expected_model(events)
    for row in rows:
        kwh, kind, session = model[row["event_key"]]
        assert (row["kwh_usage"], row["session_kind"], row["session_id"]) == (
            pytest.approx(kwh),
            kind,
            session,
        )


# --- the database restarts -----------------------------------------------------------


async def test_a_database_restart_blocks_commits_and_loses_no_row(
    kafka_server: EmbeddedKafka,
    grid: Grid,
    topic: str,
    tmp_path: Path,
    workers: list[RunningWorker],
) -> None:
    postgres = EmbeddedPostgres(free_port(), tmp_path / "postgres")
    await asyncio.to_thread(postgres.start)
    try:
        await asyncio.to_thread(apply_migrations, postgres.url)
        values = settings_values(
            kafka_server, postgres.url, grid, topic, pricing_db_timeout_seconds=2
        )
        group = str(values["pricing_group_id"])
        worker = await run_worker(values, workers)
        stream = Stream(kafka_server, topic)
        start = now_ms() - 20 * MINUTE
        events = [
            event(f"car-{c}", start + r * 10_003 + c, 75.0 - 0.7 * r, velocity=15.0)
            for r in range(6)
            for c in range(5)
        ]
        await stream.send_events(events[:15])
        assert await wait_for_rows(postgres.url, 15) == 15
        before = await wait_for_commit(stream, group)

        await asyncio.to_thread(postgres.stop)
        await stream.send_events(events[15:])
        await asyncio.sleep(2.5)
        assert await committed(kafka_server, topic, group) == before
        async with httpx.AsyncClient() as client:
            ready = await client.get(f"http://127.0.0.1:{worker.probes.port}/readyz")
        assert ready.json()["checks"]["database"] is False

        await asyncio.to_thread(postgres.start)
        assert await wait_for_rows(postgres.url, len(events)) == len(events)
        await wait_for_commit(stream, group)
        rows = await fetch_rows(postgres.url)
        model = expected_model(events)
        assert {r["event_key"] for r in rows} == set(model)
        for row in rows:
            kwh, kind, session = model[row["event_key"]]
            assert (row["kwh_usage"], row["session_kind"], row["session_id"]) == (
                pytest.approx(kwh),
                kind,
                session,
            )
    finally:
        for w in workers:
            await w.stop()
        workers.clear()
        await asyncio.to_thread(postgres.stop)


async def test_sigterm_while_waiting_for_the_broker_at_start_up_exits_0(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    nothing = free_port()  # no broker listens here
    process = worker_process(
        {"kafka_bootstrap_servers": f"127.0.0.1:{nothing}", "metrics_port": 0}, log
    )
    try:
        for _ in range(200):
            if "not reachable" in log.read_text():
                break
            await asyncio.sleep(0.1)
        assert "not reachable" in log.read_text()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 10) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()


# --- demand prices -------------------------------------------------------------------


async def test_a_charging_row_carries_the_demand_factor_it_was_priced_with(
    kafka_server: EmbeddedKafka,
    redis_server: Any,
    redis_client: Any,
    database: str,
    grid: Grid,
    topic: str,
    workers: list[RunningWorker],
) -> None:
    from greenlane.core.demand import SiteLoad, demand_factor, record_site_load
    from greenlane.core.keys import Region
    from greenlane.core.stations import Site, Station, load_stations

    region = Region()
    await load_stations(
        redis_client,
        [Station("st-full", "Full", 40.75, -73.98, 4, 150.0, "full")],
        sites=[Site("full", "Full site", 300.0)],
    )
    t0 = now_ms() - 10 * MINUTE
    # The site at half its limit, then asked for twice its limit from t0 + 2 min on.
    calm = SiteLoad("full", t0 - MINUTE, 150.0, 0.0, 300.0)
    busy = SiteLoad("full", t0 + 2 * MINUTE, 450.0, 150.0, 300.0)
    for load in (calm, busy):
        await record_site_load(redis_client, region, load)
    charging = [event("car-9", t0 + n * MINUTE, 20.0 + n, station="st-full") for n in range(5)]
    driving = [event("car-8", t0 + n * MINUTE, 90.0 - n, velocity=30.0) for n in range(3)]
    await Stream(kafka_server, topic).send_events([*charging, *driving])
    await run_worker(
        settings_values(
            kafka_server,
            database,
            grid,
            topic,
            demand_prices=True,
            redis_url=redis_server.url,
        ),
        workers,
    )
    assert await wait_for_rows(database, len(charging) + len(driving)) == 8
    rows = await fetch_rows(database)
    factors = {int(r["time"].timestamp() * 1000): r for r in rows if r["car_id"] == "car-9"}
    assert demand_factor(calm) == 1.0 and demand_factor(busy) == 1.6
    # The tariff at the instant each row was priced at (its own, floored to the second).
    tariffs = await grid.quotes(priced_instant(at, 1000) for at in factors)
    for at, row in factors.items():
        expected = demand_factor(calm if at < busy.at_ms else busy)
        assert row["demand_factor"] == pytest.approx(expected)
        assert float(row["price_rate"]) == pytest.approx(
            round(tariffs[priced_instant(at, 1000)]["price_per_kwh"] * expected, 5), abs=1e-5
        )
    assert {r["demand_factor"] for r in rows if r["car_id"] == "car-8"} == {1.0}

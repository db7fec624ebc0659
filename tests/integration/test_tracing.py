"""One trace from car to database: the real services export to a real OTLP/gRPC receiver.

Grid, ingestion and the pricing worker run as their own processes, as in production,
on the session's Valkey, Tansu and PostgreSQL, each exporting with its standard OTEL_*
settings to bench.otlp_sink's TraceService (opentelemetry-proto + grpcio). The simulator
(or a client of the test) sends the statuses.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import psycopg
import pytest
from conftest import ingestion_settings
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis.asyncio import Redis

from bench.otlp_sink import ReceivedSpan, TraceSink
from greenlane.cli.embedded import EmbeddedKafka, EmbeddedPostgres, EmbeddedRedis, free_port
from greenlane.core.migrations import apply_migrations
from greenlane.core.stations import Station, load_stations
from greenlane.core.wire import STATUS_SPAN, TOKEN_METADATA_KEY
from greenlane.ingestion.server import start_server
from greenlane.v1 import fleet_pb2, fleet_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TOKEN = "greenlane-secret-token"
# opentelemetry-instrumentation-grpc's span name for a StreamTelemetry call.
STREAM_CALL = "/greenlane.v1.FleetTelemetry/StreamTelemetry"
SPANS_WAIT_S = 60.0


@dataclass
class Platform:
    sink: TraceSink
    grpc_port: int
    env: dict[str, str]  # what every process of the platform runs with
    database_url: str
    tmp: Path
    processes: list[subprocess.Popen[bytes]]

    def start(self, name: str, argv: list[str], env: dict[str, str], ready_url: str) -> None:
        """Start a service process; return once `ready_url` answers 200."""
        log = self.tmp / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, env={**self.env, **env}, stdout=out, stderr=out)
        self.processes.append(proc)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(ready_url, timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"{name} never became ready:\n{log.read_text()[-3000:]}")

    def start_pricing_worker(self) -> None:
        metrics = free_port()
        self.start(
            "pricing-worker",
            [sys.executable, "-m", "greenlane.pricing_worker"],
            {
                "GREENLANE_METRICS_PORT": str(metrics),
                "GREENLANE_PRICING_GROUP_ID": f"pricing-{uuid.uuid4().hex[:8]}",
                "GREENLANE_PRICING_BATCH_LINGER_MS": "300",
            },
            f"http://127.0.0.1:{metrics}/readyz",
        )


@pytest.fixture(scope="module")
def tmp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tracing")


@pytest.fixture(scope="module")
async def sink() -> AsyncIterator[TraceSink]:
    receiver = await TraceSink().start()
    yield receiver
    await receiver.stop()


@pytest.fixture(scope="module")
def platform(
    sink: TraceSink,
    tmp_dir: Path,
    redis_server: EmbeddedRedis,
    kafka_server: EmbeddedKafka,
    postgres_server: EmbeddedPostgres,
) -> Iterator[Platform]:
    """Grid and ingestion running (each test starts the pricing workers it needs)."""
    name = f"tracing_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = postgres_server.url.rsplit("/", 1)[0] + f"/{name}"
    apply_migrations(database_url)
    grid_port, grpc_port, metrics, api = free_port(), free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: spans reach the receiver quickly
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        "GREENLANE_API_TOKENS": TOKEN,
        "GREENLANE_REDIS_URL": redis_server.url,
        "GREENLANE_KAFKA_BOOTSTRAP_SERVERS": kafka_server.url,
        "GREENLANE_DATABASE_URL": database_url,
        "GREENLANE_GRID_URL": f"http://127.0.0.1:{grid_port}",
        "GREENLANE_FLEET_EVENTS_TOPIC": f"fleet-events-{uuid.uuid4().hex[:8]}",
        "GREENLANE_FLEET_EVENTS_PARTITIONS": "1",
        "GREENLANE_METRICS_HOST": "127.0.0.1",
        "GREENLANE_LOG_LEVEL": "INFO",
    }
    running = Platform(sink, grpc_port, env, database_url, tmp_dir, [])
    try:
        running.start(
            "grid",
            [
                sys.executable,
                "-m",
                "greenlane.grid",
                "--host",
                "127.0.0.1",
                "--port",
                str(grid_port),
            ],
            {},
            f"http://127.0.0.1:{grid_port}/api/pricing",
        )
        running.start(
            "ingestion",
            [sys.executable, "-m", "greenlane.ingestion"],
            {
                "GREENLANE_INGESTION_HOST": "127.0.0.1",
                "GREENLANE_INGESTION_PORT": str(grpc_port),
                "GREENLANE_METRICS_PORT": str(metrics),
                "GREENLANE_BOOKING_API_PORT": str(api),
            },
            f"http://127.0.0.1:{metrics}/readyz",
        )
        yield running
    finally:
        for proc in running.processes:
            proc.terminate()
        for proc in running.processes:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def spans_until(
    sink: TraceSink, done: Callable[[list[ReceivedSpan]], bool], what: str
) -> list[ReceivedSpan]:
    """Every span received, once `done` holds for them (or fail naming `what`)."""
    deadline = time.monotonic() + SPANS_WAIT_S
    while time.monotonic() < deadline:
        if done(sink.spans):
            return list(sink.spans)
        await asyncio.sleep(0.2)
    seen = sorted({(s.service, s.name, s.kind) for s in sink.spans})
    raise AssertionError(f"no {what} within {SPANS_WAIT_S:.0f} s; received: {seen}")


def one(spans: list[ReceivedSpan], service: str, name: str, kind: str) -> ReceivedSpan:
    found = [s for s in spans if (s.service, s.name, s.kind) == (service, name, kind)]
    assert len(found) == 1, f"{service} {name} {kind}: {len(found)} spans"
    return found[0]


def reaches(span: ReceivedSpan, trace_id: str) -> bool:
    """The span is in the trace, or links to it."""
    return span.trace_id == trace_id or span.links_to(trace_id)


async def test_one_car_status_gives_one_trace_from_the_car_to_the_database(
    platform: Platform,
) -> None:
    platform.start_pricing_worker()
    sim = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "greenlane.simulator",
            "--target",
            f"127.0.0.1:{platform.grpc_port}",
            "--cars",
            "1",
            "--car-prefix",
            "traced",
            "--interval",
            "600",  # the first status only
            "--duration",
            "2",
            "--trace-ratio",
            "1",
            "--initial-battery",
            "60,100",  # no booking: the status's path is the plain one
            "--json",
            "--no-progress",
        ],
        env={**platform.env, "GREENLANE_API_TOKEN": TOKEN},
        capture_output=True,
        timeout=60,
    )
    assert sim.returncode == 0, sim.stderr.decode()[-2000:]
    summary = json.loads(sim.stdout.decode().splitlines()[-1])
    assert (summary["sent"], summary["accepted"], summary["trace_ratio"]) == (1, 1, 1.0)

    def car(spans: list[ReceivedSpan]) -> ReceivedSpan | None:
        return next(
            (s for s in spans if s.service == "greenlane-simulator" and s.name == STATUS_SPAN),
            None,
        )

    def complete(spans: list[ReceivedSpan]) -> bool:
        root = car(spans)
        if root is None:
            return False
        names = {(s.service, s.name) for s in spans if reaches(s, root.trace_id)}
        calls = {(s.service, s.kind) for s in spans if s.name == STREAM_CALL}
        return {
            ("greenlane-ingestion", "kafka produce"),
            ("greenlane-pricing-worker", "database write"),
        } <= names and {
            ("greenlane-simulator", "CLIENT"),
            ("greenlane-ingestion", "SERVER"),
        } <= calls

    spans = await spans_until(platform.sink, complete, "complete trace of the car's status")
    root = car(spans)
    assert root is not None
    trace_id = root.trace_id
    in_trace = [s for s in spans if s.trace_id == trace_id]
    by_id = {s.span_id: s for s in in_trace}

    # The car's span is the root: a trace per status.
    assert (root.kind, root.parent_span_id) == ("CLIENT", "")
    assert root.attributes["greenlane.status.answer"] == "ACCEPTED"
    # Ingestion's span of that status continues it, as a gRPC server span.
    server = one(in_trace, "greenlane-ingestion", STATUS_SPAN, "SERVER")
    assert server.parent_span_id == root.span_id
    assert server.attributes["rpc.method"] == "StreamTelemetry"
    assert server.attributes["greenlane.car_id"] == "traced-00000"
    # It links the stream it came on: opentelemetry-instrumentation-grpc's server span of
    # the call, which continues the simulator's client span of the call (a trace of its
    # own: a stream lives as long as the car drives).
    ((call_trace, call_span),) = server.links
    (stream_server,) = [s for s in spans if s.span_id == call_span]
    assert (stream_server.name, stream_server.kind) == (STREAM_CALL, "SERVER")
    (stream_client,) = [s for s in spans if s.span_id == stream_server.parent_span_id]
    assert (stream_client.service, stream_client.kind) == ("greenlane-simulator", "CLIENT")
    assert stream_client.trace_id == call_trace != trace_id
    # The flush that stored it, and its Redis and Kafka writes, in the same trace.
    flush = one(in_trace, "greenlane-ingestion", "ingestion.flush", "INTERNAL")
    assert flush.parent_span_id == server.span_id
    redis = one(in_trace, "greenlane-ingestion", "redis write", "CLIENT")
    kafka = one(in_trace, "greenlane-ingestion", "kafka produce", "PRODUCER")
    assert redis.parent_span_id == kafka.parent_span_id == flush.span_id
    assert not (redis.error or kafka.error or flush.error or server.error)
    # Linked (here: continued, it is the batch's first traced record): the pricing
    # worker's consume and its database write, with the grid call in between.
    batch = one(in_trace, "greenlane-pricing-worker", "pricing batch", "CONSUMER")
    assert by_id[batch.parent_span_id] is server
    write = one(in_trace, "greenlane-pricing-worker", "database write", "CLIENT")
    assert write.parent_span_id == batch.span_id
    assert write.attributes["greenlane.rows.inserted"] == 1
    inserts = [s for s in spans if s.parent_span_id == write.span_id and s.name == "INSERT"]
    assert len(inserts) == 1  # the SQL statement, from the psycopg instrumentation
    grid = [s for s in in_trace if s.service == "greenlane-grid" and s.kind == "SERVER"]
    assert grid, "the grid's span of the price request continues the batch's trace"
    # And the row is there.
    with psycopg.connect(platform.database_url) as conn:
        rows = conn.execute(
            "SELECT count(*) FROM charging_sessions WHERE car_id = 'traced-00000'"
        ).fetchone()
    assert rows == (1,)


def traced_status(car_id: str, t: int) -> tuple[fleet_pb2.CarStatus, str]:
    """A status carrying a fresh sampled trace context, as a traced client sends it."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    status = fleet_pb2.CarStatus(
        car_id=car_id, lat=40.75, lon=-73.98, battery=70.0, velocity=20.0, timestamp=t
    )
    status.trace_context["traceparent"] = f"00-{trace_id}-{span_id}-01"
    return status, trace_id


async def test_a_pricing_batch_links_the_trace_of_every_status_it_prices(
    platform: Platform,
) -> None:
    now = time.time_ns() // 1_000_000
    sent = [traced_status("linked-1", now - 2000), traced_status("linked-2", now - 1000)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.grpc_port}") as channel:
        stub = fleet_pb2_grpc.FleetTelemetryStub(channel)
        call = stub.StreamTelemetry(metadata=((TOKEN_METADATA_KEY, TOKEN),))
        for status, _ in sent:
            await call.write(status)
        await call.done_writing()
        answers = [a.status async for a in call]
    assert answers == [fleet_pb2.ACCEPTED, fleet_pb2.ACCEPTED]
    # Both records wait in the topic, so the new worker's first batch holds both.
    platform.start_pricing_worker()
    traces = [trace_id for _, trace_id in sent]

    def priced(spans: list[ReceivedSpan]) -> bool:
        batches = [s for s in spans if s.name == "pricing batch"]
        return all(any(reaches(b, t) for b in batches) for t in traces)

    spans = await spans_until(platform.sink, priced, "pricing batch reaching both traces")
    for trace_id in traces:
        of_status = [s for s in spans if s.trace_id == trace_id]
        server = one(of_status, "greenlane-ingestion", STATUS_SPAN, "SERVER")
        assert server.attributes["greenlane.status.answer"] == "ACCEPTED"
    # The new worker's first batch priced both: it continues one trace and links the other
    # (the first test's worker, still running, may have priced them apart too).
    both = [s for s in spans if s.name == "pricing batch" and all(reaches(s, t) for t in traces)]
    assert both
    for batch in both:
        continued = traces.index(batch.trace_id)
        assert batch.links_to(traces[1 - continued])
        assert batch.attributes["greenlane.batch.traced"] == 2


async def test_a_booked_status_has_the_booking_and_its_script_call_in_its_trace(
    redis_server: EmbeddedRedis, kafka_server: EmbeddedKafka, topic: str, redis_client: Redis
) -> None:
    # In-process, with the test's own provider: the same wiring start-up does when exporting.
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    await load_stations(redis_client, [Station("st-t", "Tango", 40.7580, -73.9855, 1, 150.0)])
    settings = ingestion_settings(redis_server.url, kafka_server.url, topic)
    running = await start_server(settings, tracer_provider=provider)  # type: ignore[arg-type]
    try:
        status, trace_id = traced_status("low-1", time.time_ns() // 1_000_000)
        status.battery = 9.0
        status.lat, status.lon = 40.7581, -73.9856
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            call = fleet_pb2_grpc.FleetTelemetryStub(channel).StreamTelemetry(
                metadata=((TOKEN_METADATA_KEY, TOKEN),)
            )
            await call.write(status)
            untraced = fleet_pb2.CarStatus()
            untraced.CopyFrom(status)
            untraced.car_id = "low-2"
            del untraced.trace_context["traceparent"]
            await call.write(untraced)
            await call.done_writing()
            answers = [a.status async for a in call]
    finally:
        await running.stop(1.0)
    assert answers == [fleet_pb2.BOOKED, fleet_pb2.NO_CAPACITY]  # one slot: the second waits

    spans = [s for s in exporter.get_finished_spans() if f"{s.context.trace_id:032x}" == trace_id]
    by_name = {s.name: s for s in spans}
    server = by_name[STATUS_SPAN]
    assert server.attributes is not None
    assert server.attributes["greenlane.status.answer"] == "BOOKED"
    booking = by_name["booking"]
    assert booking.parent is not None and booking.parent.span_id == server.context.span_id
    assert booking.attributes is not None
    assert booking.attributes["greenlane.booking.station_id"] == "st-t"
    # The booking script itself, from the redis instrumentation.
    scripts = [s for s in spans if s.name == "EVALSHA" and s.parent is not None]
    assert any(s.parent.span_id == booking.context.span_id for s in scripts)
    # The untraced status's booking costs no span at all, in no trace.
    everywhere = exporter.get_finished_spans()
    assert [s for s in everywhere if s.name == "booking"] == [booking]
    assert {s.context.trace_id for s in everywhere if s.name == "EVALSHA"} == {
        booking.context.trace_id
    }

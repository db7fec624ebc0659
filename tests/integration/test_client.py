"""greenlane.client against the real ingestion: SIGKILLed and restarted mid-run, rate-limited."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import DEV_TOKEN, ingestion_settings
from stack import read_topic

from greenlane.cli.embedded import EmbeddedKafka, EmbeddedRedis, free_port, spawn, stop_process
from greenlane.client import Backoff, Credential, Entry, LinkListener, Mode, TelemetryClient
from greenlane.v1 import fleet_pb2

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


class Acks(LinkListener):
    """Every status ingestion acknowledged, as (car_id, timestamp)."""

    def __init__(self) -> None:
        self.acked: list[tuple[str, int]] = []
        self.broken = 0

    def on_status_answer(
        self, entries: Sequence[Entry], answer: fleet_pb2.BookingResponse, latency_s: float
    ) -> None:
        if answer.status in (fleet_pb2.ACCEPTED, fleet_pb2.BOOKED, fleet_pb2.NO_CAPACITY):
            self.acked += [(e.car_id, e.status.timestamp) for e in entries]

    def on_batch_answer(
        self, entries: Sequence[Entry], answer: fleet_pb2.BatchResponse, latency_s: float
    ) -> None:
        if answer.status in (fleet_pb2.ACCEPTED, fleet_pb2.UNAVAILABLE):
            listed = {item.index for item in answer.rejected}
            self.acked += [
                (e.car_id, e.status.timestamp) for i, e in enumerate(entries) if i not in listed
            ]

    def on_broken(self, code: str, details: str | None) -> None:
        self.broken += 1


def start_ingestion(
    log: Path, redis: EmbeddedRedis, kafka: EmbeddedKafka, topic: str, port: int
) -> subprocess.Popen[bytes]:
    metrics, api = free_port(), free_port()
    env = {
        **os.environ,
        "GREENLANE_API_TOKENS": DEV_TOKEN,
        "GREENLANE_REDIS_URL": redis.url,
        "GREENLANE_KAFKA_BOOTSTRAP_SERVERS": kafka.url,
        "GREENLANE_FLEET_EVENTS_TOPIC": topic,
        "GREENLANE_FLEET_EVENTS_PARTITIONS": "3",
        "GREENLANE_INGESTION_HOST": "127.0.0.1",
        "GREENLANE_INGESTION_PORT": str(port),
        "GREENLANE_METRICS_HOST": "127.0.0.1",
        "GREENLANE_METRICS_PORT": str(metrics),
        "GREENLANE_BOOKING_API_PORT": str(api),
    }
    proc = spawn([sys.executable, "-m", "greenlane.ingestion"], log, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
        if proc.poll() is not None:
            break
    stop_process(proc, signal.SIGKILL)
    pytest.fail(f"ingestion never became ready:\n{log.read_text()[-2000:]}")


def status(car: str, ts: int, i: int) -> fleet_pb2.CarStatus:
    return fleet_pb2.CarStatus(
        car_id=car,
        lat=40.75 + (i % 100) * 1e-4,
        lon=-73.98,
        battery=80.0,
        velocity=30.0,
        timestamp=ts,
    )


def assert_all_acked_in_topic_in_order(acked: list[tuple[str, int]], events: list[Any]) -> None:
    seen: dict[str, list[int]] = {}
    for e in events:  # read_topic keeps offset order within each partition (= per car)
        if e.get("event_type") == "telemetry":
            seen.setdefault(str(e["car_id"]), []).append(int(e["timestamp"]))
    present = {(car, ts) for car, stamps in seen.items() for ts in stamps}
    missing = [a for a in acked if a not in present]
    assert missing == [], f"{len(missing)} acknowledged statuses not in fleet-events"
    for car, stamps in seen.items():
        first: list[int] = []
        for ts in stamps:
            if ts not in first:  # a resend of a stored but unanswered status repeats it
                first.append(ts)
        assert first == sorted(first), f"{car}: statuses out of order in fleet-events"


@pytest.mark.parametrize("mode", ["batch", "status"])
async def test_nothing_acknowledged_is_lost_and_order_holds_when_ingestion_is_killed_and_restarted(
    mode: Mode,
    tmp_path: Path,
    redis_server: EmbeddedRedis,
    kafka_server: EmbeddedKafka,
    topic: str,
) -> None:
    port = free_port()
    log = tmp_path / "ingestion-1.log"
    proc = start_ingestion(log, redis_server, kafka_server, topic, port)
    acks = Acks()
    cars = [f"client-{mode}-{i:02d}" for i in range(20)]
    base = time.time_ns() // 1_000_000
    sent = 0
    try:
        client = TelemetryClient(
            f"127.0.0.1:{port}",
            Credential(token=DEV_TOKEN),
            mode=mode,
            max_batch=50,
            backoff=Backoff(0.05, 0.5),
            listener=acks,
        )
        async with client:
            for i in range(90):  # 20 cars x 10 statuses/s for 9 s
                for car in cars:
                    client.send(status(car, base + i, i))
                    sent += 1
                if i == 30:
                    await asyncio.to_thread(stop_process, proc, signal.SIGKILL)
                if i == 45:  # 1.5 s offline: the client buffers
                    assert len(client.outbox) > 0
                    proc = await asyncio.to_thread(
                        start_ingestion,
                        tmp_path / "ingestion-2.log",
                        redis_server,
                        kafka_server,
                        topic,
                        port,
                    )
                await asyncio.sleep(0.1)
            assert await client.flush(60), f"{len(client.outbox)} statuses still unacknowledged"
    finally:
        await asyncio.to_thread(stop_process, proc, signal.SIGTERM)

    c = client.counters
    assert (c.put, c.acked, c.rejected, c.dropped) == (sent, sent, 0, 0)
    assert acks.broken >= 1 and c.resent > 0  # the kill was seen and survived
    assert sorted(set(acks.acked)) == sorted({(car, base + i) for car in cars for i in range(90)})
    events = await read_topic(kafka_server.url, topic, expect=sent)
    assert_all_acked_in_topic_in_order(acks.acked, events)


@pytest.mark.parametrize("mode", ["batch", "status"])
async def test_a_rate_limited_client_waits_for_the_hint_and_gets_every_status_stored(
    mode: Mode, redis_server: EmbeddedRedis, kafka_server: EmbeddedKafka, topic: str
) -> None:
    from greenlane.ingestion.server import start_server

    slow = "rate-limited-client-token-0001"
    credentials = [
        {
            "token": slow,
            "fleet": "slowpoke",
            "scopes": ["telemetry:write"],
            "limits": {"statuses_per_second": 20, "burst": 10},
        }
    ]
    running = await start_server(
        ingestion_settings(  # type: ignore[arg-type]
            redis_server.url, kafka_server.url, topic, credentials=json.dumps(credentials)
        )
    )
    acks = Acks()
    try:
        client = TelemetryClient(
            f"127.0.0.1:{running.port}",
            Credential(token=slow),
            mode=mode,
            # Small messages: a batch larger than the burst would be granted in debt.
            max_batch=5,
            max_in_flight=10,
            listener=acks,
        )
        # One status per message on the status stream (no SendBatch of the backlog).
        client.link.backlog_batches = False
        async with client:
            base = time.time_ns() // 1_000_000
            for i in range(60):
                client.send(status(f"limited-{i % 10}", base + i, i))
            assert await client.flush(60)
    finally:
        await running.stop(1.0)
    c = client.counters
    assert (c.acked, c.rejected, c.dropped) == (60, 0, 0)
    assert c.resent > 0  # some were answered RATE_LIMITED and sent again after the hint
    events = await read_topic(kafka_server.url, topic, expect=60)
    assert_all_acked_in_topic_in_order(acks.acked, events)

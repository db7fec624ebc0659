"""The embedded broker with librdkafka (confluent-kafka), the client most Kafka code is built on.

aiokafka is what GreenLane's services use; a user brings librdkafka (Python, Go, Rust,
kcat). See docs/kafka-clients.md for what works, what does not, and why.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import grpc
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition
from stack import read_topic

from greenlane.cli.embedded import EmbeddedKafka
from greenlane.core.kafka import ensure_topic
from greenlane.v1 import fleet_pb2, fleet_pb2_grpc

pytestmark = pytest.mark.integration

TOKEN = [("x-api-token", "greenlane-secret-token")]
TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
# The embedded broker holds a JoinGroup answer for half the session timeout (see
# docs/kafka-clients.md): librdkafka's default (45 s) makes that 23 s, 6 s makes it 3 s.
SESSION_TIMEOUT_MS = 6000
JOIN_BOUND_S = 20.0  # generous: the figure is printed, the bound only catches a hang


def _event(car_id: str, i: int) -> dict[str, object]:
    return {
        "car_id": car_id,
        "lat": 40.75 + i * 1e-4,
        "lon": -73.98,
        "battery": 80.0 - i,
        "velocity": 30.0,
        "timestamp": int(time.time() * 1000) + i,
        "event_type": "telemetry",
    }


def _produce(bootstrap: str, topic: str, events: list[dict[str, object]]) -> None:
    # As ingestion publishes: key = car id (per-car order), JSON value, snappy, acks=all,
    # the W3C trace context in a header.
    producer = Producer(
        {"bootstrap.servers": bootstrap, "compression.type": "snappy", "acks": "all"}
    )
    failures: list[str] = []

    def delivered(err: object, _msg: Message) -> None:
        if err is not None:
            failures.append(str(err))

    for event in events:
        producer.produce(
            topic,
            json.dumps(event).encode(),
            key=str(event["car_id"]).encode(),
            headers=[("traceparent", TRACEPARENT)],
            on_delivery=delivered,
        )
    assert producer.flush(30) == 0, "librdkafka could not deliver everything"
    assert not failures, failures


def _drain(consumer: Consumer, expect: int, within: float) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + within
    while len(got) < expect and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        got.append(msg)
    return got


def _assigned(bootstrap: str, topic: str, partitions: int, expect: int) -> list[Message]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"assign-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        return _drain(consumer, expect, 30)
    finally:
        consumer.close()


def _grouped(bootstrap: str, topic: str, expect: int) -> tuple[list[Message], float]:
    """Subscribe as a consumer group; returns the messages and how long the join took."""
    joined: list[float] = []
    started = time.monotonic()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"group-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": SESSION_TIMEOUT_MS,
        }
    )
    try:
        consumer.subscribe(
            [topic], on_assign=lambda _c, _p: joined.append(time.monotonic() - started)
        )
        messages = _drain(consumer, expect, JOIN_BOUND_S + 10)
    finally:
        consumer.close()
    assert joined, f"no partition assigned within {JOIN_BOUND_S + 10:g} s"
    return messages, joined[0]


def _by_key(messages: list[Message]) -> dict[str, list[dict[str, object]]]:
    found: dict[str, list[dict[str, object]]] = {}
    for msg in messages:
        key = msg.key()
        value = msg.value()
        assert key is not None and value is not None
        found.setdefault(key.decode(), []).append(json.loads(value))
    return found


async def test_librdkafka_produces_and_consumes_with_assign_and_a_group_on_the_embedded_broker(
    kafka_server: EmbeddedKafka, topic: str
) -> None:
    await ensure_topic(kafka_server.url, topic, partitions=3)
    events = [_event(f"rd-car-{i % 5}", i) for i in range(30)]
    await asyncio.to_thread(_produce, kafka_server.url, topic, events)

    assigned = await asyncio.to_thread(_assigned, kafka_server.url, topic, 3, len(events))
    grouped, join_s = await asyncio.to_thread(_grouped, kafka_server.url, topic, len(events))
    print(
        f"\nlibrdkafka group join on the embedded broker: {join_s:.1f} s "
        f"(session.timeout.ms={SESSION_TIMEOUT_MS})"
    )

    expected: dict[str, list[dict[str, object]]] = {}
    for event in events:
        expected.setdefault(str(event["car_id"]), []).append(event)
    assert _by_key(assigned) == expected  # every event, each car's in order
    assert _by_key(grouped) == expected
    assert all(m.headers() == [("traceparent", TRACEPARENT)] for m in assigned)
    assert join_s < JOIN_BOUND_S
    # And the services' client reads librdkafka's records the same way.
    seen = await read_topic(kafka_server.url, topic, expect=len(events))
    assert sorted(e["timestamp"] for e in seen) == sorted(e["timestamp"] for e in events)


async def test_librdkafka_reads_back_what_ingestion_wrote(
    ingestion: object, kafka_server: EmbeddedKafka, topic: str
) -> None:
    port = ingestion.port  # type: ignore[attr-defined]
    now = int(time.time() * 1000)
    statuses = [
        fleet_pb2.CarStatus(
            car_id=f"ing-car-{i % 4}",
            lat=40.7 + i * 1e-4,
            lon=-74.0,
            battery=90.0 - i,
            velocity=10.0 + i,
            timestamp=now - 1000 + i,
        )
        for i in range(12)
    ]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        answer = await fleet_pb2_grpc.FleetTelemetryStub(channel).SendBatch(
            fleet_pb2.CarStatusBatch(statuses=statuses), metadata=TOKEN
        )
    assert answer.accepted == len(statuses)

    messages = await asyncio.to_thread(_assigned, kafka_server.url, topic, 3, len(statuses))

    found = _by_key(messages)
    assert sorted(found) == [f"ing-car-{i}" for i in range(4)]
    for car, events in found.items():
        sent = [s for s in statuses if s.car_id == car]
        assert [e["timestamp"] for e in events] == [s.timestamp for s in sent]  # in order
        assert all(e["car_id"] == car and e["event_type"] == "telemetry" for e in events)
        assert [e["battery"] for e in events] == pytest.approx([s.battery for s in sent])

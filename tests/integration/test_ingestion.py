"""Ingestion against real Valkey and a real Kafka-API broker: storage, order, auth, rejection."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from redis.asyncio import Redis
from stack import read_topic

from greenlane.cli.embedded import EmbeddedKafka
from greenlane.core import keys
from greenlane.core.wire import TOKEN_METADATA_KEY
from greenlane.v1 import fleet_pb2, fleet_pb2_grpc

pytestmark = pytest.mark.integration

TOKEN = [(TOKEN_METADATA_KEY, "greenlane-secret-token")]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def status(car_id: str, i: int, /, **overrides: float | int | str) -> fleet_pb2.CarStatus:
    values: dict[str, float | int | str] = {
        "car_id": car_id,
        "lat": 40.70 + 0.001 * i,
        "lon": -74.00 + 0.001 * i,
        "battery": max(0.0, 90.0 - 0.3 * i),
        "velocity": 20.0 + i % 30,
        "timestamp": now_ms() - 100_000 + i,
    }
    values.update(overrides)
    return fleet_pb2.CarStatus(**values)  # type: ignore[arg-type]


async def stream(
    stub: fleet_pb2_grpc.FleetTelemetryStub, messages: list[fleet_pb2.CarStatus]
) -> list[fleet_pb2.BookingResponse]:
    async def gen() -> AsyncIterator[fleet_pb2.CarStatus]:
        for m in messages:
            yield m

    return [r async for r in stub.StreamTelemetry(gen(), metadata=TOKEN)]


@pytest.fixture
async def stub(ingestion: object) -> AsyncIterator[fleet_pb2_grpc.FleetTelemetryStub]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{ingestion.port}")  # type: ignore[attr-defined]
    yield fleet_pb2_grpc.FleetTelemetryStub(channel)
    await channel.close()


async def test_every_accepted_status_is_in_kafka_in_car_order_and_redis_holds_the_latest(
    stub: fleet_pb2_grpc.FleetTelemetryStub,
    redis_client: Redis,
    kafka_server: EmbeddedKafka,
    topic: str,
) -> None:
    cars, per_car = 25, 40
    sent = {
        f"car-{c:03d}": [status(f"car-{c:03d}", i) for i in range(per_car)] for c in range(cars)
    }

    answers = await asyncio.gather(*(stream(stub, msgs) for msgs in sent.values()))

    for car_id, responses in zip(sent, answers, strict=True):
        assert [r.status for r in responses] == [fleet_pb2.ACCEPTED] * per_car
        assert [r.timestamp for r in responses] == [m.timestamp for m in sent[car_id]]
        assert {r.car_id for r in responses} == {car_id}
    events = await read_topic(kafka_server.url, topic, expect=cars * per_car)
    assert len(events) == cars * per_car
    for car_id, msgs in sent.items():
        mine = [e for e in events if e["car_id"] == car_id]
        assert [e["timestamp"] for e in mine] == [m.timestamp for m in msgs]
        assert {e["_key"] for e in mine} == {car_id}
        assert len({e["_partition"] for e in mine}) == 1
        assert mine[-1] == {
            "car_id": car_id,
            "lat": msgs[-1].lat,
            "lon": msgs[-1].lon,
            "battery": msgs[-1].battery,
            "velocity": msgs[-1].velocity,
            "timestamp": msgs[-1].timestamp,
            "event_type": "telemetry",
            "fleet": "dev",  # the fleet that sent it (the dev token's)
            "_key": car_id,
            "_partition": mine[-1]["_partition"],
            "_headers": {},  # an untraced status's record carries no trace context
        }
    members = {m.decode() for m in await redis_client.zrange(keys.FLEET_LOCATIONS, 0, -1)}
    assert members == set(sent)
    positions = await redis_client.geopos(keys.FLEET_LOCATIONS, *sent)
    for (lon, lat), msgs in zip(positions, sent.values(), strict=True):
        assert lon == pytest.approx(msgs[-1].lon, abs=1e-5)
        assert lat == pytest.approx(msgs[-1].lat, abs=1e-5)
    for car_id, msgs in sent.items():
        state = await redis_client.hgetall(keys.car_state(car_id))
        assert state == {
            # The car's owner: the first fleet that wrote it (the dev token's).
            keys.OWNER_FIELD.encode(): b"dev",
            b"battery": repr(msgs[-1].battery).encode(),
            b"velocity": repr(msgs[-1].velocity).encode(),
            b"timestamp": str(msgs[-1].timestamp).encode(),
            b"lat": repr(msgs[-1].lat).encode(),
            b"lon": repr(msgs[-1].lon).encode(),
            b"station_id": b"",
        }


@pytest.mark.parametrize(
    "metadata", [[], [("x-api-token", "wrong-token-of-some-length")]], ids=["missing", "wrong"]
)
async def test_a_missing_or_wrong_token_is_unauthenticated_and_nothing_is_written(
    stub: fleet_pb2_grpc.FleetTelemetryStub,
    redis_client: Redis,
    kafka_server: EmbeddedKafka,
    topic: str,
    metadata: list[tuple[str, str]],
) -> None:
    async def gen() -> AsyncIterator[fleet_pb2.CarStatus]:
        yield status("intruder", 1)

    with pytest.raises(grpc.aio.AioRpcError) as streamed:
        _ = [r async for r in stub.StreamTelemetry(gen(), metadata=metadata)]
    assert streamed.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as unary:
        await stub.SendBatch(
            fleet_pb2.CarStatusBatch(statuses=[status("intruder", 2)]), metadata=metadata
        )
    assert unary.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "wrong-token" not in (unary.value.details() or "")
    assert await redis_client.exists(keys.car_state("intruder"), keys.FLEET_LOCATIONS) == 0
    assert [e for e in await read_topic(kafka_server.url, topic) if e["car_id"] == "intruder"] == []


INVALID = [
    ("car_id", {"car_id": ""}),
    ("car_id", {"car_id": "x" * 65}),
    ("car_id", {"car_id": "bad id!"}),
    ("lat", {"lat": 90.5}),
    ("lat", {"lat": float("nan")}),
    ("lon", {"lon": -180.01}),
    ("battery", {"battery": 100.5}),
    ("battery", {"battery": -1.0}),
    ("velocity", {"velocity": -0.1}),
    ("velocity", {"velocity": 1200.0}),
    ("timestamp", {"timestamp": 0}),
    ("timestamp", {"timestamp": now_ms() + 3_600_000}),
    ("timestamp", {"timestamp": now_ms() - 30 * 86_400_000}),
]


@pytest.mark.parametrize(
    ("field", "bad"), INVALID, ids=[f"{f}-{i}" for i, (f, _) in enumerate(INVALID)]
)
async def test_an_invalid_field_is_rejected_by_name_nothing_is_stored_and_the_stream_goes_on(
    stub: fleet_pb2_grpc.FleetTelemetryStub,
    redis_client: Redis,
    kafka_server: EmbeddedKafka,
    topic: str,
    field: str,
    bad: dict[str, object],
) -> None:
    invalid = status("car-bad", 1, **bad)  # type: ignore[arg-type]
    valid = status("car-good", 2)

    responses = await stream(stub, [invalid, valid])

    assert responses[0].status == fleet_pb2.REJECTED
    assert responses[0].field == field
    assert field in responses[0].message
    assert responses[1].status == fleet_pb2.ACCEPTED
    events = await read_topic(kafka_server.url, topic, expect=1)
    assert [e["car_id"] for e in events] == ["car-good"]
    assert await redis_client.exists(keys.car_state("car-bad")) == 0
    members = {m.decode() for m in await redis_client.zrange(keys.FLEET_LOCATIONS, 0, -1)}
    assert members == {"car-good"}


async def test_a_batch_stores_its_valid_items_lists_the_rejected_and_keeps_car_order(
    stub: fleet_pb2_grpc.FleetTelemetryStub,
    redis_client: Redis,
    kafka_server: EmbeddedKafka,
    topic: str,
) -> None:
    live = [status("car-gw", i) for i in range(0, 10)]
    backlog = [status("car-gw", i) for i in range(10, 60)]
    backlog.insert(5, status("car-gw", 999, battery=150.0))
    backlog.insert(20, status("other", 1, lon=200.0))

    via_batch_stream, final = status("car-gw", 60), status("car-gw", 61)

    first = await stream(stub, live)
    batch = await stub.SendBatch(fleet_pb2.CarStatusBatch(statuses=backlog), metadata=TOKEN)
    streamed = stub.StreamTelemetryBatches(
        iter([fleet_pb2.CarStatusBatch(statuses=[via_batch_stream])]), metadata=TOKEN
    )
    again = [r async for r in streamed]
    last = await stream(stub, [final])

    assert [r.status for r in first + last] == [fleet_pb2.ACCEPTED] * 11
    assert batch.status == fleet_pb2.ACCEPTED
    assert batch.accepted == 50
    assert [(r.index, r.field) for r in batch.rejected] == [(5, "battery"), (20, "lon")]
    assert again[0].accepted == 1
    events = await read_topic(kafka_server.url, topic, expect=62)
    expected = (
        [m.timestamp for m in live]
        + [m.timestamp for m in backlog if m.car_id == "car-gw" and m.battery <= 100]
        + [via_batch_stream.timestamp, final.timestamp]
    )
    assert [e["timestamp"] for e in events if e["car_id"] == "car-gw"] == expected
    assert {e["car_id"] for e in events} == {"car-gw"}
    state = await redis_client.hget(keys.car_state("car-gw"), "timestamp")
    assert state == str(expected[-1]).encode()


async def test_an_empty_batch_is_rejected_with_a_message_naming_statuses(
    stub: fleet_pb2_grpc.FleetTelemetryStub,
) -> None:
    answer = await stub.SendBatch(fleet_pb2.CarStatusBatch(), metadata=TOKEN)
    assert answer.status == fleet_pb2.REJECTED
    assert answer.message.startswith("statuses:")


async def test_many_streams_are_batched_into_few_backend_writes(
    stub: fleet_pb2_grpc.FleetTelemetryStub, kafka_server: EmbeddedKafka, topic: str
) -> None:
    from greenlane.ingestion import metrics

    flushes_before = (
        metrics.FLUSH_STATUSES._sum.get(),
        sum(  # noqa: SLF001
            b.get()
            for b in metrics.FLUSH_STATUSES._buckets  # noqa: SLF001
        ),
    )
    rng = random.Random(7)
    cars = [f"fleet-{i}" for i in range(200)]
    answers = await asyncio.gather(
        *(stream(stub, [status(c, i) for i in range(5)]) for c in rng.sample(cars, len(cars)))
    )
    statuses_after = metrics.FLUSH_STATUSES._sum.get()  # noqa: SLF001
    flushes_after = sum(b.get() for b in metrics.FLUSH_STATUSES._buckets)  # noqa: SLF001

    assert all(r.status == fleet_pb2.ACCEPTED for rs in answers for r in rs)
    written = statuses_after - flushes_before[0]
    flushes = flushes_after - flushes_before[1]
    assert written == 1000
    # One round trip per status would be 1,000 flushes; across streams they share.
    assert flushes < 500


async def test_a_whole_fleet_opening_its_streams_at_once_is_served_without_a_broken_stream(
    ingestion: object,
) -> None:
    # 1500 streams opened in the same instant: grpc.aio takes new calls one per loop
    # turn, so most of them wait in gRPC core, where past 1000 (its default limit) core
    # cancels them at random. Ingestion raises that limit; every stream must be answered.
    port = ingestion.port  # type: ignore[attr-defined]
    cars = 1500
    outcomes: list[str] = []

    async def one(stub: fleet_pb2_grpc.FleetTelemetryStub, i: int) -> None:
        call = stub.StreamTelemetry(metadata=TOKEN)
        try:
            await call.write(status(f"storm-{i}", 1))
            answer = await call.read()
            await call.done_writing()
            outcomes.append(fleet_pb2.ResponseStatus.Name(answer.status))
        except grpc.aio.AioRpcError as exc:
            outcomes.append(exc.code().name)
        except asyncio.InvalidStateError:
            outcomes.append("BROKEN")

    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(3)]
    try:
        stubs = [fleet_pb2_grpc.FleetTelemetryStub(c) for c in channels]
        await asyncio.wait_for(asyncio.gather(*(one(stubs[i % 3], i) for i in range(cars))), 100)
    finally:
        for channel in channels:
            await channel.close()
    broken = [o for o in outcomes if o != "ACCEPTED"]
    assert len(outcomes) == cars
    assert not broken, f"{len(broken)} of {cars} streams failed: {set(broken)}"

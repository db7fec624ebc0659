"""The Redis-key stall of issue 10, case by case, against real Valkey and Tansu.

Before: a car id may hold ':', so `X:booking` named car X's booking pointer; the flush's
one script failed with WRONGTYPE and was retried until the deadline, stalling every
client; planted keys broke X's bookings and its history (500 text/plain); a status six
days old replaced a newer one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from redis.asyncio import Redis
from stack import read_topic

from greenlane.cli.embedded import EmbeddedKafka
from greenlane.core import keys
from greenlane.core.keys import Region
from greenlane.core.stations import Station, load_stations
from greenlane.core.wire import TOKEN_METADATA_KEY
from greenlane.ingestion import metrics
from greenlane.v1 import fleet_pb2, fleet_pb2_grpc

pytestmark = pytest.mark.integration

TOKEN = [(TOKEN_METADATA_KEY, "greenlane-secret-token")]
HEADERS = {TOKEN_METADATA_KEY: "greenlane-secret-token"}
STATIONS = [Station("st-a", "Alpha", 40.7580, -73.9855, 2, 150.0)]
DAY_MS = 86_400_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def status(car: str, battery: float = 80.0, **kw: object) -> fleet_pb2.CarStatus:
    values: dict[str, object] = {
        "car_id": car,
        "lat": 40.7581,
        "lon": -73.9856,
        "battery": battery,
        "velocity": 20.0,
        "timestamp": now_ms(),
    }
    values.update(kw)
    return fleet_pb2.CarStatus(**values)  # type: ignore[arg-type]


async def send(
    stub: fleet_pb2_grpc.FleetTelemetryStub, *msgs: fleet_pb2.CarStatus
) -> list[tuple[fleet_pb2.BookingResponse, float]]:
    """Answers with the seconds each took from its request."""
    sent: list[float] = []

    async def gen() -> AsyncIterator[fleet_pb2.CarStatus]:
        for m in msgs:
            sent.append(time.monotonic())
            yield m

    out = []
    async for answer in stub.StreamTelemetry(gen(), metadata=TOKEN):
        out.append((answer, time.monotonic() - sent[len(out)]))
    return out


def retries() -> float:
    return sum(metrics.BACKEND_ERRORS.labels(b)._value.get() for b in ("redis", "kafka"))  # noqa: SLF001


@pytest.fixture
async def stub(
    ingestion: object, redis_client: Redis
) -> AsyncIterator[fleet_pb2_grpc.FleetTelemetryStub]:
    await load_stations(redis_client, STATIONS)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{ingestion.port}")  # type: ignore[attr-defined]
    yield fleet_pb2_grpc.FleetTelemetryStub(channel)
    await channel.close()


@pytest.fixture
async def api(ingestion: object) -> AsyncIterator[httpx.AsyncClient]:
    port = ingestion.api.port  # type: ignore[attr-defined]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        yield client


async def test_a_car_named_x_booking_stalls_nobody_and_is_stored_as_a_car_of_its_own(
    stub: fleet_pb2_grpc.FleetTelemetryStub,
    redis_client: Redis,
    api: httpx.AsyncClient,
    kafka_server: EmbeddedKafka,
    topic: str,
) -> None:
    ((booked, _),) = await send(stub, status("X", battery=10.0))
    assert booked.status == fleet_pb2.BOOKED
    before = retries()

    # X:booking streams among twenty ordinary cars, all at once, in the same flushes.
    answers = await asyncio.gather(
        send(stub, *(status("X:booking") for _ in range(5))),
        *(send(stub, *(status(f"other-{i}") for _ in range(5))) for i in range(20)),
    )

    assert all(a.status == fleet_pb2.ACCEPTED for car in answers for a, _ in car)
    assert retries() == before  # no flush failed, so none was retried
    # Generous: the stall made every client wait up to the 5 s deadline.
    assert max(seconds for car in answers for _, seconds in car) < 2.0
    assert await redis_client.hget(keys.car_state("X:booking"), "battery") == b"80.0"
    assert await redis_client.geopos(keys.FLEET_LOCATIONS, "X:booking") != [None]
    events = await read_topic(kafka_server.url, topic, expect=1 + 1 + 105)
    assert sum(1 for e in events if e["car_id"] == "X:booking") == 5
    # X's booking is untouched.
    history = await api.get("/api/cars/X/bookings", headers=HEADERS)
    assert history.status_code == 200
    assert [(b["booking_id"], b["status"]) for b in history.json()["bookings"]] == [
        (booked.booking.booking_id, "active")
    ]


async def test_keys_planted_before_a_car_books_break_neither_its_bookings_nor_its_history(
    stub: fleet_pb2_grpc.FleetTelemetryStub, redis_client: Redis, api: httpx.AsyncClient
) -> None:
    # Planted through the API (cars whose ids look like X's keys) ...
    planted = await send(stub, status("X:bookings"), status("X:booking"), status("X:"))
    assert [a.status for a, _ in planted] == [fleet_pb2.ACCEPTED] * 3
    # ... and straight into Redis, at the names the old layout gave X's booking keys.
    await redis_client.hset("car:X:booking", "a", "b")
    await redis_client.set("car:X:bookings", "not a sorted set")

    (first, _), (again, _) = await send(stub, status("X", 10.0), status("X", 9.5))
    history = await api.get("/api/cars/X/bookings", headers=HEADERS)

    assert first.status == again.status == fleet_pb2.BOOKED
    assert again.booking.booking_id == first.booking.booking_id
    assert history.status_code == 200
    assert history.headers["content-type"] == "application/json"
    assert [b["booking_id"] for b in history.json()["bookings"]] == [first.booking.booking_id]
    planted_history = await api.get("/api/cars/X:booking/bookings", headers=HEADERS)
    assert planted_history.status_code == 200 and planted_history.json()["bookings"] == []


async def test_the_booking_api_answers_problem_json_even_when_redis_holds_garbage(
    redis_client: Redis, api: httpx.AsyncClient
) -> None:
    region = Region()
    await redis_client.zadd(region.car_bookings("X"), {"b1": 1})
    await redis_client.set(region.bookings, "not a hash")  # an operator's mistake

    answer = await api.get("/api/cars/X/bookings", headers=HEADERS)

    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert "unavailable" in answer.json()["detail"]


async def test_a_status_six_days_old_is_history_and_never_replaces_the_newer_state(
    stub: fleet_pb2_grpc.FleetTelemetryStub,
    redis_client: Redis,
    kafka_server: EmbeddedKafka,
    topic: str,
) -> None:
    t = now_ms()
    newer = status("car-late", 60.0, timestamp=t, lat=40.70, lon=-74.00)
    older = status("car-late", 90.0, timestamp=t - 6 * DAY_MS, lat=40.80, lon=-73.90)

    answers = await send(stub, newer, older)

    assert [a.status for a, _ in answers] == [fleet_pb2.ACCEPTED] * 2
    stored = await redis_client.hgetall(keys.car_state("car-late"))
    assert (stored[b"timestamp"], stored[b"battery"]) == (str(t).encode(), b"60.0")
    ((lon, lat),) = await redis_client.geopos(keys.FLEET_LOCATIONS, "car-late")
    assert (lon, lat) == (pytest.approx(-74.00, abs=1e-5), pytest.approx(40.70, abs=1e-5))
    events = await read_topic(kafka_server.url, topic, expect=2)
    assert [e["timestamp"] for e in events] == [t, t - 6 * DAY_MS]  # both, as history


async def test_a_status_redis_refuses_fails_alone_at_once_and_nothing_of_it_is_stored(
    stub: fleet_pb2_grpc.FleetTelemetryStub,
    redis_client: Redis,
    kafka_server: EmbeddedKafka,
    topic: str,
) -> None:
    # Not reachable through the API any more: someone wrote into GreenLane's keys.
    await redis_client.set(keys.car_state("victim"), "garbage")
    before = retries()

    victim, *others = await asyncio.gather(
        send(stub, status("victim")), *(send(stub, status(f"fine-{i}")) for i in range(10))
    )

    ((refused, seconds),) = victim
    assert refused.status == fleet_pb2.UNAVAILABLE
    assert "Redis refused it: WRONGTYPE" in refused.message
    assert seconds < 2.0  # answered without waiting for the 5 s deadline
    assert retries() == before  # a refusal is never retried
    assert all(a.status == fleet_pb2.ACCEPTED for car in others for a, _ in car)
    assert await redis_client.get(keys.car_state("victim")) == b"garbage"
    assert await redis_client.geopos(keys.FLEET_LOCATIONS, "victim") == [None]
    events = await read_topic(kafka_server.url, topic, expect=10)
    assert {e["car_id"] for e in events} == {f"fine-{i}" for i in range(10)}

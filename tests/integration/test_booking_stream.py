"""Booking through the telemetry stream and the booking HTTP API, on real Valkey and Tansu."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from redis.asyncio import Redis
from stack import read_topic

from greenlane.cli.embedded import EmbeddedKafka
from greenlane.core.stations import Station, load_stations
from greenlane.v1 import fleet_pb2, fleet_pb2_grpc

pytestmark = pytest.mark.integration

TOKEN = [("x-api-token", "greenlane-secret-token")]
HEADERS = {"x-api-token": "greenlane-secret-token"}
STATIONS = [
    Station("st-a", "Alpha", 40.7580, -73.9855, 1, 150.0),
    Station("st-b", "Bravo", 40.7620, -73.9800, 2, 50.0),
]


def status(car: str, battery: float, **kw: object) -> fleet_pb2.CarStatus:
    return fleet_pb2.CarStatus(
        car_id=car,
        lat=40.7581,
        lon=-73.9856,
        battery=battery,
        velocity=20.0,
        timestamp=time.time_ns() // 1_000_000,
        **kw,  # type: ignore[arg-type]
    )


async def ask(
    stub: fleet_pb2_grpc.FleetTelemetryStub, *msgs: fleet_pb2.CarStatus
) -> list[fleet_pb2.BookingResponse]:
    async def gen() -> AsyncIterator[fleet_pb2.CarStatus]:
        for m in msgs:
            yield m

    return [r async for r in stub.StreamTelemetry(gen(), metadata=TOKEN)]


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


async def test_a_low_battery_car_is_booked_on_its_stream_and_asking_again_keeps_the_booking(
    stub: fleet_pb2_grpc.FleetTelemetryStub, kafka_server: EmbeddedKafka, topic: str
) -> None:
    first, again = await ask(stub, status("car-low", 12.0), status("car-low", 11.8))

    assert first.status == fleet_pb2.BOOKED
    assert first.booking.station_id == "st-a"
    assert first.booking.station_name == "Alpha"
    assert first.booking.distance_m < 50
    assert first.booking.power_kw == 150.0
    assert first.booking.expires_at > time.time() * 1000 + 19 * 60 * 1000
    assert again.status == fleet_pb2.BOOKED
    assert again.booking.booking_id == first.booking.booking_id
    events = await read_topic(kafka_server.url, topic, expect=3)
    kinds = [e["event_type"] for e in events]
    # The booking event follows the status that caused it (a pipelined later status of
    # the same car may come between them).
    assert kinds[0] == "telemetry" and sorted(kinds) == [
        "booking_created",
        "telemetry",
        "telemetry",
    ]
    created = events[kinds.index("booking_created")]
    assert created["booking_id"] == first.booking.booking_id
    assert created["station_id"] == "st-a"
    assert created["_key"] == "car-low"


async def test_a_car_that_asks_is_booked_whatever_its_battery_and_the_next_one_goes_further(
    stub: fleet_pb2_grpc.FleetTelemetryStub,
) -> None:
    (a,) = await ask(stub, status("car-1", 80.0, request_booking=True))
    (b,) = await ask(stub, status("car-2", 80.0, request_booking=True))
    (plain,) = await ask(stub, status("car-3", 80.0))

    assert (a.status, a.booking.station_id) == (fleet_pb2.BOOKED, "st-a")
    assert (b.status, b.booking.station_id) == (fleet_pb2.BOOKED, "st-b")
    assert plain.status == fleet_pb2.ACCEPTED and not plain.HasField("booking")


async def test_no_capacity_is_answered_when_every_station_is_taken(
    stub: fleet_pb2_grpc.FleetTelemetryStub,
) -> None:
    answers = [(await ask(stub, status(f"car-{i}", 5.0)))[0] for i in range(4)]

    assert [a.status for a in answers] == [fleet_pb2.BOOKED] * 3 + [fleet_pb2.NO_CAPACITY]
    assert "no station" in answers[3].message


async def test_plugging_in_at_the_booked_station_fulfils_the_booking_and_frees_the_slot(
    stub: fleet_pb2_grpc.FleetTelemetryStub,
    api: httpx.AsyncClient,
    kafka_server: EmbeddedKafka,
    topic: str,
) -> None:
    (booked,) = await ask(stub, status("car-f", 10.0))
    (charging,) = await ask(stub, status("car-f", 10.5, station_id="st-a"))

    assert booked.status == fleet_pb2.BOOKED
    assert charging.status == fleet_pb2.ACCEPTED
    assert "fulfilled" in charging.message
    near = await api.get("/api/stations", params={"lat": 40.758, "lon": -73.9855}, headers=HEADERS)
    assert {s["station_id"]: s["free"] for s in near.json()["stations"]} == {"st-a": 1, "st-b": 2}
    history = await api.get("/api/cars/car-f/bookings", headers=HEADERS)
    assert [b["status"] for b in history.json()["bookings"]] == ["fulfilled"]
    events = await read_topic(kafka_server.url, topic, expect=4)
    assert [e["event_type"] for e in events] == [
        "telemetry",
        "booking_created",
        "telemetry",
        "booking_fulfilled",
    ]


async def test_the_api_cancels_a_booking_and_answers_bad_requests_precisely(
    stub: fleet_pb2_grpc.FleetTelemetryStub, api: httpx.AsyncClient
) -> None:
    (booked,) = await ask(stub, status("car-c", 9.0))
    bid = booked.booking.booking_id

    full = await api.get(
        "/api/stations", params={"lat": 40.758, "lon": -73.9855, "radius_km": 0.1}, headers=HEADERS
    )
    cancelled = await api.delete(f"/api/bookings/{bid}", headers=HEADERS)
    twice = await api.delete(f"/api/bookings/{bid}", headers=HEADERS)
    missing = await api.delete("/api/bookings/abc123", headers=HEADERS)
    freed = await api.get(
        "/api/stations", params={"lat": 40.758, "lon": -73.9855, "radius_km": 0.1}, headers=HEADERS
    )
    no_token = await api.get("/api/stations", params={"lat": 1, "lon": 1})
    bad_lat = await api.get("/api/stations", params={"lat": 95, "lon": 1}, headers=HEADERS)
    unknown = await api.get(
        "/api/stations", params={"lat": 1, "lon": 1, "colour": "red"}, headers=HEADERS
    )

    assert full.json()["stations"] == []
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert twice.status_code == 409 and "cancelled" in twice.json()["detail"]
    assert missing.status_code == 404
    assert [s["station_id"] for s in freed.json()["stations"]] == ["st-a"]
    assert no_token.status_code == 401
    assert bad_lat.status_code == 400 and bad_lat.json()["parameter"] == "lat"
    assert unknown.status_code == 400 and unknown.json()["parameter"] == "colour"
    assert bad_lat.headers["content-type"] == "application/problem+json"

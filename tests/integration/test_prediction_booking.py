"""Prediction-led booking through the telemetry stream, on real Valkey and Tansu: a car
books when its predicted reach no longer covers the way to a free station, at the free
station that costs it least (detour, demand price, expected wait)."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc
import httpx
import pytest
from conftest import ingestion_settings
from redis.asyncio import Redis

from greenlane.cli.embedded import EmbeddedKafka, EmbeddedRedis
from greenlane.core import keys
from greenlane.core.demand import (
    SiteLoad,
    expected_wait_minutes,
    record_site_load,
    site_load_at,
    station_price,
)
from greenlane.core.keys import Region
from greenlane.core.stations import Site, Station, load_stations
from greenlane.grid.app import create_app
from greenlane.grid.settings import GridSettings
from greenlane.ingestion.server import start_server
from greenlane.v1 import fleet_pb2, fleet_pb2_grpc

pytestmark = pytest.mark.integration

TOKEN = [("x-api-token", "greenlane-secret-token")]
KM_LAT = 111.32  # km per degree of latitude
HERE = (40.7580, -73.9855)


def north(km: float) -> float:
    return HERE[0] + km / KM_LAT


async def ask(
    stub: fleet_pb2_grpc.FleetTelemetryStub, msgs: list[fleet_pb2.CarStatus]
) -> list[fleet_pb2.BookingResponse]:
    async def gen() -> AsyncIterator[fleet_pb2.CarStatus]:
        for m in msgs:
            yield m

    return [r async for r in stub.StreamTelemetry(gen(), metadata=TOKEN)]


def drive(
    car: str, lat: float, velocity: float, start: float, per_hour: float, until: float
) -> list[fleet_pb2.CarStatus]:
    """A status a minute of a car draining per_hour % an hour from `start` % to `until` %,
    ending now."""
    steps = math.ceil((start - until) / (per_hour / 60))
    now = time.time_ns() // 1_000_000
    return [
        fleet_pb2.CarStatus(
            car_id=car,
            lat=lat,
            lon=HERE[1],
            battery=start - n * per_hour / 60,
            velocity=velocity,
            timestamp=now - (steps - n) * 60_000,
        )
        for n in range(steps + 1)
    ]


@pytest.fixture
async def stub(
    redis_server: EmbeddedRedis, kafka_server: EmbeddedKafka, topic: str, redis_client: Redis
) -> AsyncIterator[fleet_pb2_grpc.FleetTelemetryStub]:
    """An ingestion server with demand prices on, in the test's loop."""
    running = await start_server(
        ingestion_settings(  # type: ignore[arg-type]
            redis_server.url, kafka_server.url, topic, demand_prices=True
        )
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    yield fleet_pb2_grpc.FleetTelemetryStub(channel)
    await channel.close()
    await running.stop(1.0)


def first_booked(
    msgs: list[fleet_pb2.CarStatus], answers: list[fleet_pb2.BookingResponse]
) -> float:
    for m, a in zip(msgs, answers, strict=True):
        if a.status == fleet_pb2.BOOKED:
            return m.battery
    raise AssertionError("never booked")


@pytest.mark.timeout(120)
async def test_a_fast_car_far_from_free_stations_books_earlier_than_a_slow_one_next_to_a_station(
    stub: fleet_pb2_grpc.FleetTelemetryStub, redis_client: Redis
) -> None:
    await load_stations(
        redis_client,
        [
            Station("st-slow", "Next door", HERE[0], HERE[1], 2, 50.0),
            Station("st-fast", "Far away", north(13.5), HERE[1], 2, 50.0),
        ],
    )
    # The fast car drives at 90 km/h 4.5 km from the nearest station (9 km from the other)
    # and drains 50 %/h; the slow one crawls at 15 km/h beside a station, draining 7 %/h.
    fast = drive("car-fast", north(9.0), 90.0, 60.0, 50.0, 18.0)
    slow = drive("car-slow", HERE[0], 15.0, 40.0, 7.0, 18.0)
    fast_answers = await ask(stub, fast)
    slow_answers = await ask(stub, slow)
    fast_at, slow_at = first_booked(fast, fast_answers), first_booked(slow, slow_answers)
    assert fast_at > 25.0  # well above the floor: its reach ran out first
    assert slow_at < 20.0  # the floor: a free station next door is always within reach
    assert fast_answers[-1].booking.station_id == "st-fast"
    assert slow_answers[-1].booking.station_id == "st-slow"
    before = [a for m, a in zip(slow, slow_answers, strict=True) if m.battery < 25.0]
    assert any("no booking needed yet" in a.message or a.message == "stored" for a in before)
    # Every car's latest prediction is published to its hash (by the sweep loop).
    for _ in range(100):
        if await redis_client.exists(keys.drain("car-fast"), keys.drain("car-slow")) == 2:
            break
        await _sleep()
    fast_p = await redis_client.hgetall(keys.drain("car-fast"))
    slow_p = await redis_client.hgetall(keys.drain("car-slow"))
    assert float(fast_p[b"rate_per_h"]) > 3 * float(slow_p[b"rate_per_h"])
    assert float(fast_p[b"battery_sd"]) > 0


async def _sleep() -> None:
    import asyncio

    await asyncio.sleep(0.1)


@pytest.mark.timeout(120)
async def test_a_full_sites_price_rises_and_the_next_booking_goes_to_a_cheaper_site(
    stub: fleet_pb2_grpc.FleetTelemetryStub, redis_client: Redis
) -> None:
    await load_stations(
        redis_client,
        [
            Station("st-busy", "Busy", north(0.3), HERE[1], 4, 150.0, "busy"),
            Station("st-calm", "Calm", north(0.8), HERE[1], 4, 150.0, "calm"),
        ],
        sites=[Site("busy", "Busy site", 300.0), Site("calm", "Calm site", 300.0)],
    )
    now = time.time_ns() // 1_000_000
    region = Region()
    # Before the site fills up, the nearest free station wins.
    await record_site_load(redis_client, region, SiteLoad("busy", now - 60_000, 0.0, 0.0, 300.0))
    await record_site_load(redis_client, region, SiteLoad("calm", now - 60_000, 0.0, 0.0, 300.0))
    low = fleet_pb2.CarStatus(
        car_id="car-1", lat=HERE[0], lon=HERE[1], battery=15.0, velocity=20.0, timestamp=now
    )
    (first,) = await ask(stub, [low])
    assert first.status == fleet_pb2.BOOKED and first.booking.station_id == "st-busy"
    # The busy site is now asked for its whole limit: its price rises from 0.8 to 1.2 times
    # the tariff (no wait yet: it is not over its limit); the calm one is 0.5 km further.
    full = SiteLoad("busy", now, 150.0, 150.0, 300.0)
    await record_site_load(redis_client, region, full)
    before = await site_load_at(redis_client, region, "busy", now - 1)
    assert station_price(0.25, full).price > station_price(0.25, before).price
    assert expected_wait_minutes(full) == 0.0
    later = fleet_pb2.CarStatus(
        car_id="car-2", lat=HERE[0], lon=HERE[1], battery=15.0, velocity=20.0, timestamp=now + 1
    )
    (second,) = await ask(stub, [later])
    assert second.status == fleet_pb2.BOOKED and second.booking.station_id == "st-calm"


@pytest.mark.timeout(60)
async def test_the_grid_prices_a_station_at_its_sites_factor_and_a_full_site_costs_more(
    redis_client: Redis,
) -> None:
    await load_stations(
        redis_client,
        [
            Station("st-busy", "Busy", north(0.3), HERE[1], 4, 150.0, "busy"),
            Station("st-calm", "Calm", north(0.8), HERE[1], 4, 150.0, "calm"),
        ],
        sites=[Site("busy", "Busy site", 300.0), Site("calm", "Calm site", 300.0)],
    )
    at = 1_900_000_000_000
    region = Region()
    await record_site_load(redis_client, region, SiteLoad("busy", at - 60_000, 0.0, 0.0, 300.0))
    await record_site_load(redis_client, region, SiteLoad("busy", at, 450.0, 150.0, 300.0))
    await record_site_load(redis_client, region, SiteLoad("calm", at, 60.0, 0.0, 300.0))
    app = create_app(GridSettings.model_validate({}), redis=redis_client)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://grid") as grid:

        async def quote(station: str, ms: int) -> dict[str, object]:
            when = datetime.fromtimestamp(ms / 1000, UTC).isoformat()
            response = await grid.get("/api/pricing", params={"at": when, "station_id": station})
            assert response.status_code == 200, response.text
            body: dict[str, object] = response.json()
            return body

        before = await quote("st-busy", at - 1)
        full = await quote("st-busy", at)
        calm = await quote("st-calm", at)
        unknown = await grid.get("/api/pricing", params={"station_id": "st-none"})
    assert (before["demand_factor"], full["demand_factor"], calm["demand_factor"]) == (
        0.8,
        1.6,
        0.88,
    )
    assert full["site_id"] == "busy" and full["site_demand"] == 2.0
    assert full["price_per_kwh"] == round(float(full["tariff_per_kwh"]) * 1.6, 5)  # type: ignore[arg-type]
    assert float(full["price_per_kwh"]) > float(calm["price_per_kwh"])  # type: ignore[arg-type]
    assert unknown.status_code == 404

"""The planner records each site's load snapshot when it plans it, and with demand prices
on costs its plan at the same factor the pricing worker and the booking desk read; real
Valkey, Tansu, the grid service and ingestion."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from integration.test_planner_live import (
    CarStream,
    Grid,
    eventually,
    load_site,
    now_ms,
    planner_settings,
)
from redis.asyncio import Redis

from greenlane.cli.embedded import EmbeddedKafka, EmbeddedRedis
from greenlane.core.demand import demand_factor, site_load_at
from greenlane.core.keys import Region
from greenlane.planner.forecast import slot_prices
from greenlane.planner.live import LivePlanner
from greenlane.v1 import fleet_pb2_grpc

pytestmark = pytest.mark.integration


@pytest.fixture
async def grid() -> AsyncIterator[Grid]:
    g = Grid()
    await g.start()
    yield g
    await g.stop()


@pytest.fixture
async def stub(ingestion: object) -> AsyncIterator[fleet_pb2_grpc.FleetTelemetryStub]:
    import grpc

    channel = grpc.aio.insecure_channel(f"127.0.0.1:{ingestion.port}")  # type: ignore[attr-defined]
    yield fleet_pb2_grpc.FleetTelemetryStub(channel)
    await channel.close()


@pytest.mark.timeout(120)
async def test_the_planner_records_the_sites_load_and_costs_its_plan_at_that_factor(
    redis_server: EmbeddedRedis,
    kafka_server: EmbeddedKafka,
    topic: str,
    grid: Grid,
    stub: fleet_pb2_grpc.FleetTelemetryStub,
    redis_client: Redis,
) -> None:
    live = LivePlanner(
        planner_settings(redis_server, kafka_server, topic, grid, demand_prices=True)
    )
    await live.start()
    try:
        # One 50 kW connector behind a 40 kW connection: a plugged-in car asks for more
        # than the site may draw.
        station = await load_site(redis_client, Region(), "site-busy", 40.0, 50.0)
        await load_site(redis_client, live.region, "site-busy", 40.0, 50.0)
        await eventually(
            lambda: live.caught_up and live.curve is not None and "site-busy" in live.picture.sites,
            what="the planner caught up, with a forecast and the site",
        )
        car = CarStream(stub, "car-demand")
        try:
            await car.send(30.0, station, target_battery=80.0, depart_at=now_ms() + 60 * 60_000)

            def planned() -> Any:
                s = live.schedules.get("site-busy")
                return s if s is not None and s.cars else None

            schedule = await eventually(planned, what="a plan of the site with the car")
        finally:
            await car.close()
    finally:
        await live.stop()
    load = await site_load_at(redis_client, live.region, "site-busy", schedule.timestamp)
    assert load is not None and load.at_ms == schedule.timestamp
    assert (load.plugged_kw, load.booked_kw, load.limit_kw) == (50.0, 0.0, 40.0)
    factor = demand_factor(load)
    assert factor == pytest.approx(0.8 + 0.4 * 50 / 40)
    assert live.curve is not None
    tariff = slot_prices(live.curve, schedule.start, schedule.slot_minutes, schedule.horizon)
    assert schedule.price == pytest.approx(tuple(p * factor for p in tariff), rel=1e-6)

"""The simulator's charging cycle against the real ingestion, Valkey and broker."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from stack import read_topic

from greenlane.cli.embedded import EmbeddedKafka
from greenlane.core.stations import Station, load_stations
from greenlane.simulator.config import FleetConfig
from greenlane.simulator.fleet import run_fleet
from greenlane.simulator.stats import Stats

pytestmark = pytest.mark.integration


async def test_low_cars_are_booked_drive_to_the_station_charge_and_fulfil_their_booking(
    ingestion: object, redis_client: Redis, kafka_server: EmbeddedKafka, topic: str
) -> None:
    await load_stations(redis_client, [Station("st-x", "X", 40.7580, -73.9855, 4, 350.0)])
    config = FleetConfig(
        cars=3,
        interval=0.2,
        duration=10.0,
        seed=11,
        target=f"127.0.0.1:{ingestion.port}",  # type: ignore[attr-defined]
        # A box of ~100 m around the station: the drive takes a few updates.
        bbox=(40.7575, -73.9861, 40.7585, -73.9849),
        initial_battery=(5.0, 10.0),
        charge_speedup=100.0,
    )
    stats = await asyncio.wait_for(run_fleet(config, Stats()), 60)

    assert stats.rejected == 0 and stats.errors == 0
    assert stats.booked > 0
    assert stats.charging_sessions_started > 0
    events = await read_topic(kafka_server.url, topic)
    kinds = {e["event_type"] for e in events}
    assert {"booking_created", "booking_fulfilled"} <= kinds
    charging = [
        e for e in events if e.get("station_id") == "st-x" and e["event_type"] == "telemetry"
    ]
    assert charging, "no status was sent while plugged in"
    by_car: dict[str, list[float]] = {}
    for e in charging:
        by_car.setdefault(str(e["car_id"]), []).append(float(e["battery"]))  # type: ignore[arg-type]
    assert any(b[-1] > b[0] for b in by_car.values()), "the battery never rose at the station"

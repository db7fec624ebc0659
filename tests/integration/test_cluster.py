"""GreenLane on a real Valkey Cluster (three primaries): ingestion and booking end to end.

The booking scripts' own tests (300 cars on 20 slots, expiry, sweep, the invariant after
any sequence) run on the cluster too: tests/integration/test_booking.py.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
import redis
from cluster import ValkeyCluster
from conftest import ingestion_settings
from redis.asyncio.cluster import RedisCluster
from stack import read_topic

from greenlane.cli.embedded import EmbeddedKafka
from greenlane.core import keys
from greenlane.core.keys import Region
from greenlane.core.stations import Station, load_stations, read_station_files
from greenlane.core.wire import TOKEN_METADATA_KEY
from greenlane.ingestion.server import RunningServer, start_server
from greenlane.v1 import fleet_pb2, fleet_pb2_grpc

pytestmark = pytest.mark.integration

TOKEN = [(TOKEN_METADATA_KEY, "greenlane-secret-token")]


def status(car: str, i: int, **kw: object) -> fleet_pb2.CarStatus:
    values: dict[str, object] = {
        "car_id": car,
        "lat": 40.70 + 0.001 * i,
        "lon": -74.00 + 0.001 * i,
        "battery": 80.0 - 0.1 * i,
        "velocity": 20.0,
        "timestamp": time.time_ns() // 1_000_000 - 100_000 + i,
    }
    values.update(kw)
    return fleet_pb2.CarStatus(**values)  # type: ignore[arg-type]


async def stream(
    stub: fleet_pb2_grpc.FleetTelemetryStub, msgs: list[fleet_pb2.CarStatus]
) -> list[fleet_pb2.BookingResponse]:
    async def gen() -> AsyncIterator[fleet_pb2.CarStatus]:
        for m in msgs:
            yield m

    return [r async for r in stub.StreamTelemetry(gen(), metadata=TOKEN)]


@pytest.fixture
async def on_cluster(
    valkey_cluster: ValkeyCluster,
    cluster_client: RedisCluster,
    kafka_server: EmbeddedKafka,
    topic: str,
) -> AsyncIterator[RunningServer]:
    """Ingestion with GREENLANE_REDIS_CLUSTER=true, pointed at one node of the cluster."""
    running = await start_server(
        ingestion_settings(  # type: ignore[arg-type]
            valkey_cluster.url, kafka_server.url, topic, redis_cluster=True
        )
    )
    yield running
    await running.stop(1.0)


@pytest.fixture
async def stub(on_cluster: RunningServer) -> AsyncIterator[fleet_pb2_grpc.FleetTelemetryStub]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{on_cluster.port}")
    yield fleet_pb2_grpc.FleetTelemetryStub(channel)
    await channel.close()


async def test_every_status_is_stored_across_the_cluster_and_each_car_keeps_its_newest(
    stub: fleet_pb2_grpc.FleetTelemetryStub,
    cluster_client: RedisCluster,
    kafka_server: EmbeddedKafka,
    topic: str,
) -> None:
    cars, per_car = 40, 15
    sent = {
        f"car-{c:03d}": [status(f"car-{c:03d}", i) for i in range(per_car)] for c in range(cars)
    }

    answers = await asyncio.gather(*(stream(stub, msgs) for msgs in sent.values()))

    assert all(r.status == fleet_pb2.ACCEPTED for rs in answers for r in rs)
    # The cars' hashes are spread over the cluster's nodes (shards on several slots).
    owners = {cluster_client.get_node_from_key(keys.car_state(car)).name for car in sent}
    assert len(owners) > 1
    events = await read_topic(kafka_server.url, topic, expect=cars * per_car)
    for car, msgs in sent.items():
        assert [e["timestamp"] for e in events if e["car_id"] == car] == [m.timestamp for m in msgs]
        stored = await cluster_client.hgetall(keys.car_state(car))
        assert stored[b"timestamp"] == str(msgs[-1].timestamp).encode()
        ((lon, lat),) = await cluster_client.geopos(keys.FLEET_LOCATIONS, car)
        assert lon == pytest.approx(msgs[-1].lon, abs=1e-5)
        assert lat == pytest.approx(msgs[-1].lat, abs=1e-5)


async def test_a_car_is_booked_on_its_stream_and_plugging_in_fulfils_it_on_the_cluster(
    stub: fleet_pb2_grpc.FleetTelemetryStub,
    cluster_client: RedisCluster,
    on_cluster: RunningServer,
) -> None:
    await load_stations(cluster_client, [Station("st-c", "Cluster", 40.7000, -74.0000, 1, 50.0)])

    (booked,) = await stream(stub, [status("car-low", 0, battery=8.0)])
    (full,) = await stream(stub, [status("car-other", 0, battery=8.0)])
    (plugged,) = await stream(stub, [status("car-low", 1, battery=8.5, station_id="st-c")])

    assert (booked.status, booked.booking.station_id) == (fleet_pb2.BOOKED, "st-c")
    assert full.status == fleet_pb2.NO_CAPACITY
    assert plugged.status == fleet_pb2.ACCEPTED and "fulfilled" in plugged.message
    base = f"http://127.0.0.1:{on_cluster.api.port}"
    async with httpx.AsyncClient(base_url=base, timeout=5) as api:
        history = await api.get(
            "/api/cars/car-low/bookings", headers={TOKEN_METADATA_KEY: "greenlane-secret-token"}
        )
    assert [b["status"] for b in history.json()["bookings"]] == ["fulfilled"]


def test_greenlane_stations_load_fills_a_region_of_the_cluster_and_refuses_a_bad_region(
    valkey_cluster: ValkeyCluster,
) -> None:
    def load(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "greenlane.cli",
                "stations",
                "load",
                "data/stations/manhattan.csv",
            ]
            + ["--redis-url", valkey_cluster.url, "--redis-cluster", *extra],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    loaded = load("--region", "uptown")
    refused = load("--region", "Up Town")

    stations, sites = read_station_files(
        Path("data/stations/manhattan.csv").read_text(),
        Path("data/sites/manhattan.csv").read_text(),
    )
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert f"loaded {len(stations)} stations and {len(sites)} sites" in loaded.stdout
    assert "into region uptown" in loaded.stdout
    client = redis.RedisCluster.from_url(valkey_cluster.url)
    try:
        assert client.zcard(Region("uptown").stations_locations) == len(stations)
        # The sites of the station file went along, with their limits, on the cluster too.
        assert client.scard(Region("uptown").sites) == len(sites)
        assert client.hget(Region("uptown").site(sites[0].site_id), "limit_kw") is not None
    finally:
        client.close()
    assert refused.returncode == 2
    assert "argument --region" in refused.stderr and "is not a region name" in refused.stderr

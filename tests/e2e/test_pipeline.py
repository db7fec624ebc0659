"""A simulated fleet streams into the cluster: positions reach Redis, priced rows TimescaleDB."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import redis
from e2e.cluster import Release

from greenlane.core import keys

CARS = 5
PRICING_DEADLINE_S = 180


@pytest.mark.timeout(360)
def test_a_simulated_fleet_reaches_redis_and_is_priced_into_timescale(
    release: Release, tmp_path: Path
) -> None:
    prefix = f"e2e-{secrets.token_hex(4)}"  # this run's cars only, whatever ran before
    cars = [f"{prefix}-{i:05d}" for i in range(CARS)]
    token = release.secret(f"{release.fullname}-auth", "api-tokens").split(",")[0]
    redis_password = release.secret(f"{release.name}-redis", "redis-password")
    db_password = release.secret(f"{release.name}-timescale", "password")

    with release.port_forward(f"{release.fullname}-ingestion", 50051) as grpc_port:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "greenlane.simulator",
                f"--cars={CARS}",
                "--interval=0.5",
                "--duration=8",
                f"--target=127.0.0.1:{grpc_port}",
                f"--car-prefix={prefix}",
                "--json",
                "--no-progress",
            ],
            env={**os.environ, "GREENLANE_API_TOKEN": token},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["result"] == "completed"
    assert summary["accepted"] >= CARS
    assert summary["rejected"] == summary["errors"] == 0

    with release.port_forward(f"{release.name}-redis", 6379) as redis_port:
        client = redis.Redis(port=redis_port, password=redis_password, decode_responses=True)
        try:
            positions = client.geopos(keys.FLEET_LOCATIONS, *cars)
            states = [client.hgetall(keys.car_state(car)) for car in cars]
        finally:
            client.close()
    assert all(p is not None for p in positions), dict(zip(cars, positions, strict=True))
    for position, state in zip(positions, states, strict=True):
        assert position is not None
        lon, lat = (float(x) for x in position)
        assert 40.4 < lat < 41.0 and -74.3 < lon < -73.6  # Manhattan, where the fleet drives
        assert 0 <= float(state["battery"]) <= 100

    query = """SELECT count(*), count(DISTINCT car_id), min(price_rate), max(price_rate)
               FROM charging_sessions WHERE car_id LIKE %s"""
    with release.port_forward(f"{release.name}-timescale", 5432) as pg_port:
        conninfo = f"postgresql://greenlane:{db_password}@127.0.0.1:{pg_port}/greenlane"
        deadline = time.monotonic() + PRICING_DEADLINE_S
        with psycopg.connect(conninfo, connect_timeout=10) as conn:
            while True:
                row = conn.execute(query, (f"{prefix}-%",)).fetchone()
                assert row is not None  # an aggregate always answers one row
                rows, priced_cars, low, high = row
                if priced_cars == CARS or time.monotonic() > deadline:
                    break
                time.sleep(2)
            extension = conn.execute(
                "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"
            ).fetchone()
    assert priced_cars == CARS, (
        f"{rows} rows for {priced_cars} of {CARS} cars after {PRICING_DEADLINE_S}s"
    )
    assert rows >= CARS
    assert 0.05 <= float(low) <= float(high) <= 0.5  # USD per kWh of the grid's tariff
    assert extension == (1,)

"""The chart's Redis ACL user can do everything the services do, and no more.

A real Valkey is started with the chart's own rules (charts/greenlane/charts/redis/
values.yaml, auth.aclRules): the default user off, the services' user limited. Ingestion
streams, books and is swept under it; the commands the rules take away stay refused.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from conftest import DEV_TOKEN, ingestion_settings
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from greenlane.cli.embedded import EmbeddedKafka, EmbeddedRedis, free_port
from greenlane.core.stations import Station, load_stations
from greenlane.v1 import fleet_pb2, fleet_pb2_grpc

pytestmark = pytest.mark.integration

VALUES = Path(__file__).parents[2] / "charts/greenlane/charts/redis/values.yaml"
PASSWORD = "acl-test-password-0123456789"


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    auth = yaml.safe_load(VALUES.read_text())["auth"]
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own binary and arguments
        [
            EmbeddedRedis.binary(),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(tmp_path_factory.mktemp("acl")),
            "--save", "",
            "--user", "default", "off",
            "--user", auth["username"], "on", f">{PASSWORD}", *auth["aclRules"].split(),
            "--user", auth["monitorUsername"], "on", f">{PASSWORD}",
            *auth["monitorAclRules"].split(),
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)


def url(port: int, user_key: str = "username") -> str:
    user = yaml.safe_load(VALUES.read_text())["auth"][user_key]
    return f"redis://{user}:{PASSWORD}@127.0.0.1:{port}/0"


@pytest.fixture
async def acl_client(acl_redis: int) -> AsyncIterator[Redis]:
    client = Redis.from_url(url(acl_redis))
    yield client
    await client.aclose()


async def test_the_default_user_is_off_and_the_services_user_may_not_flush_or_reconfigure(
    acl_redis: int, acl_client: Redis
) -> None:
    anonymous = Redis(port=acl_redis)
    with pytest.raises((AuthenticationError, ResponseError)):
        await anonymous.ping()
    await anonymous.aclose()
    for command in (("FLUSHALL",), ("FLUSHDB",), ("KEYS", "*"), ("CONFIG", "GET", "*")):
        with pytest.raises(NoPermissionError):
            await acl_client.execute_command(*command)


async def test_ingestion_streams_books_and_sweeps_as_the_acl_user(
    acl_redis: int, acl_client: Redis, kafka_server: EmbeddedKafka, topic: str
) -> None:
    from greenlane.ingestion.server import start_server

    await load_stations(acl_client, [Station("acl-st", "ACL", 40.758, -73.9855, 2, 50.0)])
    running: Any = await start_server(
        ingestion_settings(url(acl_redis), kafka_server.url, topic, booking_sweep_seconds=0.2)  # type: ignore[arg-type]
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            stub = fleet_pb2_grpc.FleetTelemetryStub(ch)

            async def gen() -> AsyncIterator[fleet_pb2.CarStatus]:
                for i in range(3):
                    yield fleet_pb2.CarStatus(
                        car_id="acl-car",
                        lat=40.7581,
                        lon=-73.9856,
                        battery=10.0,
                        velocity=5.0,
                        timestamp=time.time_ns() // 1_000_000 + i,
                    )

            answers = [
                a async for a in stub.StreamTelemetry(gen(), metadata=[("x-api-token", DEV_TOKEN)])
            ]
        assert [a.status for a in answers] == [fleet_pb2.BOOKED] * 3
        await asyncio.sleep(0.5)  # a few sweeps ran (their failures would be logged)
        assert await running.desk.sweep() == 0
        assert await running.readiness() == {"started": True, "kafka": True, "redis": True}
    finally:
        await running.stop(1.0)


async def test_the_monitor_user_reads_server_information_but_no_values(
    acl_redis: int, acl_client: Redis
) -> None:
    await acl_client.set("acl:probe", "secret-value")
    monitor = Redis.from_url(url(acl_redis, "monitorUsername"))
    try:
        assert await monitor.ping() is True
        assert "redis_version" in await monitor.info("server")
        assert await monitor.type("acl:probe") == b"string"
        for command in (("GET", "acl:probe"), ("SET", "acl:probe", "x"), ("DEL", "acl:probe")):
            with pytest.raises(NoPermissionError):
                await monitor.execute_command(*command)
    finally:
        await monitor.aclose()
    assert await acl_client.get("acl:probe") == b"secret-value"

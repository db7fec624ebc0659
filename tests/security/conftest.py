"""Fixtures of the adversarial suite: an ingestion holding several fleets' credentials and
a JWT issuer's JWKS, served over real HTTP on loopback (helpers in tests/adversary.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import httpx
import pytest
from adversary import STATION, Jwks, secure_settings
from redis.asyncio import Redis

from greenlane.cli.embedded import EmbeddedKafka, EmbeddedRedis
from greenlane.core.stations import load_stations
from greenlane.v1 import fleet_pb2_grpc


@pytest.fixture(scope="module")
def jwks() -> Iterator[Jwks]:
    server = Jwks()
    yield server
    server.close()


@pytest.fixture
def signing_key(jwks: Jwks) -> tuple[str, Any]:
    if not hasattr(jwks, "first"):
        jwks.first = jwks.add_key()  # type: ignore[attr-defined]
    return jwks.first  # type: ignore[attr-defined,no-any-return]


@pytest.fixture
async def secure(
    redis_server: EmbeddedRedis,
    kafka_server: EmbeddedKafka,
    topic: str,
    redis_client: Redis,
    jwks: Jwks,
    signing_key: tuple[str, Any],
) -> AsyncIterator[Any]:
    """An ingestion server holding the suite's credentials, and a station of 4 slots."""
    from greenlane.ingestion.server import start_server

    await load_stations(redis_client, [STATION])
    running = await start_server(secure_settings(redis_server, kafka_server, topic, jwks))  # type: ignore[arg-type]
    yield running
    await running.stop(1.0)


@pytest.fixture
async def stub(secure: Any) -> AsyncIterator[fleet_pb2_grpc.FleetTelemetryStub]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{secure.port}")
    yield fleet_pb2_grpc.FleetTelemetryStub(channel)
    await channel.close()


@pytest.fixture
async def api(secure: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{secure.api.port}") as client:
        yield client

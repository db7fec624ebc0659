"""Session fixtures: real Valkey, Tansu (Kafka API) and PostgreSQL servers on free ports."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cluster import ValkeyCluster
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster

from greenlane.cli.embedded import EmbeddedKafka, EmbeddedPostgres, EmbeddedRedis, free_port
from greenlane.core.redis_state import connect

DEV_TOKEN = "greenlane-secret-token"


@pytest.fixture(scope="session")
def stack_dir() -> Iterator[Path]:
    # mode 0700, like any `mktemp -d`: the servers must cope (see test_embedded.py).
    path = Path(tempfile.mkdtemp(prefix="greenlane-stack-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(stack_dir: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(free_port(), stack_dir / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def valkey_cluster(stack_dir: Path) -> Iterator[ValkeyCluster]:
    """A real Valkey Cluster: three primaries, the 16384 slots split between them."""
    cluster = ValkeyCluster(stack_dir / "valkey-cluster")
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
async def cluster_client(valkey_cluster: ValkeyCluster) -> AsyncIterator[RedisCluster]:
    client = connect(valkey_cluster.url, cluster=True, max_connections=50)
    assert isinstance(client, RedisCluster)
    await client.flushdb(target_nodes=RedisCluster.PRIMARIES)
    yield client
    await client.aclose()


@pytest.fixture(params=["standalone", "cluster"])
def redis_any(request: pytest.FixtureRequest) -> object:
    """A test taking this runs twice: on one Valkey, and on the three-primary cluster."""
    return request.getfixturevalue(
        "redis_client" if request.param == "standalone" else "cluster_client"
    )


@pytest.fixture(scope="session")
def kafka_server(stack_dir: Path) -> Iterator[EmbeddedKafka]:
    server = EmbeddedKafka(free_port(), stack_dir / "kafka")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server(stack_dir: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(free_port(), stack_dir / "postgres")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def redis_client(redis_server: EmbeddedRedis) -> AsyncIterator[Redis]:
    # Many concurrent callers wait for one of 50 connections instead of failing.
    pool = BlockingConnectionPool.from_url(redis_server.url, max_connections=50, timeout=10)
    client = Redis.from_pool(pool)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
def topic() -> str:
    """A topic of its own per test, so tests never read each other's events."""
    return f"fleet-events-{uuid.uuid4().hex[:10]}"


def ingestion_settings(redis_url: str, kafka_url: str, topic: str, **overrides: object) -> object:
    from greenlane.ingestion.settings import IngestionSettings

    values: dict[str, object] = {
        "api_tokens": DEV_TOKEN,
        "redis_url": redis_url,
        "kafka_bootstrap_servers": kafka_url,
        "fleet_events_topic": topic,
        "fleet_events_partitions": 3,
        "ingestion_host": "127.0.0.1",
        "ingestion_port": 0,
        "metrics_host": "127.0.0.1",
        "metrics_port": 0,
        "booking_api_port": 0,
    }
    values.update(overrides)
    return IngestionSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def ingestion(
    redis_server: EmbeddedRedis, kafka_server: EmbeddedKafka, topic: str, redis_client: Redis
) -> AsyncIterator[object]:
    """An ingestion server in the test's event loop, on real Valkey and Tansu."""
    from greenlane.ingestion.server import start_server

    running = await start_server(
        ingestion_settings(redis_server.url, kafka_server.url, topic)  # type: ignore[arg-type]
    )
    yield running
    await running.stop(1.0)

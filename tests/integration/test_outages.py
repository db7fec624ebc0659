"""Backend outages: nothing is acknowledged that is not stored, and ingestion recovers by itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from conftest import DEV_TOKEN, ingestion_settings
from stack import TcpProxy, read_topic

from greenlane.cli.embedded import EmbeddedKafka, EmbeddedRedis, free_port
from greenlane.ingestion.server import start_server
from greenlane.v1 import fleet_pb2, fleet_pb2_grpc

pytestmark = pytest.mark.integration


async def drive(
    port: int, cars: int, seconds: float, outage: Callable[[], Awaitable[None]]
) -> list[tuple[str, int, int]]:
    """Cars stream a status every 50 ms while outage() runs; returns (car, timestamp, status)."""
    results: list[tuple[str, int, int]] = []
    stop_at = time.monotonic() + seconds
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = fleet_pb2_grpc.FleetTelemetryStub(channel)

    async def car(car_id: str) -> None:
        async def gen() -> AsyncIterator[fleet_pb2.CarStatus]:
            i = 0
            while time.monotonic() < stop_at:
                i += 1
                yield fleet_pb2.CarStatus(
                    car_id=car_id,
                    lat=40.75,
                    lon=-73.98,
                    battery=50,
                    velocity=10,
                    timestamp=time.time_ns() // 1_000_000 + i,
                )
                await asyncio.sleep(0.05)

        call = stub.StreamTelemetry(gen(), metadata=[("x-api-token", DEV_TOKEN)])
        async for r in call:
            results.append((r.car_id, r.timestamp, r.status))

    await asyncio.gather(outage(), *(car(f"car-{i}") for i in range(cars)))
    await channel.close()
    return results


async def test_a_broker_outage_acknowledges_nothing_that_is_not_in_the_topic_and_recovers(
    tmp_path: Path, redis_server: EmbeddedRedis, topic: str
) -> None:
    proxy_port = free_port()
    broker = EmbeddedKafka(free_port(), tmp_path, advertised_port=proxy_port)
    broker.start()
    proxy = TcpProxy(proxy_port, broker.port)
    await proxy.start()
    running = await start_server(
        ingestion_settings(  # type: ignore[arg-type]
            redis_server.url, f"127.0.0.1:{proxy_port}", topic, ack_timeout_seconds=1.5
        )
    )
    try:

        async def outage() -> None:
            await asyncio.sleep(1.5)
            await proxy.stop()
            await asyncio.sleep(3.0)
            await proxy.start()

        results = await drive(running.port, cars=10, seconds=9.0, outage=outage)
        accepted = {(c, ts) for c, ts, s in results if s == fleet_pb2.ACCEPTED}
        unavailable = [r for r in results if r[2] == fleet_pb2.UNAVAILABLE]

        events = await read_topic(f"127.0.0.1:{proxy_port}", topic, expect=len(accepted))
        in_topic = {(e["car_id"], e["timestamp"]) for e in events}
        assert accepted <= in_topic, f"acknowledged but lost: {sorted(accepted - in_topic)[:5]}"
        assert unavailable, "the outage should have answered UNAVAILABLE"
        last = max(i for i, r in enumerate(results) if r[2] == fleet_pb2.UNAVAILABLE)
        assert any(r[2] == fleet_pb2.ACCEPTED for r in results[last:]), "no recovery"
    finally:
        await running.stop(1.0)
        await proxy.stop()
        broker.stop()


async def test_a_redis_outage_is_answered_unavailable_and_ingestion_recovers(
    tmp_path: Path, kafka_server: EmbeddedKafka, topic: str
) -> None:
    redis = EmbeddedRedis(free_port(), tmp_path)
    redis.start()
    running = await start_server(
        ingestion_settings(  # type: ignore[arg-type]
            redis.url, kafka_server.url, topic, ack_timeout_seconds=1.5
        )
    )
    try:

        async def outage() -> None:
            await asyncio.sleep(1.5)
            await asyncio.to_thread(redis.stop)
            await asyncio.sleep(2.5)
            await asyncio.to_thread(redis.start)

        results = await drive(running.port, cars=5, seconds=8.0, outage=outage)
        statuses = [s for _, _, s in results]
        assert fleet_pb2.UNAVAILABLE in statuses
        last_unavailable = max(i for i, s in enumerate(statuses) if s == fleet_pb2.UNAVAILABLE)
        assert fleet_pb2.ACCEPTED in statuses[last_unavailable:], (
            "no recovery after Redis came back"
        )
        accepted = {(c, ts) for c, ts, s in results if s == fleet_pb2.ACCEPTED}
        events = await read_topic(kafka_server.url, topic, expect=len(accepted))
        assert accepted <= {(e["car_id"], e["timestamp"]) for e in events}
    finally:
        await running.stop(1.0)
        redis.stop()

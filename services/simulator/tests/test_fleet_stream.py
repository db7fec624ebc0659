"""run_fleet against a tiny in-process FleetTelemetry server: streams, latency, graceful end."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import grpc
from pydantic import SecretStr

from greenlane.simulator.fleet import FleetConfig, run_fleet
from greenlane.simulator.physics import LAT_MAX, LAT_MIN, LON_MAX, LON_MIN, make_fleet, step
from greenlane.simulator.stats import Stats
from greenlane.v1 import fleet_pb2, fleet_pb2_grpc

TOKEN = "fake-server-token-for-tests"
ANSWER_DELAY_S = 0.005


class FakeFleetTelemetry(fleet_pb2_grpc.FleetTelemetryServicer):
    """Answers each status after a fixed delay; REJECTED when it breaks a physics rule."""

    def __init__(self) -> None:
        self.statuses: dict[str, list[fleet_pb2.CarStatus]] = defaultdict(list)
        self.tokens: set[str] = set()
        self.half_closed = 0  # streams the client ended with done_writing()

    async def StreamTelemetry(  # noqa: N802 - the proto's name
        self, request_iterator: Any, context: Any
    ) -> AsyncIterator[fleet_pb2.BookingResponse]:
        self.tokens.update(v for k, v in context.invocation_metadata() if k == "x-api-token")
        async for status in request_iterator:
            self.statuses[status.car_id].append(status)
            await asyncio.sleep(ANSWER_DELAY_S)
            ok = (
                LAT_MIN <= status.lat <= LAT_MAX
                and LON_MIN <= status.lon <= LON_MAX
                and 0 <= status.battery <= 100
                and 0 <= status.velocity <= 60
            )
            yield fleet_pb2.BookingResponse(
                car_id=status.car_id,
                status=fleet_pb2.ACCEPTED if ok else fleet_pb2.REJECTED,
                timestamp=status.timestamp,
            )
        self.half_closed += 1

    async def StreamTelemetryBatches(  # noqa: N802
        self, request_iterator: Any, context: Any
    ) -> AsyncIterator[fleet_pb2.BatchResponse]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this fake")
        yield fleet_pb2.BatchResponse()

    async def SendBatch(self, request: Any, context: Any) -> fleet_pb2.BatchResponse:  # noqa: N802
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this fake")
        return fleet_pb2.BatchResponse()


async def test_cars_stream_paced_statuses_that_are_answered_timed_and_closed_cleanly() -> None:
    fake = FakeFleetTelemetry()
    server = grpc.aio.server()
    fleet_pb2_grpc.add_FleetTelemetryServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        config = FleetConfig(
            cars=6,
            interval=0.1,
            duration=1.0,
            seed=11,
            target=f"127.0.0.1:{port}",
            token=SecretStr(TOKEN),
            channels=2,
            drain_timeout=2.0,
        )
        stats = await asyncio.wait_for(run_fleet(config, Stats()), timeout=10)
    finally:
        await server.stop(None)

    # One stream per car, each carrying the token, each ended by the client.
    assert sorted(fake.statuses) == [f"car-{i:05d}" for i in range(6)]
    assert fake.tokens == {TOKEN}
    assert fake.half_closed == 6
    # Paced: about duration / interval statuses per car, not a burst.
    for statuses in fake.statuses.values():
        assert 6 <= len(statuses) <= 11
        stamps = [s.timestamp for s in statuses]
        assert stamps == sorted(set(stamps))  # strictly rising per car
    # The statuses are the seed's walk, step by step, whatever the timing was.
    rng = random.Random(11)
    fleet = make_fleet(6, rng)
    for start in fleet:
        car_rng, expected = random.Random(rng.getrandbits(64)), start
        for status in fake.statuses[start.car_id]:
            expected = step(expected, car_rng, 0.1)
            assert (status.lat, status.lon, status.battery) == (
                expected.lat,
                expected.lon,
                expected.battery,
            )
    # Everything sent was answered and valid; nothing left hanging at the end.
    received = sum(len(s) for s in fake.statuses.values())
    assert stats.sent == received
    assert stats.accepted == received
    assert (stats.rejected, stats.errors, stats.unanswered, stats.mismatched) == (0, 0, 0, 0)
    assert stats.connected == 0
    # One latency per answer, never below the server's delay.
    assert stats.latencies.count == received
    p50, p99 = stats.p50(), stats.p99()
    assert p50 is not None and p99 is not None
    assert ANSWER_DELAY_S <= p50 <= p99 < 0.5
    assert 1.0 <= stats.elapsed() < 4.0

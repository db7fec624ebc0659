"""run_fleet against a tiny in-process FleetTelemetry server: streams, latency, bookings, end."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
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
            yield self.answer(status)
        self.half_closed += 1

    def answer(self, status: fleet_pb2.CarStatus) -> fleet_pb2.BookingResponse:
        ok = (
            LAT_MIN <= status.lat <= LAT_MAX
            and LON_MIN <= status.lon <= LON_MAX
            and 0 <= status.battery <= 100
            and 0 <= status.velocity <= 60
        )
        return fleet_pb2.BookingResponse(
            car_id=status.car_id,
            status=fleet_pb2.ACCEPTED if ok else fleet_pb2.REJECTED,
            timestamp=status.timestamp,
        )

    async def StreamTelemetryBatches(  # noqa: N802
        self, request_iterator: Any, context: Any
    ) -> AsyncIterator[fleet_pb2.BatchResponse]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this fake")
        yield fleet_pb2.BatchResponse()

    async def SendBatch(self, request: Any, context: Any) -> fleet_pb2.BatchResponse:  # noqa: N802
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this fake")
        return fleet_pb2.BatchResponse()


class BookingFleetTelemetry(FakeFleetTelemetry):
    """Books like ingestion: a low or asking car gets a station about 300 m away, the same
    booking until it plugs in there, which fulfils it."""

    def __init__(self) -> None:
        super().__init__()
        self.active: dict[str, fleet_pb2.Booking] = {}
        self.booked: dict[str, set[str]] = defaultdict(set)  # car -> its stations
        self.fulfilled: dict[str, int] = defaultdict(int)
        self._ids = itertools.count(1)

    def answer(self, status: fleet_pb2.CarStatus) -> fleet_pb2.BookingResponse:
        plain = super().answer(status)
        car = status.car_id
        active = self.active.get(car)
        if plain.status != fleet_pb2.ACCEPTED:
            return plain
        if status.station_id:
            if active is not None and active.station_id == status.station_id:
                del self.active[car]
                self.fulfilled[car] += 1
                plain.message = f"stored; booking {active.booking_id} fulfilled"
            return plain
        if status.battery >= 20 and not status.request_booking:
            return plain
        if active is None:
            n = next(self._ids)
            # About 300 m north or south, towards the middle of the box.
            lat = status.lat + (0.0027 if status.lat < (LAT_MIN + LAT_MAX) / 2 else -0.0027)
            active = fleet_pb2.Booking(
                booking_id=f"bk-{n}",
                station_id=f"st-{n}",
                station_name=f"Station {n}",
                lat=lat,
                lon=status.lon,
                distance_m=300.0,
                expires_at=time.time_ns() // 1_000_000 + 1_200_000,
                power_kw=150.0,
            )
            self.active[car] = active
            self.booked[car].add(active.station_id)
        return fleet_pb2.BookingResponse(
            car_id=car, status=fleet_pb2.BOOKED, timestamp=status.timestamp, booking=active
        )


async def test_booked_cars_drive_to_the_station_charge_there_with_its_id_and_leave() -> None:
    fake = BookingFleetTelemetry()
    server = grpc.aio.server()
    fleet_pb2_grpc.add_FleetTelemetryServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        config = FleetConfig(
            cars=3,
            saturate=True,
            interval=0.0,
            duration=2.5,
            seed=21,
            target=f"127.0.0.1:{port}",
            token=SecretStr(TOKEN),
            # Answers lag the statuses: a booking may come after the next status left.
            max_in_flight=3,
            initial_battery=(8.0, 15.0),
            charge_speedup=100.0,
            # Stops of 0.3 to 0.6 s: each car plugs in, charges and leaves in the run.
            stop_minutes=(0.005, 0.01),
            drain_timeout=2.0,
        )
        stats = await asyncio.wait_for(run_fleet(config, Stats()), timeout=10)
    finally:
        await server.stop(None)

    assert sorted(fake.statuses) == [f"car-{i:05d}" for i in range(3)]
    for car, statuses in fake.statuses.items():
        # Low from the start: the car asks, on its own, before any answer came back.
        assert statuses[0].request_booking and not statuses[0].station_id
        # Runs of statuses plugged in at one station: the charging sessions.
        sessions = [
            (station, list(run))
            for station, run in itertools.groupby(statuses, key=lambda s: s.station_id)
            if station
        ]
        assert sessions, f"{car} never plugged in"
        for station, run in sessions:
            assert station in fake.booked[car]  # only at a station it was booked at
            assert len({(s.lat, s.lon) for s in run}) == 1
            assert all(s.velocity == 0.0 and not s.request_booking for s in run)
            batteries = [s.battery for s in run]
            assert batteries == sorted(batteries)
        # A finished session ends at its departure, charged (its goal rode along), then
        # the car drives away without the station.
        _, run = sessions[0]
        assert run[-1].battery > run[0].battery
        assert run[-1].battery <= run[-1].target_battery
        assert run[-1].timestamp <= run[-1].depart_at
        after = statuses[statuses.index(run[-1]) + 1]
        assert after.station_id == "" and after.velocity > 0.0
        assert fake.fulfilled[car] >= 1
    assert stats.booked > 0
    assert stats.charging_sessions_started >= 3
    assert stats.charging_sessions_finished >= 3
    assert stats.charging_sessions_started - stats.charging_sessions_finished <= 3
    assert (stats.rejected, stats.errors, stats.unanswered, stats.mismatched) == (0, 0, 0, 0)


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


class TracedBatches(FakeFleetTelemetry):
    """Answers each batch ACCEPTED, except that its item 1 is rejected; keeps the contexts."""

    def __init__(self) -> None:
        super().__init__()
        self.contexts: list[dict[str, str]] = []

    async def StreamTelemetryBatches(  # noqa: N802
        self, request_iterator: Any, context: Any
    ) -> AsyncIterator[fleet_pb2.BatchResponse]:
        async for batch in request_iterator:
            self.contexts += [dict(s.trace_context) for s in batch.statuses]
            yield fleet_pb2.BatchResponse(
                status=fleet_pb2.ACCEPTED,
                accepted=len(batch.statuses) - 1,
                rejected=[fleet_pb2.RejectedItem(index=1, field="battery", message="battery bad")],
            )


async def test_every_traced_status_of_a_batch_carries_its_trace_and_ends_with_its_own_answer() -> (
    None
):
    fake = TracedBatches()
    server = grpc.aio.server()
    fleet_pb2_grpc.add_FleetTelemetryServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    try:
        config = FleetConfig(
            cars=2,
            interval=0.2,
            duration=0.5,
            target=f"127.0.0.1:{port}",
            token=SecretStr(TOKEN),
            batch_size=3,
            trace_ratio=1.0,
        )
        await asyncio.wait_for(run_fleet(config, Stats(), tracer_provider=provider), timeout=10)
    finally:
        await server.stop(None)

    finished = spans.get_finished_spans()
    assert fake.contexts and all("traceparent" in c for c in fake.contexts)
    sent = {c["traceparent"].split("-")[1] for c in fake.contexts}
    assert {f"{s.context.trace_id:032x}" for s in finished if s.context} == sent
    answers = [(s.attributes or {}).get("greenlane.status.answer") for s in finished]
    # Per batch of three: the second item was rejected, the others accepted.
    assert answers.count("REJECTED") * 2 == answers.count("ACCEPTED")
    assert {s.attributes["rpc.method"] for s in finished if s.attributes} == {
        "StreamTelemetryBatches"
    }

"""Valkey persists what must survive: a crash of Valkey mid-run loses no booking or station."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import BusyLoadingError, NoScriptError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from greenlane.cli.embedded import EmbeddedRedis, free_port
from greenlane.core.stations import Station, load_stations
from greenlane.ingestion.booking_store import BookingStore

pytestmark = pytest.mark.integration

T0 = 1_800_000_000_000  # a fixed clock: nothing expires during the test
STATIONS = [
    Station("d-1", "One", 40.7580, -73.9855, 6, 150.0),
    Station("d-2", "Two", 40.7590, -73.9845, 5, 50.0),
    Station("d-3", "Three", 40.7570, -73.9870, 4, 250.0),
    Station("d-4", "Four", 40.7600, -73.9830, 3, 350.0),
    Station("d-5", "Five", 40.7560, -73.9880, 2, 150.0),
]
CAPACITY = {s.station_id: s.capacity for s in STATIONS}
CARS = [f"durable-{i}" for i in range(60)]  # 60 cars churning on 20 slots
# What a crashed or restarting server answers; the operation's effect is then unknown.
DOWN = (RedisConnectionError, RedisTimeoutError, BusyLoadingError, NoScriptError, OSError)


class Ledger:
    """What the server acknowledged: bookings held, bookings it confirmed as ended."""

    def __init__(self) -> None:
        self.held: dict[str, str] = {}  # booking id -> station, booked and not (yet) ended
        self.ended: set[str] = set()
        self.unknown: set[str] = set()  # an end() whose answer the crash swallowed
        self.acknowledged = 0


async def churn(store: BookingStore, car: str, ledger: Ledger, stop: asyncio.Event) -> None:
    """Book, hold a moment, fulfil; again and again, through the crash."""
    while not stop.is_set():
        try:
            outcome = await store.book(car, -73.9855, 40.7580, T0)
        except DOWN:
            await asyncio.sleep(0.05)
            continue
        if outcome.booking is None:
            await asyncio.sleep(0.01)
            continue
        booking = outcome.booking
        ledger.held[booking.booking_id] = booking.station_id
        ledger.acknowledged += 1
        await asyncio.sleep(0.02)
        if stop.is_set():
            return  # keep this one: it must still be there after the run
        try:
            ended = await store.end(booking.booking_id, "fulfilled", now_ms=T0)
        except DOWN:
            # Applied or not, the server did not say: neither "held" nor "ended" is certain.
            ledger.held.pop(booking.booking_id)
            ledger.unknown.add(booking.booking_id)
            await asyncio.sleep(0.05)
            continue
        assert ended.result == "ENDED", ended
        ledger.held.pop(booking.booking_id)
        ledger.ended.add(booking.booking_id)


async def test_a_valkey_crash_mid_run_keeps_every_booking_and_capacity_and_overbooks_nothing(
    tmp_path: Path,
) -> None:
    server = EmbeddedRedis(free_port(), tmp_path)
    server.start()
    client = Redis.from_url(server.url, socket_timeout=2, socket_connect_timeout=1)
    try:
        await load_stations(client, STATIONS)
        store = BookingStore(client, ttl_ms=60_000, max_radius_km=1.0, max_candidates=10)
        ledger = Ledger()
        stop = asyncio.Event()
        cars = [asyncio.create_task(churn(store, car, ledger, stop)) for car in CARS]

        await asyncio.sleep(1.0)
        before_crash = ledger.acknowledged
        server.kill()  # SIGKILL: no shutdown, no final write
        await asyncio.sleep(0.3)
        await asyncio.to_thread(server.start)  # same port, same append-only file
        # Traffic after the restart too, however long a loaded machine takes to get there.
        after_restart = ledger.acknowledged
        for _ in range(600):
            if ledger.acknowledged >= after_restart + 20:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*cars), 30)

        for station in STATIONS:
            details = await store.station_details(station.station_id)
            assert details["capacity"] == str(station.capacity), details
        for booking_id, station_id in ledger.held.items():
            record = await store.booking(booking_id)
            assert record is not None, f"acknowledged booking {booking_id} was lost"
            assert record["status"] == "active" and record["station_id"] == station_id
        for booking_id in ledger.ended:
            record = await store.booking(booking_id)
            assert record is not None and record["status"] != "active", record

        assert before_crash > 20 and ledger.acknowledged > before_crash, "no traffic around it"
        assert ledger.held, "every car ended its booking: nothing left to check"

        live = dict.fromkeys(CAPACITY, 0)
        for car in CARS:
            active = await store.active_booking(car)
            if active is not None:
                live[active["station_id"]] += 1
        for station_id, capacity in CAPACITY.items():
            info = await store.station(station_id, T0)
            assert info is not None
            assert live[station_id] <= capacity, f"{station_id} overbooked: {live}"
            assert info["free"] + live[station_id] == capacity, (station_id, info, live)
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()
        server.stop()

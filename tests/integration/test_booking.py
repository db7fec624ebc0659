"""Station booking on a real Valkey and a real Valkey Cluster: the Lua scripts themselves,
under contention and over time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenlane.core.keys import Region
from greenlane.core.redis_state import RedisClient
from greenlane.core.stations import Station, load_stations
from greenlane.ingestion.booking_store import BookingStore

pytestmark = pytest.mark.integration

T0 = 1_800_000_000_000  # a fixed clock: expiry is tested by moving it, not by sleeping
TTL = 60_000

# Five stations around Times Square, 20 slots in all.
STATIONS = [
    Station("ts-1", "One", 40.7580, -73.9855, 6, 150.0),
    Station("ts-2", "Two", 40.7590, -73.9845, 5, 50.0),
    Station("ts-3", "Three", 40.7570, -73.9870, 4, 250.0),
    Station("ts-4", "Four", 40.7600, -73.9830, 3, 350.0),
    Station("ts-5", "Five", 40.7560, -73.9880, 2, 150.0),
]
CAPACITY = {s.station_id: s.capacity for s in STATIONS}


@pytest.fixture
async def store(redis_any: RedisClient) -> AsyncIterator[BookingStore]:
    await load_stations(redis_any, STATIONS)
    yield BookingStore(redis_any, ttl_ms=TTL, max_radius_km=1.0, max_candidates=10)


async def live_bookings(redis: RedisClient, now: int) -> dict[str, int]:
    """Count live bookings from the booking records themselves, not from the station sets."""
    counts = dict.fromkeys(CAPACITY, 0)
    for raw in (await redis.hgetall(Region().bookings)).values():
        b = json.loads(raw)
        if b.get("status") == "active" and int(b["expires"]) > now:
            counts[b["station_id"]] += 1
    return counts


async def assert_invariant(store: BookingStore, redis: RedisClient, now: int) -> None:
    live = await live_bookings(redis, now)
    for sid, capacity in CAPACITY.items():
        info = await store.station(sid, now)
        assert info is not None
        assert info["free"] + live[sid] == capacity, (sid, info, live[sid])
        assert live[sid] <= capacity


async def test_hundreds_of_cars_at_once_get_exactly_the_twenty_slots(
    store: BookingStore, redis_any: RedisClient
) -> None:
    outcomes = await asyncio.gather(
        *(store.book(f"car-{i}", -73.9855, 40.7580, T0) for i in range(300))
    )

    booked = [o.booking for o in outcomes if o.booking is not None]
    assert len(booked) == 20
    assert sum(1 for o in outcomes if o.booking is None) == 280
    per_station: dict[str, int] = {}
    for b in booked:
        per_station[b.station_id] = per_station.get(b.station_id, 0) + 1
    assert per_station == CAPACITY
    for sid in CAPACITY:
        info = await store.station(sid, T0)
        assert info is not None and info["free"] == 0
    await assert_invariant(store, redis_any, T0)


async def test_the_nearest_station_with_free_capacity_is_booked_first(store: BookingStore) -> None:
    near_ts5 = await store.book("car-a", -73.9880, 40.7560, T0)
    assert near_ts5.booking is not None
    assert near_ts5.booking.station_id == "ts-5"
    assert near_ts5.booking.distance_km < 0.01
    await store.book("car-b", -73.9880, 40.7560, T0)
    third = await store.book("car-c", -73.9880, 40.7560, T0)
    assert third.booking is not None and third.booking.station_id != "ts-5"


async def test_asking_again_returns_the_same_booking(store: BookingStore) -> None:
    first = await store.book("car-1", -73.9855, 40.7580, T0)
    again = await store.book("car-1", -73.9845, 40.7590, T0 + 1000)

    assert first.booking is not None and again.booking is not None
    assert again.booking.booking_id == first.booking.booking_id
    assert again.booking.existing and not first.booking.existing
    info = await store.station(first.booking.station_id, T0)
    assert info is not None and info["live_bookings"] == 1


async def test_an_expired_booking_returns_its_slot(
    store: BookingStore, redis_any: RedisClient
) -> None:
    await asyncio.gather(*(store.book(f"car-{i}", -73.9855, 40.7580, T0) for i in range(20)))
    full = await store.book("late", -73.9855, 40.7580, T0 + 1)
    assert full.booking is None

    after = await store.book("late", -73.9855, 40.7580, T0 + TTL + 1)

    assert after.booking is not None
    assert len(after.expired) >= 1
    assert {e.car_id for e in after.expired} <= {f"car-{i}" for i in range(20)}
    swept = await store.sweep(T0 + TTL + 1)
    assert len(after.expired) + len(swept) == 20
    await assert_invariant(store, redis_any, T0 + TTL + 1)
    expired_record = await store.booking(
        swept[0].booking_id if swept else after.expired[0].booking_id
    )
    assert expired_record is not None and expired_record["status"] == "expired"


async def test_cancellation_and_fulfilment_return_the_slot(
    store: BookingStore, redis_any: RedisClient
) -> None:
    a = await store.book("car-a", -73.9880, 40.7560, T0)
    b = await store.book("car-b", -73.9880, 40.7560, T0)
    assert a.booking and b.booking and a.booking.station_id == b.booking.station_id == "ts-5"

    cancelled = await store.end(a.booking.booking_id, "cancelled", now_ms=T0 + 5)
    fulfilled = await store.end(b.booking.booking_id, "fulfilled", car_id="car-b", now_ms=T0 + 6)

    assert cancelled.result == fulfilled.result == "ENDED"
    info = await store.station("ts-5", T0 + 7)
    assert info is not None and info["free"] == 2
    again = await store.end(a.booking.booking_id, "cancelled", now_ms=T0 + 8)
    assert (again.result, again.detail) == ("NOT_ACTIVE", "cancelled")
    assert (await store.end("nope", "cancelled")).result == "NOT_FOUND"
    c = await store.book("car-c", -73.9880, 40.7560, T0 + 9)
    assert c.booking is not None
    assert (
        await store.end(c.booking.booking_id, "fulfilled", car_id="car-x")
    ).result == "NOT_OWNER"
    assert await store.active_booking("car-a") is None
    await assert_invariant(store, redis_any, T0 + 9)


async def test_no_capacity_when_every_station_in_range_is_full_or_too_far(
    store: BookingStore,
) -> None:
    far = await store.book("car-far", -73.90, 40.85, T0)
    assert far.booking is None


OPS = st.lists(
    st.tuples(
        st.sampled_from(["book", "cancel", "fulfil", "advance", "sweep"]),
        st.integers(min_value=0, max_value=39),
        st.integers(min_value=1, max_value=TTL),
    ),
    min_size=5,
    max_size=60,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
async def test_free_plus_live_bookings_equals_capacity_after_any_sequence(
    redis_any: RedisClient, ops: list[tuple[str, int, int]]
) -> None:
    await redis_any.flushdb()
    await load_stations(redis_any, STATIONS)
    store = BookingStore(redis_any, ttl_ms=TTL, max_radius_km=1.0)
    now = T0
    held: dict[str, str] = {}
    for op, car, step in ops:
        car_id = f"car-{car}"
        if op == "book":
            outcome = await store.book(car_id, -73.9855, 40.7580, now)
            if outcome.booking:
                held[car_id] = outcome.booking.booking_id
        elif op in ("cancel", "fulfil") and car_id in held:
            await store.end(
                held.pop(car_id), "cancelled" if op == "cancel" else "fulfilled", now_ms=now
            )
        elif op == "advance":
            now += step
        elif op == "sweep":
            await store.sweep(now)
        await assert_invariant(store, redis_any, now)


async def test_a_booking_ended_by_another_replica_is_not_answered_from_memory(
    store: BookingStore, redis_any: RedisClient
) -> None:
    other = BookingStore(redis_any, ttl_ms=TTL, max_radius_km=1.0)  # another ingestion
    first = await store.book("car-r", -73.9880, 40.7560, T0)
    assert first.booking is not None

    ended = await other.end(first.booking.booking_id, "cancelled", now_ms=T0 + 1)
    again = await store.book("car-r", -73.9880, 40.7560, T0 + 2)

    assert ended.result == "ENDED"
    assert again.booking is not None and not again.booking.existing
    assert again.booking.booking_id != first.booking.booking_id
    await assert_invariant(store, redis_any, T0 + 2)

"""Car-state writes on a real Valkey and a real Valkey Cluster: newest wins, refusals stay
alone, and a write can be taken back."""

from __future__ import annotations

import pytest

from greenlane.core import keys
from greenlane.core.events import CarState
from greenlane.core.redis_state import (
    CarStateStore,
    RedisClient,
    is_cluster,
    read_car_state,
    read_state,
)

pytestmark = pytest.mark.integration

T = 1_800_000_000_000


def state(car: str, ts: int, battery: float = 50.0, lat: float = 40.75) -> CarState:
    return CarState(car_id=car, lat=lat, lon=-73.98, battery=battery, velocity=5.0, timestamp=ts)


async def position(client: RedisClient, car: str) -> tuple[float, float] | None:
    (found,) = await client.geopos(keys.FLEET_LOCATIONS, car)
    return (round(found[0], 4), round(found[1], 4)) if found else None


async def test_the_newest_status_of_each_car_wins_whatever_the_order(
    redis_any: RedisClient,
) -> None:
    cars = [f"car-{i}" for i in range(40)]  # spread over every shard of the fleet
    write = CarStateStore(redis_any).begin(
        [state(c, T + 2, lat=40.72) for c in cars] + [state(c, T + 1, lat=40.71) for c in cars]
    )
    await write.attempt()

    assert not write.pending
    assert write.failures() == {}
    for car in cars:
        stored = await read_state(redis_any, car)
        assert stored == state(car, T + 2, lat=40.72)
        assert await position(redis_any, car) == (-73.98, 40.72)
        if is_cluster(redis_any):  # where the index has its own clock
            assert await redis_any.hget(keys.FLEET_TIMESTAMPS, car) == str(T + 2).encode()


async def test_a_key_of_the_wrong_type_refuses_its_status_alone(redis_any: RedisClient) -> None:
    await redis_any.set(keys.car_state("broken"), "x")
    write = CarStateStore(redis_any).begin([state("ok-1", T), state("broken", T), state("ok-2", T)])
    await write.attempt()

    (refused,) = write.failures().items()
    assert refused[0] == 1 and "WRONGTYPE" in refused[1]
    assert await position(redis_any, "broken") is None
    assert await redis_any.hget(keys.FLEET_TIMESTAMPS, "broken") is None
    assert (await read_state(redis_any, "ok-2")) == state("ok-2", T)


async def test_undo_gives_each_car_what_it_held_before_unless_it_moved_on(
    redis_any: RedisClient,
) -> None:
    store = CarStateStore(redis_any)
    first = store.begin([state("a", T, 90.0, 40.70), state("b", T, 80.0, 40.70)])
    await first.attempt()
    # One flush: a twice (a chain), b once, c new.
    write = store.begin(
        [
            state("a", T + 1, 89.0, 40.71),
            state("b", T + 1, 79.0, 40.71),
            state("a", T + 2, 88.0, 40.72),
            state("c", T + 1, 70.0, 40.71),
        ]
    )
    await write.attempt()
    # b moves on before the undo: its newer status stays.
    later = store.begin([state("b", T + 5, 75.0, 40.75)])
    await later.attempt()

    await write.undo([0, 1, 2, 3])

    assert await read_state(redis_any, "a") == state("a", T, 90.0, 40.70)
    assert await position(redis_any, "a") == (-73.98, 40.70)
    if is_cluster(redis_any):
        assert await redis_any.hget(keys.FLEET_TIMESTAMPS, "a") == str(T).encode()
    assert await read_state(redis_any, "b") == state("b", T + 5, 75.0, 40.75)
    assert await read_car_state(redis_any, "c") == {}
    assert await position(redis_any, "c") is None
    assert await redis_any.hget(keys.FLEET_TIMESTAMPS, "c") is None


async def test_a_car_taken_back_keeps_its_newest_stored_status_of_the_flush(
    redis_any: RedisClient,
) -> None:
    store = CarStateStore(redis_any)
    before = store.begin([state("a", T, 90.0, 40.70)])
    await before.attempt()
    # Only the newest of a car's statuses in a flush is written; the others are history.
    write = store.begin([state("a", T + 1, 89.0, 40.71), state("a", T + 3, 87.0, 40.73)])
    await write.attempt()
    assert write.failures() == {}
    assert await read_state(redis_any, "a") == state("a", T + 3, 87.0, 40.73)

    # Kafka stored the first but not the second: the car goes back to the first.
    await write.undo([1])

    assert await read_state(redis_any, "a") == state("a", T + 1, 89.0, 40.71)
    assert await position(redis_any, "a") == (-73.98, 40.71)

"""FleetConfig: the slices of a sharded fleet, and the rules a run must meet."""

from __future__ import annotations

import grpc
import pytest
from pydantic import ValidationError

from greenlane.simulator.config import FleetConfig
from greenlane.simulator.fleet import _Fleet
from greenlane.simulator.stats import Stats


@pytest.mark.parametrize(
    ("cars", "shares"),
    [(10, [10]), (10, [4, 3, 3]), (5, [2, 1, 1, 1]), (4, [1, 1, 1, 1])],
)
def test_operator_pods_get_even_shares_and_none_is_empty(cars: int, shares: list[int]) -> None:
    count = len(shares)
    sizes = [
        len(FleetConfig(cars=cars, shard_index=i, shard_count=count).shard) for i in range(count)
    ]
    assert sizes == shares


@pytest.mark.parametrize(("cars", "shards"), [(10, 4), (5, 5), (100_000, 7), (1, 1)])
def test_the_shards_cover_the_fleet_once_and_evenly(cars: int, shards: int) -> None:
    slices = [
        FleetConfig(cars=cars, shard_index=i, shard_count=shards).shard for i in range(shards)
    ]
    covered = [index for part in slices for index in part]
    assert covered == list(range(cars))
    assert max(map(len, slices)) - min(map(len, slices)) <= 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cars": 3, "shard_index": 0, "shard_count": 4}, "shard_index < shard_count <= cars"),
        ({"cars": 4, "shard_index": 4, "shard_count": 4}, "shard_index < shard_count <= cars"),
        ({"bbox": (41.0, -74.0, 40.0, -73.0)}, "the box needs"),
        ({"backoff_initial": 2.0, "backoff_max": 1.0}, "backoff_max must be at least"),
        ({"target": "nowhere"}, "is not HOST:PORT"),
        ({"car_prefix": "a/b"}, "must be 1 to 50 characters"),
        ({"interval": float("inf")}, "finite number"),
        ({"initial_battery": (60.0, 40.0)}, "initial battery range"),
        ({"charge_speedup": 0.0}, "greater than 0"),
        ({"charge_below": 120.0}, "less than or equal to 100"),
    ],
)
def test_a_config_that_cannot_run_is_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        FleetConfig.model_validate(fields)


def test_a_bad_token_is_refused_without_being_echoed() -> None:
    with pytest.raises(ValidationError) as info:
        FleetConfig.model_validate({"token": "secret\nvalue"})
    assert "printable ASCII" in str(info.value)
    assert "secret" not in str(info.value)


async def test_sharded_processes_drive_exactly_the_cars_of_the_whole_fleet() -> None:
    # A channel connects lazily: building the fleet sends nothing.
    channel = grpc.aio.insecure_channel("127.0.0.1:9")
    try:

        def cars(index: int, count: int) -> list[tuple[str, float, float]]:
            config = FleetConfig(cars=9, seed=5, shard_index=index, shard_count=count)
            fleet = _Fleet(config, Stats(), [channel])
            return [(c.car.car_id, c.car.lat, c.rng.random()) for c in fleet.cars]

        whole = cars(0, 1)
        assert [cars(i, 3) for i in range(3)] == [whole[0:3], whole[3:6], whole[6:9]]
    finally:
        await channel.close()

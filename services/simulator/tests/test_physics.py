"""The car physics: a random walk that stays in Manhattan, drains, and repeats with a seed."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest

from greenlane.core.events import CAR_ID_PATTERN
from greenlane.simulator.physics import (
    DRAIN_MAX,
    DRAIN_MIN,
    KM_PER_DEGREE_LAT,
    LAT_MAX,
    LAT_MIN,
    LON_MAX,
    LON_MIN,
    VELOCITY_MAX,
    BoundingBox,
    Car,
    _reflect,
    make_fleet,
    step,
)


def _inside(car: Car) -> bool:
    return LAT_MIN <= car.lat <= LAT_MAX and LON_MIN <= car.lon <= LON_MAX


def _distance_km(a: Car, b: Car) -> float:
    dlat = (b.lat - a.lat) * KM_PER_DEGREE_LAT
    dlon = (b.lon - a.lon) * KM_PER_DEGREE_LAT * math.cos(math.radians(a.lat))
    return math.hypot(dlat, dlon)


@pytest.mark.parametrize("dt_s", [2.0, 60.0, 3600.0])
def test_a_car_stays_inside_the_manhattan_box_for_ten_thousand_steps(dt_s: float) -> None:
    rng = random.Random(1)
    car = make_fleet(1, rng)[0]
    for _ in range(10_000):
        car = step(car, rng, dt_s)
        assert _inside(car), car


def test_a_car_at_the_corner_bounces_back_inside() -> None:
    rng = random.Random(2)
    corner = Car("car-00000", LAT_MAX, LON_MIN, 80.0, 0.0)
    for _ in range(1000):
        assert _inside(step(corner, rng, 60.0))


def test_reflection_folds_any_overshoot_back_into_the_range() -> None:
    assert _reflect(11.0, 0.0, 10.0) == pytest.approx(9.0)
    assert _reflect(-1.0, 0.0, 10.0) == pytest.approx(1.0)
    assert _reflect(25.0, 0.0, 10.0) == pytest.approx(5.0)  # past both walls
    assert _reflect(4.0, 0.0, 10.0) == pytest.approx(4.0)


def test_each_update_drains_between_a_tenth_and_half_a_percent() -> None:
    rng = random.Random(3)
    car = Car("car-00000", 40.75, -73.98, 100.0, 0.0)
    for _ in range(150):
        after = step(car, rng, 2.0)
        assert DRAIN_MIN <= car.battery - after.battery <= DRAIN_MAX
        car = after


def test_the_battery_stops_at_zero() -> None:
    rng = random.Random(4)
    car = Car("car-00000", 40.75, -73.98, 0.3, 0.0)
    for _ in range(5):
        car = step(car, rng, 2.0)
    assert car.battery == 0.0


def test_velocity_stays_between_zero_and_sixty_kmh() -> None:
    rng = random.Random(5)
    car = make_fleet(1, rng)[0]
    speeds = []
    for _ in range(10_000):
        car = step(car, rng, 2.0)
        speeds.append(car.velocity)
    assert min(speeds) >= 0.0
    assert max(speeds) <= VELOCITY_MAX
    # Uniform over the range, not stuck near one value.
    assert min(speeds) < 1.0 and max(speeds) > 59.0


def test_a_car_moves_as_far_as_its_speed_over_the_interval() -> None:
    rng = random.Random(6)
    # In the middle of the box, so no reflection shortens the move.
    car = Car("car-00000", 40.79, -73.96, 90.0, 0.0)
    for _ in range(200):
        after = step(car, rng, 2.0)
        expected = after.velocity * 2.0 / 3600.0
        assert _distance_km(car, after) == pytest.approx(expected, rel=0.01, abs=1e-6)


def test_no_time_means_no_movement() -> None:
    car = Car("car-00000", 40.79, -73.96, 90.0, 0.0)
    after = step(car, random.Random(7), 0.0)
    assert (after.lat, after.lon) == (car.lat, car.lon)
    assert after.battery < car.battery


def test_the_same_seed_gives_the_same_fleet_and_the_same_walks() -> None:
    def walk(seed: int) -> list[Car]:
        rng = random.Random(seed)
        cars = make_fleet(20, rng)
        for _ in range(100):
            cars = [step(c, rng, 2.0) for c in cars]
        return cars

    assert walk(42) == walk(42)
    assert walk(42) != walk(43)


def test_fleet_ids_are_zero_padded_valid_and_unique() -> None:
    cars = make_fleet(100, random.Random(8))
    ids = [c.car_id for c in cars]
    assert ids[42] == "car-00042"
    assert len(set(ids)) == 100
    assert all(CAR_ID_PATTERN.fullmatch(i) for i in ids)
    assert all(_inside(c) and 0 <= c.battery <= 100 for c in cars)


def test_a_hundred_thousand_cars_keep_five_digit_ids() -> None:
    cars = make_fleet(100_000, random.Random(9), prefix="bench")
    assert cars[0].car_id == "bench-00000"
    assert cars[-1].car_id == "bench-99999"


def test_a_prefix_that_makes_invalid_ids_is_refused() -> None:
    with pytest.raises(ValueError, match="does not match"):
        make_fleet(1, random.Random(10), prefix="no spaces")


def test_a_step_returns_a_new_car_and_leaves_the_old_one_alone() -> None:
    car = Car("car-00000", 40.79, -73.96, 90.0, 10.0)
    before = dataclasses.replace(car)
    step(car, random.Random(11), 2.0)
    assert car == before


def test_a_car_stays_inside_any_other_box_it_is_given() -> None:
    sf = BoundingBox(south=37.708, west=-122.515, north=37.812, east=-122.357)
    rng = random.Random(12)
    cars = make_fleet(5, rng, box=sf)
    for _ in range(2000):
        cars = [step(c, rng, 30.0, sf) for c in cars]
        assert all(sf.contains(c.lat, c.lon) for c in cars)


@pytest.mark.parametrize(
    "edges",
    [(40.9, -74.0, 40.7, -73.9), (40.7, -73.9, 40.9, -74.0), (-91.0, 0.0, 0.0, 1.0)],
)
def test_a_box_with_its_edges_the_wrong_way_round_is_refused(
    edges: tuple[float, float, float, float],
) -> None:
    with pytest.raises(ValueError, match="the box needs"):
        BoundingBox(*edges)

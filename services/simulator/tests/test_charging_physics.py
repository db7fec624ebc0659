"""A booked car's physics: it drives to the station, charges at its power, and drives on."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest

from greenlane.simulator.physics import (
    APPROACH_VELOCITY_MAX,
    APPROACH_VELOCITY_MIN,
    ARRIVAL_M,
    CHARGE_TARGET_MAX,
    CHARGE_TARGET_MIN,
    DRAIN_MAX,
    DRAIN_MIN,
    KM_PER_DEGREE_LAT,
    TAPER_FLOOR,
    VELOCITY_MAX,
    Car,
    Charging,
    Mode,
    Station,
    distance_km,
    give_up,
    head_to,
    make_fleet,
    step,
)

# About 1 km north-east of the car below, both well inside Manhattan.
STATION = Station("st-times-sq", 40.7580, -73.9855, 150.0)
START = Car("car-00000", 40.7520, -73.9940, 40.0, 30.0)
DT = 2.0
# 150 kW for 2 s into a 75 kWh pack: 150 × 2/3600 / 75 × 100 %.
FULL_RATE = 150.0 * DT / 3600.0 / 75.0 * 100.0


def _plugged_in(battery: float, target: float, station: Station = STATION) -> Car:
    return Car(
        "car-00000",
        station.lat,
        station.lon,
        battery,
        0.0,
        mode=Mode.CHARGING,
        station=station,
        charge_target=target,
    )


def _from_station(car: Car) -> float:
    return distance_km(car.lat, car.lon, STATION.lat, STATION.lon)


def test_a_car_heading_for_a_station_arrives_after_as_many_steps_as_its_speeds_need() -> None:
    rng = random.Random(1)
    car = head_to(START, STATION)
    start_km = _from_station(car)
    assert car.mode is Mode.TO_STATION and 0.9 < start_km < 1.2
    steps = 0
    while car.mode is Mode.TO_STATION:
        before = car
        car = step(car, rng, DT)
        steps += 1
        if car.mode is Mode.TO_STATION:
            # Straight at the station, by exactly speed × dt, draining as while driving.
            travelled = car.velocity * DT / 3600.0
            assert APPROACH_VELOCITY_MIN <= car.velocity <= APPROACH_VELOCITY_MAX
            assert _from_station(before) - _from_station(car) == pytest.approx(travelled, rel=1e-3)
            assert DRAIN_MIN <= before.battery - car.battery <= DRAIN_MAX
            assert car.station_id == ""
    # The last metres: within 30 m after its move, the car snapped to the station.
    assert _from_station(before) <= ARRIVAL_M / 1000 + APPROACH_VELOCITY_MAX * DT / 3600
    fastest = math.ceil((start_km - ARRIVAL_M / 1000) / (APPROACH_VELOCITY_MAX * DT / 3600))
    slowest = math.ceil((start_km - ARRIVAL_M / 1000) / (APPROACH_VELOCITY_MIN * DT / 3600))
    assert fastest <= steps <= slowest
    assert (car.lat, car.lon, car.velocity) == (STATION.lat, STATION.lon, 0.0)
    assert car.mode is Mode.CHARGING and car.station_id == STATION.station_id
    # Plugging in costs nothing: the first status at the station holds the battery.
    assert car.battery == before.battery
    assert CHARGE_TARGET_MIN <= car.charge_target <= CHARGE_TARGET_MAX


def test_a_car_within_thirty_metres_of_its_station_plugs_in_at_its_next_update() -> None:
    # About 20 m south of the station; even an update of no time gets it there.
    near = dataclasses.replace(START, lat=STATION.lat - 0.020 / KM_PER_DEGREE_LAT, lon=STATION.lon)
    arrived = step(head_to(near, STATION), random.Random(2), 0.0)
    assert arrived.mode is Mode.CHARGING
    assert (arrived.lat, arrived.lon) == (STATION.lat, STATION.lon)


def test_charging_adds_the_station_power_over_the_pack_then_stops_at_the_target() -> None:
    rng = random.Random(3)
    car = _plugged_in(20.0, 90.0)
    history = [car]
    while car.mode is Mode.CHARGING:
        car = step(car, rng, DT)
        history.append(car)
    charging, left = history[1:-1], history[-1]
    for before, after in zip(history, charging, strict=False):
        gained = after.battery - before.battery
        if after.battery == 90.0:
            assert 0.0 < gained <= FULL_RATE  # the last, partial step
        elif before.battery < 80.0:
            assert gained == pytest.approx(FULL_RATE)  # 150 kW into 75 kWh
        else:
            # Tapering above 80 %, but never stalling.
            assert TAPER_FLOOR * FULL_RATE * 0.999 <= gained < FULL_RATE
        assert (after.lat, after.lon, after.velocity) == (STATION.lat, STATION.lon, 0.0)
        assert after.station_id == STATION.station_id
    # Stops exactly at the target, still plugged in for that status.
    assert charging[-1].battery == 90.0
    assert math.ceil(60.0 / FULL_RATE) < len(charging) < math.ceil(70.0 / FULL_RATE / TAPER_FLOOR)
    # Then unplugs: this update is already driving on, from the station.
    assert left.mode is Mode.DRIVING and left.station is None and left.station_id == ""
    assert 0.0 < left.velocity <= VELOCITY_MAX
    assert DRAIN_MIN <= 90.0 - left.battery <= DRAIN_MAX
    assert distance_km(left.lat, left.lon, STATION.lat, STATION.lon) > 0.0


def test_a_speedup_multiplies_the_charging_rate() -> None:
    rng = random.Random(4)
    slow = step(_plugged_in(30.0, 90.0), rng, DT, charging=Charging(speedup=1.0))
    fast = step(_plugged_in(30.0, 90.0), rng, DT, charging=Charging(speedup=50.0))
    assert fast.battery - 30.0 == pytest.approx(50 * (slow.battery - 30.0))
    assert fast.battery - 30.0 == pytest.approx(50 * FULL_RATE)


def test_the_charging_rate_follows_power_pack_and_the_taper_above_eighty_percent() -> None:
    charging = Charging(pack_kwh=60.0)
    # 60 kW for an hour into a 60 kWh pack: the whole pack.
    assert charging.gain(60.0, 3600.0, 10.0) == pytest.approx(100.0)
    assert charging.gain(60.0, 3600.0, 80.0) == pytest.approx(100.0)
    assert charging.gain(60.0, 3600.0, 90.0) == pytest.approx(50.0)
    assert charging.gain(60.0, 3600.0, 99.0) == pytest.approx(100.0 * TAPER_FLOOR)
    # A bigger pack fills more slowly at the same power.
    assert Charging(pack_kwh=120.0).gain(60.0, 3600.0, 10.0) == pytest.approx(50.0)


@pytest.mark.parametrize("fields", [{"pack_kwh": 0.0}, {"speedup": -1.0}, {"speedup": math.inf}])
def test_a_charging_model_that_cannot_charge_is_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="above 0"):
        Charging(**fields)


def test_a_huge_speedup_still_stops_at_the_target_and_never_above_a_full_battery() -> None:
    rng = random.Random(5)
    charging = Charging(speedup=10_000.0)
    car = step(_plugged_in(1.0, 95.0), rng, 60.0, charging=charging)
    assert car.battery == 95.0 and car.mode is Mode.CHARGING
    assert step(_plugged_in(99.0, 120.0), rng, 60.0, charging=charging).battery == 100.0


def test_a_car_already_above_its_target_unplugs_at_its_next_update() -> None:
    car = step(_plugged_in(92.0, 85.0), random.Random(6), DT)
    assert car.mode is Mode.DRIVING and car.station_id == "" and car.battery < 92.0


def test_an_empty_driving_car_stands_still_until_it_is_booked() -> None:
    rng = random.Random(7)
    empty = dataclasses.replace(START, battery=0.0)
    for _ in range(20):
        after = step(empty, rng, DT)
        assert (after.lat, after.lon, after.velocity, after.battery) == (
            empty.lat,
            empty.lon,
            0.0,
            0.0,
        )
        empty = after
    # Booked, it gets to the station (towed, as it were), its battery never below 0.
    car = head_to(empty, STATION)
    for _ in range(200):
        car = step(car, rng, DT)
        assert car.battery == 0.0
        if car.mode is Mode.CHARGING:
            break
    assert car.mode is Mode.CHARGING
    assert step(car, rng, DT).battery > 0.0


def test_only_a_driving_car_takes_a_booking_and_only_a_heading_one_gives_it_up() -> None:
    heading = head_to(START, STATION)
    assert (heading.mode, heading.station) == (Mode.TO_STATION, STATION)
    other = Station("st-other", 40.76, -73.98, 50.0)
    assert head_to(heading, other) is heading
    plugged = _plugged_in(50.0, 90.0)
    assert head_to(plugged, other) is plugged
    assert give_up(plugged) is plugged
    assert give_up(START) is START
    back = give_up(heading)
    assert (back.mode, back.station, back.station_id) == (Mode.DRIVING, None, "")


def test_batteries_stay_between_zero_and_a_hundred_through_whole_charging_lives() -> None:
    rng = random.Random(8)
    charging = Charging(speedup=40.0)
    cars = make_fleet(30, rng, battery=(0.0, 25.0))
    modes: set[Mode] = set()
    for i in range(3000):
        moved = []
        for car in cars:
            if car.mode is Mode.DRIVING and car.battery < 20.0 and rng.random() < 0.1:
                lat, lon = rng.uniform(40.72, 40.86), rng.uniform(-74.0, -73.93)
                car = head_to(car, Station(f"st-{i}", lat, lon, 150.0))
            car = step(car, rng, 30.0, charging=charging)
            assert 0.0 <= car.battery <= 100.0
            assert 0.0 <= car.velocity <= VELOCITY_MAX
            assert (car.station_id != "") == (car.mode is Mode.CHARGING)
            modes.add(car.mode)
            moved.append(car)
        cars = moved
    assert modes == set(Mode)


def test_the_initial_battery_range_is_respected_and_the_default_fleet_is_unchanged() -> None:
    low = make_fleet(200, random.Random(9), battery=(5.0, 10.0))
    assert all(5.0 <= car.battery <= 10.0 for car in low)
    assert make_fleet(50, random.Random(10)) == make_fleet(
        50, random.Random(10), battery=(20.0, 100.0)
    )
    with pytest.raises(ValueError, match="battery range"):
        make_fleet(1, random.Random(11), battery=(50.0, 10.0))

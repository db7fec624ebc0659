"""A plugged-in car's goal and plan: it picks a goal, charges at its setpoint (0 kW
waits), stays until its departure and leaves then; depot cars sleep at the depot. Pure."""

from __future__ import annotations

import random
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from greenlane.simulator.fleet import moment_at
from greenlane.simulator.physics import (
    Car,
    Charging,
    Habits,
    Mode,
    Moment,
    Station,
    at_home,
    charge_power,
    is_depot_car,
    make_fleet,
    plug_in,
    step,
)

STATION = Station("st-times-sq", 40.7580, -73.9855, 50.0)
DEPOT = Station("depot-inwood", 40.8677, -73.9212, 22.0)
NOW = 1_780_000_000_000  # Unix ms
MIN = 60_000
DT = 2.0
CHARGING = Charging(pack_kwh=75.0, speedup=1.0, max_kw=150.0)
NEW_YORK = ZoneInfo("America/New_York")


def _plugged(battery: float, target: float = 80.0, depart_at: int = NOW + 30 * MIN) -> Car:
    return Car(
        "car-00000",
        STATION.lat,
        STATION.lon,
        battery,
        0.0,
        mode=Mode.CHARGING,
        station=STATION,
        charge_target=target,
        depart_at=depart_at,
    )


def _rate(power_kw: float) -> float:
    return power_kw * DT / 3600.0 / CHARGING.pack_kwh * 100.0


def _ms(year: int, month: int, day: int, hour: int, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=NEW_YORK).timestamp() * 1000)


def test_a_car_on_the_road_plugs_in_with_a_target_and_a_departure_from_its_habits() -> None:
    habits = Habits(stop_minutes=(20.0, 60.0), target=(70.0, 85.0))
    heading = Car("car-00000", STATION.lat, STATION.lon, 30.0, 0.0, Mode.TO_STATION, STATION)
    for seed in range(50):
        car = plug_in(heading, random.Random(seed), Moment(NOW), habits)
        assert car.mode is Mode.CHARGING and car.station_id == STATION.station_id
        assert 70.0 <= car.charge_target <= 85.0
        assert NOW + 20 * MIN <= car.depart_at <= NOW + 60 * MIN


def test_a_plugged_in_car_charges_at_its_setpoint_and_zero_means_wait() -> None:
    rng = random.Random(1)
    moment = Moment(NOW)
    car = _plugged(40.0)
    at_11 = step(car, rng, DT, charging=CHARGING, moment=moment, setpoint_kw=11.0)
    assert at_11.battery == pytest.approx(40.0 + _rate(11.0))
    waiting = step(car, rng, DT, charging=CHARGING, moment=moment, setpoint_kw=0.0)
    assert waiting.battery == 40.0
    assert waiting.mode is Mode.CHARGING and waiting.station_id == STATION.station_id


def test_the_power_drawn_is_never_above_the_connector_or_the_car() -> None:
    assert charge_power(STATION, CHARGING, 300.0) == 50.0  # the connector's 50 kW
    assert charge_power(STATION, Charging(max_kw=7.0), None) == 7.0  # the car's 7 kW
    assert charge_power(STATION, CHARGING, None) == 50.0  # no plan: all it can
    assert charge_power(STATION, CHARGING, -3.0) == 0.0  # a negative setpoint waits
    assert charge_power(STATION, CHARGING, float("nan")) == 50.0  # not a number: no plan


def test_a_car_at_its_target_stays_plugged_in_until_its_departure_then_drives_on() -> None:
    rng = random.Random(2)
    full = _plugged(80.0, target=80.0, depart_at=NOW + 10 * MIN)
    before = step(full, rng, DT, charging=CHARGING, moment=Moment(NOW + 9 * MIN))
    assert before.mode is Mode.CHARGING and before.battery == 80.0
    gone = step(full, rng, DT, charging=CHARGING, moment=Moment(NOW + 10 * MIN))
    assert gone.mode is Mode.DRIVING and gone.station_id == "" and gone.depart_at == 0


def test_a_car_leaves_at_its_departure_even_below_its_target() -> None:
    car = _plugged(35.0, target=80.0, depart_at=NOW)
    gone = step(car, random.Random(3), DT, charging=CHARGING, moment=Moment(NOW + 1))
    assert gone.mode is Mode.DRIVING and gone.station is None


def test_a_setpoint_never_charges_a_car_past_its_target() -> None:
    car = _plugged(79.99, target=80.0)
    after = step(car, random.Random(4), 60.0, charging=CHARGING, moment=Moment(NOW), setpoint_kw=50)
    assert after.battery == 80.0


def test_a_depot_car_on_the_road_drives_home_at_night_and_not_by_day() -> None:
    car = Car("car-00004", 40.7580, -73.9855, 60.0, 30.0, home=DEPOT)
    rng = random.Random(5)
    by_day = step(car, rng, DT, moment=Moment(NOW, night=False))
    assert by_day.mode is Mode.DRIVING
    at_night = step(car, rng, DT, moment=Moment(NOW, night=True, morning_ms=NOW + 9 * 60 * MIN))
    assert at_night.mode is Mode.TO_STATION and at_night.going_home


def test_a_depot_car_home_at_night_wants_its_depot_target_by_the_next_morning() -> None:
    habits = Habits(depot_target=90.0, morning_spread_minutes=60.0)
    morning = NOW + 9 * 60 * MIN
    car = Car("car-00004", 40.7580, -73.9855, 25.0, 0.0, home=DEPOT)
    home = at_home(car, random.Random(6), Moment(NOW, night=True, morning_ms=morning), habits)
    assert home.mode is Mode.CHARGING and home.station_id == DEPOT.station_id
    assert (home.lat, home.lon) == (DEPOT.lat, DEPOT.lon)
    assert home.charge_target == 90.0
    assert morning <= home.depart_at <= morning + 60 * MIN
    # By day, and for a car without a depot, nothing changes.
    assert at_home(car, random.Random(6), Moment(NOW, night=False)) == car
    roadie = Car("car-00001", 40.7580, -73.9855, 25.0, 0.0)
    assert at_home(roadie, random.Random(6), Moment(NOW, night=True)) == roadie


@pytest.mark.parametrize(("n", "share", "depot_cars"), [(50, 0.2, 10), (10, 0.0, 0), (7, 1.0, 7)])
def test_the_depot_share_picks_that_share_of_the_fleet(
    n: int, share: float, depot_cars: int
) -> None:
    fleet = make_fleet(n, random.Random(7), depot=DEPOT, depot_share=share)
    assert sum(car.home == DEPOT for car in fleet) == depot_cars
    assert sum(is_depot_car(i, share) for i in range(n)) == depot_cars


@pytest.mark.parametrize(
    ("local", "night", "morning"),
    [
        ((2026, 12, 1, 20, 30), True, (2026, 12, 2, 6)),  # evening: tomorrow's morning
        ((2026, 12, 2, 3, 0), True, (2026, 12, 2, 6)),  # after midnight: this morning
        ((2026, 12, 2, 12, 0), False, (2026, 12, 3, 6)),  # midday: not night
        ((2026, 12, 2, 6, 0), False, (2026, 12, 3, 6)),  # the morning hour itself is day
    ],
)
def test_night_and_the_next_morning_are_local_time(
    local: tuple[int, int, int, int, int], night: bool, morning: tuple[int, int, int, int]
) -> None:
    now = _ms(*local)
    moment = moment_at(now, NEW_YORK, night_from=19, morning=6)
    assert moment.now_ms == now
    assert moment.night is night
    assert moment.morning_ms == _ms(*morning)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"stop_minutes": (0.0, 5.0)}, "stop_minutes needs 0 < low <= high"),
        ({"stop_minutes": (10.0, 5.0)}, "stop_minutes needs 0 < low <= high"),
        ({"target": (50.0, 101.0)}, "target needs 0 < low <= high <= 100"),
    ],
)
def test_habits_that_make_no_goal_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Habits(**fields)  # type: ignore[arg-type]

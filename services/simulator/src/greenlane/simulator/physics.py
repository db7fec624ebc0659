"""Car physics of the simulator: drive, head for a booked station, charge, drive on; pure.

A car is in one of three modes:

- `driving`: a random walk in a box (Manhattan by default), draining 0.1 to 0.5 % per
  update; a car at 0 % stands still (velocity 0) until it gets a booking.
- `to_station`: straight towards its booked station at 20 to 60 km/h, draining as
  while driving (a car at 0 % still gets there: think of it as towed). Within 30 m it
  snaps to the station and plugs in.
- `charging`: at the station, velocity 0, `station_id` set; the battery rises by
  `power_kw × hours / pack_kwh × 100` % per update (× the demo speed-up), tapering above
  80 %, never past the car's target. The power is the setpoint of the site's charging
  plan when the car has one (0 kW: it waits), else the connector's (and at most the
  car's own maximum).

Goals. Given the time (a `Moment`), a car that plugs in picks a goal and sends it: a
target battery and a departure, a short stop for a car on the road (`Habits`), the next
morning for a depot car at its depot; it stays plugged in until that departure, then
drives on, whatever its battery. Without a Moment (the physics alone) a car unplugs the
update after it reaches its target (80 to 95 %), as before goals.

Depot cars have a home station (their fleet's depot): at night a depot car on the road
drives home (no booking: the depot is its own) and plugs in there until the morning.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import random
from dataclasses import dataclass
from typing import Final

from greenlane.core.events import CAR_ID_PATTERN


@dataclass(frozen=True, slots=True)
class BoundingBox:
    """Where cars drive, in WGS84 degrees; a rectangle that does not cross the antimeridian."""

    south: float
    west: float
    north: float
    east: float

    def __post_init__(self) -> None:
        if not -90 <= self.south < self.north <= 90:
            raise ValueError("the box needs -90 <= south < north <= 90")
        if not -180 <= self.west < self.east <= 180:
            raise ValueError("the box needs -180 <= west < east <= 180")

    def contains(self, lat: float, lon: float) -> bool:
        return self.south <= lat <= self.north and self.west <= lon <= self.east


# The Manhattan bounding box the seed uses.
MANHATTAN: Final = BoundingBox(south=40.700, west=-74.020, north=40.880, east=-73.907)
LAT_MIN: Final = MANHATTAN.south
LAT_MAX: Final = MANHATTAN.north
LON_MIN: Final = MANHATTAN.west
LON_MAX: Final = MANHATTAN.east

DRAIN_MIN: Final = 0.1  # percent per update
DRAIN_MAX: Final = 0.5
VELOCITY_MAX: Final = 60.0  # km/h
INITIAL_BATTERY_MIN: Final = 20.0  # so a fresh fleet does not start at empty
INITIAL_BATTERY_MAX: Final = 100.0

APPROACH_VELOCITY_MIN: Final = 20.0  # km/h, heading for a station
APPROACH_VELOCITY_MAX: Final = 60.0
ARRIVAL_M: Final = 30.0  # closer than this to its station, a car is there
CHARGE_TARGET_MIN: Final = 80.0  # percent at which a car unplugs, drawn per session
CHARGE_TARGET_MAX: Final = 95.0
DEFAULT_PACK_KWH: Final = 75.0  # the pricing worker's default pack capacity too
# A car's own maximum charge power (the planner's fleet default too).
DEFAULT_MAX_CHARGE_KW: Final = 150.0
# Fast chargers slow down as the pack fills: full power up to TAPER_FROM %, then a rate
# falling linearly towards 0 at 100 %, but never below TAPER_FLOOR of the full rate.
TAPER_FROM: Final = 80.0
TAPER_FLOOR: Final = 0.25
# A booking that does not say its connector's power (a station without power_kw).
DEFAULT_POWER_KW: Final = 50.0

KM_PER_DEGREE_LAT: Final = 111.32
# A longer gap (a car back from a reconnect backoff) is not a reason to jump across town.
MAX_STEP_S: Final = 60.0


class Mode(enum.StrEnum):
    """What a car is doing."""

    DRIVING = "driving"
    TO_STATION = "to_station"
    CHARGING = "charging"


@dataclass(frozen=True, slots=True)
class Station:
    """A booked charging station: where it is and how fast its connector charges."""

    station_id: str
    lat: float
    lon: float
    power_kw: float


@dataclass(frozen=True, slots=True)
class Charging:
    """How a battery charges: its pack size, and a speed-up for demos (1: real time)."""

    pack_kwh: float = DEFAULT_PACK_KWH
    speedup: float = 1.0
    max_kw: float = DEFAULT_MAX_CHARGE_KW  # the car's own limit, whatever the connector

    def __post_init__(self) -> None:
        if not (self.pack_kwh > 0 and math.isfinite(self.pack_kwh)):
            raise ValueError("pack_kwh must be a finite number above 0")
        if not (self.speedup > 0 and math.isfinite(self.speedup)):
            raise ValueError("speedup must be a finite number above 0")
        if not (self.max_kw > 0 and math.isfinite(self.max_kw)):
            raise ValueError("max_kw must be a finite number above 0")

    def gain(self, power_kw: float, dt_s: float, battery: float) -> float:
        """Percent of the pack added in dt_s seconds at power_kw, starting from battery %."""
        percent = power_kw * dt_s / 3600.0 / self.pack_kwh * 100.0 * self.speedup
        if battery > TAPER_FROM:
            percent *= max(TAPER_FLOOR, (100.0 - battery) / (100.0 - TAPER_FROM))
        return percent


DEFAULT_CHARGING: Final = Charging()


@dataclass(frozen=True, slots=True)
class Habits:
    """The goals cars pick when they plug in."""

    # A car on the road stops this many minutes (drawn uniformly)...
    stop_minutes: tuple[float, float] = (20.0, 60.0)
    # ... and wants this battery (percent, drawn uniformly).
    target: tuple[float, float] = (70.0, 85.0)
    # A depot car at home wants this much by the morning, and leaves within this many
    # minutes after the morning hour.
    depot_target: float = 90.0
    morning_spread_minutes: float = 60.0

    def __post_init__(self) -> None:
        low, high = self.stop_minutes
        if not 0 < low <= high:
            raise ValueError("stop_minutes needs 0 < low <= high")
        low, high = self.target
        if not 0 < low <= high <= 100:
            raise ValueError("target needs 0 < low <= high <= 100")


DEFAULT_HABITS: Final = Habits()


@dataclass(frozen=True, slots=True)
class Moment:
    """The time a step happens at, as the goals need it."""

    now_ms: int  # Unix ms
    night: bool = False  # depot cars on the road head home
    morning_ms: int = 0  # Unix ms of the next morning hour (a depot car's departure)


@dataclass(frozen=True, slots=True)
class Car:
    """One car's state; the first fields match CarStatus (without the timestamp)."""

    car_id: str
    lat: float
    lon: float
    battery: float  # percent, [0, 100]
    velocity: float  # km/h
    mode: Mode = Mode.DRIVING
    # The station the car heads for (to_station) or is plugged in at (charging).
    station: Station | None = None
    charge_target: float = 0.0  # percent at which charging stops (charging)
    depart_at: int = 0  # Unix ms at which it unplugs (charging with a goal); 0: none
    home: Station | None = None  # a depot car's depot

    @property
    def going_home(self) -> bool:
        return self.home is not None and self.station == self.home

    @property
    def station_id(self) -> str:
        """CarStatus.station_id: set only while plugged in."""
        if self.mode is Mode.CHARGING and self.station is not None:
            return self.station.station_id
        return ""


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Equirectangular distance: exact enough over the few km of a city."""
    dlat = (lat2 - lat1) * KM_PER_DEGREE_LAT
    dlon = (lon2 - lon1) * KM_PER_DEGREE_LAT * math.cos(math.radians((lat1 + lat2) / 2))
    return math.hypot(dlat, dlon)


def _reflect(value: float, low: float, high: float) -> float:
    """Fold a coordinate back into [low, high], as a ball bouncing off the walls."""
    span = high - low
    # Modulo a double span handles steps longer than the box itself.
    offset = (value - low) % (2 * span)
    return low + (offset if offset <= span else 2 * span - offset)


def step(
    car: Car,
    rng: random.Random,
    dt_s: float,
    box: BoundingBox = MANHATTAN,
    charging: Charging = DEFAULT_CHARGING,
    *,
    moment: Moment | None = None,
    setpoint_kw: float | None = None,
    habits: Habits = DEFAULT_HABITS,
) -> Car:
    """The car one update of dt_s seconds later, whatever its mode.

    `setpoint_kw` is what the site's plan asks of a plugged-in car (None: no plan).
    """
    dt = min(max(dt_s, 0.0), MAX_STEP_S)
    if car.mode is Mode.DRIVING:
        if car.home is not None and moment is not None and moment.night:
            return _approach(
                dataclasses.replace(car, mode=Mode.TO_STATION, station=car.home),
                rng,
                dt,
                moment,
                habits,
            )
        return _drive(car, rng, dt, box)
    if car.mode is Mode.TO_STATION:
        return _approach(car, rng, dt, moment, habits)
    return _charge(car, rng, dt, box, charging, moment, setpoint_kw)


def head_to(car: Car, station: Station) -> Car:
    """A driving car takes a booking and heads for its station; other modes carry on."""
    if car.mode is not Mode.DRIVING:
        return car
    return dataclasses.replace(car, mode=Mode.TO_STATION, station=station)


def give_up(car: Car) -> Car:
    """A car whose booking expired before it arrived drives on; other modes carry on."""
    if car.mode is not Mode.TO_STATION:
        return car
    return dataclasses.replace(car, mode=Mode.DRIVING, station=None)


def _drive(car: Car, rng: random.Random, dt: float, box: BoundingBox) -> Car:
    """New speed, a move of speed × dt in a random heading, drain; empty, it stands still."""
    if car.battery <= 0.0:
        return car if car.velocity == 0.0 else dataclasses.replace(car, velocity=0.0)
    velocity = rng.uniform(0.0, VELOCITY_MAX)
    heading = rng.uniform(0.0, 2 * math.pi)
    travel_km = velocity * dt / 3600.0
    dlat = travel_km * math.cos(heading) / KM_PER_DEGREE_LAT
    # A degree of longitude is shorter away from the equator.
    dlon = travel_km * math.sin(heading) / (KM_PER_DEGREE_LAT * math.cos(math.radians(car.lat)))
    drain = rng.uniform(DRAIN_MIN, DRAIN_MAX)
    # A driving car has no station nor target: built directly, twice as fast as
    # dataclasses.replace, on the path every benchmark message takes.
    moved = Car(
        car.car_id,
        _reflect(car.lat + dlat, box.south, box.north),
        _reflect(car.lon + dlon, box.west, box.east),
        max(0.0, car.battery - drain),
        velocity,
    )
    return moved if car.home is None else dataclasses.replace(moved, home=car.home)


def plug_in(car: Car, rng: random.Random, moment: Moment | None, habits: Habits) -> Car:
    """The car arrived at its station: it plugs in with a goal (see the module's doc)."""
    station = car.station
    assert station is not None
    if moment is None:
        target, depart_at = rng.uniform(CHARGE_TARGET_MIN, CHARGE_TARGET_MAX), 0
    elif car.going_home:
        spread = rng.uniform(0.0, habits.morning_spread_minutes) * 60_000
        target, depart_at = habits.depot_target, moment.morning_ms + int(spread)
    else:
        target = rng.uniform(*habits.target)
        depart_at = moment.now_ms + int(rng.uniform(*habits.stop_minutes) * 60_000)
    return dataclasses.replace(
        car,
        lat=station.lat,
        lon=station.lon,
        velocity=0.0,
        mode=Mode.CHARGING,
        charge_target=target,
        depart_at=depart_at,
    )


def at_home(car: Car, rng: random.Random, moment: Moment, habits: Habits = DEFAULT_HABITS) -> Car:
    """A depot car at night is at its depot, plugged in until the morning (a run that
    starts at night); other cars, and any car by day, are left as they are."""
    if car.home is None or not moment.night:
        return car
    return plug_in(dataclasses.replace(car, station=car.home), rng, moment, habits)


def _approach(
    car: Car,
    rng: random.Random,
    dt: float,
    moment: Moment | None = None,
    habits: Habits = DEFAULT_HABITS,
) -> Car:
    """Straight towards the station by speed × dt; within ARRIVAL_M, plugged in there."""
    station = car.station
    if station is None:  # not reachable through head_to; drive on rather than fail
        return dataclasses.replace(car, mode=Mode.DRIVING)
    velocity = rng.uniform(APPROACH_VELOCITY_MIN, APPROACH_VELOCITY_MAX)
    travel_km = velocity * dt / 3600.0
    remaining_km = distance_km(car.lat, car.lon, station.lat, station.lon)
    if remaining_km - travel_km <= ARRIVAL_M / 1000.0:
        # The last metres cost no measurable charge: the first status at the station
        # holds the battery, which the pricing worker reads as a charging session's start.
        return plug_in(car, rng, moment, habits)
    fraction = travel_km / remaining_km
    drain = rng.uniform(DRAIN_MIN, DRAIN_MAX)
    return dataclasses.replace(
        car,
        lat=car.lat + (station.lat - car.lat) * fraction,
        lon=car.lon + (station.lon - car.lon) * fraction,
        battery=max(0.0, car.battery - drain),
        velocity=velocity,
    )


def charge_power(station: Station, charging: Charging, setpoint_kw: float | None) -> float:
    """kW a plugged-in car draws: its plan's setpoint, else all the connector gives, and
    never more than the connector or the car itself can take."""
    most = min(station.power_kw, charging.max_kw)
    if setpoint_kw is None or not math.isfinite(setpoint_kw):
        return most
    return min(max(setpoint_kw, 0.0), most)


def _charge(
    car: Car,
    rng: random.Random,
    dt: float,
    box: BoundingBox,
    charging: Charging,
    moment: Moment | None,
    setpoint_kw: float | None,
) -> Car:
    """Plugged in: the battery rises at the plan's (or the station's) power up to the
    target; the car unplugs at its departure (without one, once it reached its target)."""
    station = car.station
    if car.depart_at and moment is not None:
        leaving = moment.now_ms >= car.depart_at
    else:
        leaving = car.battery >= car.charge_target
    if station is None or leaving:
        # Unplug, and this update is already one of driving on from the station.
        driving = dataclasses.replace(
            car, mode=Mode.DRIVING, station=None, charge_target=0.0, depart_at=0
        )
        return _drive(driving, rng, dt, box)
    if car.battery >= car.charge_target:
        return car if car.velocity == 0.0 else dataclasses.replace(car, velocity=0.0)
    gained = charging.gain(charge_power(station, charging, setpoint_kw), dt, car.battery)
    battery = min(car.charge_target, 100.0, car.battery + gained)
    return dataclasses.replace(car, battery=battery, velocity=0.0)


def car_id(prefix: str, index: int, width: int = 5) -> str:
    """`car-00042`: zero-padded so ids sort in fleet order."""
    value = f"{prefix}-{index:0{width}d}"
    if not CAR_ID_PATTERN.fullmatch(value):
        raise ValueError(f"car id {value!r} does not match {CAR_ID_PATTERN.pattern}")
    return value


def is_depot_car(index: int, share: float) -> bool:
    """Whether car `index` of a fleet is a depot car: every 1/share-th car, evenly."""
    return math.floor((index + 1) * share) > math.floor(index * share)


def make_fleet(
    n: int,
    rng: random.Random,
    prefix: str = "car",
    box: BoundingBox = MANHATTAN,
    battery: tuple[float, float] = (INITIAL_BATTERY_MIN, INITIAL_BATTERY_MAX),
    depot: Station | None = None,
    depot_share: float = 0.0,
) -> list[Car]:
    """n cars at random places in the box, ids `<prefix>-00000` upwards, battery in a range;
    with a depot, `depot_share` of them (spread evenly over the ids) are its depot cars."""
    if n < 0:
        raise ValueError("n must not be negative")
    low, high = battery
    if not 0.0 <= low <= high <= 100.0:
        raise ValueError("the battery range needs 0 <= low <= high <= 100")
    if not 0.0 <= depot_share <= 1.0:
        raise ValueError("depot_share must be within [0, 1]")
    width = max(5, len(str(n - 1)))
    return [
        Car(
            car_id=car_id(prefix, i, width),
            lat=rng.uniform(box.south, box.north),
            lon=rng.uniform(box.west, box.east),
            battery=rng.uniform(low, high),
            velocity=rng.uniform(0.0, VELOCITY_MAX),
            home=depot if depot is not None and is_depot_car(i, depot_share) else None,
        )
        for i in range(n)
    ]

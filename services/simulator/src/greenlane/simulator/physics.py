"""Car physics of the simulator: drive, head for a booked station, charge, drive on; pure.

A car is in one of three modes:

- `driving`: a random walk in a box (Manhattan by default), draining 0.1 to 0.5 % per
  update; a car at 0 % stands still (velocity 0) until it gets a booking.
- `to_station`: straight towards its booked station at 20 to 60 km/h, draining as
  while driving (a car at 0 % still gets there: think of it as towed). Within 30 m it
  snaps to the station and plugs in.
- `charging`: at the station, velocity 0, `station_id` set; the battery rises by
  `power_kw × hours / pack_kwh × 100` % per update (× the demo speed-up), tapering above
  80 %, until a target drawn from the car's generator (80 to 95 %). The update after
  the target is reached, the car unplugs and drives on.
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

    def __post_init__(self) -> None:
        if not (self.pack_kwh > 0 and math.isfinite(self.pack_kwh)):
            raise ValueError("pack_kwh must be a finite number above 0")
        if not (self.speedup > 0 and math.isfinite(self.speedup)):
            raise ValueError("speedup must be a finite number above 0")

    def gain(self, power_kw: float, dt_s: float, battery: float) -> float:
        """Percent of the pack added in dt_s seconds at power_kw, starting from battery %."""
        percent = power_kw * dt_s / 3600.0 / self.pack_kwh * 100.0 * self.speedup
        if battery > TAPER_FROM:
            percent *= max(TAPER_FLOOR, (100.0 - battery) / (100.0 - TAPER_FROM))
        return percent


DEFAULT_CHARGING: Final = Charging()


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
) -> Car:
    """The car one update of dt_s seconds later, whatever its mode."""
    dt = min(max(dt_s, 0.0), MAX_STEP_S)
    if car.mode is Mode.DRIVING:
        return _drive(car, rng, dt, box)
    if car.mode is Mode.TO_STATION:
        return _approach(car, rng, dt)
    return _charge(car, rng, dt, box, charging)


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
    return Car(
        car.car_id,
        _reflect(car.lat + dlat, box.south, box.north),
        _reflect(car.lon + dlon, box.west, box.east),
        max(0.0, car.battery - drain),
        velocity,
    )


def _approach(car: Car, rng: random.Random, dt: float) -> Car:
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
        return dataclasses.replace(
            car,
            lat=station.lat,
            lon=station.lon,
            velocity=0.0,
            mode=Mode.CHARGING,
            charge_target=rng.uniform(CHARGE_TARGET_MIN, CHARGE_TARGET_MAX),
        )
    fraction = travel_km / remaining_km
    drain = rng.uniform(DRAIN_MIN, DRAIN_MAX)
    return dataclasses.replace(
        car,
        lat=car.lat + (station.lat - car.lat) * fraction,
        lon=car.lon + (station.lon - car.lon) * fraction,
        battery=max(0.0, car.battery - drain),
        velocity=velocity,
    )


def _charge(car: Car, rng: random.Random, dt: float, box: BoundingBox, charging: Charging) -> Car:
    """Plugged in: the battery rises at the station's power until the target, then unplug."""
    station = car.station
    if station is None or car.battery >= car.charge_target:
        # Charged: unplug, and this update is already one of driving on from the station.
        driving = dataclasses.replace(car, mode=Mode.DRIVING, station=None, charge_target=0.0)
        return _drive(driving, rng, dt, box)
    gained = charging.gain(station.power_kw, dt, car.battery)
    battery = min(car.charge_target, 100.0, car.battery + gained)
    return dataclasses.replace(car, battery=battery, velocity=0.0)


def car_id(prefix: str, index: int, width: int = 5) -> str:
    """`car-00042`: zero-padded so ids sort in fleet order."""
    value = f"{prefix}-{index:0{width}d}"
    if not CAR_ID_PATTERN.fullmatch(value):
        raise ValueError(f"car id {value!r} does not match {CAR_ID_PATTERN.pattern}")
    return value


def make_fleet(
    n: int,
    rng: random.Random,
    prefix: str = "car",
    box: BoundingBox = MANHATTAN,
    battery: tuple[float, float] = (INITIAL_BATTERY_MIN, INITIAL_BATTERY_MAX),
) -> list[Car]:
    """n cars at random places in the box, ids `<prefix>-00000` upwards, battery in a range."""
    if n < 0:
        raise ValueError("n must not be negative")
    low, high = battery
    if not 0.0 <= low <= high <= 100.0:
        raise ValueError("the battery range needs 0 <= low <= high <= 100")
    width = max(5, len(str(n - 1)))
    return [
        Car(
            car_id=car_id(prefix, i, width),
            lat=rng.uniform(box.south, box.north),
            lon=rng.uniform(box.west, box.east),
            battery=rng.uniform(low, high),
            velocity=rng.uniform(0.0, VELOCITY_MAX),
        )
        for i in range(n)
    ]

"""Car physics of the simulator: a random walk in a box (Manhattan by default), pure."""

from __future__ import annotations

import dataclasses
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

KM_PER_DEGREE_LAT: Final = 111.32
# A longer gap (a car back from a reconnect backoff) is not a reason to jump across town.
MAX_STEP_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class Car:
    """One car's state; the fields match CarStatus (without the timestamp)."""

    car_id: str
    lat: float
    lon: float
    battery: float  # percent, [0, 100]
    velocity: float  # km/h


def _reflect(value: float, low: float, high: float) -> float:
    """Fold a coordinate back into [low, high], as a ball bouncing off the walls."""
    span = high - low
    # Modulo a double span handles steps longer than the box itself.
    offset = (value - low) % (2 * span)
    return low + (offset if offset <= span else 2 * span - offset)


def step(car: Car, rng: random.Random, dt_s: float, box: BoundingBox = MANHATTAN) -> Car:
    """The car one update later: new speed, a move of speed × dt in a random heading, drain."""
    dt = min(max(dt_s, 0.0), MAX_STEP_S)
    velocity = rng.uniform(0.0, VELOCITY_MAX)
    heading = rng.uniform(0.0, 2 * math.pi)
    distance_km = velocity * dt / 3600.0
    dlat = distance_km * math.cos(heading) / KM_PER_DEGREE_LAT
    # A degree of longitude is shorter away from the equator.
    dlon = distance_km * math.sin(heading) / (KM_PER_DEGREE_LAT * math.cos(math.radians(car.lat)))
    drain = rng.uniform(DRAIN_MIN, DRAIN_MAX)
    return dataclasses.replace(
        car,
        lat=_reflect(car.lat + dlat, box.south, box.north),
        lon=_reflect(car.lon + dlon, box.west, box.east),
        battery=max(0.0, car.battery - drain),
        velocity=velocity,
    )


def car_id(prefix: str, index: int, width: int = 5) -> str:
    """`car-00042`: zero-padded so ids sort in fleet order."""
    value = f"{prefix}-{index:0{width}d}"
    if not CAR_ID_PATTERN.fullmatch(value):
        raise ValueError(f"car id {value!r} does not match {CAR_ID_PATTERN.pattern}")
    return value


def make_fleet(
    n: int, rng: random.Random, prefix: str = "car", box: BoundingBox = MANHATTAN
) -> list[Car]:
    """n cars at random places in the box, ids `<prefix>-00000` upwards."""
    if n < 0:
        raise ValueError("n must not be negative")
    width = max(5, len(str(n - 1)))
    return [
        Car(
            car_id=car_id(prefix, i, width),
            lat=rng.uniform(box.south, box.north),
            lon=rng.uniform(box.west, box.east),
            battery=rng.uniform(INITIAL_BATTERY_MIN, INITIAL_BATTERY_MAX),
            velocity=rng.uniform(0.0, VELOCITY_MAX),
        )
        for i in range(n)
    ]

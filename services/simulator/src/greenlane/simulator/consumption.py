"""A physical consumption model of a simulated car's battery; pure (docs/prediction.md).

The seed drains a random 0.1-0.5 % per update, which nothing can learn. Here a car
draws, in kW:

    P = efficiency × (ROLLING_KWH_PER_KM + DRAG_KWH_PER_KM × (v/50)²) × v
        + efficiency × HVAC_KW_PER_10C × |T(h) − 20 °C| / 10
        + IDLE_KW

energy per km rising with speed (rolling resistance, then air drag), a per-car efficiency
(its model: a compact draws less than a van), heating or cooling with the hour-of-day
temperature T(h) (coldest at 03:00, warmest at 15:00), idle draw, and multiplicative
noise (traffic, driving style, a sensor's rounding). `seed_drain` keeps the seed's
random drain reachable.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final

ROLLING_KWH_PER_KM: Final = 0.12
DRAG_KWH_PER_KM: Final = 0.05  # at 50 km/h; ∝ v²
HVAC_KW_PER_10C: Final = 1.5
IDLE_KW: Final = 0.4
COMFORT_C: Final = 20.0
NOISE_SD: Final = 0.15  # multiplicative, per update


def temperature_c(hour: float) -> float:
    """The outside temperature of the simulated day: 4 °C at 03:00, 20 °C at 15:00."""
    return 12.0 - 8.0 * math.cos(2.0 * math.pi * (hour - 3.0) / 24.0)


@dataclass(frozen=True, slots=True)
class CarModel:
    """A car model: its efficiency (a multiplier on the drive and climate draw) and pack."""

    name: str
    efficiency: float
    pack_kwh: float

    def __post_init__(self) -> None:
        if not (self.efficiency > 0 and math.isfinite(self.efficiency)):
            raise ValueError("efficiency must be a finite number above 0")
        if not (self.pack_kwh > 0 and math.isfinite(self.pack_kwh)):
            raise ValueError("pack_kwh must be a finite number above 0")


CAR_MODELS: Final = (
    CarModel("compact", 0.85, 50.0),
    CarModel("sedan", 1.0, 75.0),
    CarModel("suv", 1.25, 90.0),
    CarModel("van", 1.45, 75.0),
)


def power_kw(model: CarModel, velocity_kmh: float, hour: float) -> float:
    """What the car draws (kW) at a speed and an hour, without noise."""
    v = max(velocity_kmh, 0.0)
    per_km = ROLLING_KWH_PER_KM + DRAG_KWH_PER_KM * (v / 50.0) ** 2
    climate = HVAC_KW_PER_10C * abs(temperature_c(hour) - COMFORT_C) / 10.0
    return model.efficiency * (per_km * v + climate) + IDLE_KW


def drain_percent(
    model: CarModel, velocity_kmh: float, hour: float, dt_s: float, rng: random.Random
) -> float:
    """Percent of the pack used in dt_s seconds, with the model's noise (never negative)."""
    if not (dt_s >= 0 and math.isfinite(dt_s)):
        raise ValueError("dt_s must be a finite number >= 0")
    noise = max(rng.gauss(1.0, NOISE_SD), 0.0)
    return power_kw(model, velocity_kmh, hour) * dt_s / 3600.0 / model.pack_kwh * 100.0 * noise


def seed_drain(rng: random.Random) -> float:
    """The seed's drain: a random 0.1-0.5 % per update, whatever the car does."""
    return rng.uniform(0.1, 0.5)

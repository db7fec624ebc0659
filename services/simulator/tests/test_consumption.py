"""The physical consumption model of simulated cars."""

from __future__ import annotations

import random
import statistics

import pytest

from greenlane.simulator.consumption import (
    CAR_MODELS,
    IDLE_KW,
    CarModel,
    drain_percent,
    power_kw,
    seed_drain,
    temperature_c,
)

SEDAN = CarModel("sedan", 1.0, 75.0)


def test_energy_per_km_rises_with_speed() -> None:
    per_km = [power_kw(SEDAN, v, 15.0) / v for v in (20.0, 50.0, 100.0)]
    assert per_km[0] < per_km[1] < per_km[2]


def test_a_less_efficient_model_draws_more_at_the_same_speed() -> None:
    by_name = {m.name: m for m in CAR_MODELS}
    assert power_kw(by_name["van"], 50, 12) > power_kw(by_name["sedan"], 50, 12)
    assert power_kw(by_name["sedan"], 50, 12) > power_kw(by_name["compact"], 50, 12)


def test_a_cold_night_costs_heating_and_a_parked_car_draws_idle() -> None:
    assert temperature_c(3.0) == pytest.approx(4.0) and temperature_c(15.0) == pytest.approx(20.0)
    assert power_kw(SEDAN, 0.0, 15.0) == pytest.approx(IDLE_KW)
    assert power_kw(SEDAN, 0.0, 3.0) > power_kw(SEDAN, 0.0, 15.0) + 2.0


def test_the_drain_is_noisy_around_the_models_power() -> None:
    rng = random.Random(2)
    drains = [drain_percent(SEDAN, 50.0, 15.0, 60.0, rng) for _ in range(2000)]
    expected = power_kw(SEDAN, 50.0, 15.0) / 60 / 75 * 100
    assert statistics.mean(drains) == pytest.approx(expected, rel=0.02)
    assert statistics.stdev(drains) > 0.1 * expected
    assert min(drains) >= 0


def test_the_seeds_random_drain_stays_reachable() -> None:
    rng = random.Random(1)
    assert all(0.1 <= seed_drain(rng) <= 0.5 for _ in range(100))


def test_an_invalid_car_model_or_interval_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="efficiency"):
        CarModel("x", 0.0, 75.0)
    with pytest.raises(ValueError, match="pack_kwh"):
        CarModel("x", 1.0, -1.0)
    with pytest.raises(ValueError, match="dt_s"):
        drain_percent(SEDAN, 50.0, 12.0, -1.0, random.Random(0))

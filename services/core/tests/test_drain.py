"""The drain predictor: it learns a car's efficiency from its history, with uncertainty."""

from __future__ import annotations

import math
import random

import pytest

from greenlane.core.drain import DrainModel, features, naive_battery_at

HOUR_MS = 3_600_000
START = 1_800_000_000_000 - (1_800_000_000_000 % (24 * HOUR_MS))  # a midnight, UTC


def true_rate(efficiency: float, v: float, t_ms: int) -> float:
    """A car's drain (%/h of a 75 kWh pack): rolling, drag, climate, idle."""
    hour = (t_ms / HOUR_MS) % 24
    climate = 1.2 * (1 + math.cos(2 * math.pi * (hour - 3) / 24))
    kw = efficiency * ((0.12 + 0.05 * (v / 50) ** 2) * v + climate) + 0.4
    return kw / 75 * 100


def drive(
    model: DrainModel, efficiency: float, hours: float, rng: random.Random, noise: float = 0.15
) -> tuple[float, int]:
    """Feed the model a car's statuses every 10 s for `hours`; returns (battery, time)."""
    battery, t, v = 100.0, START, 40.0
    for _ in range(int(hours * 360)):
        v = min(max(v + rng.gauss(0, 3), 5.0), 90.0)
        t += 10_000
        battery -= true_rate(efficiency, v, t) * (10 / 3600) * max(rng.gauss(1, noise), 0)
        if battery < 5:
            battery = 100.0  # recharged: the model restarts its window
            model.observe(battery, 0.0, t, charging=True)
            continue
        model.observe(battery, v, t, charging=False)
    return battery, t


def test_the_predictor_learns_a_cars_efficiency_from_its_history() -> None:
    rng = random.Random(7)
    van = DrainModel()
    prior_rate, _ = DrainModel().rate(50.0, START + 12 * HOUR_MS)
    drive(van, 1.45, 12, rng)
    learned, _ = van.rate(50.0, START + 12 * HOUR_MS)
    truth = true_rate(1.45, 50.0, START + 12 * HOUR_MS)
    assert abs(learned - truth) / truth < 0.05
    assert abs(prior_rate - truth) / truth > 0.2  # the fleet prior alone was far off


def test_two_cars_with_different_efficiencies_learn_different_rates() -> None:
    compact, van = DrainModel(), DrainModel()
    drive(compact, 0.85, 6, random.Random(1))
    drive(van, 1.45, 6, random.Random(1))
    at = START + 30 * HOUR_MS
    assert van.rate(60.0, at)[0] > 1.5 * compact.rate(60.0, at)[0]


def test_a_prediction_carries_an_uncertainty_that_shrinks_with_history() -> None:
    rng = random.Random(3)
    new = DrainModel()
    new.observe(80.0, 40.0, START, charging=False)
    before = new.predict(80.0, START)
    _, t = drive(new, 1.0, 4, rng)
    after = new.predict(60.0, t)
    assert before.observations == 0 and after.observations > 100
    assert before.battery_sd > 0 and after.battery_sd > 0
    assert after.rate_sd < before.rate_sd / 3
    assert after.range_sd_km < before.range_sd_km


def test_the_30_minute_prediction_beats_the_last_rate_baseline() -> None:
    rng = random.Random(11)
    model = DrainModel()
    battery, t, v = 100.0, START, 40.0
    history: list[tuple[float, int, float, float]] = []  # battery, t, ours, naive
    previous = (battery, t)
    for _ in range(5 * 60):  # a status a minute for 5 h: 100 % down to ~40 %
        v = min(max(v + rng.gauss(0, 4), 5.0), 70.0)
        t += 60_000
        battery -= true_rate(0.9, v, t) / 60 * max(rng.gauss(1, 0.15), 0)
        model.observe(battery, v, t, charging=False)
        ours = model.predict(battery, t, 1800).battery_at_horizon
        history.append((battery, t, ours, naive_battery_at(previous, (battery, t), 1800)))
        previous = (battery, t)
    ours_err, naive_err = [], []
    for i, (_, _, ours, naive) in enumerate(history[60:-30], start=60):
        actual = history[i + 30][0]
        ours_err.append(abs(ours - actual))
        naive_err.append(abs(naive - actual))
    assert history[-1][0] > 10  # never empty: every error is a real one
    assert sum(ours_err) < 0.7 * sum(naive_err)


def test_range_and_reach_follow_the_battery_and_the_speed() -> None:
    model = DrainModel()
    drive(model, 1.0, 3, random.Random(5))
    p = model.predict(50.0, START + 3 * HOUR_MS)
    assert p.range_km > p.reach_km > 0
    assert p.battery_at_horizon < 50.0
    half = model.predict(25.0, START + 3 * HOUR_MS)
    assert half.range_km == pytest.approx(p.range_km / 2)


def test_a_charging_status_restarts_the_window_and_teaches_nothing() -> None:
    model = DrainModel()
    model.observe(50.0, 30.0, START, charging=False)
    assert not model.observe(60.0, 0.0, START + 120_000, charging=True)
    assert not model.observe(70.0, 0.0, START + 240_000, charging=True)
    assert model.observations == 0


def test_statuses_out_of_order_are_ignored() -> None:
    model = DrainModel()
    model.observe(50.0, 30.0, START + 120_000, charging=False)
    assert not model.observe(49.0, 30.0, START, charging=False)
    assert model.observations == 0


def test_a_non_finite_status_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="battery and velocity"):
        DrainModel().observe(math.nan, 30.0, START, charging=False)
    with pytest.raises(ValueError, match="horizon_s"):
        DrainModel().predict(50.0, START, 0)


def test_features_are_speed_drag_idle_and_the_hour_of_day() -> None:
    x = features(50.0, START + 6 * HOUR_MS)
    assert x[:3] == (1.0, 1.0, 1.0)
    assert x[3] == pytest.approx(0.0, abs=1e-9) and x[4] == pytest.approx(1.0)


def test_the_naive_baseline_carries_the_last_rate_on() -> None:
    assert naive_battery_at((50.0, 0), (49.0, 60_000), 1800) == pytest.approx(19.0)
    assert naive_battery_at((50.0, 0), (49.0, 60_000), 36_000) == 0.0

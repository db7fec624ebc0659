"""Slot prices off the grid's forecast curve, and when a new forecast re-plans."""

from __future__ import annotations

import pytest

from greenlane.core.quotes import Curve, Quote
from greenlane.planner.forecast import curve_changed, slot_prices

HOUR = 3_600_000
T0 = 1_800_000_000_000 - 1_800_000_000_000 % HOUR


def ramp(hours: int = 30) -> Curve:
    """Hourly quotes rising by $0.01 an hour, the load with them (one energy source): the
    curve between them is a straight line."""
    points = [
        (T0 + h * HOUR, Quote(round(0.10 + 0.01 * h, 4), round(0.02 * h, 4), "grid"))
        for h in range(hours)
    ]
    return Curve(points, 0.0)


def test_a_slot_s_price_is_the_curve_s_mean_over_the_slot() -> None:
    start = T0 + 2 * HOUR + 7 * 60_000
    prices = slot_prices(ramp(), start, 15, 40)
    assert len(prices) == 40
    for t in (0, 13, 39):
        middle = start + t * 15 * 60_000 + 7.5 * 60_000
        # A straight line's mean over the slot is its value in the middle.
        assert prices[t] == pytest.approx(0.10 + 0.01 * (middle - T0) / HOUR, abs=1e-4)


def test_past_the_forecast_the_last_price_holds() -> None:
    curve = ramp(hours=3)
    last = curve.points[-1][1].price_per_kwh
    prices = slot_prices(curve, T0, 60, 10)
    assert prices[-1] == last and prices[-2] == last


def test_a_changed_hour_re_plans_a_forecast_that_only_grew_does_not() -> None:
    curve, longer = ramp(hours=10), ramp(hours=12)
    assert curve_changed(None, curve)
    assert not curve_changed(curve, longer)
    t, q = curve.points[4]
    points = list(curve.points)
    points[4] = (t, Quote(q.price_per_kwh + 0.01, q.grid_load, q.energy_source))
    assert curve_changed(curve, Curve(points, 0.0))

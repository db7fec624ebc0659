"""The price rule: a pure demand factor of a site's load snapshot, bounded."""

from __future__ import annotations

import math

import pytest

from greenlane.core.demand import (
    FACTOR_MAX,
    FACTOR_MIN,
    BookingWeights,
    SiteLoad,
    booking_cost,
    demand_factor,
    expected_wait_minutes,
    station_price,
)


def load(plugged: float, booked: float = 0.0, limit: float = 100.0) -> SiteLoad:
    return SiteLoad("site-1", 1_800_000_000_000, plugged, booked, limit)


def test_the_factor_rises_with_plugged_and_booked_power_against_the_limit() -> None:
    assert demand_factor(load(0)) == FACTOR_MIN
    assert demand_factor(load(25, 25)) == 1.0
    assert demand_factor(load(100)) == pytest.approx(1.2)
    assert demand_factor(load(50)) < demand_factor(load(50, 20)) < demand_factor(load(90, 20))


def test_the_factor_is_bounded_and_one_without_a_snapshot() -> None:
    assert demand_factor(load(10_000)) == FACTOR_MAX
    assert demand_factor(None) == 1.0


def test_the_same_snapshot_gives_the_same_price_every_time() -> None:
    snapshot = load(70, 10)
    again = SiteLoad.loads(snapshot.dumps())
    assert again == snapshot
    assert station_price(0.3127, again) == station_price(0.3127, snapshot)
    assert station_price(0.3127, snapshot).price == round(0.3127 * 1.12, 5)


def test_a_site_over_its_limit_makes_cars_wait_in_proportion() -> None:
    assert expected_wait_minutes(load(100)) == 0.0
    assert expected_wait_minutes(load(150, 50)) == pytest.approx(30.0)
    assert expected_wait_minutes(load(10_000)) == 120.0
    assert expected_wait_minutes(None) == 0.0


def test_a_cheaper_station_wins_when_its_detour_is_small_and_loses_when_it_is_long() -> None:
    w = BookingWeights()
    near_busy = booking_cost(0.3, 0.25 * 1.2, 0.0, w)
    assert booking_cost(0.8, 0.25 * 0.8, 0.0, w) < near_busy
    assert booking_cost(5.0, 0.25 * 0.8, 0.0, w) > near_busy


def test_an_invalid_snapshot_tariff_or_weight_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="limit_kw"):
        load(10, limit=0)
    with pytest.raises(ValueError, match="plugged_kw"):
        load(-1)
    with pytest.raises(ValueError, match="booked_kw"):
        load(1, math.nan)
    with pytest.raises(ValueError, match="tariff"):
        station_price(-0.1, None)
    with pytest.raises(ValueError, match="speed_kmh"):
        BookingWeights(speed_kmh=0)

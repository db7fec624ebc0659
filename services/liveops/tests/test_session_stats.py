"""Session statistics: the sliding event rate and the latest picture of every car."""

from __future__ import annotations

import pytest

from greenlane.liveops.stats import SessionStats, SlidingRate


def test_the_rate_counts_the_events_of_the_last_five_seconds() -> None:
    rate = SlidingRate(started=0.0)
    for tenth in range(100):  # 10 events a second for 10 s
        rate.add(tenth / 10)
    assert rate.rate(10.0) == pytest.approx(10.0, rel=0.1)


def test_the_rate_forgets_events_older_than_the_window() -> None:
    rate = SlidingRate(started=0.0)
    rate.add(1.0, 500)
    assert rate.rate(2.0) == pytest.approx(500 / 2.0)
    assert rate.rate(6.2) == 0.0


def test_the_rate_of_a_first_burst_is_not_divided_by_a_few_milliseconds() -> None:
    rate = SlidingRate(started=0.0)
    rate.add(0.01, 1000)
    assert rate.rate(0.02) == pytest.approx(1000.0)


def test_the_rate_keeps_one_entry_per_tenth_of_a_second() -> None:
    rate = SlidingRate(started=0.0)
    for i in range(10_000):
        rate.add(1.0 + i * 1e-6)
    assert len(rate._buckets) == 1
    assert rate.rate(1.5) == pytest.approx(10_000 / 1.5)


def test_statistics_follow_each_cars_latest_battery() -> None:
    stats = SessionStats(started=0.0)
    stats.record(1.0, "car-1", 10.0)
    stats.record(1.0, "car-2", 18.0)
    stats.record(1.0, "car-3", 90.0, "st-1")
    snap = stats.snapshot(2.0)
    assert (snap.events, snap.cars, snap.below_20, snap.critical, snap.charging) == (
        3,
        3,
        2,
        1,
        1,
    )
    assert snap.average_battery == pytest.approx((10 + 18 + 90) / 3)

    stats.record(3.0, "car-1", 80.0, "st-1")  # recharged
    stats.record(3.0, "car-3", 91.0)  # unplugged
    snap = stats.snapshot(4.0)
    assert (snap.events, snap.cars, snap.below_20, snap.critical, snap.charging) == (
        5,
        3,
        1,
        0,
        1,
    )
    assert snap.average_battery == pytest.approx((80 + 18 + 91) / 3)
    assert stats.battery_of("car-1") == 80.0
    assert stats.battery_of("car-9") is None


def test_boundaries_count_as_documented_20_is_not_below_and_15_is_not_critical() -> None:
    stats = SessionStats(started=0.0)
    stats.record(1.0, "a", 20.0)
    stats.record(1.0, "b", 15.0)
    stats.record(1.0, "c", 14.99)
    snap = stats.snapshot(1.0)
    assert snap.below_20 == 2
    assert snap.critical == 1


def test_invalid_messages_are_counted_apart_from_events() -> None:
    stats = SessionStats(started=0.0)
    stats.record_invalid()
    stats.record_invalid()
    snap = stats.snapshot(1.0)
    assert (snap.invalid, snap.events, snap.cars, snap.rate) == (2, 0, 0, 0.0)
    assert snap.average_battery is None


def test_a_snapshot_carries_elapsed_time_and_lag() -> None:
    stats = SessionStats(started=10.0)
    snap = stats.snapshot(12.5, lag=7)
    assert snap.elapsed_s == 2.5
    assert snap.lag == 7

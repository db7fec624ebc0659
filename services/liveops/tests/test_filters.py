"""--car and --below decide which events are printed."""

from __future__ import annotations

from greenlane.liveops.filters import EventFilter


def test_no_filter_lets_every_event_through() -> None:
    f = EventFilter()
    assert f.matches("car-1", 100.0)
    assert f.matches("car-2", 0.0)
    assert f.describe() == "all events"


def test_car_filter_keeps_only_the_named_cars() -> None:
    f = EventFilter(cars=frozenset({"car-1", "car-3"}))
    assert f.matches("car-1", 50.0)
    assert f.matches("car-3", 50.0)
    assert not f.matches("car-2", 50.0)
    assert f.describe() == "cars car-1, car-3"


def test_below_keeps_only_batteries_strictly_below_the_threshold() -> None:
    f = EventFilter(below=20.0)
    assert f.matches("car-1", 19.99)
    assert not f.matches("car-1", 20.0)
    assert not f.matches("car-1", 80.0)
    assert f.describe() == "battery below 20 %"


def test_below_zero_shows_nothing_and_below_100_everything_but_full_batteries() -> None:
    assert not EventFilter(below=0.0).matches("car-1", 0.0)
    assert EventFilter(below=100.0).matches("car-1", 99.9)
    assert not EventFilter(below=100.0).matches("car-1", 100.0)


def test_both_filters_must_match() -> None:
    f = EventFilter(cars=frozenset({"car-1"}), below=20.0)
    assert f.matches("car-1", 10.0)
    assert not f.matches("car-1", 30.0)
    assert not f.matches("car-2", 10.0)
    assert f.describe() == "cars car-1; battery below 20 %"


def test_fleet_filter_keeps_only_events_sent_by_the_named_fleets() -> None:
    f = EventFilter(fleets=frozenset({"acme", "zeta"}))
    assert f.matches("car-1", 50.0, "acme")
    assert f.matches("car-2", 50.0, "zeta")
    assert not f.matches("car-3", 50.0, "other")
    assert not f.matches("car-4", 50.0)  # an event without a fleet is no fleet's
    assert EventFilter().matches("car-4", 50.0)
    assert f.describe() == "fleets acme, zeta"

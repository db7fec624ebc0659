"""The load snapshot the planner records for a site."""

from __future__ import annotations

from greenlane.core.plans import BOOKED, PLUGGED_IN
from greenlane.planner.demand import site_load
from greenlane.planner.fleet import SiteCar, SiteInfo, StationInfo

STATIONS = {
    "fast": StationInfo("fast", "s", 150.0, 2, 40.75, -73.98),
    "slow": StationInfo("slow", "s", 22.0, 4, 40.75, -73.98),
}
SITE = SiteInfo("s", "Site", 200.0, STATIONS)


def car(car_id: str, station: str, state: str) -> SiteCar:
    return SiteCar(car_id, "s", station, state, 50.0, 0, 0)


def test_plugged_and_booked_cars_ask_for_their_connectors_power() -> None:
    cars = [car("a", "fast", PLUGGED_IN), car("b", "slow", PLUGGED_IN), car("c", "fast", BOOKED)]
    snapshot = site_load(SITE, cars, 1_000)
    assert (snapshot.plugged_kw, snapshot.booked_kw, snapshot.limit_kw) == (172.0, 150.0, 200.0)
    assert snapshot.at_ms == 1_000 and snapshot.site_id == "s"


def test_an_empty_site_asks_for_nothing_and_a_vanished_station_for_nothing() -> None:
    assert site_load(SITE, [], 5).demand == 0.0
    assert site_load(SITE, [car("x", "gone", PLUGGED_IN)], 5).plugged_kw == 0.0

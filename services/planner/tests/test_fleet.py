"""The live planner's picture of the sites: which events re-plan which site, without I/O."""

from __future__ import annotations

from greenlane.core.events import CarState
from greenlane.core.plans import BOOKED, PLUGGED_IN
from greenlane.planner.fleet import CarSpec, FleetPicture, Goal, SiteInfo, StationInfo

NOW = 1_800_000_000_000


def station(sid: str, site: str) -> StationInfo:
    return StationInfo(sid, site, 50.0, 2, 40.75, -73.98)


SITES = [
    SiteInfo("north", "North", 100.0, {"n1": station("n1", "north"), "n2": station("n2", "north")}),
    SiteInfo("south", "South", 80.0, {"s1": station("s1", "south")}),
]


def status(car: str, station_id: str = "", battery: float = 30.0, **goal: float) -> CarState:
    return CarState(
        car_id=car,
        lat=40.75,
        lon=-73.98,
        battery=battery,
        velocity=0.0,
        timestamp=NOW,
        station_id=station_id,
        **goal,  # type: ignore[arg-type]
    )


def picture() -> FleetPicture:
    p = FleetPicture(presence_timeout_ms=30_000)
    p.set_sites(SITES)
    return p


def test_plugging_in_re_plans_the_site_and_staying_plugged_in_does_not() -> None:
    p = picture()
    assert p.telemetry(status("c1", "n1"), NOW) == {"north"}
    assert p.cars["c1"].state == PLUGGED_IN
    # The next statuses at the same station change only the battery.
    assert p.telemetry(status("c1", "n1", battery=31.0), NOW + 2000) == set()
    assert p.cars["c1"].battery == 31.0 and p.cars["c1"].last_seen_ms == NOW + 2000
    assert [c.car_id for c in p.cars_at("north")] == ["c1"]


def test_a_new_goal_re_plans_but_the_same_goal_sent_again_does_not() -> None:
    p = picture()
    p.telemetry(status("c1", "n1", target_battery=80.0, depart_at=NOW + 3_600_000), NOW)
    again = status("c1", "n1", target_battery=80.0, depart_at=NOW + 3_600_000)
    assert p.telemetry(again, NOW + 2000) == set()
    later = status("c1", "n1", target_battery=80.0, depart_at=NOW + 7_200_000)
    assert p.telemetry(later, NOW + 4000) == {"north"}
    assert p.cars["c1"].car_goal == Goal(80.0, NOW + 7_200_000)


def test_leaving_or_moving_to_another_site_re_plans_both_sites() -> None:
    p = picture()
    p.telemetry(status("c1", "n1"), NOW)
    assert p.telemetry(status("c1", "s1"), NOW + 1) == {"north", "south"}
    assert p.telemetry(status("c1"), NOW + 2) == {"south"}
    assert "c1" not in p.cars
    # A station of no site, or a car on the road: nothing to plan.
    assert p.telemetry(status("c2", "elsewhere"), NOW) == set()
    assert p.telemetry(status("c3"), NOW) == set()


def test_a_booked_car_is_expected_until_it_plugs_in_or_its_booking_ends() -> None:
    p = picture()
    assert p.booked(status("c1", battery=12.0), "s1", "b-1", NOW) == {"south"}
    assert p.cars["c1"].state == BOOKED and p.cars["c1"].eta_ms >= NOW
    # Driving on towards the station: still expected, nothing to re-plan.
    assert p.telemetry(status("c1", battery=11.5), NOW + 2000) == set()
    assert p.booking_ended("c1", "another-booking") == set()
    assert p.booking_ended("c1", "b-1") == {"south"} and "c1" not in p.cars
    p.booked(status("c2"), "s1", "b-2", NOW)
    assert p.telemetry(status("c2", "s1"), NOW + 5000) == {"south"}
    assert p.cars["c2"].state == PLUGGED_IN
    # Once plugged in, the end of the booking (fulfilled elsewhere, expired) is no news.
    assert p.booking_ended("c2", "b-2") == set()


def test_silent_cars_leave_and_long_booked_cars_are_dropped() -> None:
    p = picture()
    p.telemetry(status("talking", "n1"), NOW)
    p.telemetry(status("silent", "n2"), NOW - 60_000)
    p.booked(status("late"), "s1", "b-1", NOW - 3_600_000)
    assert p.expire(NOW, booking_ttl_ms=1_500_000) == {"north", "south"}
    assert set(p.cars) == {"talking"}


def test_an_api_goal_set_before_the_car_arrives_is_used_when_it_plugs_in() -> None:
    p = picture()
    assert p.api_goal("c1", Goal(90.0, NOW + 1), CarSpec(pack_kwh=40.0)) == set()
    p.telemetry(status("c1", "n1"), NOW)
    assert p.cars["c1"].api_goal == Goal(90.0, NOW + 1)
    assert p.cars["c1"].spec == CarSpec(pack_kwh=40.0)
    assert p.api_goal("c1", Goal(70.0, NOW + 1), None) == {"north"}
    assert p.api_goal("c1", Goal(70.0, NOW + 1), None) == set()


def test_new_sites_or_limits_re_plan_and_a_car_at_a_station_that_left_its_site_is_gone() -> None:
    p = picture()
    p.telemetry(status("c1", "s1"), NOW)
    moved = [SITES[0], SiteInfo("south", "South", 60.0, {})]
    assert p.set_sites(moved) == {"south"}
    assert "c1" not in p.cars
    assert p.set_sites(moved) == set()
    assert p.set_sites([SITES[0]]) == {"south"}  # removed: its plans must go

"""From a site's cars to its problem and its published plans, without I/O."""

from __future__ import annotations

import math

import pytest

from greenlane.core.plans import BOOKED, PLUGGED_IN
from greenlane.planner.fleet import CarSpec, Goal, SiteCar, SiteInfo, StationInfo
from greenlane.planner.model import solve
from greenlane.planner.planning import (
    FleetRules,
    full_power,
    goal_of,
    site_problem,
    site_schedule,
)

NOW = 1_800_000_000_000
MIN = 60_000
RULES = FleetRules(slot_minutes=15, horizon=8, pack_kwh=60.0, car_max_kw=11.0)
SITE = SiteInfo(
    "depot",
    "Depot",
    22.0,
    {
        "ac-1": StationInfo("ac-1", "depot", 22.0, 4, 40.87, -73.92),
        "dc-1": StationInfo("dc-1", "depot", 7.4, 1, 40.87, -73.92),
    },
)
PRICES = [0.40, 0.30, 0.10, 0.10, 0.12, 0.30, 0.40, 0.40]


def car(car_id: str, battery: float, **fields: object) -> SiteCar:
    values: dict[str, object] = {
        "site_id": "depot",
        "station_id": "ac-1",
        "state": PLUGGED_IN,
        "since_ms": NOW,
        "last_seen_ms": NOW,
    }
    values.update(fields)
    return SiteCar(car_id=car_id, battery=battery, **values)  # type: ignore[arg-type]


def test_the_api_goal_wins_over_the_car_s_and_the_fleet_fills_what_neither_set() -> None:
    own = Goal(70.0, NOW + 60 * MIN)
    assert goal_of(car("c", 10, car_goal=own), RULES) == (own, "car")
    api = car("c", 10, car_goal=own, api_goal=Goal(90.0, 0))
    assert goal_of(api, RULES) == (Goal(90.0, NOW + 60 * MIN), "api")
    # Nothing set: the fleet's target, and a departure its default stay after arrival.
    assert goal_of(car("c", 10), RULES) == (Goal(80.0, NOW + 120 * MIN), "fleet")
    booked = car("c", 10, state=BOOKED, eta_ms=NOW + 10 * MIN)
    assert goal_of(booked, RULES)[0].depart_at == NOW + 130 * MIN


def test_a_car_s_request_is_its_energy_to_the_goal_within_its_window_and_maxima() -> None:
    cars = [
        car("plugged", 20.0, car_goal=Goal(80.0, NOW + 61 * MIN)),
        car("small-plug", 50.0, station_id="dc-1", car_goal=Goal(60.0, NOW + 120 * MIN)),
        car("own-pack", 50.0, spec=CarSpec(pack_kwh=100.0, max_kw=50.0), car_goal=Goal(60.0, 0)),
        car("booked", 30.0, state=BOOKED, eta_ms=NOW + 20 * MIN, car_goal=Goal(40, NOW + 95 * MIN)),
        car("full", 95.0, car_goal=Goal(80.0, NOW + 60 * MIN)),
    ]
    problem, contexts = site_problem(SITE, cars, NOW, PRICES, RULES)
    requests = {c.car_id: c for c in problem.cars}

    # 60 % of a 60 kWh pack, from now until the last whole slot before departure.
    assert (requests["plugged"].arrive_slot, requests["plugged"].depart_slot) == (0, 4)
    assert requests["plugged"].energy_kwh == pytest.approx(36.0)
    assert requests["plugged"].max_kw == 11.0  # the car's maximum below the connector's
    assert requests["small-plug"].max_kw == 7.4  # the connector's below the car's
    # Its own pack and power, from the API.
    assert requests["own-pack"].energy_kwh == pytest.approx(10.0)
    assert requests["own-pack"].max_kw == 22.0
    # A booked car is expected from the slot after its arrival.
    assert (requests["booked"].arrive_slot, requests["booked"].depart_slot) == (2, 6)
    assert requests["full"].energy_kwh == 0.0
    assert [c.goal_source for c in contexts] == ["car", "car", "car", "car", "car"]
    assert problem.site_limit_kw == 22.0 and problem.horizon == 8


def test_the_site_s_plan_publishes_each_car_s_slots_energy_cost_and_the_full_power_baseline() -> (
    None
):
    cars = [
        car("van-1", 30.0, car_goal=Goal(80.0, NOW + 120 * MIN)),
        car("van-2", 40.0, car_goal=Goal(80.0, NOW + 120 * MIN)),
    ]
    problem, contexts = site_problem(SITE, cars, NOW, PRICES, RULES)
    schedule = site_schedule(SITE, contexts, problem, solve(problem), NOW)

    assert [c.car_id for c in schedule.cars] == ["van-1", "van-2"]
    site_kw = schedule.site_kw()
    assert max(site_kw) <= SITE.limit_kw + 1e-9
    for plan, request in zip(schedule.cars, problem.cars, strict=True):
        assert plan.start == plan.timestamp == NOW and plan.slot_minutes == 15
        assert plan.expected_kwh == pytest.approx(sum(plan.power_kw) * 0.25)
        assert plan.expected_cost == pytest.approx(
            math.fsum(p * kw * 0.25 for p, kw in zip(PRICES, plan.power_kw, strict=True))
        )
        # Alone at 11 kW for its 2 hours, each car could take 22 kWh at most.
        assert plan.full_power_kwh == pytest.approx(min(request.energy_kwh, 22.0))
    # 30 + 24 kWh in 8 slots of 22 kW (44 kWh): not both; the plan says who is short.
    assert sum(c.expected_kwh for c in schedule.cars) == pytest.approx(44.0)
    assert sum(c.shortfall_kwh for c in schedule.cars) == pytest.approx(54.0 - 44.0)
    assert not all(c.feasible for c in schedule.cars)
    # Against full power on arrival at the same limit, first come first served.
    totals = schedule.totals()
    assert totals["expected_cost"] <= totals["full_power_cost"] + 1e-9
    assert schedule.limit_kw == (22.0,) * 8 and schedule.price == tuple(PRICES)


def test_a_car_leaving_within_the_first_slot_gets_what_it_can_take_before_it_leaves() -> None:
    # 6 minutes left of a 15-minute slot at 11 kW: at most 1.1 kWh, drawn at 11 kW.
    leaving = car("leaving", 50.0, car_goal=Goal(80.0, NOW + 6 * MIN))
    staying = car("staying", 10.0, car_goal=Goal(80.0, NOW + 120 * MIN), station_id="ac-1")
    problem, contexts = site_problem(SITE, [leaving, staying], NOW, PRICES, RULES)
    schedule = site_schedule(SITE, contexts, problem, solve(problem), NOW)
    plan = {c.car_id: c for c in schedule.cars}

    assert problem.cars[0].energy_kwh == pytest.approx(1.1)
    assert plan["leaving"].expected_kwh == pytest.approx(1.1)
    assert plan["leaving"].power_kw[0] == pytest.approx(11.0)
    assert plan["leaving"].power_kw[1:] == (0.0,) * 7
    # At every instant of slot 0 the two cars stay under the site's 22 kW.
    assert plan["leaving"].power_kw[0] + plan["staying"].power_kw[0] <= 22.0 + 1e-9


def test_full_power_on_arrival_takes_the_limit_first_come_first_served() -> None:
    cars = [
        car("first", 10.0, car_goal=Goal(80.0, NOW + 120 * MIN)),
        car("second", 10.0, car_goal=Goal(80.0, NOW + 120 * MIN), since_ms=NOW + 1),
    ]
    tight = SiteInfo("depot", "Depot", 11.0, SITE.stations)
    problem, _ = site_problem(tight, cars, NOW, PRICES, RULES)
    (first_kwh, first_cost), (second_kwh, _) = full_power(problem)

    # 11 kW for all 8 slots (22 kWh) to the first car, nothing left for the second.
    assert first_kwh == pytest.approx(22.0) and second_kwh == 0.0
    assert first_cost == pytest.approx(sum(PRICES) * 11 * 0.25)

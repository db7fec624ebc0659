"""Charging plans as published: the event, the plan hash, setpoints and site schedules."""

from __future__ import annotations

import dataclasses
import json

import pytest

from greenlane.core.events import parse_event
from greenlane.core.plans import PLAN_FIELDS, CarPlan, SiteSchedule, setpoint_at

NOW = 1_800_000_000_000
MIN = 60_000
PLAN = CarPlan(
    car_id="car-7",
    site_id="midtown",
    station_id="mh-017",
    timestamp=NOW,
    slot_minutes=15,
    start=NOW,
    power_kw=(0.0, 11.0, 7.25, 0.0),
    expected_kwh=4.5625,
    expected_cost=0.5,
    feasible=False,
    shortfall_kwh=1.25,
    reason="site_limit",
    full_power_kwh=5.0,
    full_power_cost=0.9,
)


def test_the_setpoint_is_the_slot_holding_now_until_that_slot_ends() -> None:
    power = [0.0, 11.0, 7.25]
    assert setpoint_at(NOW, 15, power, NOW) == (0.0, NOW + 15 * MIN)
    assert setpoint_at(NOW, 15, power, NOW + 16 * MIN) == (11.0, NOW + 30 * MIN)
    assert setpoint_at(NOW, 15, power, NOW + 44 * MIN) == (7.25, NOW + 45 * MIN)
    assert setpoint_at(NOW, 15, power, NOW + 45 * MIN) is None  # the plan ran out
    assert setpoint_at(NOW, 15, power, NOW - 5) == (0.0, NOW + 15 * MIN)  # clocks apart
    assert setpoint_at(NOW, 15, [], NOW) is None


def test_the_plan_hash_holds_every_field_and_gives_the_plan_back() -> None:
    stored = PLAN.to_hash()
    assert list(stored) == list(PLAN_FIELDS)
    assert all(isinstance(v, str) for v in stored.values())
    raw = {k.encode(): v.encode() for k, v in stored.items()}  # as Redis answers
    assert CarPlan.from_hash("car-7", raw) == PLAN
    assert CarPlan.from_hash("car-7", {**stored, "power_kw": "[1, oops"}) is None
    assert CarPlan.from_hash("car-7", {}) is None
    assert PLAN.end == NOW + 60 * MIN


def test_the_charging_plan_event_has_the_agreed_shape_and_is_a_valid_event() -> None:
    raw = PLAN.event(NOW + 20 * MIN)
    event = json.loads(raw)
    assert list(event) == [
        "event_type",
        "car_id",
        "site_id",
        "station_id",
        "timestamp",
        "slot_minutes",
        "start",
        "power_kw",
        "expected_kwh",
        "expected_cost",
        "feasible",
        "shortfall_kwh",
        "reason",
        "setpoint_kw",
        "setpoint_until",
    ]
    assert event["event_type"] == "charging_plan"
    assert (event["setpoint_kw"], event["setpoint_until"]) == (11.0, NOW + 30 * MIN)
    assert event["power_kw"] == [0.0, 11.0, 7.25, 0.0] and event["feasible"] is False
    parsed = parse_event(raw, NOW)
    assert (parsed.event_type, parsed.car_id, parsed.state) == ("charging_plan", "car-7", None)


def test_a_schedule_survives_its_key_and_answers_per_slot_totals_and_cars() -> None:
    other = dataclasses.replace(PLAN, car_id="car-8", power_kw=(5.0, 0.0, 0.0, 0.0))
    schedule = SiteSchedule(
        site_id="midtown",
        name="Midtown",
        timestamp=NOW,
        slot_minutes=15,
        start=NOW,
        limit_kw=(20.0,) * 4,
        price=(0.3, 0.2, 0.1, 0.1),
        cars=(PLAN, other),
    )
    assert SiteSchedule.loads(schedule.dumps()) == schedule
    assert SiteSchedule.loads("{not json") is None
    answer = schedule.to_json()
    assert answer["cars"] == 2 and answer["feasible"] is False
    assert answer["expected_cost"] == pytest.approx(1.0)
    assert answer["slots"][1] == {
        "start": NOW + 15 * MIN,
        "price": 0.2,
        "limit_kw": 20.0,
        "site_kw": 11.0,
        "cars": {"car-7": 11.0},
    }
    assert answer["slots"][0]["cars"] == {"car-8": 5.0}
    assert [c["car_id"] for c in answer["car_plans"]] == ["car-7", "car-8"]

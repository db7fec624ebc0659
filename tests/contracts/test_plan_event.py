"""The planner's charging_plan event as its readers take it: the hub's decoder and the
live ops feed read what core's one definition writes."""

from __future__ import annotations

from greenlane.core.events import parse_event
from greenlane.core.plans import CarPlan
from greenlane.hub.events import PlanEvent, decode
from greenlane.liveops.format import format_plan

NOW = 1_800_000_000_000
PLAN = CarPlan(
    car_id="car-7",
    site_id="midtown",
    station_id="mh-017",
    timestamp=NOW,
    slot_minutes=15,
    start=NOW,
    power_kw=(0.0, 11.0),
    expected_kwh=2.75,
    expected_cost=0.4,
    feasible=True,
    shortfall_kwh=0.0,
    reason="",
)


def test_the_hub_decodes_the_planner_s_event_with_every_field_it_shows() -> None:
    decoded = decode(PLAN.event(NOW + 60_000))
    assert isinstance(decoded, PlanEvent) and decoded.car_id == "car-7"
    assert decoded.plan["site_id"] == "midtown" and decoded.plan["station_id"] == "mh-017"
    assert decoded.plan["power_kw"] == [0.0, 11.0]
    assert decoded.plan["setpoint_kw"] == 0.0
    assert decoded.plan["setpoint_until"] == NOW + 15 * 60_000
    assert decoded.plan["expected_kwh"] == 2.75 and decoded.plan["feasible"] is True


def test_the_live_ops_feed_shows_a_plan_in_one_line() -> None:
    line = format_plan(parse_event(PLAN.event(NOW + 16 * 60_000)).data).plain
    assert "⚡ car-7" in line and "PLAN at midtown (mh-017)" in line
    assert "now 11.0 kW until" in line and "2.750 kWh, $0.4000 | goal met" in line

"""From a site's cars to its joint plan and back, pure (no I/O).

`site_problem` turns the cars plugged in or booked at a site, their goals and the slot
prices into the model's SiteProblem (slot 0 starts now); `site_schedule` turns the
model's SitePlan into what is published: each car's CarPlan and the site's schedule,
measured against the same cars charging at full power on arrival.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from greenlane.core.plans import BOOKED, CarPlan, SiteSchedule
from greenlane.planner.fleet import CarSpec, Goal, SiteCar, SiteInfo
from greenlane.planner.model import CarRequest, SitePlan, SiteProblem

MINUTE_MS: Final = 60_000


@dataclass(frozen=True, slots=True)
class FleetRules:
    """How the live planner plans: its slots, and the fleet's defaults."""

    slot_minutes: int = 15
    horizon: int = 96  # slots
    default_target_battery: float = 80.0
    default_stay_minutes: float = 120.0
    pack_kwh: float = 75.0
    car_max_kw: float = 150.0

    @property
    def slot_ms(self) -> int:
        return self.slot_minutes * MINUTE_MS


@dataclass(frozen=True, slots=True)
class CarContext:
    """One car of a site problem: what the model was asked, and why."""

    car: SiteCar
    goal: Goal  # the goal in force (API, then the car's own, then the fleet's)
    goal_source: str  # "api", "car" or "fleet"
    pack_kwh: float
    energy_kwh: float
    max_kw: float  # the car's and its connector's maximum (the model may see less)
    arrive_slot: int
    depart_slot: int
    # A plugged-in car leaving within the first slot is there for this share of it only:
    # the model plans its slot-0 energy at power x share, and the car draws it at
    # power in that share of the slot (see site_problem).
    share: float = 1.0


def goal_of(car: SiteCar, rules: FleetRules) -> tuple[Goal, str]:
    """The goal in force for a car, field by field: the API's, then the car's, then the
    fleet's default (its departure counted from its arrival)."""
    api = car.api_goal or Goal()
    own = car.car_goal
    target = api.target_battery or own.target_battery or rules.default_target_battery
    arrival = car.eta_ms if car.state == BOOKED else car.since_ms
    default_depart = arrival + int(rules.default_stay_minutes * MINUTE_MS)
    depart = api.depart_at or own.depart_at or default_depart
    if api.target_battery or api.depart_at:
        source = "api"
    elif own.target_battery or own.depart_at:
        source = "car"
    else:
        source = "fleet"
    return Goal(target, depart), source


def spec_of(spec: CarSpec, rules: FleetRules) -> tuple[float, float]:
    """(pack kWh, max kW) of a car: its own where the API set them, else the fleet's."""
    return spec.pack_kwh or rules.pack_kwh, spec.max_kw or rules.car_max_kw


def site_problem(
    site: SiteInfo,
    cars: Sequence[SiteCar],
    now_ms: int,
    prices: Sequence[float],
    rules: FleetRules,
) -> tuple[SiteProblem, list[CarContext]]:
    """The site's problem from now over the horizon, one CarRequest per car in order.

    A plugged-in car is present from slot 0, a booked one from the slot of its expected
    arrival; both until the last whole slot before their departure. A plugged-in car
    whose departure has passed (it is still there) gets one slot.

    A plugged-in car leaving within slot 0 (after a share s of it) is planned in slot 0
    with its power scaled by s: its energy is then what it can still take, and the plan
    it is given draws that energy at power / s until it leaves (site_schedule). Slot 0's
    limit is lowered by what those cars may draw above their scaled power (max x (1 - s)),
    so the site stays under its limit at every instant, not only on average.
    """
    slot_ms = rules.slot_ms
    horizon = len(prices)
    contexts: list[CarContext] = []
    for car in cars:
        goal, source = goal_of(car, rules)
        pack, car_max = spec_of(car.spec, rules)
        station = site.stations.get(car.station_id)
        connector = station.power_kw if station is not None else car_max
        if car.state == BOOKED:
            arrive = min(horizon, max(0, math.ceil((car.eta_ms - now_ms) / slot_ms)))
        else:
            arrive = 0
        depart = min(horizon, max(arrive, (goal.depart_at - now_ms) // slot_ms))
        max_kw = min(car_max, connector)
        need = max(0.0, goal.target_battery - car.battery) / 100.0 * pack
        share = 1.0
        if car.state != BOOKED and depart <= arrive:
            left_ms = goal.depart_at - now_ms
            if left_ms > 0:  # leaving within the first slot: a share of it is left
                share = left_ms / slot_ms
                need = min(need, max_kw * left_ms / 3_600_000)
            depart = min(horizon, arrive + 1)
        contexts.append(
            CarContext(
                car=car,
                goal=goal,
                goal_source=source,
                pack_kwh=pack,
                energy_kwh=need,
                max_kw=max_kw,
                arrive_slot=arrive,
                depart_slot=depart,
                share=share,
            )
        )
    limits = [site.limit_kw] * horizon
    if horizon:
        headroom = sum(c.max_kw * (1.0 - c.share) for c in contexts if c.share < 1.0)
        limits[0] = max(0.0, site.limit_kw - headroom)
    problem = SiteProblem(
        slot_minutes=rules.slot_minutes,
        prices=list(prices),
        site_limit_kw=limits if limits[:1] != [site.limit_kw] else site.limit_kw,
        cars=[
            CarRequest(c.car.car_id, c.arrive_slot, c.depart_slot, c.energy_kwh, c.max_kw * c.share)
            for c in contexts
        ],
    )
    return problem, contexts


def full_power(problem: SiteProblem) -> list[tuple[float, float]]:
    """(kWh, $) per car charging at full power from its arrival, the site limit taken
    first come, first served (cars in the problem's order): uncontrolled charging."""
    hours = problem.slot_minutes / 60.0
    limits = problem.limits()
    need = [c.energy_kwh for c in problem.cars]
    kwh = [0.0] * len(problem.cars)
    cost = [0.0] * len(problem.cars)
    order = sorted(range(len(problem.cars)), key=lambda i: problem.cars[i].arrive_slot)
    for t in range(problem.horizon):
        room = limits[t]
        for i in order:
            car = problem.cars[i]
            if not car.arrive_slot <= t < car.depart_slot or need[i] <= 1e-12 or room <= 0:
                continue
            kw = min(car.max_kw, need[i] / hours, room)
            room -= kw
            need[i] -= kw * hours
            kwh[i] += kw * hours
            cost[i] += kw * hours * problem.prices[t]
    return list(zip(kwh, cost, strict=True))


def site_schedule(
    site: SiteInfo,
    contexts: Sequence[CarContext],
    problem: SiteProblem,
    plan: SitePlan,
    now_ms: int,
) -> SiteSchedule:
    """What the plan publishes: each car's CarPlan and the site's schedule."""
    hours = problem.slot_minutes / 60.0
    baseline = full_power(problem)
    cars = []
    for context, car_plan, (fp_kwh, fp_cost) in zip(contexts, plan.cars, baseline, strict=True):
        cost = math.fsum(
            p * kw * hours for p, kw in zip(problem.prices, car_plan.power_kw, strict=True)
        )
        power = list(car_plan.power_kw)
        if context.share < 1.0 and power:
            # Slot 0's energy at the power that delivers it before the car leaves.
            power[0] = min(context.max_kw, power[0] / context.share)
        cars.append(
            CarPlan(
                car_id=car_plan.car_id,
                site_id=site.site_id,
                station_id=context.car.station_id,
                timestamp=now_ms,
                slot_minutes=problem.slot_minutes,
                start=now_ms,
                power_kw=tuple(power),
                expected_kwh=car_plan.delivered_kwh,
                expected_cost=cost,
                feasible=not car_plan.reason,
                shortfall_kwh=car_plan.shortfall_kwh,
                reason=car_plan.reason,
                state=context.car.state,
                full_power_kwh=fp_kwh,
                full_power_cost=fp_cost,
            )
        )
    cars = _within_limit(cars, contexts, site.limit_kw)
    return SiteSchedule(
        site_id=site.site_id,
        name=site.name,
        timestamp=now_ms,
        slot_minutes=problem.slot_minutes,
        start=now_ms,
        limit_kw=(site.limit_kw,) * problem.horizon,
        price=tuple(float(p) for p in problem.prices),
        cars=tuple(cars),
    )


def _within_limit(
    cars: list[CarPlan], contexts: Sequence[CarContext], limit_kw: float
) -> list[CarPlan]:
    """Slot 0 under the limit exactly: scaling a leaving car's power back up (power / share)
    can leave it a few ulps over; the largest such power gives them back."""
    if not cars or not cars[0].power_kw:
        return cars
    leaving = [i for i, c in enumerate(contexts) if c.share < 1.0]
    while leaving and math.fsum(c.power_kw[0] for c in cars) > limit_kw:
        i = max(leaving, key=lambda j: cars[j].power_kw[0])
        power = list(cars[i].power_kw)
        if power[0] <= 0.0:
            break
        excess = math.fsum(c.power_kw[0] for c in cars) - limit_kw
        power[0] = max(0.0, min(power[0] - excess, math.nextafter(power[0], 0.0)))
        cars[i] = dataclasses.replace(cars[i], power_kw=tuple(power))
    return cars


def empty_schedule(
    site: SiteInfo, now_ms: int, prices: Sequence[float], rules: FleetRules
) -> SiteSchedule:
    """The schedule of a site without cars: its limit and prices, nothing drawn."""
    return SiteSchedule(
        site_id=site.site_id,
        name=site.name,
        timestamp=now_ms,
        slot_minutes=rules.slot_minutes,
        start=now_ms,
        limit_kw=(site.limit_kw,) * len(prices),
        price=tuple(float(p) for p in prices),
    )

"""The site charging model, without any I/O: limits, windows, goals, shortfalls, costs."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import replace

import highspy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenlane.core.errors import InvalidField
from greenlane.planner.model import (
    MAX_CAR_SLOTS,
    MAX_CARS,
    MAX_SLOTS,
    REASONS,
    SITE_LIMIT,
    WINDOW_TOO_SHORT,
    CarRequest,
    SitePlan,
    SiteProblem,
    _fit,
    goal_tolerance,
    pieces,
    solve,
    validate,
)

HOUR = 60  # slot_minutes of one-hour slots: kW and kWh are the same numbers


def car(car_id: str, arrive: int, depart: int, energy: float, max_kw: float = 11.0) -> CarRequest:
    return CarRequest(car_id, arrive, depart, energy, max_kw)


def by_id(plan: SitePlan) -> dict[str, list[float]]:
    return {c.car_id: c.power_kw for c in plan.cars}


def charging_slots(power: Sequence[float]) -> list[int]:
    return [t for t, p in enumerate(power) if p > 1e-9]


def assert_invariants(problem: SiteProblem, plan: SitePlan) -> None:
    """What every plan must satisfy: limits, windows and maxima exactly, goals to the
    documented tolerance."""
    hours = problem.slot_minutes / 60
    limits = problem.limits()
    assert len(plan.cars) == len(problem.cars)
    assert len(plan.site_kw) == problem.horizon
    for t in range(problem.horizon):
        column = [c.power_kw[t] for c in plan.cars]
        # The limit holds for the exact sum and for the sum in car order.
        assert math.fsum(column) <= limits[t]
        assert sum(column) <= limits[t]
        assert plan.site_kw[t] == math.fsum(column)
    for request, result in zip(problem.cars, plan.cars, strict=True):
        assert result.car_id == request.car_id
        assert len(result.power_kw) == problem.horizon
        for t, p in enumerate(result.power_kw):
            if request.arrive_slot <= t < request.depart_slot:
                assert 0.0 <= p <= request.max_kw
            else:
                assert p == 0.0
        delivered = math.fsum(result.power_kw) * hours
        assert result.delivered_kwh == pytest.approx(delivered, rel=1e-12, abs=1e-12)
        # Never more than the goal (round powers may pass it by a few ulps, no more).
        assert result.delivered_kwh <= request.energy_kwh + goal_tolerance(request.energy_kwh)
        assert result.reason in REASONS
        if result.reason:
            assert result.shortfall_kwh == request.energy_kwh - result.delivered_kwh
            assert result.shortfall_kwh > goal_tolerance(request.energy_kwh)
        else:
            assert result.shortfall_kwh == 0.0
            # Energy exactly the goal, to the documented tolerance.
            assert abs(request.energy_kwh - delivered) <= goal_tolerance(request.energy_kwh)
    assert plan.feasible == all(not c.reason for c in plan.cars)
    cost = math.fsum(p * kw * hours for p, kw in zip(problem.prices, plan.site_kw, strict=True))
    assert plan.cost == pytest.approx(cost, rel=1e-12, abs=1e-12)


def assert_shortfalls_are_explained(problem: SiteProblem, plan: SitePlan) -> None:
    """A car short of its goal draws all it may wherever the site still has room, and
    its reason says whether its own window (even alone) or the site limit stopped it."""
    hours = problem.slot_minutes / 60
    limits = problem.limits()
    for request, result in zip(problem.cars, plan.cars, strict=True):
        if not result.reason:
            continue
        window_kwh = request.max_kw * (request.depart_slot - request.arrive_slot) * hours
        if result.reason == WINDOW_TOO_SHORT:
            assert window_kwh < request.energy_kwh
        else:
            assert result.reason == SITE_LIMIT
            assert window_kwh >= request.energy_kwh - goal_tolerance(request.energy_kwh)
        for t in range(request.arrive_slot, request.depart_slot):
            bound = min(request.max_kw, limits[t])
            if result.power_kw[t] < bound - 1e-6:
                assert plan.site_kw[t] >= limits[t] - 1e-6 * max(1.0, limits[t])


def oracle(problem: SiteProblem) -> tuple[float, float]:
    """The most energy and, with that energy, the lowest cost, by a plainer formulation:
    two LPs in kWh on highspy's modelling API, independent of the planner's."""
    hours = problem.slot_minutes / 60
    limits = problem.limits()
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    power: dict[tuple[int, int], highspy.highs_var] = {}
    for i, request in enumerate(problem.cars):
        for t in range(request.arrive_slot, request.depart_slot):
            power[i, t] = h.addVariable(lb=0.0, ub=request.max_kw)
    for i, request in enumerate(problem.cars):
        own = [power[i, t] for t in range(request.arrive_slot, request.depart_slot)]
        if own:
            h.addConstr(sum(own) * hours <= request.energy_kwh)
    for t in range(problem.horizon):
        present = [v for (_, slot), v in power.items() if slot == t]
        if present:
            h.addConstr(sum(present) <= limits[t])
    if not power:
        return 0.0, 0.0
    energy = sum(power.values()) * hours
    h.maximize(energy)
    most = h.getObjectiveValue()
    h.addConstr(energy >= most - 1e-9 * max(1.0, most))
    h.minimize(sum(v * problem.prices[t] * hours for (_, t), v in power.items()))
    return most, h.getObjectiveValue()


def assert_optimal(problem: SiteProblem, plan: SitePlan) -> None:
    most, cheapest = oracle(problem)
    delivered = math.fsum(c.delivered_kwh for c in plan.cars)
    assert delivered == pytest.approx(most, rel=1e-6, abs=1e-6)
    assert plan.cost == pytest.approx(cheapest, rel=1e-6, abs=1e-6)


def site_day(seed: int, cars: int = 40, slots: int = 48, share: float = 0.5) -> SiteProblem:
    """A seeded half-day: depot cars with long stays, short daytime stops, a tariff with
    a cheap night and an expensive afternoon, and a limit that binds."""
    rng = random.Random(seed)
    requests = []
    for i in range(cars):
        if rng.random() < 0.6:
            arrive = rng.randint(0, slots // 4)
            depart = min(slots, arrive + rng.randint(slots // 3, slots // 2))
            max_kw = rng.choice([7.4, 11.0, 22.0])
        else:
            arrive = rng.randint(slots // 4, slots - 4)
            depart = min(slots, arrive + rng.randint(2, 8))
            max_kw = rng.choice([11.0, 22.0, 50.0])
        energy = round(rng.uniform(0.2, 0.8) * max_kw * (depart - arrive) * 0.25, 2)
        requests.append(CarRequest(f"car-{i}", arrive, depart, energy, max_kw))
    prices = [round(0.25 + 0.15 * math.sin((t / 2 - 6) * math.pi / 12), 3) for t in range(slots)]
    demand = max(
        sum(c.max_kw for c in requests if c.arrive_slot <= t < c.depart_slot) for t in range(slots)
    )
    return SiteProblem(15, prices, round(share * demand, 1), requests)


# ----------------------------------------------------------------------------- basics


def test_a_car_alone_charges_exactly_its_goal_in_the_cheapest_slots() -> None:
    prices = [0.30, 0.12, 0.40, 0.10, 0.25, 0.11, 0.35, 0.20]
    problem = SiteProblem(HOUR, prices, 100.0, [car("c1", 0, 8, 33.0)])
    plan = solve(problem)
    assert_invariants(problem, plan)
    assert plan.feasible
    assert plan.cars[0].delivered_kwh == pytest.approx(33.0, abs=1e-9)
    # 33 kWh at 11 kW is three full slots: the three cheapest.
    assert charging_slots(plan.cars[0].power_kw) == [1, 3, 5]
    assert plan.cost == pytest.approx(11 * (0.12 + 0.10 + 0.11))


def test_the_site_limit_is_shared_and_never_exceeded_when_every_goal_fits() -> None:
    prices = [0.1, 0.1, 0.2, 0.3, 0.3, 0.4]
    cars = [car(f"c{i}", 0, 6, 20.0) for i in range(4)]  # 80 kWh into 6 x 22 kW
    problem = SiteProblem(HOUR, prices, 22.0, cars)
    plan = solve(problem)
    assert_invariants(problem, plan)
    assert plan.feasible
    assert max(plan.site_kw) <= 22.0
    # The cheapest 80 kWh: both 0.1 slots and the 0.2 slot full, 14 kWh at 0.3.
    assert plan.cost == pytest.approx(22 * 0.1 * 2 + 22 * 0.2 + 14 * 0.3)


def test_power_stays_inside_each_cars_window_and_under_its_maximum() -> None:
    prices = [0.1] * 10
    cars = [car("early", 0, 3, 30.0, 7.4), car("late", 6, 10, 12.0, 3.7)]
    problem = SiteProblem(HOUR, prices, [50.0] * 10, cars)
    plan = solve(problem)
    assert_invariants(problem, plan)
    power = by_id(plan)
    assert charging_slots(power["early"]) == [0, 1, 2]
    assert max(power["early"]) <= 7.4
    assert set(charging_slots(power["late"])) <= {6, 7, 8, 9}
    assert max(power["late"]) <= 3.7


def test_a_per_slot_limit_binds_slot_by_slot() -> None:
    prices = [0.1, 0.1, 0.1, 0.5]
    limits = [5.0, 0.0, 8.0, 50.0]
    problem = SiteProblem(HOUR, prices, limits, [car("c1", 0, 4, 20.0)])
    plan = solve(problem)
    assert_invariants(problem, plan)
    assert plan.cars[0].power_kw[:3] == pytest.approx([5.0, 0.0, 8.0])
    assert plan.cars[0].power_kw[3] == pytest.approx(7.0)


def test_a_site_with_no_cars_or_no_demand_gets_an_empty_feasible_plan() -> None:
    empty = solve(SiteProblem(15, [0.2] * 4, 10.0, []))
    assert empty.feasible and empty.cost == 0.0 and empty.site_kw == [0.0] * 4
    idle = SiteProblem(15, [0.2] * 4, 10.0, [car("c1", 0, 4, 0.0), car("c2", 2, 2, 0.0)])
    plan = solve(idle)
    assert_invariants(idle, plan)
    assert plan.feasible and all(c.power_kw == [0.0] * 4 for c in plan.cars)


def test_negative_prices_never_push_a_car_past_its_goal() -> None:
    problem = SiteProblem(HOUR, [-0.05, -0.02, 0.3], 50.0, [car("c1", 0, 3, 15.0)])
    plan = solve(problem)
    assert_invariants(problem, plan)
    assert plan.cars[0].delivered_kwh == pytest.approx(15.0, abs=1e-9)
    assert plan.cars[0].power_kw == pytest.approx([11.0, 4.0, 0.0])
    assert plan.cost == pytest.approx(-0.05 * 11 - 0.02 * 4)


# ----------------------------------------------------------------------------- shortfalls


def test_a_window_too_short_gets_everything_it_can_and_says_why() -> None:
    # 2 slots of 15 min at 11 kW is 5.5 kWh; 20 kWh are wanted.
    problem = SiteProblem(15, [0.2] * 8, 100.0, [car("c1", 2, 4, 20.0)])
    plan = solve(problem)
    assert_invariants(problem, plan)
    result = plan.cars[0]
    assert not plan.feasible
    assert result.reason == WINDOW_TOO_SHORT
    assert result.power_kw == pytest.approx([0, 0, 11, 11, 0, 0, 0, 0])
    assert result.delivered_kwh == pytest.approx(5.5)
    assert result.shortfall_kwh == pytest.approx(14.5)


def test_a_binding_site_limit_is_reported_as_the_reason_and_energy_is_maximised() -> None:
    # 3 cars x 30 kWh over 4 one-hour slots on a 15 kW site: 60 kWh at most.
    cars = [car(f"c{i}", 0, 4, 30.0) for i in range(3)]
    problem = SiteProblem(HOUR, [0.2, 0.1, 0.3, 0.2], 15.0, cars)
    plan = solve(problem)
    assert_invariants(problem, plan)
    assert_shortfalls_are_explained(problem, plan)
    assert not plan.feasible
    assert math.fsum(c.delivered_kwh for c in plan.cars) == pytest.approx(60.0)
    assert math.fsum(c.shortfall_kwh for c in plan.cars) == pytest.approx(30.0)
    assert {c.reason for c in plan.cars if c.reason} == {SITE_LIMIT}
    assert plan.site_kw == pytest.approx([15.0] * 4)


def test_a_zero_limit_leaves_every_car_short_for_the_site_limit() -> None:
    problem = SiteProblem(15, [0.2] * 4, 0.0, [car("c1", 0, 4, 5.0), car("c2", 1, 3, 1.0)])
    plan = solve(problem)
    assert_invariants(problem, plan)
    assert [c.reason for c in plan.cars] == [SITE_LIMIT, SITE_LIMIT]
    assert [c.shortfall_kwh for c in plan.cars] == [5.0, 1.0]


def test_energy_goes_first_and_cost_second_when_not_every_goal_fits() -> None:
    # The cheap slot cannot hold everything; the plan still uses the expensive one.
    cars = [car("a", 0, 2, 22.0), car("b", 0, 2, 22.0)]
    problem = SiteProblem(HOUR, [0.05, 5.0], 11.0, cars)
    plan = solve(problem)
    assert_invariants(problem, plan)
    assert plan.site_kw == pytest.approx([11.0, 11.0])
    assert math.fsum(c.delivered_kwh for c in plan.cars) == pytest.approx(22.0)


# ----------------------------------------------------------------------------- joint planning


def plan_each_car_alone(problem: SiteProblem) -> dict[str, list[float]]:
    """The per-car approach (evcc): each car plans its cheapest slots as if alone."""
    return {
        request.car_id: solve(replace(problem, cars=[request])).cars[0].power_kw
        for request in problem.cars
    }


def test_two_cars_with_overlapping_deadlines_on_a_small_circuit_both_reach_their_goals() -> None:
    # evcc #14077: one 11 kW circuit, hourly prices rising. Car A must have 11 kWh by
    # the end of slot 1, car B 22 kWh by the end of slot 2: exactly the circuit's
    # capacity in slots 0..2, so it fits only if they take turns.
    prices = [0.10, 0.20, 0.30, 0.40]
    problem = SiteProblem(HOUR, prices, 11.0, [car("A", 0, 2, 11.0), car("B", 0, 3, 22.0)])
    joint = solve(problem)
    assert_invariants(problem, joint)
    assert joint.feasible
    assert [c.delivered_kwh for c in joint.cars] == pytest.approx([11.0, 22.0])
    assert joint.site_kw == pytest.approx([11.0, 11.0, 11.0, 0.0])
    # Planned one at a time, both cars want slot 0 (the cheapest): together they ask
    # the 11 kW circuit for 22 kW, so a limit enforced when they charge leaves a car
    # short, whichever way slot 0 is split.
    alone = plan_each_car_alone(problem)
    assert 0 in charging_slots(alone["A"]) and 0 in charging_slots(alone["B"])
    assert alone["A"][0] + alone["B"][0] == pytest.approx(22.0)
    capped = [min(11.0, alone["A"][t] + alone["B"][t]) for t in range(4)]
    assert sum(capped) < 11.0 + 22.0


def test_a_car_that_leaves_early_is_replanned_around_and_the_others_adapt() -> None:
    prices = [0.40, 0.30, 0.20, 0.10]
    first = SiteProblem(HOUR, prices, 11.0, [car("X", 0, 4, 22.0), car("Y", 0, 4, 11.0)])
    before = solve(first)
    assert_invariants(first, before)
    assert before.feasible
    assert before.site_kw == pytest.approx([0.0, 11.0, 11.0, 11.0])
    # X will now leave after slot 1: it needs both early slots, so Y must move late.
    second = replace(first, cars=[car("X", 0, 2, 22.0), car("Y", 0, 4, 11.0)])
    after = solve(second)
    assert_invariants(second, after)
    assert after.feasible
    power = by_id(after)
    assert power["X"] == pytest.approx([11.0, 11.0, 0.0, 0.0])
    assert power["Y"] == pytest.approx([0.0, 0.0, 0.0, 11.0])  # the cheapest slot left
    # Cutting X's first plan at its new departure would have left it short.
    kept = sum(by_id(before)["X"][:2])
    assert kept < 22.0


# ----------------------------------------------------------------------------- smoothing


def test_smoothing_never_changes_cost_or_energy_and_leaves_fewer_pieces() -> None:
    with_pieces = without_pieces = 0
    for seed in range(12):
        problem = site_day(seed)
        rough = solve(problem, smooth=False)
        smooth = solve(problem)
        assert_invariants(problem, smooth)
        assert smooth.cost == pytest.approx(rough.cost, rel=1e-9, abs=1e-9)
        for a, b in zip(smooth.cars, rough.cars, strict=True):
            assert a.delivered_kwh == pytest.approx(b.delivered_kwh, rel=1e-9, abs=1e-9)
        with_pieces += sum(pieces(c.power_kw) for c in smooth.cars)
        without_pieces += sum(pieces(c.power_kw) for c in rough.cars)
    assert with_pieces < 0.9 * without_pieces


def test_with_equal_prices_a_car_charges_in_one_block_from_its_arrival() -> None:
    problem = SiteProblem(15, [0.2] * 16, 30.0, [car("c1", 3, 16, 8.25, 11.0)])
    plan = solve(problem)
    assert charging_slots(plan.cars[0].power_kw) == [3, 4, 5]


def test_cars_sharing_a_full_limit_at_equal_prices_take_turns_in_one_piece_each() -> None:
    cars = [car(f"c{i}", i, 12, 11.0) for i in range(4)]  # each needs one hour at 11 kW
    problem = SiteProblem(HOUR, [0.2] * 12, 11.0, cars)
    plan = solve(problem)
    assert_invariants(problem, plan)
    assert plan.feasible
    assert [pieces(c.power_kw) for c in plan.cars] == [1, 1, 1, 1]


def test_a_slot_over_its_limit_by_noise_loses_the_noise_from_its_largest_power() -> None:
    noisy = [11.0, 3.3, 7.7000000001]
    fitted = _fit(noisy, 22.0)
    assert fitted[:2] == [11.0, 3.3]
    assert math.fsum(fitted) <= 22.0 and sum(fitted) <= 22.0
    assert fitted[2] == pytest.approx(7.7, abs=1e-9)
    # Far over the limit (not noise): the whole slot is scaled down.
    scaled = _fit([10.0, 10.0, 10.0], 15.0)
    assert scaled == pytest.approx([5.0, 5.0, 5.0])
    assert math.fsum(scaled) <= 15.0 and sum(scaled) <= 15.0
    assert _fit([1.0, 2.0], 3.0) == [1.0, 2.0]


def test_pieces_counts_separate_runs_of_charging() -> None:
    assert pieces([]) == 0
    assert pieces([0.0, 0.0]) == 0
    assert pieces([1.0, 2.0, 0.0, 3.0, 0.0, 0.0, 1.0]) == 3
    assert pieces([1e-12, 5.0]) == 1


# ----------------------------------------------------------------------------- properties

powers = st.sampled_from([0.0, 3.7, 7.4, 11.0, 22.0, 50.0])
price_values = st.one_of(
    st.sampled_from([0.1, 0.2, 0.3]),  # ties
    st.floats(min_value=-0.1, max_value=0.6, allow_nan=False),
)


@st.composite
def problems(draw: st.DrawFn) -> SiteProblem:
    horizon = draw(st.integers(min_value=1, max_value=24))
    prices = draw(st.lists(price_values, min_size=horizon, max_size=horizon))
    limit: float | list[float]
    if draw(st.booleans()):
        limit = draw(st.floats(min_value=0.0, max_value=80.0, allow_nan=False))
    else:
        limit = draw(
            st.lists(
                st.floats(min_value=0.0, max_value=80.0, allow_nan=False),
                min_size=horizon,
                max_size=horizon,
            )
        )
    requests = []
    for i in range(draw(st.integers(min_value=0, max_value=8))):
        arrive = draw(st.integers(min_value=0, max_value=horizon))
        depart = draw(st.integers(min_value=arrive, max_value=horizon))
        energy = draw(st.floats(min_value=0.0, max_value=120.0, allow_nan=False))
        requests.append(CarRequest(f"c{i}", arrive, depart, energy, draw(powers)))
    minutes = draw(st.sampled_from([5, 15, 30, 60]))
    return SiteProblem(minutes, prices, limit, requests)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_every_plan_keeps_every_bound_and_explains_every_shortfall(problem: SiteProblem) -> None:
    plan = solve(problem)
    assert_invariants(problem, plan)
    assert_shortfalls_are_explained(problem, plan)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_every_plan_delivers_the_most_energy_at_the_lowest_cost(problem: SiteProblem) -> None:
    plan = solve(problem)
    assert_optimal(problem, plan)
    rough = solve(problem, smooth=False)
    assert rough.cost == pytest.approx(plan.cost, rel=1e-7, abs=1e-7)


@pytest.mark.parametrize("seed", range(4))
def test_realistic_days_are_optimal_and_explained(seed: int) -> None:
    problem = site_day(seed, cars=30, share=0.35)
    plan = solve(problem)
    assert_invariants(problem, plan)
    assert_shortfalls_are_explained(problem, plan)
    assert_optimal(problem, plan)


# ----------------------------------------------------------------------------- validation

GOOD = SiteProblem(15, [0.2] * 8, 22.0, [car("c1", 0, 8, 10.0)])


def with_car(**changes: object) -> SiteProblem:
    return replace(GOOD, cars=[replace(GOOD.cars[0], **changes)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("problem", "field"),
    [
        (with_car(energy_kwh=-1.0), "cars[0].energy_kwh"),
        (with_car(energy_kwh=math.nan), "cars[0].energy_kwh"),
        (with_car(max_kw=math.inf), "cars[0].max_kw"),
        (with_car(max_kw=-3.0), "cars[0].max_kw"),
        (with_car(arrive_slot=5, depart_slot=4), "cars[0].depart_slot"),
        (with_car(depart_slot=9), "cars[0].depart_slot"),
        (with_car(arrive_slot=-1), "cars[0].arrive_slot"),
        (with_car(arrive_slot=True), "cars[0].arrive_slot"),
        (with_car(arrive_slot=1.5), "cars[0].arrive_slot"),
        (with_car(car_id=""), "cars[0].car_id"),
        (with_car(car_id="a b"), "cars[0].car_id"),
        (replace(GOOD, cars=[GOOD.cars[0], GOOD.cars[0]]), "cars[1].car_id"),
        (replace(GOOD, prices=[]), "prices"),
        (replace(GOOD, prices=[0.2] * (MAX_SLOTS + 1)), "prices"),
        (replace(GOOD, prices=[0.2, math.inf] + [0.2] * 6), "prices[1]"),
        (replace(GOOD, prices=[0.2, "x"] + [0.2] * 6), "prices[1]"),  # type: ignore[list-item]
        (replace(GOOD, prices="0.2"), "prices"),
        (replace(GOOD, site_limit_kw=-1.0), "site_limit_kw"),
        (replace(GOOD, site_limit_kw=math.nan), "site_limit_kw"),
        (replace(GOOD, site_limit_kw=[22.0] * 7), "site_limit_kw"),
        (replace(GOOD, site_limit_kw=[22.0] * 7 + [-1.0]), "site_limit_kw[7]"),
        (replace(GOOD, slot_minutes=0), "slot_minutes"),
        (replace(GOOD, slot_minutes=15.0), "slot_minutes"),
        (replace(GOOD, cars=["c1"]), "cars[0]"),  # type: ignore[list-item]
        (
            replace(GOOD, cars=[car(f"c{i}", 0, 1, 1.0) for i in range(MAX_CARS + 1)]),
            "cars",
        ),
    ],
)
def test_a_bad_problem_is_refused_naming_the_field(problem: SiteProblem, field: str) -> None:
    with pytest.raises(InvalidField) as caught:
        solve(problem)
    assert caught.value.field == field


def test_windows_adding_up_past_the_limit_are_refused() -> None:
    slots = 200
    count = MAX_CAR_SLOTS // slots + 1
    big = SiteProblem(15, [0.2] * slots, 22.0, [car(f"c{i}", 0, slots, 1.0) for i in range(count)])
    with pytest.raises(InvalidField, match="car-slots") as caught:
        validate(big)
    assert caught.value.field == "cars"


def test_the_limits_themselves_are_accepted() -> None:
    validate(SiteProblem(15, [0.2] * MAX_SLOTS, 22.0, [car("c1", 0, MAX_SLOTS, 1.0)]))
    validate(replace(GOOD, cars=[car(f"c{i}", 0, 1, 1.0) for i in range(MAX_CARS)]))

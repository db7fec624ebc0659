"""The site charging model: one joint LP over time slots, solved with HiGHS; pure, no I/O.

Variables: the power ``p[i, t]`` (kW) of car ``i`` in slot ``t``, only for the slots the
car is present (``arrive_slot <= t < depart_slot``), ``0 <= p <= min(max_kw, limit[t])``.

Constraints: ``sum_i p[i, t] <= limit[t]`` in every slot (written only where the cars
present could exceed it) and ``h * sum_t p[i, t] <= energy_kwh`` for every car (``h`` =
slot length in hours).

Objective, lexicographic, in two LPs:

1. the most energy, and of those plans the cheapest (``h * sum price[t] * p[i, t]``): one
   LP whose cost per kW-slot is the price minus a bonus larger than every price. The LP
   is a flow problem, for which this weight is exact (see _Solver.energy_and_cost);
2. among exactly those plans, the least fragmented: the columns and rows that the first
   LP's dual solution pins are fixed, and the rest minimise
   ``sum ((t - arrive) / horizon)^2 * p / max_kw``, which makes each car charge as early
   in its window and in as few pieces as the cheapest plans allow.

Numerical noise is tied off afterwards: powers are rounded to 1e-9 kW and clamped to
their bounds, and in a slot still over its limit the largest power is lowered by a few
ulps, so that these hold exactly in floating point: no slot above its limit (for the
exact sum, ``math.fsum``, and the sum in car order, ``sum()``), no car above its
``max_kw``, no power outside its window. A car's energy is its goal to within
GOAL_TOLERANCE (relative): round powers rarely add up to a goal exactly in binary.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any, Final

import numpy as np
from highspy import HighsLp, HighsModelStatus, MatrixFormat, ObjSense
from highspy._core import _Highs

from greenlane.core.errors import GreenLaneError, InvalidField
from greenlane.core.events import CAR_ID_PATTERN

# Limits of one problem; documented in docs/planner.md and enforced by validate().
MAX_SLOTS: Final = 2016  # three weeks of 15-minute slots
MAX_CARS: Final = 1000
MAX_CAR_SLOTS: Final = 100_000  # sum over cars of their presence windows (LP size)
MAX_SLOT_MINUTES: Final = 1440
MAX_KW: Final = 100_000.0  # a car's or a site's power, kW
MAX_ENERGY_KWH: Final = 100_000.0
MAX_ABS_PRICE: Final = 1_000.0  # $/kWh; negative prices are allowed

# A car this close to its goal (relative, at least 1e-6 kWh) has met it; the LP's own
# tolerance is 1e-7 kW-slots per row.
GOAL_TOLERANCE: Final = 1e-6
# Powers are reported rounded to this many decimals of a kW (a microwatt); below
# ZERO_KW is noise and reported as 0.
POWER_DECIMALS: Final = 9
ZERO_KW: Final = 1e-9
# A reduced cost or dual above this (times the largest price) is not noise.
DUAL_TOLERANCE: Final = 1e-9

# Why a car falls short of its goal (CarPlan.reason; "" when it does not).
WINDOW_TOO_SHORT: Final = "window_too_short"  # max_kw x window < energy, even alone
SITE_LIMIT: Final = "site_limit"  # the site limit in the window is what binds
REASONS: Final = ("", WINDOW_TOO_SHORT, SITE_LIMIT)


class SolverError(GreenLaneError):
    """HiGHS did not reach an optimal plan (time limit, numerical trouble)."""


@dataclass(frozen=True, slots=True)
class CarRequest:
    """One car's charging goal over the horizon."""

    car_id: str
    arrive_slot: int  # present from arrive_slot ...
    depart_slot: int  # ... up to, not including, depart_slot
    energy_kwh: float  # energy wanted (>= 0)
    max_kw: float  # min(car max, connector max) already applied by the caller


@dataclass(frozen=True, slots=True)
class SiteProblem:
    """A site over a horizon of equal slots: prices, the grid limit, the cars."""

    slot_minutes: int
    prices: Sequence[float]  # $/kWh per slot; len = horizon
    site_limit_kw: float | Sequence[float]  # one limit, or one per slot
    cars: Sequence[CarRequest]

    @property
    def horizon(self) -> int:
        """Number of slots."""
        return len(self.prices)

    def limits(self) -> list[float]:
        """The site limit of every slot."""
        limit = self.site_limit_kw
        if isinstance(limit, Sequence):
            return [float(v) for v in limit]
        return [float(limit)] * self.horizon


@dataclass(frozen=True, slots=True)
class CarPlan:
    """One car's part of a site plan."""

    car_id: str
    power_kw: list[float]  # per slot, len = horizon, 0 outside the presence window
    delivered_kwh: float
    shortfall_kwh: float
    reason: str  # "" when the goal is met; else why: WINDOW_TOO_SHORT or SITE_LIMIT


@dataclass(frozen=True, slots=True)
class SitePlan:
    """The joint plan of a site."""

    feasible: bool  # every car's goal met
    cost: float  # $ of the plan
    site_kw: list[float]  # total per slot
    cars: list[CarPlan]
    solve_seconds: float


# ----------------------------------------------------------------------------- validation


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _number(value: object, field: str, low: float, high: float) -> float:
    if not _is_real(value):
        raise InvalidField(field, f"must be a number, got {type(value).__name__}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except OverflowError:  # an int too large for a float
        number = math.inf
    if not math.isfinite(number):
        raise InvalidField(field, f"must be finite, got {number}")
    if not low <= number <= high:
        raise InvalidField(field, f"must be within [{low:g}, {high:g}], got {number:g}")
    return number


def _sequence(value: object, field: str, what: str = "a list") -> Sequence[Any]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidField(field, f"must be {what}, got {type(value).__name__}")
    return value


def validate(problem: SiteProblem) -> None:
    """Raise InvalidField naming the first field that breaks a rule of the model."""
    minutes = problem.slot_minutes
    if not _is_int(minutes) or not 1 <= minutes <= MAX_SLOT_MINUTES:
        raise InvalidField(
            "slot_minutes", f"must be a whole number from 1 to {MAX_SLOT_MINUTES}, got {minutes!r}"
        )
    prices = _sequence(problem.prices, "prices", "a list of numbers")
    if not prices:
        raise InvalidField("prices", "must not be empty: one price per slot")
    if len(prices) > MAX_SLOTS:
        raise InvalidField(
            "prices", f"at most {MAX_SLOTS} slots (3 weeks of 15 min), got {len(prices)}"
        )
    for t, price in enumerate(prices):
        _number(price, f"prices[{t}]", -MAX_ABS_PRICE, MAX_ABS_PRICE)
    horizon = len(prices)
    limit = problem.site_limit_kw
    if _is_real(limit):
        _number(limit, "site_limit_kw", 0.0, MAX_KW)
    else:
        limits = _sequence(limit, "site_limit_kw", "a number or a list of numbers")
        if len(limits) != horizon:
            raise InvalidField(
                "site_limit_kw",
                f"one number, or one per slot ({horizon}), got a list of {len(limits)}",
            )
        for t, value in enumerate(limits):
            _number(value, f"site_limit_kw[{t}]", 0.0, MAX_KW)
    cars = _sequence(problem.cars, "cars", "a list of cars")
    if len(cars) > MAX_CARS:
        raise InvalidField("cars", f"at most {MAX_CARS} cars, got {len(cars)}")
    seen: set[str] = set()
    car_slots = 0
    for i, car in enumerate(cars):
        where = f"cars[{i}]"
        if not isinstance(car, CarRequest):
            raise InvalidField(where, f"must be a CarRequest, got {type(car).__name__}")
        if not isinstance(car.car_id, str) or not CAR_ID_PATTERN.fullmatch(car.car_id):
            raise InvalidField(f"{where}.car_id", "must be 1 to 64 letters, digits and _ . : -")
        if car.car_id in seen:
            raise InvalidField(f"{where}.car_id", f"{car.car_id!r} appears more than once")
        seen.add(car.car_id)
        for name in ("arrive_slot", "depart_slot"):
            value = getattr(car, name)
            if not _is_int(value):
                raise InvalidField(f"{where}.{name}", f"must be a whole number, got {value!r}")
            if not 0 <= value <= horizon:
                raise InvalidField(
                    f"{where}.{name}", f"must be within the horizon [0, {horizon}], got {value}"
                )
        if car.depart_slot < car.arrive_slot:
            raise InvalidField(
                f"{where}.depart_slot",
                f"must not be before arrive_slot ({car.arrive_slot}), got {car.depart_slot}",
            )
        _number(car.energy_kwh, f"{where}.energy_kwh", 0.0, MAX_ENERGY_KWH)
        _number(car.max_kw, f"{where}.max_kw", 0.0, MAX_KW)
        car_slots += car.depart_slot - car.arrive_slot
    if car_slots > MAX_CAR_SLOTS:
        raise InvalidField(
            "cars",
            f"the presence windows add up to {car_slots} car-slots, at most {MAX_CAR_SLOTS}",
        )


# ----------------------------------------------------------------------------- solving


def goal_tolerance(energy_kwh: float) -> float:
    """How close to its goal a car must get to have met it, kWh."""
    return GOAL_TOLERANCE * max(1.0, energy_kwh)


def pieces(power_kw: Sequence[float]) -> int:
    """How many separate charging pieces (maximal runs of slots with power) a plan has."""
    count = 0
    charging = False
    for p in power_kw:
        on = p > ZERO_KW
        if on and not charging:
            count += 1
        charging = on
    return count


def _new_highs(time_limit: float | None, lp: HighsLp) -> _Highs:
    # The core class, not highspy.Highs: the wrapper installs Python callbacks in its
    # constructor, which prints HiGHS's banner to stdout before output_flag can be set.
    h = _Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    if time_limit is not None:
        h.setOptionValue("time_limit", float(time_limit))
    h.passModel(lp)
    return h


def _run(h: _Highs, stage: str) -> bool:
    """Solve; True when optimal, False when proven infeasible, else SolverError."""
    h.run()
    status = h.getModelStatus()
    if status == HighsModelStatus.kOptimal:
        return True
    # Every variable is bounded, so "unbounded or infeasible" can only be infeasible.
    if status in (HighsModelStatus.kInfeasible, HighsModelStatus.kUnboundedOrInfeasible):
        return False
    raise SolverError(f"{stage}: HiGHS stopped with {h.modelStatusToString(status)}")


@dataclass(slots=True)
class _Layout:
    """Where each car's variables are: car i owns columns start[i] .. start[i] + n[i]."""

    start: np.ndarray[Any, np.dtype[np.int64]]
    n: np.ndarray[Any, np.dtype[np.int64]]
    arrive: np.ndarray[Any, np.dtype[np.int64]]
    slot: np.ndarray[Any, np.dtype[np.int64]]  # the slot of every column
    car: np.ndarray[Any, np.dtype[np.int64]]  # the car of every column
    upper: np.ndarray[Any, np.dtype[np.float64]]  # the bound of every column

    @property
    def columns(self) -> int:
        return int(self.slot.size)


def _layout(problem: SiteProblem, limits: np.ndarray[Any, np.dtype[np.float64]]) -> _Layout:
    cars = problem.cars
    # A car that wants nothing, or cannot draw, gets no variables (its plan is all zero).
    active = [c.energy_kwh > 0 and c.max_kw > 0 and c.depart_slot > c.arrive_slot for c in cars]
    n = np.array(
        [c.depart_slot - c.arrive_slot if a else 0 for c, a in zip(cars, active, strict=True)],
        dtype=np.int64,
    )
    start = np.zeros(len(cars), dtype=np.int64)
    if len(cars) > 1:
        start[1:] = np.cumsum(n)[:-1]
    arrive = np.array([c.arrive_slot for c in cars], dtype=np.int64)
    total = int(n.sum())
    car = np.repeat(np.arange(len(cars), dtype=np.int64), n)
    slot = np.arange(total, dtype=np.int64) - np.repeat(start, n) + np.repeat(arrive, n)
    max_kw = np.array([c.max_kw for c in cars], dtype=np.float64)
    upper = np.minimum(max_kw[car], limits[slot]) if total else np.zeros(0)
    return _Layout(start=start, n=n, arrive=arrive, slot=slot, car=car, upper=upper)


def _coo_lp(
    rows: np.ndarray[Any, np.dtype[np.int64]],
    cols: np.ndarray[Any, np.dtype[np.int64]],
    cost: np.ndarray[Any, np.dtype[np.float64]],
    col_bounds: tuple[np.ndarray[Any, np.dtype[np.float64]], np.ndarray[Any, np.dtype[np.float64]]],
    row_bounds: tuple[np.ndarray[Any, np.dtype[np.float64]], np.ndarray[Any, np.dtype[np.float64]]],
) -> HighsLp:
    """A minimisation LP whose matrix has a 1 at each (row, column) pair: every row of
    the planner sums powers (a car's energy, a site's slot), so no other value occurs."""
    ncols = cost.size
    order = np.argsort(cols, kind="stable")
    starts = np.zeros(ncols + 1, dtype=np.int32)
    np.cumsum(np.bincount(cols, minlength=ncols), out=starts[1:])
    lp = HighsLp()
    lp.num_col_ = ncols
    lp.num_row_ = row_bounds[0].size
    lp.sense_ = ObjSense.kMinimize
    lp.col_cost_ = cost
    lp.col_lower_ = col_bounds[0]
    lp.col_upper_ = col_bounds[1]
    lp.row_lower_ = row_bounds[0]
    lp.row_upper_ = row_bounds[1]
    lp.a_matrix_.format_ = MatrixFormat.kColwise
    lp.a_matrix_.start_ = starts
    lp.a_matrix_.index_ = rows[order].astype(np.int32)
    lp.a_matrix_.value_ = np.ones(rows.size)
    return lp


class _Solver:
    """One problem: the energy-and-cost LP, then the smoothing LP on its optimal face.

    Rows of the first LP: one energy row per car (in kW-slots, energy / h, the unit of
    every row) and one site row per slot whose cars could exceed the limit.
    """

    def __init__(self, problem: SiteProblem, time_limit: float | None) -> None:
        self.problem = problem
        self.time_limit = time_limit
        hours = problem.slot_minutes / 60.0
        self.prices = np.array(problem.prices, dtype=np.float64)
        self.limits = np.array(problem.limits(), dtype=np.float64)
        self.layout = lay = _layout(problem, self.limits)
        self.ncars = len(problem.cars)
        self.max_kw = np.array([c.max_kw for c in problem.cars], dtype=np.float64)
        energy = np.array([c.energy_kwh for c in problem.cars], dtype=np.float64) / hours
        demand = np.bincount(lay.slot, weights=lay.upper, minlength=problem.horizon)
        self.site_slots = np.flatnonzero(demand > self.limits)
        site_row = np.full(problem.horizon, -1, dtype=np.int64)
        site_row[self.site_slots] = self.ncars + np.arange(self.site_slots.size)
        self.site_row_of_col = site_row[lay.slot]
        self.row_lower = np.zeros(self.ncars + self.site_slots.size)
        self.row_lower[self.ncars :] = -np.inf
        self.row_upper = np.concatenate([energy, self.limits[self.site_slots]])
        self.values = np.zeros(lay.columns)
        self.reduced = np.zeros(lay.columns)
        self.duals = np.zeros(self.row_lower.size)
        self.activity = np.zeros(self.row_lower.size)

    def energy_and_cost(self) -> None:
        """Stages 1 and 2 in one LP: the most energy, and of those plans the cheapest.

        Each kW-slot costs its price minus a bonus larger than every price. This LP is a
        flow (cars -> slots -> grid) whose price sits on the car-slot arcs, so every
        augmenting path costs the price of its last slot minus the bonus, which is
        negative: the optimum carries the maximum energy, and among those plans it is the
        cheapest. So the single weight is exact, not an approximation.
        """
        lay = self.layout
        ncols = lay.columns
        on_site = self.site_row_of_col >= 0
        col_index = np.arange(ncols, dtype=np.int64)
        rows = np.concatenate([lay.car, self.site_row_of_col[on_site]])
        cols = np.concatenate([col_index, col_index[on_site]])
        bonus = float(self.prices.max()) + max(1.0, float(np.abs(self.prices).max()))
        h = _new_highs(
            self.time_limit,
            _coo_lp(
                rows,
                cols,
                self.prices[lay.slot] - bonus,
                (np.zeros(ncols), lay.upper),
                (self.row_lower, self.row_upper),
            ),
        )
        if not _run(h, "energy and cost"):
            raise SolverError("energy and cost: HiGHS found no plan, yet 0 kW is one")
        solution = h.getSolution()
        self.values = np.clip(np.asarray(solution.col_value, dtype=np.float64), 0.0, lay.upper)
        self.reduced = np.asarray(solution.col_dual, dtype=np.float64)
        self.duals = np.asarray(solution.row_dual, dtype=np.float64)
        self.activity = np.asarray(solution.row_value, dtype=np.float64)

    def smooth(self) -> bool:
        """Stage 3: among the plans exactly as good as stage 2's, charge early and in one go.

        The optimal plans of stage 2 are exactly its feasible plans complementary to its
        dual solution: a column with a reduced cost stays at its bound, a row with a dual
        stays tight. Those columns become constants; the LP of this stage holds only the
        columns that can still move and their rows, so no energy and no cost can be
        traded. Its objective, sum of ((t - arrive) / horizon)^2 * p / max_kw, makes a
        car alone charge in one block from its arrival, and cars sharing a limit take
        turns in order of arrival instead of interleaving.
        """
        lay = self.layout
        ncars = self.ncars
        x = self.values
        tol = DUAL_TOLERANCE * max(1.0, float(np.abs(self.prices).max()))
        free = np.abs(self.reduced) <= tol
        nfree = int(free.sum())
        if nfree == 0:
            return False
        const = np.where(free, 0.0, np.where(x > lay.upper / 2, lay.upper, 0.0))
        lower = self.row_lower.copy()
        upper = self.row_upper.copy()
        tight = np.abs(self.duals) > tol
        at_upper = np.abs(self.activity - upper) <= np.abs(self.activity - lower)
        level = np.where(at_upper, upper, lower)
        lower[tight] = level[tight]
        upper[tight] = level[tight]
        # The constant columns' share of every row moves into the row's bounds.
        on_site = self.site_row_of_col >= 0
        fixed = np.bincount(lay.car, weights=const, minlength=ncars)
        fixed_site = np.bincount(
            self.site_row_of_col[on_site] - ncars,
            weights=const[on_site],
            minlength=self.site_slots.size,
        )
        fixed = np.concatenate([fixed, fixed_site])
        lower -= fixed
        upper -= fixed
        # Only rows that still hold a free column, renumbered; free columns renumbered.
        site_free = free & on_site
        used = np.zeros(lower.size, dtype=bool)
        used[lay.car[free]] = True
        used[self.site_row_of_col[site_free]] = True
        row_new = np.cumsum(used) - 1
        col_new = np.cumsum(free) - 1
        rows = np.concatenate([row_new[lay.car[free]], row_new[self.site_row_of_col[site_free]]])
        cols = np.concatenate([col_new[free], col_new[site_free]])
        horizon = max(1, self.problem.horizon)
        offset = (lay.slot - lay.arrive[lay.car]) / horizon
        preference = offset * offset / self.max_kw[lay.car]
        h = _new_highs(
            self.time_limit,
            _coo_lp(
                rows,
                cols,
                preference[free],
                (np.zeros(nfree), lay.upper[free]),
                (lower[used], upper[used]),
            ),
        )
        if not _run(h, "smoothing"):
            return False
        moved = np.asarray(h.getSolution().col_value, dtype=np.float64)
        const[free] = moved
        self.values = np.clip(const, 0.0, lay.upper)
        return True


def _near(
    sums: np.ndarray[Any, np.dtype[np.float64]], bounds: np.ndarray[Any, np.dtype[np.float64]]
) -> list[int]:
    """Lines whose sum may be over their bound: numpy's (pairwise) sum of at most a few
    thousand non-negative numbers is within 1e-12 (relative) of the exact sum."""
    return np.flatnonzero(sums > bounds - 1e-12 * np.maximum(1.0, sums)).tolist()


def _fit(values: list[float], bound: float) -> list[float]:
    """values, with one lowered just enough that their exact sum (math.fsum) and their
    sum in order (sum()) are within bound. The excess is LP noise (~1e-9): the value
    lowered is the least round one (the largest among equally round), so the others keep
    their round figures."""

    def within(candidate: list[float]) -> bool:
        return math.fsum(candidate) <= bound and sum(candidate) <= bound

    if within(values):
        return values
    fitted = list(values)
    k = max(range(len(fitted)), key=lambda j: (abs(fitted[j] - round(fitted[j], 6)), fitted[j]))
    fitted[k] = max(0.0, fitted[k] - (math.fsum(fitted) - bound))
    while not within(fitted):
        if fitted[k] == 0.0:  # more than noise after all: scale the whole line down
            total = math.fsum(values)
            return _fit([v * (bound / total) * (1.0 - 1e-15) for v in values], bound)
        fitted[k] = math.nextafter(fitted[k], 0.0)
    return fitted


def _plan(problem: SiteProblem, solver: _Solver | None, started: float) -> SitePlan:
    horizon = problem.horizon
    ncars = len(problem.cars)
    hours = problem.slot_minutes / 60.0
    limits = problem.limits()
    matrix = np.zeros((ncars, horizon))
    if solver is not None and solver.layout.columns:
        lay = solver.layout
        # Round the LP's noise off (11 kW, not 10.99999999998), never above a bound.
        values = np.minimum(np.round(solver.values, POWER_DECIMALS), lay.upper)
        values[values < ZERO_KW] = 0.0
        matrix[lay.car, lay.slot] = values
    # Each slot within its limit exactly (numpy's sum finds the few slots that need the
    # exact check). A car's energy may end a few ulps past its goal: round figures
    # (11 kW) rarely add up to a goal like 37.27 kWh exactly in binary, and the grid
    # limit is the bound that matters.
    bounds = np.array(limits, dtype=np.float64)
    for t in _near(matrix.sum(axis=0), bounds):
        matrix[:, t] = _fit(matrix[:, t].tolist(), float(bounds[t]))
    power = matrix.tolist()
    site_kw = [math.fsum(column) for column in matrix.T.tolist()]
    plans: list[CarPlan] = []
    for car, row in zip(problem.cars, power, strict=True):
        delivered = math.fsum(row) * hours
        short = car.energy_kwh - delivered
        window_kwh = car.max_kw * (car.depart_slot - car.arrive_slot) * hours
        tolerance = goal_tolerance(car.energy_kwh)
        reason = ""
        if short <= tolerance:
            short = 0.0
        elif window_kwh < car.energy_kwh - tolerance:
            reason = WINDOW_TOO_SHORT
        else:
            reason = SITE_LIMIT
        plans.append(CarPlan(car.car_id, row, delivered, short, reason))
    cost = math.fsum(p * kw * hours for p, kw in zip(problem.prices, site_kw, strict=True))
    return SitePlan(
        feasible=all(not p.reason for p in plans),
        cost=cost,
        site_kw=site_kw,
        cars=plans,
        solve_seconds=time.perf_counter() - started,
    )


def solve(
    problem: SiteProblem, *, smooth: bool = True, time_limit_seconds: float | None = None
) -> SitePlan:
    """The joint plan of a site: the most energy, then the cheapest, then the smoothest.

    Raises InvalidField for a problem that breaks a rule (see validate), and SolverError
    when HiGHS stops short of an optimal plan (e.g. at time_limit_seconds, which applies
    to each of the two LPs). A smoothing LP that does not finish keeps the cheapest plan,
    which is only more fragmented. ``smooth=False`` skips the smoothing stage.
    """
    started = time.perf_counter()
    validate(problem)
    solver = _Solver(problem, time_limit_seconds)
    if solver.layout.columns == 0:
        return _plan(problem, None, started)
    solver.energy_and_cost()
    if smooth:
        try:
            solver.smooth()
        except SolverError:
            pass  # keep the cheapest plan
    return _plan(problem, solver, started)

"""Replayed charging days for `python -m bench planner`: the clock, the sites, the strategies.

Everything here is pure (no I/O): a seeded day is a list of sessions on a simulated clock
over the grid's tariff (greenlane.grid.tariff), and every strategy turns the same day into
a power matrix (kW per session per slot) that the same metrics score. acnportal's
algorithms run through its own simulator (bench/planner_acn.py); the rest is here:

- uncontrolled: every car at full power from its arrival until its goal, the site limit
  enforced first come, first served;
- per-car cheapest (evcc's approach): every slot, each car alone picks the cheapest slots
  left before its departure for the energy it still needs, at its full power; the site
  limit is enforced at run time by sharing it equally (water-filling) among the cars that
  want power, as a circuit's load balancing does;
- GreenLane online: greenlane.planner.model re-plans the site whenever a car arrives or
  leaves, knowing only the cars present, and the current slot of the plan is committed;
- offline optimum: one LP over the whole day, every session known in advance.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from greenlane.grid.tariff import price_at, tariff_zone
from greenlane.planner.model import CarRequest, SiteProblem, goal_tolerance, solve

SLOT_MINUTES: Final = 15
SLOTS: Final = 96  # one day of 15-minute slots
# A session whose shortfall is at most this has met its goal, for every strategy alike
# (acnportal's own `proportion_of_demands_met` uses the same 0.1 kWh).
GOAL_MET_KWH: Final = 0.1
# A slot is over its limit when the site draws more than this, relative: floating-point
# sums of a few hundred powers are exact to ~1e-13; acnportal's own feasibility check
# allows 1e-7 relative (and 1e-5 A).
LIMIT_TOLERANCE: Final = 1e-6
# The first day replayed (a Monday, a week after the US fall-back change, so no day of a
# default run crosses a daylight-saving change); day k is FIRST_DAY + k days.
FIRST_DAY: Final = datetime(2026, 11, 9)


# ----------------------------------------------------------------------------- the clock


@dataclass(frozen=True, slots=True)
class ReplayClock:
    """A simulated clock of equal slots from `start` (an aware instant)."""

    start: datetime
    slot_minutes: int = SLOT_MINUTES

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError("start: must include a UTC offset")
        if self.slot_minutes < 1:
            raise ValueError(f"slot_minutes: must be at least 1, got {self.slot_minutes}")

    @property
    def slot(self) -> timedelta:
        """The length of one slot."""
        return timedelta(minutes=self.slot_minutes)

    @property
    def hours(self) -> float:
        """The length of one slot in hours."""
        return self.slot_minutes / 60.0

    def at(self, slot: int) -> datetime:
        """The instant slot `slot` begins (UTC)."""
        return (self.start + slot * self.slot).astimezone(UTC)

    def slot_of(self, instant: datetime) -> int:
        """The slot an instant falls in (floor): a car leaving then has left by its start."""
        return math.floor((instant - self.start) / self.slot)

    def slot_from(self, instant: datetime) -> int:
        """The first slot that begins at or after an instant (ceiling): a car arriving
        then is plugged in for the whole of it."""
        return math.ceil((instant - self.start) / self.slot)

    def prices(self, slots: int, zone: ZoneInfo | None = None) -> list[float]:
        """The grid tariff's price ($/kWh) at the start of each slot, as the pricing worker
        prices energy at the instant it is drawn."""
        return [price_at(self.at(t), zone).price_per_kwh for t in range(slots)]


def local_time(day: datetime, zone: ZoneInfo, hour: float = 12.0) -> datetime:
    """The aware instant of a local wall-clock hour on a (naive) calendar day."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=zone)
    return (midnight + timedelta(hours=hour)).astimezone(UTC)


# ----------------------------------------------------------------------------- power and current


def kw_to_amps(kw: float, volts: float) -> float:
    """The current (A) of a power (kW) at a voltage: I = P / V.

    acnportal's network is modelled single-phase at one voltage for every EVSE, phase
    angle 0: its site constraint (the magnitude of the sum of the currents) is then the
    plain sum of the currents, and kW = A x V / 1000 holds exactly for every EVSE and for
    the site. The voltage cancels out of every comparison.
    """
    if volts <= 0:
        raise ValueError(f"volts: must be positive, got {volts}")
    return kw * 1000.0 / volts


def amps_to_kw(amps: float, volts: float) -> float:
    """The power (kW) of a current (A) at a voltage: P = I x V."""
    if volts <= 0:
        raise ValueError(f"volts: must be positive, got {volts}")
    return amps * volts / 1000.0


# ----------------------------------------------------------------------------- sessions and days


@dataclass(frozen=True, slots=True)
class Session:
    """One car's stay at a connector: present from arrive_slot up to, not including,
    depart_slot, wanting energy_kwh at up to max_kw (the smaller of car and connector)."""

    car_id: str
    connector: str
    arrive_slot: int
    depart_slot: int
    energy_kwh: float
    max_kw: float
    pack_kwh: float
    start_kwh: float  # in the battery on arrival; start_kwh + energy_kwh <= pack_kwh


@dataclass(frozen=True, slots=True)
class Day:
    """A replayed day at one site: the same for every strategy."""

    site: str
    index: int
    clock: ReplayClock
    slots: int
    limit_kw: float
    connectors_kw: float  # the sum of the connectors' maxima
    prices: tuple[float, ...]
    sessions: tuple[Session, ...]  # in order of arrival

    @property
    def hours(self) -> float:
        return self.clock.hours


def _session(
    car_id: str,
    connector: str,
    clock: ReplayClock,
    arrive: datetime,
    depart: datetime,
    pack_kwh: float,
    soc: float,
    target: float,
    max_kw: float,
    slots: int,
) -> Session | None:
    """A session on whole slots, or None when the stay covers no whole slot."""
    a = max(0, clock.slot_from(arrive))
    d = min(slots, clock.slot_of(depart))
    if d <= a:
        return None
    start = round(soc * pack_kwh, 2)
    energy = round(max(0.0, target * pack_kwh - start), 2)  # start + energy <= the pack
    return Session(car_id, connector, a, d, energy, max_kw, pack_kwh, start)


def depot_day(index: int, seed: int = 1, zone: ZoneInfo | None = None) -> Day:
    """A delivery depot, noon to noon: 60 vans on 60 connectors of 11 kW (660 kW in all)
    behind a 230 kW grid connection.

    About 9 in 10 vans come back each evening, around 18:00 (normal, sd 1 h, 15:30-22:30)
    and leave around 07:00 (sd 45 min, 05:00-09:00); packs of 60-90 kWh arrive at
    10-60 % and charge to 80 % (one in five to 100 %); four in five vans draw 11 kW, the
    rest 7.4 kW (single-phase on-board chargers).
    """
    zone = zone or tariff_zone()
    rng = random.Random(f"depot-{seed}-{index}")
    day = FIRST_DAY + timedelta(days=index)
    clock = ReplayClock(local_time(day, zone))
    sessions: list[tuple[datetime, Session]] = []
    for van in range(60):
        if rng.random() >= 0.9:
            continue
        back = min(22.5, max(15.5, rng.gauss(18.0, 1.0)))
        leave = min(9.0, max(5.0, rng.gauss(7.0, 0.75)))
        arrive = local_time(day, zone, back)
        depart = local_time(day + timedelta(days=1), zone, leave)
        pack = rng.choice([60.0, 68.0, 75.0, 81.0, 90.0])
        soc = rng.uniform(0.10, 0.60)
        target = 1.0 if rng.random() < 0.2 else 0.8
        max_kw = 11.0 if rng.random() < 0.8 else 7.4
        s = _session(
            f"van-{van:02d}", f"d{van:02d}", clock, arrive, depart, pack, soc, target, max_kw, SLOTS
        )
        if s is not None:
            sessions.append((arrive, s))
    sessions.sort(key=lambda item: (item[0], item[1].car_id))
    return Day(
        site="depot",
        index=index,
        clock=clock,
        slots=SLOTS,
        limit_kw=230.0,
        connectors_kw=660.0,
        prices=tuple(clock.prices(SLOTS, zone)),
        sessions=tuple(s for _, s in sessions),
    )


# The daytime site's arrivals per hour by local hour (a city hub: taxis, ride-hailing,
# shoppers), peaking late morning and late afternoon.
DAYTIME_ARRIVALS_PER_HOUR: Final = {
    6: 3, 7: 6, 8: 8, 9: 9, 10: 10, 11: 10, 12: 9, 13: 9, 14: 9,
    15: 10, 16: 11, 17: 11, 18: 9, 19: 7, 20: 5,
}  # fmt: skip


def daytime_day(index: int, seed: int = 1, zone: ZoneInfo | None = None) -> Day:
    """A busy city hub, 04:00 to 04:00: 12 AC connectors of 22 kW and 6 DC
    connectors of 150 kW (1,164 kW in all) behind a 250 kW grid connection, the kind of
    constrained connection load management exists for: uncontrolled, the site reaches
    its limit in the busy hours when several DC stops overlap (about 7 slots a day).

    Cars arrive 06:00-21:00 (Poisson, 3-11 an hour); 35 % want DC: stops of 25-60 min,
    cars of 50-150 kW, 20-60 % to 80 %; the rest AC: stops of 1-4 h, cars of 11 or
    22 kW, 30-70 % to 80-100 %. Packs of 50-90 kWh. A car finding every connector of its
    kind taken goes elsewhere (it is not a session). Short stops cannot always take what
    they want: those goals are infeasible for every strategy.
    """
    zone = zone or tariff_zone()
    rng = random.Random(f"daytime-{seed}-{index}")
    day = FIRST_DAY + timedelta(days=index)
    clock = ReplayClock(local_time(day, zone, 4.0))
    free_at = {f"ac{i:02d}": 0.0 for i in range(12)} | {f"dc{i}": 0.0 for i in range(6)}
    sessions: list[Session] = []
    n = 0
    for hour, rate in DAYTIME_ARRIVALS_PER_HOUR.items():
        t = float(hour)
        while True:
            t += rng.expovariate(rate)
            if t >= hour + 1:
                break
            dc = rng.random() < 0.35
            if dc:
                stay = rng.uniform(25, 60) / 60
                max_kw = rng.choice([50.0, 100.0, 150.0])
                soc, target = rng.uniform(0.2, 0.6), 0.8
            else:
                stay = rng.uniform(1.0, 4.0)
                max_kw = rng.choice([11.0, 11.0, 22.0])
                soc, target = rng.uniform(0.3, 0.7), rng.choice([0.8, 0.8, 0.9, 1.0])
            pack = rng.choice([50.0, 60.0, 75.0, 82.0, 90.0])
            kind = "dc" if dc else "ac"
            free = [c for c, until in free_at.items() if c.startswith(kind) and until <= t]
            if not free:
                continue  # every connector of its kind taken: the car goes elsewhere
            connector = free[0]
            free_at[connector] = t + stay
            n += 1
            s = _session(
                f"car-{n:03d}",
                connector,
                clock,
                local_time(day, zone, t),
                local_time(day, zone, t + stay),
                pack,
                soc,
                target,
                max_kw,
                SLOTS,
            )
            if s is not None:
                sessions.append(s)
    return Day(
        site="daytime",
        index=index,
        clock=clock,
        slots=SLOTS,
        limit_kw=250.0,
        connectors_kw=12 * 22.0 + 6 * 150.0,
        prices=tuple(clock.prices(SLOTS, zone)),
        sessions=tuple(sessions),
    )


SITES: Final[dict[str, Callable[[int, int], Day]]] = {
    "depot": lambda index, seed: depot_day(index, seed),
    "daytime": lambda index, seed: daytime_day(index, seed),
}


# ----------------------------------------------------------------------------- strategies


@dataclass(slots=True)
class Replay:
    """What a strategy did with a day: kW per session per slot, and how long each of its
    decisions (a re-plan, a slot's allocation) took."""

    power: list[list[float]]
    decision_seconds: list[float] = field(default_factory=list)


def _present(s: Session, t: int) -> bool:
    return s.arrive_slot <= t < s.depart_slot


def _new_power(day: Day) -> list[list[float]]:
    return [[0.0] * day.slots for _ in day.sessions]


def fcfs_allocate(wants: Sequence[float], limit_kw: float) -> list[float]:
    """First come, first served: in order, each gets what it wants of what is left."""
    left = limit_kw
    out = []
    for want in wants:
        p = max(0.0, min(want, left))
        out.append(p)
        left -= p
    return _within(out, limit_kw)


def equal_share(wants: Sequence[float], limit_kw: float) -> list[float]:
    """Share a limit equally (max-min fair): nobody gets more than they want, and the
    rest is split evenly among the others (water-filling)."""
    order = sorted(range(len(wants)), key=lambda i: wants[i])
    out = [0.0] * len(wants)
    left = limit_kw
    for k, i in enumerate(order):
        p = max(0.0, min(wants[i], left / (len(order) - k)))
        out[i] = p
        left -= p
    return _within(out, limit_kw)


def _within(powers: list[float], limit_kw: float) -> list[float]:
    """Powers whose sum is within the limit also in floating point (the running
    subtraction can leave the sum an ulp above it)."""
    while sum(powers) > limit_kw:
        k = max(range(len(powers)), key=powers.__getitem__)
        powers[k] = math.nextafter(powers[k], 0.0)
    return powers


def _slot_by_slot(
    day: Day,
    want: Callable[[int, int, float], float],
    allocate: Callable[[list[float], float], list[float]],
) -> Replay:
    """Each slot, every car present with energy left asks for want(t, session, kWh left)
    and allocate shares the site's limit among the asks, in order of arrival."""
    h = day.hours
    power = _new_power(day)
    left = [s.energy_kwh for s in day.sessions]
    times = []
    for t in range(day.slots):
        started = time.perf_counter()
        # Sessions are in order of arrival.
        here = [i for i, s in enumerate(day.sessions) if _present(s, t) and left[i] > 0]
        wants = [want(t, i, left[i]) for i in here]
        for i, p in zip(here, allocate(wants, day.limit_kw), strict=True):
            power[i][t] = p
            left[i] -= p * h
        times.append(time.perf_counter() - started)
    return Replay(power, times)


def uncontrolled(day: Day) -> Replay:
    """Full power from arrival until the goal; the limit goes first come, first served."""
    return _slot_by_slot(
        day, lambda t, i, left: min(day.sessions[i].max_kw, left / day.hours), fcfs_allocate
    )


def cheapest_slots(
    prices: Sequence[float], first: int, end: int, energy_kwh: float, max_kw: float, hours: float
) -> dict[int, float]:
    """One car alone: the cheapest slots in [first, end) for energy_kwh at max_kw (the
    last one partly), cheapest first, the earlier of two equal prices first."""
    plan: dict[int, float] = {}
    left = energy_kwh
    for t in sorted(range(first, end), key=lambda t: (prices[t], t)):
        if left <= 0:
            break
        p = min(max_kw, left / hours)
        plan[t] = p
        left -= p * hours
    return plan


def per_car_cheapest(day: Day) -> Replay:
    """evcc's approach: each car re-plans alone every slot; the limit is shared at run time."""

    def want(t: int, i: int, left: float) -> float:
        s = day.sessions[i]
        return cheapest_slots(day.prices, t, s.depart_slot, left, s.max_kw, day.hours).get(t, 0.0)

    return _slot_by_slot(day, want, equal_share)


def greenlane_online(day: Day) -> Replay:
    """The planner re-plans the cars present whenever one arrives or leaves; the current
    slot of the latest plan is what the site draws."""
    h = day.hours
    power = _new_power(day)
    left = [s.energy_kwh for s in day.sessions]
    times = []
    plan: dict[int, list[float]] = {}  # session -> kW per slot from plan_start
    plan_start = 0
    events = {s.arrive_slot for s in day.sessions} | {s.depart_slot for s in day.sessions}
    for t in range(day.slots):
        if t in events:
            here = [
                i
                for i, s in enumerate(day.sessions)
                if _present(s, t) and left[i] > goal_tolerance(s.energy_kwh)
            ]
            plan, plan_start = {}, t
            if here:
                horizon = max(day.sessions[i].depart_slot for i in here) - t
                problem = SiteProblem(
                    slot_minutes=day.clock.slot_minutes,
                    prices=day.prices[t : t + horizon],
                    site_limit_kw=day.limit_kw,
                    cars=[
                        CarRequest(
                            day.sessions[i].car_id,
                            0,
                            day.sessions[i].depart_slot - t,
                            max(0.0, left[i]),
                            day.sessions[i].max_kw,
                        )
                        for i in here
                    ],
                )
                site_plan = solve(problem)
                times.append(site_plan.solve_seconds)
                plan = {i: c.power_kw for i, c in zip(here, site_plan.cars, strict=True)}
        for i, row in plan.items():
            p = row[t - plan_start] if t - plan_start < len(row) else 0.0
            power[i][t] = p
            left[i] -= p * h
    return Replay(power, times)


def offline_optimum(day: Day) -> Replay:
    """One LP over the whole day, every session known in advance (hindsight)."""
    problem = SiteProblem(
        slot_minutes=day.clock.slot_minutes,
        prices=list(day.prices),
        site_limit_kw=day.limit_kw,
        cars=[
            CarRequest(s.car_id, s.arrive_slot, s.depart_slot, s.energy_kwh, s.max_kw)
            for s in day.sessions
        ],
    )
    plan = solve(problem)
    return Replay([c.power_kw for c in plan.cars], [plan.solve_seconds])


# ----------------------------------------------------------------------------- scoring


@dataclass(frozen=True, slots=True)
class Score:
    """One strategy on one or more days: the figures of the benchmark's table."""

    sessions: int
    requested_kwh: float
    delivered_kwh: float
    goals_met: int
    cost: float
    peak_kw: float
    limit_kw: float  # the site limit (the largest, over several days)
    violations: int  # slots above the site limit
    outside_window: int  # sessions drawing power while not present (must be 0)
    over_max_kw: int  # sessions above their max_kw in some slot (must be 0)
    decision_seconds: tuple[float, ...]

    @property
    def energy_share(self) -> float:
        return self.delivered_kwh / self.requested_kwh if self.requested_kwh else 1.0

    @property
    def goals_met_share(self) -> float:
        return self.goals_met / self.sessions if self.sessions else 1.0

    @property
    def cost_per_kwh(self) -> float:
        return self.cost / self.delivered_kwh if self.delivered_kwh else 0.0

    def __add__(self, other: Score) -> Score:
        return Score(
            sessions=self.sessions + other.sessions,
            requested_kwh=self.requested_kwh + other.requested_kwh,
            delivered_kwh=self.delivered_kwh + other.delivered_kwh,
            goals_met=self.goals_met + other.goals_met,
            cost=self.cost + other.cost,
            peak_kw=max(self.peak_kw, other.peak_kw),
            limit_kw=max(self.limit_kw, other.limit_kw),
            violations=self.violations + other.violations,
            outside_window=self.outside_window + other.outside_window,
            over_max_kw=self.over_max_kw + other.over_max_kw,
            decision_seconds=self.decision_seconds + other.decision_seconds,
        )


EMPTY_SCORE: Final = Score(0, 0.0, 0.0, 0, 0.0, 0.0, 0.0, 0, 0, 0, ())


def score(day: Day, replay: Replay) -> Score:
    """Score a day's power matrix: energy and cost at the day's prices, the limit, the goals."""
    h = day.hours
    if len(replay.power) != len(day.sessions):
        raise ValueError(
            f"power: one row per session ({len(day.sessions)}), got {len(replay.power)}"
        )
    site = [math.fsum(row[t] for row in replay.power) for t in range(day.slots)]
    delivered = [math.fsum(row) * h for row in replay.power]
    tolerance = LIMIT_TOLERANCE * day.limit_kw
    outside = sum(
        any(p > 0 and not _present(s, t) for t, p in enumerate(row))
        for s, row in zip(day.sessions, replay.power, strict=True)
    )
    over = sum(
        max(row) > s.max_kw * (1 + LIMIT_TOLERANCE)
        for s, row in zip(day.sessions, replay.power, strict=True)
    )
    return Score(
        sessions=len(day.sessions),
        requested_kwh=math.fsum(s.energy_kwh for s in day.sessions),
        delivered_kwh=math.fsum(delivered),
        goals_met=sum(
            s.energy_kwh - d <= GOAL_MET_KWH for s, d in zip(day.sessions, delivered, strict=True)
        ),
        cost=math.fsum(p * kw * h for p, kw in zip(day.prices, site, strict=True)),
        peak_kw=max(site, default=0.0),
        limit_kw=day.limit_kw,
        violations=sum(kw > day.limit_kw + tolerance for kw in site),
        outside_window=outside,
        over_max_kw=over,
        decision_seconds=tuple(replay.decision_seconds),
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile by the nearest-rank method (with fewer than 100 values, p99 is the
    largest)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

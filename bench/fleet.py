"""`python -m bench fleet [--json] [--cars N] [--seed S]`: the two booking policies on one
simulated day of one seeded fleet (docs/prediction.md#the-benchmark).

The same cars (car models, routines, starting batteries, the noise of every drain: one
random stream per car, drawn in the same order under both policies), the same stations
and sites, minute by minute for 24 h, run twice:

- `threshold`: the rule before issue 15: a car books below 20 %, at the nearest free
  station (within the search radius), pays the grid's tariff;
- `predictive`: the rule of greenlane.ingestion.desk: every car's drain is learned online
  (greenlane.core.drain), a car books when its predicted reach at 30 min, minus the
  margin, no longer covers the way to the nearest free station (20 % stays a floor), at
  the free station within its range that costs it least (greenlane.core.demand: detour,
  demand price, expected wait), and pays the tariff times its site's demand factor.

Both use the real booking semantics (book.lua): a station takes bookings while its live
bookings are under its capacity; a booking ends when the car arrives (or expires); a car
that arrives queues for a free connector. Sites share their grid limit among the cars
charging there. Pure Python, no server: the figures do not depend on the machine's load
(only the run time does).

Figures: cars stranded (battery at 0 %, or under 5 % with no booking; counted once per
car), NO_CAPACITY answers, mean detour (km driven to the booked station), mean wait at
the station (arrival to plug-in), peak site load against its limit (what the cars
plugged in and booked there ask for), fleet energy cost, and the predictor's mean
absolute error at 30 minutes against the naive last-rate baseline.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

from rich.console import Console
from rich.table import Table

from greenlane.core.demand import (
    BookingWeights,
    SiteLoad,
    booking_cost,
    demand_factor,
    expected_wait_minutes,
)
from greenlane.core.drain import DrainModel, Prediction, naive_battery_at
from greenlane.grid.tariff import price_at_hour
from greenlane.simulator.consumption import CAR_MODELS, CarModel, drain_percent

console = Console()

STEP_S: Final = 60.0
DAY_STEPS: Final = 24 * 60
SIZE_KM: Final = 60.0  # the region: a square of a metropolitan area
THRESHOLD: Final = 20.0
MARGIN_KM: Final = 2.0
HORIZON_STEPS: Final = 30  # the prediction horizon, 30 minutes
# The search radius (GREENLANE_BOOKING_MAX_RADIUS_KM, 5 km by default): the threshold rule
# searches this far; the predictive desk searches as far as the car's predicted range
# (minus the margin), at least this and at most REACH_KM (GREENLANE_BOOKING_MAX_REACH_KM).
SEARCH_KM: Final = 5.0
REACH_KM: Final = 30.0
CANDIDATES: Final = 10
BOOKING_TTL_STEPS: Final = 45
TARGET: Final = 80.0  # a car charges to this, then drives on
APPROACH_KMH: Final = 50.0  # at most, on the way to a station
STRANDED_LOW: Final = 5.0
# A car reports its battery with the noise of its state-of-charge estimate (sd, points of
# battery %): what ingestion sees, and so what both the model and the naive rate learn from.
SENSOR_SD: Final = 0.25
# Speed regimes (km/h, mean and sd) and how a car's routine weighs them.
REGIMES: Final = ((25.0, 6.0), (50.0, 8.0), (95.0, 10.0), (0.0, 0.0))
ROUTINES: Final = (
    ("city", (0.45, 0.15, 0.00, 0.40)),
    ("courier", (0.35, 0.35, 0.05, 0.25)),
    ("highway", (0.15, 0.25, 0.40, 0.20)),
)
REGIME_MINUTES: Final = (30, 90)


@dataclass(frozen=True, slots=True)
class Station:
    station_id: str
    site_id: str
    x: float
    y: float
    capacity: int
    power_kw: float


@dataclass(frozen=True, slots=True)
class Site:
    site_id: str
    limit_kw: float


@dataclass
class World:
    stations: list[Station]
    sites: dict[str, Site]


def make_world(rng: random.Random) -> World:
    """12 sites on a jittered 4 x 3 grid, 2 or 3 stations each, scarce connectors and
    grid limits that cannot run every connector at once."""
    stations: list[Station] = []
    sites: dict[str, Site] = {}
    for i in range(4):
        for j in range(3):
            site_id = f"site-{i}{j}"
            cx = (i + 0.5) * SIZE_KM / 4 + rng.uniform(-4, 4)
            cy = (j + 0.5) * SIZE_KM / 3 + rng.uniform(-4, 4)
            total_kw = 0.0
            for k in range(rng.choice((3, 4))):
                power = rng.choice((50.0, 150.0))
                capacity = rng.choice((3, 4, 5))
                total_kw += power * capacity
                stations.append(
                    Station(
                        f"{site_id}-{k}",
                        site_id,
                        cx + rng.uniform(-1, 1),
                        cy + rng.uniform(-1, 1),
                        capacity,
                        power,
                    )
                )
            sites[site_id] = Site(site_id, round(total_kw * rng.uniform(0.4, 0.7), -1))
    return World(stations, sites)


@dataclass
class Car:
    car_id: str
    model: CarModel
    weights: tuple[float, ...]
    rng: random.Random
    x: float
    y: float
    heading: float
    battery: float
    regime: int = 0
    regime_left: int = 0
    speed: float = 0.0
    mode: str = "driving"  # driving, to_station, queued, charging, stranded
    booking: Station | None = None
    booked_at: int = 0
    detour_km: float = 0.0
    arrived_at: int = 0
    station: Station | None = None
    model_drain: DrainModel = field(default_factory=DrainModel)
    checks: deque[tuple[int, float, float]] = field(default_factory=deque)
    previous: tuple[float, int] | None = None
    low_unbooked: bool = False
    empty: bool = False
    reported: float = 0.0  # the battery the car's last status said


def make_cars(n: int, seed: int) -> list[Car]:
    rng = random.Random(seed)
    cars = []
    for i in range(n):
        name, weights = ROUTINES[i % len(ROUTINES)]
        cars.append(
            Car(
                car_id=f"car-{i:05d}",
                model=CAR_MODELS[rng.randrange(len(CAR_MODELS))],
                weights=weights,
                rng=random.Random(rng.getrandbits(64)),
                x=rng.uniform(0, SIZE_KM),
                y=rng.uniform(0, SIZE_KM),
                heading=rng.uniform(0, 2 * math.pi),
                battery=rng.uniform(25.0, 100.0),
            )
        )
    return cars


@dataclass
class Result:
    policy: str
    cars: int
    stranded: int = 0
    empty: int = 0  # of them, cars whose battery reached 0 %
    no_capacity: int = 0
    bookings: int = 0
    bookings_ahead: int = 0
    expired: int = 0
    detours: list[float] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    peak_demand: float = 0.0  # the highest (plugged + booked kW) / limit of any site
    peak_site: str = ""
    over_limit_site_minutes: int = 0
    energy_kwh: float = 0.0
    cost: float = 0.0
    errors_model: list[float] = field(default_factory=list)
    errors_naive: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def figures(self) -> dict[str, Any]:
        def mean(xs: list[float]) -> float:
            return round(sum(xs) / len(xs), 3) if xs else 0.0

        return {
            "policy": self.policy,
            "cars": self.cars,
            "stranded": self.stranded,
            "stranded_at_zero": self.empty,
            "no_capacity": self.no_capacity,
            "bookings": self.bookings,
            "bookings_ahead_of_floor": self.bookings_ahead,
            "bookings_expired": self.expired,
            "mean_detour_km": mean(self.detours),
            "mean_wait_minutes": mean(self.waits),
            "peak_site_load_vs_limit": round(self.peak_demand, 3),
            "peak_site": self.peak_site,
            "site_minutes_over_limit": self.over_limit_site_minutes,
            "energy_kwh": round(self.energy_kwh, 1),
            "energy_cost_usd": round(self.cost, 2),
            "mae_30min_model": mean(self.errors_model) if self.errors_model else None,
            "mae_30min_naive": mean(self.errors_naive) if self.errors_naive else None,
            "seconds": round(self.seconds, 1),
        }


def _distance(car: Car, s: Station) -> float:
    return math.hypot(car.x - s.x, car.y - s.y)


class Simulation:
    """One policy over one day; both policies draw the same random numbers per car."""

    def __init__(
        self, policy: str, cars: list[Car], world: World, radius_km: float = SEARCH_KM
    ) -> None:
        self.policy = policy
        self.radius_km = radius_km
        self.cars = cars
        self.world = world
        self.result = Result(policy, len(cars))
        self.live: dict[str, dict[str, int]] = {s.station_id: {} for s in world.stations}
        self.plugged: dict[str, list[Car]] = {s.station_id: [] for s in world.stations}
        self.queue: dict[str, deque[Car]] = {s.station_id: deque() for s in world.stations}
        self.weights = BookingWeights()
        self.loads: dict[str, SiteLoad] = {}

    # ----------------------------------------------------------------- demand

    def snapshot(self, step: int) -> None:
        """Every site's load now (what the planner records): plugged and booked kW."""
        plugged = dict.fromkeys(self.world.sites, 0.0)
        booked = dict.fromkeys(self.world.sites, 0.0)
        for s in self.world.stations:
            plugged[s.site_id] += s.power_kw * len(self.plugged[s.station_id])
            booked[s.site_id] += s.power_kw * len(self.live[s.station_id])
        for site in self.world.sites.values():
            load = SiteLoad(
                site.site_id,
                step * 60_000,
                plugged[site.site_id],
                booked[site.site_id],
                site.limit_kw,
            )
            self.loads[site.site_id] = load
            if load.demand > self.result.peak_demand:
                self.result.peak_demand, self.result.peak_site = load.demand, site.site_id

    def factor(self, station: Station) -> float:
        if self.policy != "predictive":
            return 1.0
        return demand_factor(self.loads.get(station.site_id))

    # ----------------------------------------------------------------- booking

    def _free(self, s: Station, step: int) -> bool:
        bookings = self.live[s.station_id]
        for car_id, expires in list(bookings.items()):
            if expires <= step:
                del bookings[car_id]
                self.result.expired += 1
        return len(bookings) < s.capacity

    def book(
        self, car: Car, step: int, need_km: float, range_km: float, radius_km: float
    ) -> bool | None:
        """book.lua, in Python: True booked, False NO_CAPACITY, None not needed yet."""
        found = sorted(
            (d, s) for s in self.world.stations if (d := _distance(car, s)) <= radius_km
        )[:CANDIDATES]
        free = [(d, s) for d, s in found if self._free(s, step)]
        if not free:
            self.result.no_capacity += 1
            return False
        if need_km >= 0 and free[0][0] < need_km:
            return None
        tariff = price_at_hour((step / 60.0) % 24)
        choice = free[0]
        if self.policy == "predictive":
            within = [(d, s) for d, s in free if range_km < 0 or d <= range_km] or [free[0]]
            choice = min(
                within,
                key=lambda ds: booking_cost(
                    ds[0],
                    tariff * self.factor(ds[1]),
                    expected_wait_minutes(self.loads.get(ds[1].site_id)),
                    self.weights,
                ),
            )
        d, s = choice
        self.live[s.station_id][car.car_id] = step + BOOKING_TTL_STEPS
        car.booking, car.booked_at, car.detour_km, car.mode = s, step, d, "to_station"
        self.result.bookings += 1
        if need_km >= 0:
            self.result.bookings_ahead += 1
        return True

    def decide(self, car: Car, step: int, p: Prediction | None) -> None:
        forced = car.reported < THRESHOLD
        if p is None:
            if forced:
                self.book(car, step, -1.0, -1.0, self.radius_km)
            return
        if not forced and p.reach_km - MARGIN_KM >= REACH_KM:
            return  # the desk's concerns(): nothing to look at yet
        need = -1.0 if forced else max(p.reach_km - MARGIN_KM, 0.0)
        range_km = max(p.range_km - MARGIN_KM, 0.0) if math.isfinite(p.range_km) else -1.0
        radius = min(max(SEARCH_KM, range_km), REACH_KM)
        self.book(car, step, need, range_km, radius)

    # ----------------------------------------------------------------- moving

    def drive(self, car: Car, step: int) -> None:
        if car.regime_left <= 0:
            car.regime = car.rng.choices(range(len(REGIMES)), car.weights)[0]
            car.regime_left = car.rng.randint(*REGIME_MINUTES)
            car.heading += car.rng.uniform(-1.0, 1.0)
        car.regime_left -= 1
        mean, sd = REGIMES[car.regime]
        car.speed = max(car.rng.gauss(mean, sd), 0.0) if mean > 0 else 0.0
        noise_rng = car.rng  # drawn in the same order whatever the policy
        hour = (step / 60.0) % 24
        if car.mode == "to_station" and car.booking is not None:
            s = car.booking
            speed = min(max(car.speed, 20.0), APPROACH_KMH)
            km = speed * STEP_S / 3600
            d = _distance(car, s)
            car.battery -= drain_percent(car.model, speed, hour, STEP_S, noise_rng)
            car.speed = speed
            if d <= km:
                car.x, car.y = s.x, s.y
                self.arrive(car, step)
            else:
                car.x += (s.x - car.x) / d * km
                car.y += (s.y - car.y) / d * km
            return
        km = car.speed * STEP_S / 3600
        car.battery -= drain_percent(car.model, car.speed, hour, STEP_S, noise_rng)
        nx, ny = car.x + math.cos(car.heading) * km, car.y + math.sin(car.heading) * km
        if not (0 <= nx <= SIZE_KM and 0 <= ny <= SIZE_KM):
            car.heading += math.pi
            nx, ny = min(max(nx, 0.0), SIZE_KM), min(max(ny, 0.0), SIZE_KM)
        car.x, car.y = nx, ny

    def arrive(self, car: Car, step: int) -> None:
        s = car.booking
        assert s is not None
        self.live[s.station_id].pop(car.car_id, None)  # fulfilled: its slot goes back
        self.result.detours.append(car.detour_km)
        car.booking, car.station, car.arrived_at, car.mode = None, s, step, "queued"
        self.queue[s.station_id].append(car)

    def charge(self, step: int) -> None:
        hour = (step / 60.0) % 24
        tariff = price_at_hour(hour)
        by_site: dict[str, list[tuple[Station, Car]]] = {}
        for s in self.world.stations:
            plugged, queue = self.plugged[s.station_id], self.queue[s.station_id]
            while queue and len(plugged) < s.capacity:
                car = queue.popleft()
                car.mode = "charging"
                self.result.waits.append(float(step - car.arrived_at))
                plugged.append(car)
            for car in plugged:
                by_site.setdefault(s.site_id, []).append((s, car))
        for site_id, pairs in by_site.items():
            asked = sum(s.power_kw for s, _ in pairs)
            limit = self.world.sites[site_id].limit_kw
            share = min(1.0, limit / asked) if asked else 1.0
            if asked > limit:
                self.result.over_limit_site_minutes += 1
            for s, car in pairs:
                kw = s.power_kw * share
                kwh = min(kw * STEP_S / 3600, (TARGET - car.battery) / 100 * car.model.pack_kwh)
                kwh = max(kwh, 0.0)
                car.battery += kwh / car.model.pack_kwh * 100
                self.result.energy_kwh += kwh
                self.result.cost += kwh * tariff * self.factor(s)
                if car.battery >= TARGET - 1e-9:
                    self.plugged[s.station_id].remove(car)
                    car.mode, car.station = "driving", None

    # ----------------------------------------------------------------- predictor

    def observe(self, car: Car, step: int) -> Prediction | None:
        """The desk's observe(): learn from the reported battery, predict, and check the
        prediction made 30 minutes ago against the true battery now (every 5th minute)."""
        now_ms = step * 60_000
        charging = car.mode in ("charging", "queued")
        car.model_drain.observe(car.reported, car.speed, now_ms, charging=charging)
        if charging:
            car.checks.clear()
            car.previous = None
            return None
        p = car.model_drain.predict(car.reported, now_ms, HORIZON_STEPS * STEP_S)
        while car.checks and car.checks[0][0] <= step:
            _, ours, naive = car.checks.popleft()
            self.result.errors_model.append(abs(ours - car.battery))
            self.result.errors_naive.append(abs(naive - car.battery))
        if car.previous is not None and step % 5 == 0 and car.battery > 5:
            naive = naive_battery_at(car.previous, (car.reported, now_ms), HORIZON_STEPS * STEP_S)
            car.checks.append((step + HORIZON_STEPS, p.battery_at_horizon, naive))
        car.previous = (car.reported, now_ms)
        return p

    # ----------------------------------------------------------------- the day

    def run(self) -> Result:
        started = time.perf_counter()
        for step in range(DAY_STEPS):
            self.snapshot(step)
            for car in self.cars:
                if car.mode == "stranded":
                    continue
                if car.mode in ("driving", "to_station"):
                    self.drive(car, step)
                if car.battery <= 0.0:
                    car.battery, car.mode = 0.0, "stranded"
                    self.result.empty += 1
                    if not car.low_unbooked:
                        self.result.stranded += 1
                    self.release(car)
                    continue
                if car.mode in ("driving", "to_station"):
                    car.reported = car.battery + car.rng.gauss(0.0, SENSOR_SD)
                else:
                    car.reported = car.battery
                # The MAE is measured in the predictive run: the desk predicts there.
                p = self.observe(car, step) if self.policy == "predictive" else None
                if car.mode == "driving":
                    self.decide(car, step, p)
                if car.mode == "driving" and car.battery < STRANDED_LOW and not car.low_unbooked:
                    car.low_unbooked = True
                    self.result.stranded += 1
            self.charge(step)
        self.result.seconds = time.perf_counter() - started
        return self.result

    def release(self, car: Car) -> None:
        if car.booking is not None:
            self.live[car.booking.station_id].pop(car.car_id, None)
            car.booking = None


def run_policy(policy: str, n: int, seed: int, radius_km: float = SEARCH_KM) -> Result:
    world = make_world(random.Random(seed))
    return Simulation(policy, make_cars(n, seed + 1), world, radius_km).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench fleet", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--cars", type=int, default=1000, help="fleet size (default 1000)")
    parser.add_argument("--seed", type=int, default=15, help="the day's seed (default 15)")
    parser.add_argument("--quick", action="store_true", help="300 cars (make bench --quick)")
    args = parser.parse_args(argv)
    if args.cars < 1:
        parser.error("--cars must be at least 1")
    n = 300 if args.quick else args.cars
    baseline = run_policy("threshold", n, args.seed)
    # The same threshold rule searching as far as the predictive desk may: how much of the
    # difference is the wider search alone.
    wide = run_policy("threshold", n, args.seed, REACH_KM)
    wide.policy = f"threshold_{REACH_KM:.0f}km"
    predictive = run_policy("predictive", n, args.seed)
    report = compare(baseline, predictive, args.seed, wide)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        show(report)
    return 0 if all(t["met"] for t in report["targets"]) else 1


def compare(
    baseline: Result, predictive: Result, seed: int, wide: Result | None = None
) -> dict[str, Any]:
    b, p = baseline.figures(), predictive.figures()
    policies = {"threshold": b, "predictive": p}
    if wide is not None:
        policies[wide.policy] = wide.figures()
    fewer = 1 - p["no_capacity"] / b["no_capacity"] if b["no_capacity"] else 0.0
    mae_model, mae_naive = p["mae_30min_model"], p["mae_30min_naive"]
    lower = 1 - mae_model / mae_naive if mae_naive else 0.0
    targets = [
        {
            "target": "0 cars stranded with prediction-led booking",
            "measured": p["stranded"],
            "met": p["stranded"] == 0,
        },
        {
            "target": ">= 30 % fewer NO_CAPACITY answers",
            "measured": round(fewer, 3),
            "met": fewer >= 0.30,
        },
        {
            "target": "MAE at 30 min >= 30 % lower than the naive last rate",
            "measured": round(lower, 3),
            "met": lower >= 0.30,
        },
    ]
    return {
        "seed": seed,
        "day_minutes": DAY_STEPS,
        "stations": len(make_world(random.Random(seed)).stations),
        "search_radius_km": SEARCH_KM,
        "reach_search_cap_km": REACH_KM,
        "policies": policies,
        "no_capacity_reduction": round(fewer, 3),
        "mae_reduction": round(lower, 3),
        "targets": targets,
    }


def show(report: dict[str, Any]) -> None:
    table = Table(title=f"One simulated day, seed {report['seed']}", title_justify="left")
    table.add_column("figure")
    for name in report["policies"]:
        table.add_column(name, justify="right")
    rows = [k for k in report["policies"]["threshold"] if k not in ("policy",)]
    for key in rows:
        table.add_row(key, *(str(report["policies"][n][key]) for n in report["policies"]))
    console.print(table)
    targets = Table(title="Targets", title_justify="left")
    for col in ("target", "measured", "met"):
        targets.add_column(col)
    for t in report["targets"]:
        met = "[green]yes[/green]" if t["met"] else "[red]no[/red]"
        targets.add_row(t["target"], str(t["measured"]), met)
    console.print(targets)


if __name__ == "__main__":
    sys.exit(main())

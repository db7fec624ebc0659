"""`python -m bench planner`: GreenLane's planner against the other ways to charge a site.

Seeded days at two sites whose grid limit binds (bench/planner_replay.py: a depot with
evening arrivals and morning departures, a busy daytime hub), replayed slot by slot on
the grid's tariff, for every strategy on the same sessions, limits, prices and 15-minute
slots: uncontrolled, per-car cheapest (evcc's approach), acnportal's EDF, LLF, round
robin and FCFS (its own simulator), GreenLane online (re-planning as cars arrive and
leave, knowing only the cars present) and the offline optimum (one LP with hindsight).

Then the re-plan figure: one joint plan of a 500-car site over 96 slots, solved for
several seeded days, as the live planner re-plans a large site.

The machine is shared: wall-clock times vary with its load, so the re-plan figure also
gives the CPU time of each solve (HiGHS runs on one thread); energy and cost do not
depend on the load.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Final

from rich.console import Console
from rich.table import Table

from bench.planner_replay import (
    EMPTY_SCORE,
    FIRST_DAY,
    SITES,
    Day,
    Replay,
    ReplayClock,
    Score,
    greenlane_online,
    local_time,
    offline_optimum,
    per_car_cheapest,
    percentile,
    score,
    uncontrolled,
)
from greenlane.grid.tariff import tariff_zone
from greenlane.planner.model import CarRequest, SiteProblem, pieces, solve

try:
    from bench import planner_acn

    ACN_ERROR = ""
except ImportError as exc:  # acnportal is in the dev group; say why it is missing
    ACN_ERROR = f"acnportal could not be imported: {exc}"

ONLINE: Final = "greenlane_online"
OFFLINE: Final = "offline_optimum"
UNCONTROLLED: Final = "uncontrolled"
ACN_ALGORITHMS: Final = ("edf", "llf", "round_robin", "fcfs")
STRATEGY_NAMES: Final = {
    UNCONTROLLED: "uncontrolled (FCFS limit)",
    "per_car_cheapest": "per-car cheapest (evcc)",
    "acnportal_edf": "acnportal EDF",
    "acnportal_llf": "acnportal LLF",
    "acnportal_round_robin": "acnportal round robin",
    "acnportal_fcfs": "acnportal FCFS",
    ONLINE: "GreenLane online",
    OFFLINE: "offline optimum",
}
# Wide enough for the tables when the output is not a terminal (a log, `tee`).
console = Console(width=None if sys.stdout.isatty() else 132)


def strategies() -> dict[str, Callable[[Day], Replay] | None]:
    """Every strategy by its JSON key; None when it cannot run here (see ACN_ERROR)."""
    acn: dict[str, Callable[[Day], Replay] | None] = {}
    for name in ACN_ALGORITHMS:
        acn[f"acnportal_{name}"] = None if ACN_ERROR else functools.partial(_acn, algorithm=name)
    return {
        UNCONTROLLED: uncontrolled,
        "per_car_cheapest": per_car_cheapest,
        **acn,
        ONLINE: greenlane_online,
        OFFLINE: offline_optimum,
    }


def _acn(day: Day, algorithm: str) -> Replay:
    return planner_acn.run(day, algorithm)


def figures(s: Score) -> dict[str, Any]:
    """One strategy's figures as they appear in --json."""
    return {
        "sessions": s.sessions,
        "requested_kwh": round(s.requested_kwh, 3),
        "delivered_kwh": round(s.delivered_kwh, 3),
        "energy_delivered_pct": round(100 * s.energy_share, 3),
        "goals_met_pct": round(100 * s.goals_met_share, 2),
        "cost_usd": round(s.cost, 2),
        "cost_per_kwh": round(s.cost_per_kwh, 4),
        "peak_kw": round(s.peak_kw, 3),
        "limit_kw": s.limit_kw,
        "slot_limit_violations": s.violations,
        "window_violations": s.outside_window,
        "max_kw_violations": s.over_max_kw,
        "replans": len(s.decision_seconds),
        "replan_p50_ms": round(1000 * percentile(s.decision_seconds, 0.5), 3),
        "replan_p99_ms": round(1000 * percentile(s.decision_seconds, 0.99), 3),
    }


# ----------------------------------------------------------------------------- targets


def targets(by: dict[str, Score]) -> list[tuple[str, str, bool]]:
    """Issue 9's targets for GreenLane online on one set of days: (target, measured, met)."""
    online, offline, unc = by[ONLINE], by[OFFLINE], by[UNCONTROLLED]
    energy = online.delivered_kwh / offline.delivered_kwh if offline.delivered_kwh else 1.0
    cost = online.cost / offline.cost if offline.cost else 1.0
    saving = online.cost / unc.cost if unc.cost else 1.0
    out = [
        ("0 slot-limit violations", str(online.violations), online.violations == 0),
        ("energy >= 99 % of the offline optimum's", f"{energy:.2%}", energy >= 0.99),
        ("cost <= 1.05 x the offline optimum", f"{cost:.3f} x", cost <= 1.05),
        (
            "cost <= 0.75 x uncontrolled",
            f"{saving:.3f} x (offline optimum: {offline.cost / unc.cost:.3f} x; per kWh "
            f"{online.cost_per_kwh / unc.cost_per_kwh:.3f} x)"
            if unc.cost and unc.cost_per_kwh
            else "-",
            saving <= 0.75,
        ),
    ]
    for key in by:
        if not key.startswith("acnportal_"):
            continue
        acn = by[key]
        # Equal energy within a rounding error of acnportal's bisection (0.01 A).
        more = online.delivered_kwh >= acn.delivered_kwh * (1 - 1e-6)
        out.append(
            (
                f"cheaper than {STRATEGY_NAMES[key]} at equal or more energy",
                f"${online.cost:,.2f} vs ${acn.cost:,.2f}; "
                f"{online.delivered_kwh:,.1f} vs {acn.delivered_kwh:,.1f} kWh; "
                f"{online.cost_per_kwh:.4f} vs {acn.cost_per_kwh:.4f} $/kWh",
                more and online.cost < acn.cost,
            )
        )
    return out


# ----------------------------------------------------------------------------- the 500-car re-plan


def replan_site(seed: int, cars: int, slots: int, share: float, slot_minutes: int) -> SiteProblem:
    """One seeded noon-to-noon day at a large site whose limit binds, as one problem.

    65 % depot cars arriving 16:00-21:00 and leaving 06:00-09:00 with most of a night's
    charge to take (7.4-22 kW), 35 % daytime stops of 30 min to 3 h (11-150 kW); the
    limit is `share` of the most the cars present at once could draw.
    """
    rng = random.Random(seed)
    zone = tariff_zone()
    clock = ReplayClock(local_time(FIRST_DAY + timedelta(days=seed), zone), slot_minutes)
    per_hour = 60 / slot_minutes

    def slot(hour: float) -> int:
        """The slot of a local hour after noon (hours past midnight wrap)."""
        return min(slots, max(0, round(((hour - 12.0) % 24) * per_hour)))

    requests = []
    for i in range(cars):
        if rng.random() < 0.65:  # depot car: home for the night
            arrive = slot(rng.uniform(16.0, 21.0))
            depart = slot(rng.uniform(6.0, 9.0))
            max_kw = rng.choice([7.4, 11.0, 11.0, 22.0])
        else:  # daytime stop
            arrive = slot(rng.choice([rng.uniform(12.0, 17.0), rng.uniform(8.0, 11.0)]))
            depart = min(slots, arrive + rng.randint(2, 12))
            max_kw = rng.choice([11.0, 22.0, 50.0, 150.0])
        hours = (depart - arrive) / per_hour
        energy = round(min(rng.uniform(10.0, 70.0), 0.9 * max_kw * hours), 2)
        requests.append(CarRequest(f"car-{i:04d}", arrive, depart, energy, max_kw))
    prices = clock.prices(slots, zone)
    present = [0.0] * slots
    for c in requests:
        for t in range(c.arrive_slot, c.depart_slot):
            present[t] += c.max_kw
    limit = round(share * max(present), 1)
    return SiteProblem(slot_minutes, prices, limit, requests)


def replan_figure(
    cars: int, slots: int, runs: int, share: float, seed: int, compare_smoothing: bool
) -> dict[str, Any]:
    """Solve `runs` seeded large-site problems; wall and CPU time percentiles."""
    wall: list[float] = []
    cpu: list[float] = []
    rough: list[float] = []
    goals = binding = piece_count = rough_pieces = 0
    car_slots = 0
    cost_gap = over = 0.0
    energy = requested = 0.0
    for run in range(runs):
        problem = replan_site(seed + run, cars, slots, share, 15)
        started, cpu_started = time.perf_counter(), time.process_time()
        plan = solve(problem)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
        limits = problem.limits()
        car_slots += sum(c.depart_slot - c.arrive_slot for c in problem.cars)
        goals += sum(not c.reason for c in plan.cars)
        binding += sum(kw >= 0.999 * lim for kw, lim in zip(plan.site_kw, limits, strict=True))
        piece_count += sum(pieces(c.power_kw) for c in plan.cars)
        energy += sum(c.delivered_kwh for c in plan.cars)
        requested += sum(c.energy_kwh for c in problem.cars)
        over = max(over, max(kw - lim for kw, lim in zip(plan.site_kw, limits, strict=True)))
        if compare_smoothing:
            started = time.perf_counter()
            plain = solve(problem, smooth=False)
            rough.append(time.perf_counter() - started)
            rough_pieces += sum(pieces(c.power_kw) for c in plain.cars)
            cost_gap = max(cost_gap, abs(plan.cost - plain.cost))
    out: dict[str, Any] = {
        "cars": cars,
        "slots": slots,
        "runs": runs,
        "share": share,
        "car_slots_mean": round(car_slots / runs),
        "solve_p50_ms": round(1000 * statistics.median(wall), 1),
        "solve_p99_ms": round(1000 * percentile(wall, 0.99), 1),
        "target_p99_ms": 1000,
        # HiGHS runs on one thread: CPU time is far less inflated by a loaded machine.
        "cpu_p50_ms": round(1000 * statistics.median(cpu), 1),
        "cpu_p99_ms": round(1000 * percentile(cpu, 0.99), 1),
        "goals_met_pct": round(100 * goals / (cars * runs), 2),
        "energy_delivered_pct": round(100 * energy / requested, 2) if requested else 100.0,
        "binding_slots_mean": round(binding / runs, 1),
        "pieces_per_car": round(piece_count / (cars * runs), 3),
        "max_peak_over_limit_kw": over,
    }
    if compare_smoothing:
        out |= {
            "unsmoothed_p50_ms": round(1000 * statistics.median(rough), 1),
            "smoothing_share": round(1 - sum(rough) / sum(wall), 3),
            "pieces_per_car_unsmoothed": round(rough_pieces / (cars * runs), 3),
            "max_cost_difference": cost_gap,
        }
    return out


# ----------------------------------------------------------------------------- the run


def replay(
    days: int, seed: int, limits: dict[str, float] | None = None
) -> dict[str, dict[str, Score]]:
    """Every strategy on `days` seeded days of every site: site -> strategy -> score.
    `limits` replaces a site's grid limit (kW) for a sensitivity run."""
    runs = strategies()
    out: dict[str, dict[str, Score]] = {}
    for site, make in SITES.items():
        totals = {name: EMPTY_SCORE for name, fn in runs.items() if fn is not None}
        for index in range(days):
            day = make(index, seed)
            if limits and site in limits:
                day = dataclasses.replace(day, limit_kw=limits[site])
            for name, fn in runs.items():
                if fn is not None:
                    totals[name] = totals[name] + score(day, fn(day))
        out[site] = totals
    return out


def total(by_site: dict[str, dict[str, Score]]) -> dict[str, Score]:
    """The sites' scores added up per strategy."""
    out: dict[str, Score] = {}
    for scores in by_site.values():
        for name, s in scores.items():
            out[name] = out.get(name, EMPTY_SCORE) + s
    return out


def as_json(
    by_site: dict[str, dict[str, Score]], replan: dict[str, Any] | None, days: int, seed: int
) -> dict[str, Any]:
    """ONE object keyed by strategy: its total and per-site figures."""
    all_sites = total(by_site)
    out: dict[str, Any] = {}
    for name in strategies():
        if name not in all_sites:
            out[name] = {"error": ACN_ERROR}
            continue
        out[name] = {
            "days_per_site": days,
            "seed": seed,
            "total": figures(all_sites[name]),
            "sites": {site: figures(scores[name]) for site, scores in by_site.items()},
        }
    out[ONLINE]["targets"] = {
        site: [{"target": t, "measured": m, "met": ok} for t, m, ok in targets(scores)]
        for site, scores in [*by_site.items(), ("total", all_sites)]
    }
    if replan is not None:
        out[ONLINE]["replan_500_cars"] = replan
    return out


def print_tables(by_site: dict[str, dict[str, Score]], days: int) -> None:
    for site, scores in [*by_site.items(), ("both sites", total(by_site))]:
        sample = next(iter(scores.values()))
        limit = f", limit {sample.limit_kw:,.0f} kW" if site in by_site else ""
        table = Table(
            title=f"{site}: {days} day(s) per site, {sample.sessions} sessions, "
            f"{sample.requested_kwh:,.0f} kWh requested{limit}",
            title_justify="left",
        )
        for col in (
            "strategy",
            "energy",
            "goals met",
            "cost",
            "$/kWh",
            "peak kW",
            "over limit",
            "re-plan p50 / p99",
        ):
            table.add_column(col, justify="left" if col == "strategy" else "right")
        for name, s in scores.items():
            table.add_row(
                STRATEGY_NAMES[name],
                f"{s.energy_share:.2%}",
                f"{s.goals_met_share:.1%}",
                f"${s.cost:,.2f}",
                f"{s.cost_per_kwh:.4f}",
                f"{s.peak_kw:,.1f}",
                str(s.violations),
                f"{1000 * percentile(s.decision_seconds, 0.5):.2f} / "
                f"{1000 * percentile(s.decision_seconds, 0.99):.1f} ms",
            )
        console.print(table)
    for site, scores in [*by_site.items(), ("both sites", total(by_site))]:
        table = Table(title=f"targets, GreenLane online, {site}", title_justify="left")
        for col in ("target", "measured", "met"):
            table.add_column(col)
        for target, measured, met in targets(scores):
            table.add_row(target, measured, "[green]yes[/green]" if met else "[red]no[/red]")
        console.print(table)
    if ACN_ERROR:
        console.print(f"[yellow]acnportal not run:[/yellow] {ACN_ERROR}")


def print_replan(r: dict[str, Any]) -> None:
    console.print(
        f"re-plan of a {r['cars']}-car site, {r['slots']} slots, limit {r['share']:.0%} of the "
        f"peak draw, {r['runs']} seeds (~{r['car_slots_mean']:,} car-slots each)"
    )
    met = "[green]met[/green]" if r["solve_p99_ms"] < 1000 else "[red]not met[/red]"
    console.print(
        f"  wall  p50 {r['solve_p50_ms']:.0f} ms  p99 {r['solve_p99_ms']:.0f} ms  "
        f"(target p99 < 1 s: {met})"
    )
    console.print(
        f"  CPU   p50 {r['cpu_p50_ms']:.0f} ms  p99 {r['cpu_p99_ms']:.0f} ms  "
        "(HiGHS uses one thread; less affected by the machine's load)"
    )
    console.print(
        f"  plans goals met {r['goals_met_pct']:.1f} %, energy {r['energy_delivered_pct']:.1f} % "
        f"of requested, limit binding in {r['binding_slots_mean']:.0f} of {r['slots']} slots, "
        f"{r['pieces_per_car']:.2f} pieces per car"
    )
    if "smoothing_share" in r:
        console.print(
            f"  without smoothing: p50 {r['unsmoothed_p50_ms']:.0f} ms, "
            f"{r['pieces_per_car_unsmoothed']:.2f} pieces per car; smoothing is "
            f"{r['smoothing_share']:.0%} of the time, cost difference at most "
            f"${r['max_cost_difference']:.2g}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench planner", description=__doc__)
    parser.add_argument("--days", type=int, default=5, help="seeded days per site (5)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the days (1)")
    parser.add_argument("--replan-cars", type=int, default=500, help="re-plan figure: cars (500)")
    parser.add_argument("--replan-slots", type=int, default=96, help="re-plan figure: slots (96)")
    parser.add_argument("--replan-runs", type=int, default=20, help="re-plan figure: seeds (20)")
    parser.add_argument(
        "--replan-share", type=float, default=0.4, help="re-plan limit / peak draw (0.4)"
    )
    parser.add_argument(
        "--compare-smoothing",
        action="store_true",
        help="also solve each re-plan problem without the smoothing stage",
    )
    for site in SITES:
        parser.add_argument(
            f"--{site}-limit-kw",
            type=float,
            default=None,
            help=f"replace the {site} site's grid limit (a sensitivity run)",
        )
    parser.add_argument("--no-replan", action="store_true", help="skip the re-plan figure")
    parser.add_argument("--quick", action="store_true", help="2 days per site, 5 re-plan seeds")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    for name in ("days", "replan_cars", "replan_slots", "replan_runs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: must be at least 1")
    if not 0 < args.replan_share <= 1:
        parser.error("--replan-share: must be in (0, 1]")
    days, runs = (2, 5) if args.quick else (args.days, args.replan_runs)
    limits = {}
    for site in SITES:
        value = getattr(args, f"{site}_limit_kw")
        if value is not None:
            if not 0 < value <= 100_000:
                parser.error(f"--{site}-limit-kw: must be in (0, 100000], got {value:g}")
            limits[site] = value

    if not args.json:
        console.print(f"[bold]planner[/bold]: {days} seeded day(s) per site, every strategy…")
    by_site = replay(days, args.seed, limits)
    if not args.json:
        print_tables(by_site, days)
    replan = None
    if not args.no_replan:
        if not args.json:
            console.print(f"re-plan figure: {runs} solves of {args.replan_cars} cars…")
        replan = replan_figure(
            args.replan_cars,
            args.replan_slots,
            runs,
            args.replan_share,
            args.seed,
            args.compare_smoothing,
        )
        if not args.json:
            print_replan(replan)
    if args.json:
        json.dump(as_json(by_site, replan, days, args.seed), sys.stdout)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

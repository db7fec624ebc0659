"""`python -m bench.planner_solve`: how long one joint site plan takes to solve.

A seeded day at one site from noon to noon (96 slots of 15 min by default) on the
grid's tariff: depot cars arriving 16:00-21:00 and leaving 06:00-09:00 with most of a
night's charge to take, daytime cars stopping for 30 min to 3 h, and a site limit of a
share (default 40 %) of the most power the cars present at once could draw, so that
it binds all evening. Each run
solves a different seed; the figures are the solve time (validation and tidying
included), the LP size, and the charging pieces with and without the smoothing stage.

The machine is shared: wall-clock times vary with its load, so the script also prints
the CPU time of each solve (HiGHS runs on one thread, so on a quiet machine the two
agree; on a loaded one CPU time is inflated far less than wall time) and the smoothing
stage's share of the time, measured on the same problems.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from typing import Any

from greenlane.grid.tariff import price_at_hour
from greenlane.planner.model import CarRequest, SiteProblem, pieces, solve

START_HOUR = 12.0  # slot 0 begins at noon local time


def site_day(seed: int, cars: int, slots: int, share: float, slot_minutes: int) -> SiteProblem:
    """One seeded noon-to-noon day at a busy site whose limit binds."""
    rng = random.Random(seed)
    per_hour = 60 / slot_minutes

    def slot(hour: float) -> int:
        """The slot of a local hour after START_HOUR (hours past midnight wrap)."""
        return min(slots, max(0, round(((hour - START_HOUR) % 24) * per_hour)))

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
    prices = [price_at_hour((START_HOUR + t / per_hour) % 24) for t in range(slots)]
    present = [0.0] * slots
    for c in requests:
        for t in range(c.arrive_slot, c.depart_slot):
            present[t] += c.max_kw
    limit = round(share * max(present), 1)
    return SiteProblem(slot_minutes, prices, limit, requests)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile by the nearest-rank method (with 20 runs, p99 is the slowest)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.planner_solve", description=__doc__)
    parser.add_argument("--cars", type=int, default=500, help="cars at the site (500)")
    parser.add_argument("--slots", type=int, default=96, help="slots in the horizon (96)")
    parser.add_argument("--slot-minutes", type=int, default=15, help="slot length (15)")
    parser.add_argument("--runs", type=int, default=20, help="solves, one seed each (20)")
    parser.add_argument(
        "--share", type=float, default=0.4, help="limit / peak max_kw present (0.4)"
    )
    parser.add_argument("--seed", type=int, default=1, help="first seed (1)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    solve_s: list[float] = []
    cpu_s: list[float] = []
    rough_s: list[float] = []
    rows: list[dict[str, Any]] = []
    for run in range(args.runs):
        problem = site_day(args.seed + run, args.cars, args.slots, args.share, args.slot_minutes)
        started, cpu = time.perf_counter(), time.process_time()
        plan = solve(problem)
        solve_s.append(time.perf_counter() - started)
        cpu_s.append(time.process_time() - cpu)
        started = time.perf_counter()
        rough = solve(problem, smooth=False)
        rough_s.append(time.perf_counter() - started)
        hours = problem.slot_minutes / 60
        rows.append(
            {
                "car_slots": sum(c.depart_slot - c.arrive_slot for c in problem.cars),
                "feasible": plan.feasible,
                "goals_met": sum(not c.reason for c in plan.cars),
                "shortfall_kwh": sum(c.shortfall_kwh for c in plan.cars),
                "requested_kwh": sum(c.energy_kwh for c in problem.cars),
                "cost": plan.cost,
                "binding_slots": sum(
                    kw >= 0.999 * lim
                    for kw, lim in zip(plan.site_kw, problem.limits(), strict=True)
                ),
                "pieces": sum(pieces(c.power_kw) for c in plan.cars),
                "pieces_unsmoothed": sum(pieces(c.power_kw) for c in rough.cars),
                "cost_unsmoothed": rough.cost,
                "energy_kwh": sum(c.delivered_kwh for c in plan.cars),
                "peak_kw": max(plan.site_kw),
                "limit_kw": max(problem.limits()),
                "hours": hours,
            }
        )
    summary = {
        "cars": args.cars,
        "slots": args.slots,
        "runs": args.runs,
        "share": args.share,
        "solve_p50_s": statistics.median(solve_s),
        "solve_p99_s": percentile(solve_s, 0.99),
        "solve_max_s": max(solve_s),
        # HiGHS runs on one thread: CPU time is less affected by a loaded machine.
        "cpu_p50_s": statistics.median(cpu_s),
        "cpu_p99_s": percentile(cpu_s, 0.99),
        "unsmoothed_p50_s": statistics.median(rough_s),
        "smoothing_share": 1 - sum(rough_s) / sum(solve_s),
        "car_slots_mean": statistics.mean(r["car_slots"] for r in rows),
        "goals_met_share": sum(r["goals_met"] for r in rows) / (args.cars * args.runs),
        "energy_share": sum(r["energy_kwh"] for r in rows) / sum(r["requested_kwh"] for r in rows),
        "binding_slots_mean": statistics.mean(r["binding_slots"] for r in rows),
        "pieces_per_car": sum(r["pieces"] for r in rows) / (args.cars * args.runs),
        "pieces_per_car_unsmoothed": sum(r["pieces_unsmoothed"] for r in rows)
        / (args.cars * args.runs),
        "max_cost_difference": max(abs(r["cost"] - r["cost_unsmoothed"]) for r in rows),
        "max_peak_over_limit_kw": max(r["peak_kw"] - r["limit_kw"] for r in rows),
    }
    if args.json:
        json.dump(summary, sys.stdout)
        print()
        return 0
    print(
        f"planner solve: {args.cars} cars x {args.slots} slots, limit {args.share:.0%} of "
        f"the peak draw, {args.runs} seeds ({summary['car_slots_mean']:.0f} car-slots each)"
    )
    print(
        f"  solve time   p50 {summary['solve_p50_s'] * 1000:.0f} ms   "
        f"p99 {summary['solve_p99_s'] * 1000:.0f} ms   (without smoothing: p50 "
        f"{summary['unsmoothed_p50_s'] * 1000:.0f} ms; smoothing is "
        f"{summary['smoothing_share']:.0%} of the time)"
    )
    print(
        f"  CPU time     p50 {summary['cpu_p50_s'] * 1000:.0f} ms   "
        f"p99 {summary['cpu_p99_s'] * 1000:.0f} ms   (HiGHS uses one thread; less affected by load)"
    )
    print(
        f"  plans        goals met {summary['goals_met_share']:.1%}, energy delivered "
        f"{summary['energy_share']:.1%} of requested, limit binding in "
        f"{summary['binding_slots_mean']:.0f} of {args.slots} slots, peak - limit "
        f"{summary['max_peak_over_limit_kw']:.2g} kW"
    )
    print(
        f"  pieces/car   {summary['pieces_per_car']:.2f} smoothed, "
        f"{summary['pieces_per_car_unsmoothed']:.2f} without; largest cost difference "
        f"${summary['max_cost_difference']:.2g}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

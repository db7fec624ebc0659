"""Prometheus metrics of the planner (greenlane_planner_*); dashboards use these names.

All are defined here, including those of the live site planner that later code feeds.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SOLVES = Counter(
    "greenlane_planner_solves_total",
    "Plans solved, by kind: whatif (POST /api/planner/solve) or site (a live re-plan).",
    ["kind"],
)
SOLVE_FAILURES = Counter(
    "greenlane_planner_solve_failures_total",
    "Solves that ended without a plan (time limit, numerical trouble), by kind.",
    ["kind"],
)
SOLVE_SECONDS = Histogram(
    "greenlane_planner_solve_seconds",
    "Time to solve one plan, validation and tidying included.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SHORTFALL_KWH = Gauge(
    "greenlane_planner_shortfall_kwh",
    "Energy the site's current plan cannot deliver, summed over its cars.",
    ["site_id"],
)
SITE_KW = Gauge(
    "greenlane_planner_site_kw",
    "Planned site power in the current slot.",
    ["site_id"],
)
SITE_LIMIT_KW = Gauge(
    "greenlane_planner_site_limit_kw",
    "The site's grid limit in the current slot.",
    ["site_id"],
)
CARS = Gauge(
    "greenlane_planner_cars",
    "Cars in the site's current plan (plugged in or booked).",
    ["site_id"],
)
PLANS = Counter(
    "greenlane_planner_plans_total",
    "Site plans published.",
    ["site_id"],
)

# Both kinds exist from the start, so rate() and dashboards see 0 rather than nothing.
for _kind in ("whatif", "site"):
    SOLVES.labels(kind=_kind)
    SOLVE_FAILURES.labels(kind=_kind)

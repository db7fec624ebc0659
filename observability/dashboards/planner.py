"""Planner: the joint charging plan per site (greenlane_planner_*)."""

from __future__ import annotations

from observability.dashboards.kit import NS, Board, Panel, Query, quantile

PLANNER = "greenlane_planner"
# Every site has series from the planner's start: it plans every site it owns then,
# with or without cars (greenlane dev does, so these queries must return data there).

BOARD = Board(
    uid="greenlane-planner",
    title="GreenLane / Planner",
    description="Site plans: solves, solve time, planned load against the grid limit, "
    "shortfall, cars and plans published.",
    service="planner",
    panels=(
        Panel(
            "Solves per minute by kind",
            "site: a site's joint plan; whatif: the what-if API.",
            (Query(f"sum by (kind) (rate({PLANNER}_solves_total{{{NS}}}[5m])) * 60", "{{kind}}"),),
        ),
        Panel(
            "Solve time",
            "p50 and p99 of one LP solve.",
            (
                quantile(0.5, f"{PLANNER}_solve_seconds", "p50"),
                quantile(0.99, f"{PLANNER}_solve_seconds", "p99"),
            ),
            unit="s",
        ),
        Panel(
            "Site load against its grid limit",
            "Planned power in the current slot, and the limit.",
            (
                Query(f"sum by (site_id) ({PLANNER}_site_kw{{{NS}}})", "{{site_id}}"),
                Query(
                    f"max by (site_id) ({PLANNER}_site_limit_kw{{{NS}}})",
                    "{{site_id}} limit",
                ),
            ),
            unit="kwatt",
        ),
        Panel(
            "Shortfall",
            "Energy the plan cannot deliver before the cars leave, per site.",
            (
                Query(
                    f"sum by (site_id) ({PLANNER}_shortfall_kwh{{{NS}}})",
                    "{{site_id}}",
                ),
            ),
            unit="kwatth",
        ),
        Panel(
            "Cars per site",
            "Cars the current plan covers.",
            (Query(f"sum by (site_id) ({PLANNER}_cars{{{NS}}})", "{{site_id}}"),),
        ),
        Panel(
            "Plans published per minute",
            "charging_plan events published, per site.",
            (
                Query(
                    f"sum by (site_id) (rate({PLANNER}_plans_total{{{NS}}}[5m])) * 60",
                    "{{site_id}}",
                ),
            ),
        ),
    ),
)

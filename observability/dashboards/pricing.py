"""Pricing: fleet events priced by the grid tariff into charging_sessions."""

from __future__ import annotations

from observability.dashboards.kit import NS, Board, Panel, Query, quantile

WORKER = "greenlane_pricing_worker"


BOARD = Board(
    uid="greenlane-pricing",
    title="GreenLane / Pricing",
    description="Fleet events priced by the grid tariff into charging_sessions "
    "(greenlane_pricing_worker_*, greenlane_grid_*).",
    panels=(
        Panel(
            "Messages per second by outcome",
            "priced, skipped, dead_lettered.",
            (
                Query(
                    f"sum by (outcome) (rate({WORKER}_messages_total{{{NS}}}[1m]))",
                    "{{outcome}}",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "Rows written per second",
            "charging_sessions rows inserted (replays hitting the idempotency key not counted).",
            (Query(f"sum(rate({WORKER}_rows_written_total{{{NS}}}[1m]))", "rows"),),
            unit="rowsps",
        ),
        Panel(
            "Consumer lag",
            "Messages behind the high watermark, per partition.",
            (
                Query(
                    f"sum by (partition) ({WORKER}_consumer_lag{{{NS}}})",
                    "partition {{partition}}",
                ),
            ),
        ),
        Panel(
            "Database batch write time",
            "One batch transaction: COPY, INSERT ... ON CONFLICT, COMMIT.",
            (
                quantile(0.5, f"{WORKER}_db_write_seconds", "p50"),
                quantile(0.99, f"{WORKER}_db_write_seconds", "p99"),
            ),
            unit="s",
        ),
        Panel(
            "Grid: requests per second by status",
            "Requests answered by the grid service.",
            (
                Query(
                    f"sum by (status) (rate(greenlane_grid_requests_total{{{NS}}}[1m]))",
                    "{{status}}",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "Grid: request latency (p99) seen by the grid and by the worker",
            "The difference is the network and the worker's client.",
            (
                quantile(0.99, "greenlane_grid_request_duration_seconds", "grid service"),
                quantile(0.99, f"{WORKER}_grid_request_seconds", "pricing worker"),
            ),
            unit="s",
        ),
        Panel(
            "Degraded pricing: from cache, dead letters, retries",
            "Rows priced from the last known curve, events dead-lettered, steps retried.",
            (
                Query(
                    f"sum(rate({WORKER}_cache_priced_rows_total{{{NS}}}[5m]))",
                    "priced from cached curve",
                ),
                Query(
                    f"sum by (reason) (rate({WORKER}_dlq_messages_total{{{NS}}}[5m]))",
                    "dead-lettered: {{reason}}",
                    quiet="a reason has a series once an event is dead-lettered for it",
                ),
                Query(
                    f"sum by (stage) (rate({WORKER}_retries_total{{{NS}}}[5m]))",
                    "retries: {{stage}}",
                    quiet="a stage has a series once it is retried",
                ),
            ),
            width=18,
        ),
        Panel(
            "Price curve age",
            "Age of the last known price curve (the forecast fetched from the grid).",
            (Query(f"max({WORKER}_curve_age_seconds{{{NS}}})", "age"),),
            kind="stat",
            unit="s",
            width=6,
        ),
    ),
)

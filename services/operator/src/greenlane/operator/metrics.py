"""Prometheus metrics of the operator, served on the metrics port (9103)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter

RECONCILES: Final = Counter(
    "greenlane_operator_reconciles_total",
    "Handler runs, by handler id and outcome (ok, temporary_error, permanent_error, error).",
    ["handler", "outcome"],
)
JOBS_CREATED: Final = Counter(
    "greenlane_operator_jobs_created_total",
    "Simulator Jobs created for FleetSimulations.",
)

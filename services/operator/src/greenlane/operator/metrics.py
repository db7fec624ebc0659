"""Prometheus metrics of the operator, served on the metrics port (9103)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from prometheus_client import Counter, Gauge

RECONCILES: Final = Counter(
    "greenlane_operator_reconciles_total",
    "Handler runs, by handler id and outcome (ok, temporary_error, permanent_error, error).",
    ["handler", "outcome"],
)
JOBS_CREATED: Final = Counter(
    "greenlane_operator_jobs_created_total",
    "Simulator Jobs created for FleetSimulations.",
)

PHASES: Final = ("Pending", "Running", "Succeeded", "Failed")
SIMULATION_PHASE: Final = Gauge(
    "greenlane_operator_simulation_phase",
    "1 for the phase a FleetSimulation is in (namespace/name), 0 for the others.",
    ["fleetsimulation", "phase"],
)
SIMULATION_PODS: Final = Gauge(
    "greenlane_operator_simulation_pods",
    "Simulator pods of a FleetSimulation's Job, by state (pods, active, ready, succeeded, failed).",
    ["fleetsimulation", "state"],
)
SIMULATION_STATUSES: Final = Gauge(
    "greenlane_operator_simulation_statuses",
    "Car statuses the finished simulator pods reported, by outcome (sent, accepted).",
    ["fleetsimulation", "outcome"],
)


def record_status(namespace: str, name: str, status: Mapping[str, Any]) -> None:
    """Mirror a FleetSimulation's .status (as the operator writes it) in the gauges."""
    sim = f"{namespace}/{name}"
    phase = status.get("phase")
    if phase in PHASES:
        for p in PHASES:
            SIMULATION_PHASE.labels(sim, p).set(1 if p == phase else 0)
    progress = status.get("progress") or {}
    for state in ("pods", "active", "ready", "succeeded", "failed"):
        if isinstance(progress.get(state), int):
            SIMULATION_PODS.labels(sim, state).set(progress[state])
    for outcome in ("sent", "accepted"):
        if isinstance(progress.get(outcome), int):
            SIMULATION_STATUSES.labels(sim, outcome).set(progress[outcome])

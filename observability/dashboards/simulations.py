"""Simulations: FleetSimulation resources as the operator runs them (Kubernetes only)."""

from __future__ import annotations

from observability.dashboards.kit import NS, Board, Panel, Query

OPERATOR = "greenlane_operator"

BOARD = Board(
    uid="greenlane-simulations",
    title="GreenLane / Simulations",
    description="FleetSimulation progress from the operator: phases, simulator pods, statuses "
    "sent and accepted, reconciles (the operator runs on Kubernetes only).",
    panels=(
        Panel(
            "Simulations by phase",
            "FleetSimulations in each phase now.",
            (
                Query(
                    f"sum by (phase) ({OPERATOR}_simulation_phase{{{NS}}})",
                    "{{phase}}",
                    only_on="kubernetes",
                    quiet="a FleetSimulation has a series once the operator wrote its status",
                ),
            ),
            kind="stat",
            width=24,
            height=4,
        ),
        Panel(
            "Statuses sent and accepted per simulation",
            "As the finished simulator pods reported them.",
            (
                Query(
                    f"sum by (fleetsimulation, outcome) ({OPERATOR}_simulation_statuses{{{NS}}})",
                    "{{fleetsimulation}} {{outcome}}",
                    only_on="kubernetes",
                    quiet="needs a FleetSimulation",
                ),
            ),
        ),
        Panel(
            "Simulator pods by state",
            "active, ready, succeeded, failed, out of the Job's pods.",
            (
                Query(
                    f"sum by (state) ({OPERATOR}_simulation_pods{{{NS}}})",
                    "{{state}}",
                    only_on="kubernetes",
                    quiet="needs a FleetSimulation",
                ),
            ),
        ),
        Panel(
            "Reconciles per minute by handler and outcome",
            "kopf handler runs; errors mean a FleetSimulation needs attention.",
            (
                Query(
                    f"sum by (handler, outcome) (rate({OPERATOR}_reconciles_total{{{NS}}}[5m])) * 60",
                    "{{handler}} {{outcome}}",
                    only_on="kubernetes",
                    quiet="a handler has a series once it ran",
                ),
            ),
        ),
        Panel(
            "Simulator Jobs created",
            "Jobs created for FleetSimulations since the operator started.",
            (
                Query(
                    f"sum({OPERATOR}_jobs_created_total{{{NS}}})",
                    "jobs",
                    only_on="kubernetes",
                ),
            ),
            kind="stat",
        ),
    ),
)

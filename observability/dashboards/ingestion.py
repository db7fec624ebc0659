"""Ingestion: car statuses streamed over gRPC into Redis and Kafka (greenlane_ingestion_*)."""

from __future__ import annotations

from observability.dashboards.kit import NS, Board, Panel, Query, quantile

BOARD = Board(
    uid="greenlane-ingestion",
    title="GreenLane / Ingestion",
    description="Car statuses streamed over gRPC into Redis and Kafka (greenlane_ingestion_*).",
    panels=(
        Panel(
            "Statuses per second",
            "Accepted = stored in Redis and published to Kafka, then acknowledged.",
            (
                Query(
                    f"sum(rate(greenlane_ingestion_statuses_accepted_total{{{NS}}}[1m]))",
                    "accepted",
                ),
                Query(
                    f"sum by (reason) (rate(greenlane_ingestion_statuses_rejected_total{{{NS}}}[1m]))",
                    "rejected: {{reason}}",
                    quiet="a reason has a series once a status is rejected for it",
                ),
                Query(
                    f"sum(rate(greenlane_ingestion_statuses_unavailable_total{{{NS}}}[1m]))",
                    "unavailable",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "Open streams",
            "Telemetry streams open now, over every replica.",
            (Query(f"sum(greenlane_ingestion_open_streams{{{NS}}})", "streams"),),
            kind="stat",
            width=6,
        ),
        Panel(
            "Auth failures per second",
            "Calls refused with UNAUTHENTICATED.",
            (Query(f"sum(rate(greenlane_ingestion_auth_failures_total{{{NS}}}[5m]))", "refused"),),
            kind="stat",
            unit="reqps",
            width=6,
        ),
        Panel(
            "Acknowledgement latency",
            "From receipt of a status until Redis and Kafka confirmed it; exemplars link to traces.",
            (
                quantile(0.5, "greenlane_ingestion_ack_latency_seconds", "p50"),
                quantile(0.99, "greenlane_ingestion_ack_latency_seconds", "p99"),
            ),
            unit="s",
        ),
        Panel(
            "Flush: statuses per round trip and duration",
            "Batching across streams: statuses per Redis round trip and Kafka flush.",
            (
                Query(
                    f"sum(rate(greenlane_ingestion_flush_statuses_sum{{{NS}}}[5m]))"
                    f" / sum(rate(greenlane_ingestion_flush_statuses_count{{{NS}}}[5m]))",
                    "statuses per flush",
                ),
                quantile(0.99, "greenlane_ingestion_flush_duration_seconds", "p99 flush seconds"),
            ),
        ),
        Panel(
            "Statuses received by path",
            "stream: one status per message; batch: many per CarStatusBatch.",
            (
                Query(
                    f"sum by (path) (rate(greenlane_ingestion_statuses_received_total{{{NS}}}[1m]))",
                    "{{path}}",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "Pending statuses and backend errors",
            "Statuses waiting for a flush; failed writes (retried until the deadline).",
            (
                Query(f"sum(greenlane_ingestion_pending_statuses{{{NS}}})", "pending"),
                Query(
                    f"sum by (backend) (rate(greenlane_ingestion_backend_errors_total{{{NS}}}[5m]))",
                    "errors/s: {{backend}}",
                    quiet="a backend has a series once a write to it fails",
                ),
            ),
        ),
    ),
)

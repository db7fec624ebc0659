"""The hub's Prometheus metrics (dashboards are written against these names)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)


@dataclass(frozen=True)
class HubMetrics:
    clients: Gauge
    frames: Counter
    bytes: Counter
    changes: Counter
    coalesced: Counter
    resets: Counter
    lag: Gauge
    events: Counter


def create_metrics(
    registry: CollectorRegistry | None = None,
) -> tuple[HubMetrics, CollectorRegistry]:
    """A registry of its own per hub (tests run many), with the process metrics."""
    if registry is None:
        registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    metrics = HubMetrics(
        clients=Gauge("greenlane_hub_clients", "WebSocket clients connected.", registry=registry),
        frames=Counter(
            "greenlane_hub_frames_total", "Frames sent to WebSocket clients.", registry=registry
        ),
        bytes=Counter(
            "greenlane_hub_bytes_total",
            "Bytes of frames sent to WebSocket clients (payload, UTF-8).",
            registry=registry,
        ),
        changes=Counter(
            "greenlane_hub_changes_total",
            "Changes of cars, stations, bookings and plans (each takes a sequence number).",
            registry=registry,
        ),
        coalesced=Counter(
            "greenlane_hub_coalesced_total",
            "Changes folded into a later change of the same object within one tick.",
            registry=registry,
        ),
        resets=Counter(
            "greenlane_hub_snapshot_resets_total",
            "Snapshots sent to WebSocket clients instead of changes, by reason "
            "(new, too_old, epoch, slow).",
            ["reason"],
            registry=registry,
        ),
        lag=Gauge(
            "greenlane_hub_lag_seconds",
            "How far the hub is behind fleet-events: age of the newest event applied while "
            "more are waiting in the topic, 0 when caught up.",
            registry=registry,
        ),
        events=Counter(
            "greenlane_hub_events_total",
            "fleet-events messages read, by event_type (unknown and malformed included).",
            ["event_type"],
            registry=registry,
        ),
    )
    return metrics, registry

"""Hub: the WebSocket hub behind the live map (greenlane_hub_*)."""

from __future__ import annotations

from observability.dashboards.kit import NS, Board, Panel, Query

HUB = "greenlane_hub"

BOARD = Board(
    uid="greenlane-hub",
    title="GreenLane / Hub",
    description="WebSocket clients of the live map, frames and bytes pushed, changes and "
    "coalescing, resets, lag behind the topic.",
    service="hub",
    panels=(
        Panel(
            "Clients",
            "WebSocket clients connected now.",
            (Query(f"sum({HUB}_clients{{{NS}}})", "clients"),),
            kind="stat",
            width=6,
        ),
        Panel(
            "Lag behind the topic",
            "How far the hub's view is behind fleet-events.",
            (Query(f"max({HUB}_lag_seconds{{{NS}}})", "lag"),),
            kind="stat",
            unit="s",
            width=6,
        ),
        Panel(
            "Frames and bytes per second",
            "Pushed to clients.",
            (
                Query(f"sum(rate({HUB}_frames_total{{{NS}}}[1m]))", "frames/s"),
                Query(f"sum(rate({HUB}_bytes_total{{{NS}}}[1m]))", "bytes/s"),
            ),
        ),
        Panel(
            "Changes and coalesced changes per second",
            "Coalesced: folded into a later change before it was sent.",
            (
                Query(f"sum(rate({HUB}_changes_total{{{NS}}}[1m]))", "changes"),
                Query(f"sum(rate({HUB}_coalesced_total{{{NS}}}[1m]))", "coalesced"),
            ),
        ),
        Panel(
            "Events consumed per second by type",
            "fleet-events the hub read.",
            (
                Query(
                    f"sum by (event_type) (rate({HUB}_events_total{{{NS}}}[1m]))",
                    "{{event_type}}",
                ),
            ),
        ),
        Panel(
            "Snapshot resets by reason",
            "Clients sent a fresh snapshot instead of a resume.",
            (
                Query(
                    f"sum by (reason) (increase({HUB}_snapshot_resets_total{{{NS}}}[15m]))",
                    "{{reason}}",
                    quiet="a reason has a series once a client is reset for it",
                ),
            ),
        ),
    ),
)

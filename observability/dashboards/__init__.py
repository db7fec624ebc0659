"""GreenLane's Grafana dashboards as code: one module per dashboard, listed in BOARDS.

`python -m observability.dashboards` writes observability/grafana/dashboards/*.json
(`make dashboards`); `--check` fails when a committed file is stale (`make lint`).
Adding a dashboard: write observability/dashboards/<name>.py with a BOARD (see
kit.py), add it to BOARDS below, run `make dashboards`. The chart provisions every
file of that folder.
"""

from __future__ import annotations

from observability.dashboards import (
    booking,
    fleet,
    hub,
    ingestion,
    planner,
    platform,
    pricing,
    simulations,
)
from observability.dashboards.kit import Board

BOARDS: tuple[Board, ...] = (
    fleet.BOARD,
    ingestion.BOARD,
    booking.BOARD,
    pricing.BOARD,
    platform.BOARD,
    simulations.BOARD,
    planner.BOARD,
    hub.BOARD,
)

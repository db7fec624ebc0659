"""What the simulator shows: a live progress line on stderr, the summary table at the end."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from greenlane.core.logs import logging_through
from greenlane.simulator.stats import Stats

REFRESH_S: Final = 0.5  # at most two refreshes a second
RATE_WINDOW_S: Final = 5.0
# Sorting all 200k stored latencies twice a second would stall the loop; a uniform
# subsample of this size estimates the p99 so far within a few percent.
LIVE_P99_SAMPLES: Final = 20_000


class RateMeter:
    """Answers per second over the last few seconds, from periodic readings of a counter."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self._readings: deque[tuple[float, int]] = deque()

    def update(self, now: float, total: int) -> float:
        self._readings.append((now, total))
        while len(self._readings) > 2 and now - self._readings[0][0] > self.window_s:
            self._readings.popleft()
        first_t, first_total = self._readings[0]
        return (total - first_total) / (now - first_t) if now > first_t else 0.0


def _fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}ms"


def progress_text(stats: Stats, cars: int, now: float, rate: float) -> Text:
    """One line: elapsed, streams open, sent, accepted, rejected, charging, answers/s, p99."""
    p99 = stats.latencies.percentile(99, max_samples=LIVE_P99_SAMPLES)
    line = Text()
    line.append(f"{stats.elapsed(now):6.1f}s", style="bold")
    line.append(f"  cars {stats.connected}/{cars}")
    line.append(f"  sent {stats.sent}")
    line.append(f"  accepted {stats.accepted}", style="green")
    line.append(f"  rejected {stats.rejected}", style="red" if stats.rejected else "")
    if stats.charging_sessions_started:
        line.append(f"  charging {stats.charging_now}", style="cyan")
    if stats.unavailable:
        line.append(f"  unavailable {stats.unavailable}", style="yellow")
    if stats.errors:
        line.append(f"  errors {stats.errors}", style="yellow")
    line.append(f"  {rate:,.0f} ev/s")
    line.append(f"  p99 {_fmt_ms(p99)}")
    line.no_wrap = True  # a narrow terminal cuts the line rather than scrolling it
    line.overflow = "ellipsis"
    return line


@asynccontextmanager
async def live_progress(stats: Stats, cars: int, console: Console) -> AsyncIterator[None]:
    """Refresh the progress line from a task, not rich's thread: stats belong to the loop."""
    meter = RateMeter()

    def render() -> Text:
        now = time.monotonic()
        return progress_text(stats, cars, now, meter.update(now, stats.answered))

    async def refresh(live: Live) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            live.update(render(), refresh=True)

    # Log records print above the progress line instead of tearing it.
    handler = RichHandler(console=console, show_path=False)
    with Live(render(), console=console, auto_refresh=False) as live, logging_through(handler):
        task = asyncio.create_task(refresh(live))
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            live.update(render(), refresh=True)


def summary_table(summary: dict[str, Any]) -> Table:
    """The end-of-run summary (from cli.summary) as a two-column table."""
    table = Table(title="GreenLane fleet simulation", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in summary.items():
        if name == "latency_ms":
            for key in ("p50", "p99", "mean", "max"):
                ms = value[key]
                table.add_row(f"latency {key}", "-" if ms is None else f"{ms:.2f} ms")
            table.add_row("latency samples", f"{value['samples']}")
        elif value is not None:
            table.add_row(name.replace("_", " "), str(value))
    return table

"""The live progress line and the summary table."""

from __future__ import annotations

from rich.console import Console

from greenlane.simulator.cli import summary
from greenlane.simulator.config import FleetConfig
from greenlane.simulator.display import RateMeter, progress_text, summary_table
from greenlane.simulator.stats import Stats


def test_the_rate_is_answers_per_second_over_the_recent_window() -> None:
    meter = RateMeter(window_s=5.0)
    assert meter.update(0.0, 0) == 0.0
    assert meter.update(1.0, 100) == 100.0
    assert meter.update(2.0, 300) == 150.0
    # Ten seconds on, the early readings have left the window.
    meter.update(10.0, 1300)
    assert meter.update(11.0, 1500) == 200.0


def test_the_progress_line_shows_cars_counts_rate_and_p99() -> None:
    stats = Stats()
    stats.start(0.0)
    stats.connected = 3
    for ms in range(1, 101):
        stats.record_sent()
        stats.record_answer(ms / 1000, accepted=1)
    line = progress_text(stats, cars=4, now=12.0, rate=50.0).plain
    assert "12.0s" in line
    assert "cars 3/4" in line
    assert "sent 100" in line and "accepted 100" in line and "rejected 0" in line
    assert "50 ev/s" in line
    assert "p99 99.0ms" in line


def test_the_summary_table_lists_counts_and_latencies() -> None:
    stats = Stats()
    stats.record_sent()
    stats.record_answer(0.004, accepted=1)
    console = Console(width=80, record=True, color_system=None)
    console.print(summary_table(summary(FleetConfig(cars=1), stats, "completed", None)))
    text = console.export_text()
    assert "result" in text and "completed" in text
    assert "latency p99" in text and "4.00 ms" in text
    rows = [line.strip("│ ").split(" ")[0] for line in text.splitlines()]
    assert "errors" in rows and "error" not in rows  # no error: no row for it

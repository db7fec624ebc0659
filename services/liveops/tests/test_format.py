"""The line of one event: the documented format, colours and flags at their exact boundaries."""

from __future__ import annotations

from datetime import UTC

import pytest

from greenlane.liveops.format import (
    battery_style,
    clock,
    format_event,
    format_invalid,
    is_critical,
    percent_text,
    plain_line,
    session_statistics,
    status_text,
    summary_line,
)
from greenlane.liveops.stats import Snapshot

# 2026-01-02 03:04:05.678 UTC
TS = 1767323045678


def _event(**overrides: object) -> dict[str, object]:
    event: dict[str, object] = {
        "car_id": "car-00042",
        "lat": 40.75123,
        "lon": -73.98765,
        "battery": 72.4,
        "velocity": 31.2,
        "timestamp": TS,
        "event_type": "telemetry",
    }
    event.update(overrides)
    return event


def _style_of(text: str, event: dict[str, object]) -> str:
    line = format_event(event, tz=UTC)
    start = line.plain.index(text)
    styles = [
        str(span.style)
        for span in line.spans
        if span.start <= start and span.end >= start + len(text)
    ]
    return " ".join(styles)


def test_a_telemetry_event_prints_the_seeds_line_exactly() -> None:
    # The seed's sample line, character for character (its car, place and instant).
    seed = {
        "car_id": "CAR-001",
        "lat": 40.7234,
        "lon": -73.9876,
        "battery": 85.3,
        "velocity": 45.2,
        "timestamp": 1767298532000,  # 2026-01-01 20:15:32 UTC
    }
    assert plain_line(seed, tz=UTC) == (
        "[20:15:32] 🟢 CAR-001    | Battery:  85.3% | Location: (40.7234, -73.9876)"
        " | Speed: 45.2 km/h"
    )


def test_a_telemetry_event_prints_in_the_documented_format() -> None:
    assert plain_line(_event(), tz=UTC) == (
        "[03:04:05] 🟢 car-00042  | Battery:  72.4% | Location: (40.7512, -73.9877)"
        " | Speed: 31.2 km/h"
    )


@pytest.mark.parametrize(
    ("battery", "dot"), [(72.4, "🟢"), (50.0, "🟡"), (20.0, "🟡"), (19.9, "🔴")]
)
def test_the_status_dot_follows_the_battery_band(battery: float, dot: str) -> None:
    assert plain_line(_event(battery=battery), tz=UTC).startswith(f"[03:04:05] {dot} car-00042")


@pytest.mark.parametrize(
    ("battery", "style"),
    [
        (100.0, "green"),
        (50.01, "green"),
        (50.0, "yellow"),
        (35.0, "yellow"),
        (20.0, "yellow"),
        (19.99, "red"),
        (15.0, "red"),
        (0.0, "red"),
    ],
)
def test_the_battery_colour_follows_the_thresholds(battery: float, style: str) -> None:
    assert battery_style(battery) == style


@pytest.mark.parametrize(
    ("battery", "critical"),
    [(50.0, False), (20.0, False), (15.0, False), (14.99, True), (10.0, True), (0.0, True)],
)
def test_critical_battery_is_flagged_below_15_percent_only(battery: float, critical: bool) -> None:
    line = plain_line(_event(battery=battery), tz=UTC)
    assert is_critical(battery) is critical
    assert line.endswith(" km/h ⚠️  CRITICAL BATTERY!") is critical
    assert ("CRITICAL" in line) is critical


def test_the_battery_percentage_carries_its_colour_and_the_flag_is_bold_red() -> None:
    event = _event(battery=10.0)
    assert _style_of(" 10.0%", event) == "red"
    assert _style_of("⚠️  CRITICAL BATTERY!", event) == "bold red"
    assert _style_of(" 72.4%", _event()) == "green"
    assert _style_of(" 35.0%", _event(battery=35.0)) == "yellow"


@pytest.mark.parametrize(
    ("battery", "shown"),
    [
        (19.99, " 19.9%"),  # rounding would print 20.0 in red
        (14.99, " 14.9%"),  # and 15.0 next to CRITICAL BATTERY!
        (15.0, " 15.0%"),
        (100.0, "100.0%"),
        (0.0, "  0.0%"),
        (72.4, " 72.4%"),
        (0.29, "  0.2%"),
    ],
)
def test_the_percentage_is_truncated_so_it_never_contradicts_its_colour(
    battery: float, shown: str
) -> None:
    assert percent_text(battery) == shown


def test_a_booking_event_prints_its_type_and_station_in_cyan() -> None:
    event = _event(event_type="booking_created", station_id="st-12")
    line = format_event(event, tz=UTC)
    assert line.plain == "[03:04:05] 📍 car-00042  | BOOKING CREATED | Station: st-12"
    assert _style_of("BOOKING CREATED | Station: st-12", event) == "cyan"


def test_a_booking_event_without_a_station_prints_only_its_type() -> None:
    line = plain_line(_event(event_type="booking_expired", battery=5.0), tz=UTC)
    assert line == "[03:04:05] 📍 car-00042  | BOOKING EXPIRED"


def test_a_car_plugged_in_at_a_station_says_where_it_charges() -> None:
    line = plain_line(_event(station_id="st-7", battery=12.0), tz=UTC)
    assert line.endswith("Speed: 31.2 km/h | Charging at st-7 ⚠️  CRITICAL BATTERY!")


def test_short_car_ids_are_padded_and_long_ones_kept_whole() -> None:
    assert " car-1      | Battery" in plain_line(_event(car_id="car-1"), tz=UTC)
    long_id = "fleet-north:car-000000042"
    assert f" {long_id} | Battery" in plain_line(_event(car_id=long_id), tz=UTC)


def test_the_clock_shows_whole_seconds_never_rounded_up() -> None:
    assert clock(12_999, UTC) == "[00:00:12]"
    assert clock(TS, UTC) == "[03:04:05]"


def test_a_timestamp_beyond_the_calendar_prints_question_marks_not_a_crash() -> None:
    assert clock(10**20, UTC) == "[??:??:??]"


def test_an_invalid_message_is_one_dim_line_naming_where_and_why() -> None:
    line = format_invalid(TS, 2, 17, b"car-9", "battery: must be\nwithin [0, 100]", tz=UTC)
    assert line.plain == (
        "[03:04:05] skipped invalid message (partition 2 offset 17 key car-9): "
        "battery: must be within [0, 100]"
    )
    assert str(line.style) == "dim"
    assert "\n" not in line.plain


def test_an_invalid_message_without_key_and_with_a_huge_error_stays_short() -> None:
    line = format_invalid(TS, 0, 1, None, "x" * 5000, tz=UTC).plain
    assert "key -)" in line
    assert len(line) < 300


def _snapshot(**overrides: object) -> Snapshot:
    values: dict[str, object] = {
        "elapsed_s": 12.34,
        "rate": 1234.5,
        "events": 5678,
        "shown": 5678,
        "invalid": 0,
        "cars": 100,
        "below_20": 7,
        "critical": 2,
        "charging": 3,
        "average_battery": 54.25,
        "lag": 12,
    }
    values.update(overrides)
    return Snapshot(**values)  # type: ignore[arg-type]


def test_the_status_line_shows_rate_totals_and_the_fleet_picture() -> None:
    line = status_text(_snapshot()).plain
    assert line == (
        "1,234.5 events/s  events 5,678  cars 100  below 20 % 7  critical 2"
        "  avg battery 54.2 %  charging 3  lag 12"
    )


def test_the_status_line_mentions_filtered_and_invalid_events_only_when_there_are_some() -> None:
    line = status_text(_snapshot(shown=10, invalid=3, lag=None, average_battery=None)).plain
    assert "events 5,678 (shown 10)" in line
    assert "invalid 3" in line
    assert "avg battery -" in line
    assert "lag" not in line


def test_the_summary_says_why_the_feed_stopped_and_what_it_saw() -> None:
    line = summary_line(_snapshot(shown=10, invalid=3), "interrupted")
    assert line == (
        "liveops: interrupted after 12.3 s: events 5,678 (shown 10, invalid skipped 3),"
        " cars 100, below 20 % 7, critical 2, charging 3, avg battery 54.2 %"
    )


def test_the_session_statistics_are_the_seeds_events_duration_and_rate() -> None:
    assert session_statistics(_snapshot(events=5678, elapsed_s=12.34)) == [
        "📊 Session Statistics:",
        "   Total events: 5,678",
        "   Duration: 12.3s",
        "   Events/sec: 460.1",
    ]
    assert session_statistics(_snapshot(events=0, elapsed_s=0.0))[-1] == "   Events/sec: 0.0"

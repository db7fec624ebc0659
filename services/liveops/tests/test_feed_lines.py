"""From a Kafka record to an output line: filters, --json pass-through, bad messages."""

from __future__ import annotations

import io
import json

from aiokafka import ConsumerRecord
from rich.console import Console
from rich.text import Text

from greenlane.liveops.feed import Feed, json_line
from greenlane.liveops.options import Options

NOW_MS = 1767323045678


def _record(value: bytes, offset: int = 0, key: bytes | None = b"car-1") -> ConsumerRecord:
    return ConsumerRecord(
        topic="fleet-events",
        partition=0,
        offset=offset,
        timestamp=NOW_MS,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=len(value),
        headers=[],
    )


def _event(car_id: str = "car-1", battery: float = 50.0, **extra: object) -> bytes:
    event = {
        "car_id": car_id,
        "lat": 40.75,
        "lon": -73.98,
        "battery": battery,
        "velocity": 12.0,
        "timestamp": NOW_MS,
        "event_type": "telemetry",
        **extra,
    }
    return json.dumps(event, separators=(",", ":")).encode()


def test_json_mode_prints_the_event_exactly_as_received() -> None:
    raw = _event(battery=50.25)
    feed = Feed(Options(json=True), io.StringIO(), 0.0)
    assert feed.handle(_record(raw), 1.0) == raw.decode()


def test_json_mode_puts_a_multi_line_event_on_one_line() -> None:
    pretty = json.dumps(json.loads(_event()), indent=2).encode()
    line = json_line(pretty)
    assert "\n" not in line
    assert json.loads(line) == json.loads(pretty)


def test_json_mode_counts_bad_messages_without_printing_them() -> None:
    feed = Feed(Options(json=True), io.StringIO(), 0.0)
    assert feed.handle(_record(b"not json"), 1.0) is None
    assert feed.handle(_record(_event(battery=120.0)), 1.0) is None
    assert feed.handle(_record(b'{"car_id": 5}'), 1.0) is None
    assert feed.handle(_record(b"", key=None), 1.0) is None
    assert feed.stats.invalid == 4
    assert feed.stats.events == 0


def test_a_bad_message_becomes_a_dim_warning_line_and_the_next_one_still_prints() -> None:
    feed = Feed(Options(), io.StringIO(), 0.0)
    warning = feed.handle(_record(_event(battery=120.0), offset=7), 1.0)
    assert isinstance(warning, Text)
    assert "skipped invalid message (partition 0 offset 7 key car-1): battery" in warning.plain
    line = feed.handle(_record(_event(battery=10.0), offset=8), 1.0)
    assert isinstance(line, Text)
    assert line.plain.endswith("CRITICAL BATTERY!")


def test_filtered_events_still_feed_the_fleet_statistics() -> None:
    feed = Feed(Options(cars=frozenset({"car-1"}), below=20.0), io.StringIO(), 0.0)
    assert feed.handle(_record(_event("car-1", 10.0)), 1.0) is not None
    assert feed.handle(_record(_event("car-1", 30.0)), 1.0) is None
    assert feed.handle(_record(_event("car-2", 5.0)), 1.0) is None
    snap = feed.stats.snapshot(2.0)
    assert (snap.events, snap.shown, snap.cars, snap.critical) == (3, 1, 2, 1)


def test_the_fleet_flag_shows_only_events_that_fleet_sent() -> None:
    feed = Feed(Options(fleets=frozenset({"acme"})), io.StringIO(), 0.0)
    assert feed.handle(_record(_event("car-1", fleet="acme")), 1.0) is not None
    assert feed.handle(_record(_event("car-2", fleet="zeta")), 1.0) is None
    assert feed.handle(_record(_event("car-3")), 1.0) is None  # no fleet: nobody's
    assert feed.handle(_record(_event("car-4", fleet=7)), 1.0) is None
    assert feed.stats.snapshot(2.0).shown == 1


def test_max_events_counts_shown_events_only() -> None:
    feed = Feed(Options(max_events=2, below=50.0), io.StringIO(), 0.0)
    feed.handle(_record(_event(battery=90.0)), 1.0)
    feed.handle(_record(b"bad"), 1.0)
    feed.handle(_record(_event(battery=10.0)), 1.0)
    assert not feed.done
    feed.handle(_record(_event(battery=20.0)), 1.0)
    assert feed.done


def test_lines_without_a_terminal_are_plain_text_one_per_event() -> None:
    out = io.StringIO()
    feed = Feed(Options(), out, 0.0)
    lines = [feed.handle(_record(_event(battery=b)), 1.0) for b in (80.0, 10.0)]
    console = Console(file=out, force_terminal=False, highlight=False, soft_wrap=True)
    feed.write([line for line in lines if line is not None], console)
    printed = out.getvalue().splitlines()
    assert len(printed) == 2
    assert "\x1b[" not in out.getvalue()
    assert printed[1].endswith(
        "Battery:  10.0% | Location: (40.7500, -73.9800) | Speed: 12.0 km/h ⚠️  CRITICAL BATTERY!"
    )


def test_json_lines_are_written_one_object_per_line() -> None:
    out = io.StringIO()
    feed = Feed(Options(json=True), out, 0.0)
    lines = [feed.handle(_record(_event(car_id=f"car-{i}")), 1.0) for i in range(3)]
    feed.write([line for line in lines if line is not None], Console(file=out))
    assert [json.loads(line)["car_id"] for line in out.getvalue().splitlines()] == [
        "car-0",
        "car-1",
        "car-2",
    ]

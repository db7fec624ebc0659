"""The live ops feed against a real broker (Tansu): output lines, filters, bad messages, signals.

In-process runs await greenlane.liveops.feed.amain/run_feed in the test's loop; the
signal tests and the `greenlane liveops` wrapper run as processes, as a user runs them.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest

from greenlane.cli.embedded import EmbeddedKafka, free_port
from greenlane.core.kafka import ensure_topic, make_producer
from greenlane.liveops.feed import amain, run_feed
from greenlane.liveops.options import Options

pytestmark = pytest.mark.integration

# The real `greenlane` entry point, with its real list of commands.
CLI = "import sys; import greenlane.cli.__main__ as cli; sys.exit(cli.main(sys.argv[1:]))"


def event(car_id: str, battery: float, **extra: object) -> bytes:
    value = {
        "car_id": car_id,
        "lat": 40.75123,
        "lon": -73.98765,
        "battery": battery,
        "velocity": 31.2,
        "timestamp": int(time.time() * 1000),
        "event_type": "telemetry",
        **extra,
    }
    return json.dumps(value, separators=(",", ":")).encode()


async def produce(bootstrap: str, topic: str, values: list[bytes], *, partitions: int = 3) -> None:
    """Write values in order, keyed by car (one partition per car, as ingestion does)."""
    await ensure_topic(bootstrap, topic, partitions=partitions)
    producer = make_producer(bootstrap, client_id="test-liveops")
    await producer.start()
    try:
        sent = []
        for value in values:
            try:
                key = json.loads(value)["car_id"].encode()
            except (ValueError, KeyError, TypeError):
                key = b"bad"
            sent.append(await producer.send(topic, value, key=key))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def options(kafka: EmbeddedKafka, topic: str, **values: object) -> Options:
    settings: dict[str, object] = {
        "bootstrap_servers": kafka.url,
        "topic": topic,
        "group": f"liveops-test-{uuid.uuid4().hex[:8]}",
        "from_beginning": True,
        "duration": 60.0,  # a safety net: every test ends on --max-events first
    }
    settings.update(values)
    return Options(**settings)  # type: ignore[arg-type]


def clean_env() -> dict[str, str]:
    """The environment without GREENLANE_* settings a developer's shell may carry."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GREENLANE_")}


async def test_json_mode_prints_every_event_exactly_as_received(
    kafka_server: EmbeddedKafka, topic: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sent = [event(f"car-{i % 4:05d}", 10.0 * i + 1.5) for i in range(10)]
    await produce(kafka_server.url, topic, sent)

    code = await amain(options(kafka_server, topic, json=True, max_events=10))

    out, err = capsys.readouterr()
    assert code == 0
    lines = out.splitlines()
    assert sorted(lines) == sorted(v.decode() for v in sent)
    assert all(json.loads(line)["event_type"] == "telemetry" for line in lines)
    assert "\x1b[" not in out
    assert "max events reached" in err
    assert "events 10 (shown 10," in err


async def test_bad_messages_are_counted_and_never_stop_the_feed(
    kafka_server: EmbeddedKafka, topic: str, capsys: pytest.CaptureFixture[str]
) -> None:
    values = [
        event("car-1", 80.0),
        b"not json at all",
        event("car-1", 150.0),  # battery out of range
        b'{"car_id": "car-1"}',  # fields missing
        event("car-1", 60.0),
        event("car-1", 40.0),
    ]
    # One partition: the bad messages come before the last good one, so all are counted.
    await produce(kafka_server.url, topic, values, partitions=1)

    code = await amain(options(kafka_server, topic, json=True, max_events=3))

    out, err = capsys.readouterr()
    assert code == 0
    assert [json.loads(line)["battery"] for line in out.splitlines()] == [80.0, 60.0, 40.0]
    assert "invalid skipped 3" in err


async def test_below_and_car_filters_show_only_the_matching_events(
    kafka_server: EmbeddedKafka, topic: str, capsys: pytest.CaptureFixture[str]
) -> None:
    values = [
        event("car-a", 80.0),
        event("car-a", 19.0),
        event("car-b", 15.0),
        event("car-c", 5.0),  # low, but not a chosen car
        event("car-b", 20.0),  # a chosen car, but not below 20
        event("car-a", 10.0),
        event("car-b", 1.0),  # the last one: the feed has seen everything before it
    ]
    await produce(kafka_server.url, topic, values, partitions=1)

    code = await amain(
        options(
            kafka_server,
            topic,
            json=True,
            below=20.0,
            cars=frozenset({"car-a", "car-b"}),
            max_events=4,
        )
    )

    out, err = capsys.readouterr()
    assert code == 0
    shown = [(e["car_id"], e["battery"]) for e in map(json.loads, out.splitlines())]
    assert shown == [("car-a", 19.0), ("car-b", 15.0), ("car-a", 10.0), ("car-b", 1.0)]
    # The statistics still describe the whole fleet, car-c included (latest 10, 1 and 5 %).
    assert "events 7 (shown 4, invalid skipped 0), cars 3" in err
    assert "below 20 % 3, critical 3" in err


async def test_terminal_mode_prints_coloured_lines_as_plain_text_when_not_a_terminal(
    kafka_server: EmbeddedKafka, topic: str
) -> None:
    values = [
        event("car-00042", 72.4),
        event("car-00042", 10.0),
        b"{broken",
        # A kind the feed does not show (the planner's): skipped, neither a line nor invalid.
        json.dumps(
            {
                "event_type": "charging_plan",
                "car_id": "car-00042",
                "site_id": "site-a",
                "station_id": "st-12",
                "timestamp": int(time.time() * 1000),
            }
        ).encode(),
        event("car-00042", 30.0, event_type="booking_created", station_id="st-12", booking_id="b1"),
    ]
    await produce(kafka_server.url, topic, values, partitions=1)
    out, err = io.StringIO(), io.StringIO()

    result = await run_feed(
        options(kafka_server, topic, max_events=3),
        asyncio.Event(),
        out=out,
        err=err,
        terminal=False,
    )

    lines = out.getvalue().splitlines()
    assert result.reason == "max events reached"
    assert "\x1b[" not in out.getvalue()  # no colour codes, no status line
    assert len(lines) == 4
    assert lines[0].endswith(
        "] 🟢 car-00042  | Battery:  72.4% | Location: (40.7512, -73.9877) | Speed: 31.2 km/h"
    )
    assert lines[1].endswith(
        "Battery:  10.0% | Location: (40.7512, -73.9877) | Speed: 31.2 km/h ⚠️  CRITICAL BATTERY!"
    )
    assert "skipped invalid message (partition 0 offset 2 key bad)" in lines[2]
    assert lines[3].endswith("] 📍 car-00042  | BOOKING CREATED | Station: st-12")
    assert f"following {topic}" in err.getvalue()


async def test_an_unreachable_broker_is_one_clear_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    started = time.monotonic()

    code = await amain(Options(bootstrap_servers=nowhere, connect_timeout=1.0))

    err = capsys.readouterr().err
    assert code == 1
    assert time.monotonic() - started < 10
    assert err.count("\n") == 1
    assert f"liveops: error: Kafka at {nowhere} (default) did not answer within 1 s" in err


async def _spawn(cwd: Path, *argv: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=clean_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
async def test_a_signal_stops_the_feed_cleanly_with_a_summary_and_exit_0(
    kafka_server: EmbeddedKafka, topic: str, tmp_path: Path, sig: signal.Signals
) -> None:
    # Old events in one batch: the feed must start after them, not inside the batch.
    await produce(kafka_server.url, topic, [event("car-old", 50.0 + i) for i in range(20)])
    proc = await _spawn(
        tmp_path,
        sys.executable,
        "-m",
        "greenlane.liveops",
        "--bootstrap-servers",
        kafka_server.url,
        "--topic",
        topic,
        "--group",
        f"liveops-test-{uuid.uuid4().hex[:8]}",
        "--json",
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        ready = await asyncio.wait_for(proc.stderr.readline(), 60)
        assert b"new events only" in ready, ready

        fresh = event("car-new", 12.5)
        await produce(kafka_server.url, topic, [fresh])
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.decode().strip() == fresh.decode()

        proc.send_signal(sig)
        rest, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    assert rest == b""  # none of the 20 older events
    tail = err.decode().strip().splitlines()
    summary = tail[-1]
    assert summary.startswith("liveops: interrupted after ")
    assert "events 1 (shown 1, invalid skipped 0), cars 1" in summary
    assert tail[-5:-3] == ["📊 Session Statistics:", "   Total events: 1"]
    assert tail[-3].startswith("   Duration: ") and tail[-3].endswith("s")
    assert tail[-2].startswith("   Events/sec: ")


async def test_greenlane_liveops_runs_the_same_feed(
    kafka_server: EmbeddedKafka, topic: str, tmp_path: Path
) -> None:
    await produce(kafka_server.url, topic, [event("car-1", 9.0), event("car-1", 70.0)])
    proc = await _spawn(
        tmp_path,
        sys.executable,
        "-c",
        CLI,
        "liveops",
        "--bootstrap-servers",
        kafka_server.url,
        "--topic",
        topic,
        "--group",
        f"liveops-test-{uuid.uuid4().hex[:8]}",
        "--from-beginning",
        "--below",
        "20",
        "--max-events",
        "1",
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert (
        out.decode()
        .splitlines()[0]
        .endswith(
            "Battery:   9.0% | Location: (40.7512, -73.9877) | Speed: 31.2 km/h"
            " ⚠️  CRITICAL BATTERY!"
        )
    )
    assert "max events reached" in err.decode()


async def test_greenlane_liveops_refuses_a_bad_flag_naming_it(tmp_path: Path) -> None:
    proc = await _spawn(tmp_path, sys.executable, "-c", CLI, "liveops", "--below", "150")
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert "argument --below: must be a percentage from 0 to 100" in err.decode()

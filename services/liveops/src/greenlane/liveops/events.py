"""`greenlane events`: read the event topic like `kcat -C -o -N -e`, with keys and headers.

A client that works against every broker GreenLane runs on (the embedded Tansu, Redpanda,
Kafka): aiokafka, every partition assigned (no group, nothing committed). By default it
prints the last 10 events of each partition and exits at the end of the topic;
`--from-beginning` prints everything, `--follow` keeps printing new events.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from greenlane.core.errors import ConfigurationError
from greenlane.core.kafka import fetch_high_watermarks
from greenlane.liveops.consumer import silenced, stop_consumer
from greenlane.liveops.options import (
    DEFAULT_BOOTSTRAP,
    add_car_filter,
    connection_arguments,
    connection_of,
    positive_int_arg,
    seconds_arg,
)

PROG: Final = "greenlane events"
DEFAULT_LAST: Final = 10
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
END_WAIT_S: Final = 5.0  # at most this long to learn where each partition ends
POLL_MS: Final = 200

DESCRIPTION: Final = (
    "Print the events of the fleet-events topic (like kcat -C): by default the last "
    f"{DEFAULT_LAST} of each partition, then exit at the end of the topic. One line per "
    "event: partition@offset, key, value; --json adds the timestamp and headers."
)


@dataclass(frozen=True)
class EventsOptions:
    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    bootstrap_source: str = "default"
    topic: str = "fleet-events"
    from_beginning: bool = False
    last: int = DEFAULT_LAST
    cars: frozenset[str] = field(default_factory=frozenset)
    json: bool = False
    follow: bool = False
    max_events: int | None = None
    connect_timeout: float = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    start = parser.add_mutually_exclusive_group()
    start.add_argument(
        "--from-beginning", action="store_true", help="every event still in the topic"
    )
    start.add_argument(
        "--last",
        type=positive_int_arg,
        default=DEFAULT_LAST,
        metavar="N",
        help=f"the last N events of each partition (default {DEFAULT_LAST}), like kcat -o -N",
    )
    add_car_filter(parser, "only this car's events (repeat for several)")
    add(
        "--json",
        action="store_true",
        help="one JSON object per line: topic, partition, offset, timestamp, key, headers, "
        "event (for | jq)",
    )
    add("--follow", action="store_true", help="keep printing new events (Ctrl+C stops)")
    add("--max-events", type=positive_int_arg, metavar="N", help="exit after N events")
    connection_arguments(parser)
    add(
        "--connect-timeout",
        type=seconds_arg,
        default=10.0,
        metavar="S",
        help="give up when the broker does not answer this long (default 10)",
    )


def options_from_args(
    args: argparse.Namespace, environ: dict[str, str] | None = None, cwd: Path | None = None
) -> EventsOptions:
    return EventsOptions(
        **connection_of(args, environ, cwd),
        from_beginning=args.from_beginning,
        last=args.last,
        cars=frozenset(args.cars or ()),
        json=args.json,
        follow=args.follow,
        max_events=args.max_events,
        connect_timeout=args.connect_timeout,
    )


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "replace")


def render(record: ConsumerRecord, as_json: bool) -> str:
    """One event: `partition@offset key value`, or a JSON object with everything."""
    if not as_json:
        value = _text(record.value) or ""
        return f"{record.partition}@{record.offset} {_text(record.key) or '-'} {value.strip()}"
    try:
        event: Any = json.loads(record.value) if record.value is not None else None
    except ValueError:
        event = None
    line: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": _text(record.key),
        "headers": {name: _text(value) for name, value in record.headers or ()},
        "event": event,
    }
    if event is None:
        line["value"] = _text(record.value)  # not JSON: shown as it came
    return json.dumps(line, separators=(",", ":"), ensure_ascii=False)


def _wanted(record: ConsumerRecord, cars: frozenset[str]) -> bool:
    if not cars:
        return True
    # The key is the car id (the topic's contract); the event says it too.
    if record.key is not None and _text(record.key) in cars:
        return True
    try:
        return bool(json.loads(record.value or b"").get("car_id") in cars)
    except (ValueError, AttributeError):
        return False


class TopicMissing(Exception):
    """The topic does not exist (yet)."""


async def read_events(options: EventsOptions, out: TextIO, stop: asyncio.Event) -> int:
    """Print what the options ask for; returns how many events were printed."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=options.bootstrap_servers,
        client_id="greenlane-events",
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=10_000,
    )
    try:
        with silenced():
            await asyncio.wait_for(consumer.start(), options.connect_timeout)
    except BaseException:
        with silenced():
            await stop_consumer(consumer)
        raise
    try:
        await consumer.topics()
        partitions = consumer.partitions_for_topic(options.topic)
        if not partitions:
            raise TopicMissing(options.topic)
        tps = [TopicPartition(options.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        starts = await consumer.beginning_offsets(tps)
        # Where each partition ends, as a fetch reports it (the embedded broker's
        # ListOffsets(latest) stops at the last record batch; see core.kafka).
        ends = await fetch_high_watermarks(consumer, tps, END_WAIT_S)
        for tp in tps:
            end = ends.get(tp, starts[tp])
            first = starts[tp] if options.from_beginning else max(starts[tp], end - options.last)
            consumer.seek(tp, first)
        printed = 0
        while not stop.is_set():
            if not options.follow:
                positions = [await consumer.position(tp) for tp in tps]
                if all(
                    pos >= ends.get(tp, starts[tp]) for pos, tp in zip(positions, tps, strict=True)
                ):
                    break
            batch = await consumer.getmany(timeout_ms=POLL_MS)
            lines = []
            for tp, records in batch.items():
                for record in records:
                    if not options.follow and record.offset >= ends.get(tp, starts[tp]):
                        continue  # written after we started: not ours to print
                    if _wanted(record, options.cars):
                        lines.append(render(record, options.json))
            if options.max_events is not None:
                lines = lines[: options.max_events - printed]
            if lines:
                out.write("\n".join(lines) + "\n")
                out.flush()
                printed += len(lines)
            if options.max_events is not None and printed >= options.max_events:
                break
        return printed
    finally:
        await stop_consumer(consumer)


async def amain(options: EventsOptions, out: TextIO, err: TextIO) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await read_events(options, out, stop)
    except TopicMissing:
        err.write(
            f"{PROG}: topic {options.topic} does not exist on {options.bootstrap_servers} "
            f"({options.bootstrap_source}); is `greenlane dev` running?\n"
        )
        return EXIT_FAILED
    except (KafkaError, OSError, TimeoutError) as exc:
        err.write(
            f"{PROG}: error: Kafka at {options.bootstrap_servers} ({options.bootstrap_source}) "
            f"did not answer within {options.connect_timeout:g} s ({type(exc).__name__}); "
            "is `greenlane dev` running?\n"
        )
        return EXIT_FAILED
    except BrokenPipeError:
        return EXIT_OK  # `| head` has read enough
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return execute(args)


def execute(args: argparse.Namespace) -> int:
    try:
        options = options_from_args(args)
    except ConfigurationError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return EXIT_USAGE
    return asyncio.run(amain(options, sys.stdout, sys.stderr))

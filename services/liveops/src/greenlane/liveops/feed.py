"""The live feed: read fleet events from Kafka, print a line per event, keep the statistics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, TextIO

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler
from rich.text import Text

from greenlane.core.errors import InvalidField
from greenlane.core.events import parse_event
from greenlane.core.logs import logging_through
from greenlane.liveops.consumer import (
    BrokerUnreachable,
    commit_positions,
    connect,
    lag,
    stop_consumer,
    take_partitions,
    throttled,
)
from greenlane.liveops.filters import EventFilter
from greenlane.liveops.format import (
    format_event,
    format_invalid,
    format_plan,
    session_statistics,
    status_text,
    summary_line,
)
from greenlane.liveops.options import Options
from greenlane.liveops.stats import SessionStats, Snapshot

log = logging.getLogger(__name__)

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
POLL_S: Final = 0.2  # longest a Ctrl+C or the --duration deadline waits for a poll
REFRESH_S: Final = 0.5  # the status line refreshes at most twice a second
COMMIT_EVERY_S: Final = 5.0


class OutputClosed(Exception):
    """stdout went away (`| head` has read enough): a normal end, not an error."""


class _FeedConsole(Console):
    def on_broken_pipe(self) -> None:
        # Rich would exit the process on the spot; the feed must first stop its consumer.
        self.quiet = True
        raise OutputClosed


@dataclass(frozen=True)
class FeedResult:
    """How the feed ended and what it saw."""

    reason: str  # "interrupted", "max events reached", "duration reached", "output closed"
    snapshot: Snapshot


def json_line(raw: bytes) -> str:
    """The event exactly as received when it is one line of UTF-8, else re-encoded compactly."""
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        text = ""
    if not text or "\n" in text or "\r" in text or text.startswith("\ufeff"):
        text = json.dumps(json.loads(raw), separators=(",", ":"), ensure_ascii=False)
    return text


class Feed:
    """One run's filter, statistics and output; turns records into lines."""

    def __init__(self, options: Options, out: TextIO, started: float) -> None:
        self.options = options
        self.out = out
        self.filter = EventFilter(options.cars, options.below, options.fleets)
        self.stats = SessionStats(started)

    def handle(self, record: ConsumerRecord, now: float) -> Text | str | None:
        """The line for one record, or None when it is filtered out (or bad, in --json)."""
        raw = record.value or b""
        try:
            event = parse_event(raw)
        except InvalidField as exc:
            # A bad message costs one dim line (or a count), never the feed.
            self.stats.record_invalid()
            if self.options.json:
                return None
            return format_invalid(
                record.timestamp, record.partition, record.offset, record.key, str(exc)
            )
        state = event.state
        if state is None:
            if (
                self.options.plans
                and event.event_type == "charging_plan"
                and (not self.filter.cars or event.car_id in self.filter.cars)
            ):
                return json_line(raw) if self.options.json else format_plan(event.data)
            return None  # a kind the feed does not show: skipped, not bad
        self.stats.record(now, state.car_id, state.battery, state.station_id)
        fleet = event.data.get("fleet")
        if not self.filter.matches(
            state.car_id, state.battery, fleet if isinstance(fleet, str) else ""
        ):
            return None
        self.stats.shown += 1
        if self.options.json:
            return json_line(raw)
        return format_event(state.to_event(event.event_type))

    def write(self, lines: list[Text | str], console: Console) -> None:
        """Print a poll's lines at once: one write (and one status redraw) per batch."""
        if not lines:
            return
        if self.options.json:
            try:
                self.out.write("\n".join(str(line) for line in lines) + "\n")
                self.out.flush()  # live for `| jq`, not at the end of a 8 KiB buffer
            except BrokenPipeError:
                raise OutputClosed from None
            return
        text = Text("\n").join(Text(line) if isinstance(line, str) else line for line in lines)
        console.print(text, soft_wrap=True, no_wrap=True, crop=False)

    @property
    def done(self) -> bool:
        limit = self.options.max_events
        return limit is not None and self.stats.shown >= limit


@contextlib.asynccontextmanager
async def _status_line(
    console: Console, enabled: bool, snapshot: Callable[[], Snapshot]
) -> AsyncIterator[None]:
    """A bottom status line, refreshed from a task: the statistics belong to the loop."""
    if not enabled:
        yield
        return
    live = Live(
        status_text(snapshot()),
        console=console,
        auto_refresh=False,
        transient=True,
        redirect_stdout=False,
        redirect_stderr=False,
    )

    async def refresh() -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            live.update(status_text(snapshot()), refresh=True)

    # Log records print above the status line instead of tearing it.
    with live, logging_through(RichHandler(console=console, show_path=False)):
        task = asyncio.create_task(refresh())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _follow(
    consumer: AIOKafkaConsumer,
    feed: Feed,
    positions: dict[TopicPartition, int],
    console: Console,
    stop: asyncio.Event,
    deadline: float | None,
) -> str:
    """Poll, print and count until a stop condition; returns why it stopped."""
    loop = asyncio.get_running_loop()
    next_commit = loop.time() + COMMIT_EVERY_S
    committing: asyncio.Task[None] | None = None
    try:
        while not stop.is_set():
            timeout = POLL_S
            if deadline is not None:
                timeout = min(timeout, deadline - loop.time())
                if timeout <= 0:
                    return "duration reached"
            batch = await consumer.getmany(timeout_ms=max(int(timeout * 1000), 1))
            now = loop.time()
            lines: list[Text | str] = []
            for tp, records in batch.items():
                for record in records:
                    positions[tp] = record.offset + 1
                    line = feed.handle(record, now)
                    if line is not None:
                        lines.append(line)
                    if feed.done:
                        break
                if feed.done:
                    break
            feed.write(lines, console)
            if feed.done:
                return "max events reached"
            if now >= next_commit and (committing is None or committing.done()):
                # In the background: a slow broker must not stall the feed.
                committing = asyncio.create_task(commit_positions(consumer, positions))
                next_commit = now + COMMIT_EVERY_S
        return "interrupted"
    finally:
        if committing is not None:
            await committing  # bounded by COMMIT_TIMEOUT_S


async def run_feed(
    options: Options,
    stop: asyncio.Event,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    terminal: bool | None = None,
    status: bool | None = None,
) -> FeedResult:
    """Follow the topic until stop is set, --max-events or --duration; no signals, no exit.

    `greenlane dev` can await this in its own loop with its own stop event. terminal=None
    lets rich detect whether out takes colours (False: plain text whatever the environment
    says); status=None shows the status line only on a terminal and without --json. Raises
    BrokerUnreachable when the broker does not answer within options.connect_timeout.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    loop = asyncio.get_running_loop()
    started = loop.time()
    console = _FeedConsole(file=out, force_terminal=terminal, highlight=False, soft_wrap=True)
    feed = Feed(options, out, started)
    show_status = (not options.json and console.is_terminal) if status is None else status
    deadline = None if options.duration is None else started + options.duration
    consumer = await connect(options, stop)
    if consumer is None:
        return FeedResult("interrupted", feed.stats.snapshot(loop.time()))
    reason = "interrupted"
    try:
        with throttled():
            try:
                positions = await take_partitions(consumer, options, stop, err)
            except KafkaError as exc:  # the broker went away between start and assignment
                raise BrokerUnreachable(type(exc).__name__) from None
            if positions is not None:
                start = "from the beginning" if options.from_beginning else "new events only"
                err.write(
                    f"liveops: following {options.topic} on {options.bootstrap_servers}"
                    f" ({options.bootstrap_source}), group {options.group}, {start},"
                    f" showing {feed.filter.describe()}; Ctrl+C to stop\n"
                )
                err.flush()

                def snapshot() -> Snapshot:
                    return feed.stats.snapshot(loop.time(), lag(consumer, positions))

                async with _status_line(console, show_status, snapshot):
                    reason = await _follow(consumer, feed, positions, console, stop, deadline)
                await commit_positions(consumer, positions)
    except OutputClosed:
        reason = "output closed"
    finally:
        await stop_consumer(consumer)
    return FeedResult(reason, feed.stats.snapshot(loop.time()))


@contextlib.contextmanager
def _signals_set(stop: asyncio.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set stop; the previous handlers come back afterwards."""
    loop = asyncio.get_running_loop()
    saved: list[tuple[signal.Signals, Any]] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            continue
        saved.append((sig, previous))
    try:
        yield
    finally:
        for sig, previous in saved:
            loop.remove_signal_handler(sig)
            if previous is not None:
                signal.signal(sig, previous)


async def amain(options: Options, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """The command: run the feed; Ctrl+C or SIGTERM stops it cleanly; summary on stderr."""
    err = sys.stderr if err is None else err
    stop = asyncio.Event()
    with _signals_set(stop):
        try:
            result = await run_feed(options, stop, out=out, err=err)
        except BrokerUnreachable as exc:
            err.write(
                f"liveops: error: Kafka at {options.bootstrap_servers}"
                f" ({options.bootstrap_source}) did not answer within"
                f" {options.connect_timeout:g} s ({exc}); is `greenlane dev` running?\n"
            )
            err.flush()
            return EXIT_FAILED
    err.write("\n".join([*session_statistics(result.snapshot), ""]))
    err.write(summary_line(result.snapshot, result.reason) + "\n")
    err.flush()
    return EXIT_OK

"""The running hub: events in, one tick at a time; frames out, shared by clients at one position.

The follower offers decoded events; each tick applies them all to the state at once, so
between two ticks the state (and its sequence number) stands still. Every client at the
previous tick's position gets the same encoded frame; a client that fell behind gets a
coalesced catch-up (shared by clients at the same position), and one more than
`slow_client_ticks` behind gets the tick's snapshot. A client of one fleet (not an
operator) gets frames of its fleet's cars, bookings and plans (and every station),
encoded once per tick and fleet. No client has a queue: a slow client
only falls back in sequence numbers, so it costs the hub no memory and delays nobody.

A tick that applies traced events (their Kafka records carry a sampled trace context) is
a span, `hub frame`, continuing the first one's trace and linking the others
(core.telemetry.continue_and_link); an untraced tick costs no span at all.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.trace import SpanContext

from greenlane.core.telemetry import continue_and_link
from greenlane.hub.events import Decoded
from greenlane.hub.frames import encode_changes, encode_snapshot
from greenlane.hub.metrics import HubMetrics
from greenlane.hub.state import FleetState

log = logging.getLogger(__name__)

STATS_EVERY_MS = 1000
FRAME_SPAN: Final = "hub frame"


@dataclass(frozen=True, slots=True)
class Frame:
    text: str
    seq: int  # the position the frame brings its client to
    reset: str | None = None  # why it is a snapshot, when it is one


class Hub:
    def __init__(
        self,
        state: FleetState,
        metrics: HubMetrics,
        *,
        slow_client_ticks: int = 8,
        epoch: str | None = None,
        max_pending: int = 200_000,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self._traced: list[SpanContext] = []  # of the events pending for the next tick
        self.state = state
        self.metrics = metrics
        self.epoch = epoch or secrets.token_hex(8)
        self.slow_client_ticks = slow_client_ticks
        self.max_pending = max_pending
        self.tick_no = 0
        self.closed = False
        self.extra_stats: dict[str, Any] = {}
        self.stats: dict[str, Any] = {}
        self._pending: list[tuple[Decoded, int]] = []
        self._room = asyncio.Event()
        self._room.set()
        self._prev_seq = state.seq
        self._stats_changed = False
        self._stats_at = -STATS_EVERY_MS
        self._events_seen = 0
        self._events_at_stats = 0
        self._tick_frame: Frame | None = None
        self._tick_changed: list[Any] = []
        self._tick_folded = 0
        self._fleet_ticks: dict[str, Frame | None] = {}
        self._fleet_stats: dict[str, dict[str, Any]] = {}
        self._catchups: dict[tuple[int, str | None], Frame] = {}
        self._snapshots: dict[tuple[str, str | None], Frame] = {}
        self._ticked: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    # ---------------------------------------------------------------- events in

    async def offer(
        self, event: Decoded, event_time: int, traced: SpanContext | None = None
    ) -> None:
        """Queue an event for the next tick; waits while a full tick's worth is queued.

        traced: the sampled trace context its record carries, if any."""
        while len(self._pending) >= self.max_pending:
            self._room.clear()
            await self._room.wait()
        self._pending.append((event, event_time))
        if traced is not None:
            self._traced.append(traced)
        self._events_seen += 1

    def tick(self, now_ms: int, *, caught_up: bool) -> None:
        """Apply what arrived since the last tick, then wake every client."""
        if not self._traced:
            self._tick(now_ms, caught_up)
            return
        traced, self._traced = self._traced, []
        parent, links, dropped = continue_and_link(traced)
        with self._tracer.start_as_current_span(FRAME_SPAN, context=parent, links=links) as span:
            before = self.state.seq
            events = len(self._pending)
            self._tick(now_ms, caught_up)
            span.set_attribute("greenlane.frame.events", events)
            span.set_attribute("greenlane.frame.traced", len(traced))
            span.set_attribute("greenlane.frame.from", before)
            span.set_attribute("greenlane.frame.seq", self.state.seq)
            span.set_attribute(
                "greenlane.frame.bytes", len(self._tick_frame.text) if self._tick_frame else 0
            )
            if dropped:
                span.set_attribute("greenlane.links.dropped", dropped)

    def _tick(self, now_ms: int, caught_up: bool) -> None:
        state = self.state
        before = state.seq
        pending, self._pending = self._pending, []
        self._room.set()
        for event, event_time in pending:
            state.apply(event, event_time)
        state.expire(now_ms, caught_up=caught_up)
        changed, folded = state.changes_since(before)
        if state.seq > before:
            self.metrics.changes.inc(state.seq - before)
            if folded:
                self.metrics.coalesced.inc(folded)
        self._stats_changed = False
        if now_ms - self._stats_at >= STATS_EVERY_MS:
            elapsed = max(now_ms - self._stats_at, 1) if self._stats_at >= 0 else STATS_EVERY_MS
            rate = (self._events_seen - self._events_at_stats) * 1000.0 / elapsed
            self._stats_at, self._events_at_stats = now_ms, self._events_seen
            self.stats = {
                **state.stats(now_ms).as_dict(),
                "events_per_s": round(rate, 1),
                **self.extra_stats,
                "time": now_ms,
            }
            self._stats_changed = True
        self._prev_seq = before
        self._tick_frame = None
        self._tick_changed, self._tick_folded = changed, folded
        self._fleet_ticks.clear()
        self._fleet_stats.clear()
        if state.seq > before or self._stats_changed:
            self._tick_frame = Frame(
                encode_changes(
                    before,
                    state.seq,
                    changed,
                    folded,
                    self.stats if self._stats_changed else None,
                ),
                state.seq,
            )
        self._catchups.clear()
        self._snapshots.clear()
        self.tick_no += 1
        ticked, self._ticked = self._ticked, asyncio.get_running_loop().create_future()
        ticked.set_result(self.tick_no)

    async def next_tick(self, seen: int) -> int:
        """The number of the first tick after `seen` (at once when it has happened);
        after close(), at once too: callers look at `closed`."""
        if self.tick_no > seen or self.closed:
            return self.tick_no
        return await asyncio.shield(self._ticked)

    def close(self) -> None:
        """No more ticks: every waiting client is woken to say goodbye."""
        self.closed = True
        if not self._ticked.done():
            self._ticked.set_result(self.tick_no)

    # ---------------------------------------------------------------- frames out

    def stats_for(self, fleet: str | None) -> dict[str, Any]:
        """The panel's figures a client of `fleet` sees (None: everyone's)."""
        if fleet is None or not self.stats:
            return self.stats
        stats = self._fleet_stats.get(fleet)
        if stats is None:
            now = int(self.stats.get("time", 0))
            stats = {**self.stats, **self.state.stats(now, fleet).as_dict()}
            stats.pop("events_per_s", None)
            self._fleet_stats[fleet] = stats
        return stats

    def snapshot(self, reason: str | None = None, fleet: str | None = None) -> Frame:
        """Everything at the current position (encoded once per tick, reason and fleet)."""
        key = (reason or "", fleet)
        frame = self._snapshots.get(key)
        if frame is None:
            entries = self.state.entries()
            if fleet is not None:
                entries = (e for e in entries if e.visible_to(fleet))
            text = encode_snapshot(
                self.epoch, self.state.seq, entries, self.stats_for(fleet), reason
            )
            frame = Frame(text, self.state.seq, reason)
            self._snapshots[key] = frame
        return frame

    def first_frame(self, since: int | None, epoch: str | None, fleet: str | None = None) -> Frame:
        """What a client connecting at `since` (of hub instance `epoch`) gets first."""
        if since is None:
            return self.snapshot("new", fleet)
        if epoch is not None and epoch != self.epoch:
            return self.snapshot("epoch", fleet)
        problem = self.state.resume_problem(since)
        if problem is not None:
            return self.snapshot(problem, fleet)
        return self.catch_up(since, force=True, fleet=fleet)

    def catch_up(self, position: int, *, force: bool = False, fleet: str | None = None) -> Frame:
        frame = self._catchups.get((position, fleet))
        if frame is None:
            changed, folded = self.state.changes_since(position)
            if fleet is not None:
                changed = [e for e in changed if e.visible_to(fleet)]
            text = encode_changes(position, self.state.seq, changed, folded, self.stats_for(fleet))
            frame = Frame(text, self.state.seq)
            self._catchups[(position, fleet)] = frame
        return frame

    def _tick_frame_for(self, fleet: str | None) -> Frame | None:
        if fleet is None or self._tick_frame is None:
            return self._tick_frame
        if fleet not in self._fleet_ticks:
            changed = [e for e in self._tick_changed if e.visible_to(fleet)]
            stats = self.stats_for(fleet) if self._stats_changed else None
            text = encode_changes(self._prev_seq, self.state.seq, changed, self._tick_folded, stats)
            self._fleet_ticks[fleet] = Frame(text, self.state.seq)
        return self._fleet_ticks[fleet]

    def next_frame(
        self, position: int, ticks_behind: int, fleet: str | None = None
    ) -> Frame | None:
        """The frame for a client at `position` that last took a frame `ticks_behind` ago."""
        if ticks_behind > self.slow_client_ticks:
            return self.snapshot("slow", fleet)
        if position == self._prev_seq:
            return self._tick_frame_for(fleet)  # None when nothing changed in the last tick
        if position == self.state.seq:
            return None
        if self.state.resume_problem(position) is not None:
            return self.snapshot("too_old", fleet)
        return self.catch_up(position, fleet=fleet)

    def counted(self, frame: Frame) -> Callable[[], None]:
        """Account for a frame once it is sent."""

        def done() -> None:
            self.metrics.frames.inc()
            self.metrics.bytes.inc(len(frame.text))
            if frame.reset is not None:
                self.metrics.resets.labels(frame.reset).inc()

        return done

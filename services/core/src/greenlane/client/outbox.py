"""The client's buffer: every status kept until acknowledged, bounded, per-car order.

Pure logic, no I/O: `greenlane.client.link` moves entries between its states as answers
come, and the unit tests drive it directly.

A status is *waiting* (to be sent), *in flight* (sent, not yet answered) or gone
(acknowledged, rejected as invalid, or dropped by the overflow policy, each counted).
A failed send (UNAVAILABLE, RATE_LIMITED, a broken stream) puts its entries back at the
front of their car's queue, in their original order, so a car's statuses are always
sent in the order they were put. With `strict_order` (the default) a car has at most one
message in flight: a car's later status is never sent before an earlier one is stored,
so a resend can never land after a newer status of the same car.

Overflow (`capacity` statuses held, waiting and in flight together): the oldest waiting
status that is *not its car's latest* is dropped and counted in `dropped`: the car's
newest state always survives, history goes first. When every waiting status is its car's
latest (more cars than capacity), the oldest waiting status is dropped all the same
(counted in `dropped` and `dropped_latest`); when everything held is in flight, the new
status itself is refused (counted in `dropped`). Nothing is ever lost without a count.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from greenlane.v1 import fleet_pb2

__all__ = ["Entry", "Outbox", "OutboxCounters", "State"]


class State(Enum):
    WAITING = "waiting"
    IN_FLIGHT = "in_flight"
    ACKED = "acked"
    REJECTED = "rejected"
    DROPPED = "dropped"


@dataclass(eq=False, slots=True)
class Entry:
    """One status in the outbox; `seq` orders every put, across cars."""

    seq: int
    status: fleet_pb2.CarStatus
    state: State = State.WAITING
    attempts: int = 0

    @property
    def car_id(self) -> str:
        return self.status.car_id


@dataclass
class OutboxCounters:
    """What happened to the statuses put: each ends in exactly one of the last four."""

    put: int = 0
    sent: int = 0  # sends, resends included
    resent: int = 0
    acked: int = 0
    rejected: int = 0
    dropped: int = 0
    dropped_latest: int = 0  # of `dropped`: a car's newest status, only when unavoidable

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass(slots=True)
class _Car:
    waiting: deque[Entry] = field(default_factory=deque)
    in_flight: int = 0


class Outbox:
    """Bounded, per-car ordered store of statuses not yet acknowledged."""

    def __init__(self, capacity: int = 100_000, *, strict_order: bool = True) -> None:
        if capacity < 1:
            raise ValueError(f"capacity: must be at least 1, got {capacity}")
        self.capacity = capacity
        self.strict_order = strict_order
        self.counters = OutboxCounters()
        self._seq = itertools.count()
        self._cars: dict[str, _Car] = {}
        # Cars that may send now, in the order they became ready (fair across cars).
        self._ready: dict[str, None] = {}
        # Every entry held, in put order; gone entries are skipped lazily.
        self._order: deque[Entry] = deque()
        self._held = 0
        self._waiting = 0

    # --- sizes ---------------------------------------------------------------------
    def __len__(self) -> int:
        """Statuses held: waiting and in flight."""
        return self._held

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def in_flight(self) -> int:
        return self._held - self._waiting

    def has_ready(self) -> bool:
        return bool(self._ready)

    def next_backlog(self) -> int:
        """How many statuses wait for the car that would be taken next (0: none ready)."""
        if not self._ready:
            return 0
        return len(self._cars[next(iter(self._ready))].waiting)

    # --- put -----------------------------------------------------------------------
    def put(self, status: fleet_pb2.CarStatus) -> Entry | None:
        """Keep a status; returns the entry the overflow policy dropped, if any."""
        self.counters.put += 1
        dropped = None
        if self._held >= self.capacity:
            dropped = self._drop_one()
            if dropped is None:  # everything held is in flight: refuse the new one
                self.counters.dropped += 1
                return Entry(-1, status, State.DROPPED)
        entry = Entry(next(self._seq), status)
        car = self._cars.get(status.car_id)
        if car is None:
            car = self._cars[status.car_id] = _Car()
        car.waiting.append(entry)
        self._order.append(entry)
        self._held += 1
        self._waiting += 1
        self._update_ready(status.car_id, car)
        return dropped

    def _drop_one(self) -> Entry | None:
        self._prune()
        oldest_waiting = None
        for entry in self._order:
            if entry.state is not State.WAITING:
                continue
            if oldest_waiting is None:
                oldest_waiting = entry
            if self._cars[entry.car_id].waiting[-1] is not entry:
                self._discard(entry)
                return entry
        if oldest_waiting is not None:
            self.counters.dropped_latest += 1
            self._discard(oldest_waiting)
        return oldest_waiting

    def _discard(self, entry: Entry) -> None:
        car = self._cars[entry.car_id]
        car.waiting.remove(entry)
        entry.state = State.DROPPED
        self.counters.dropped += 1
        self._held -= 1
        self._waiting -= 1
        self._update_ready(entry.car_id, car)

    # --- take ----------------------------------------------------------------------
    def take(self, max_statuses: int) -> list[Entry]:
        """Up to max_statuses waiting entries to send in one message, now in flight.

        A car's entries come in put order and contiguously; with strict_order only cars
        with nothing in flight are taken, each with all it has waiting (up to the limit).
        """
        if max_statuses < 1:
            raise ValueError(f"max_statuses: must be at least 1, got {max_statuses}")
        taken: list[Entry] = []
        while self._ready and len(taken) < max_statuses:
            car_id = next(iter(self._ready))
            car = self._cars[car_id]
            while car.waiting and len(taken) < max_statuses:
                entry = car.waiting.popleft()
                entry.state = State.IN_FLIGHT
                entry.attempts += 1
                if entry.attempts > 1:
                    self.counters.resent += 1
                car.in_flight += 1
                self._waiting -= 1
                taken.append(entry)
            self._ready.pop(car_id, None)
            self._update_ready(car_id, car)
            if car.waiting and not self.strict_order:
                break  # the message is full
        self.counters.sent += len(taken)
        return taken

    # --- answers -------------------------------------------------------------------
    def acked(self, entries: Iterable[Entry]) -> None:
        """Stored by ingestion: gone for good."""
        self._finish(entries, State.ACKED)

    def rejected(self, entries: Iterable[Entry]) -> None:
        """Refused as invalid (REJECTED): resending cannot help; gone, counted."""
        self._finish(entries, State.REJECTED)

    def failed(self, entries: Iterable[Entry]) -> None:
        """Not stored (UNAVAILABLE, RATE_LIMITED, a broken stream): waiting again, in order."""
        by_car: dict[str, list[Entry]] = {}
        for entry in entries:
            if entry.state is State.IN_FLIGHT:
                by_car.setdefault(entry.car_id, []).append(entry)
        for car_id, back in by_car.items():
            car = self._cars[car_id]
            back.sort(key=lambda e: e.seq)
            for entry in back:
                entry.state = State.WAITING
            car.in_flight -= len(back)
            self._waiting += len(back)
            # Earlier than anything still waiting: put before it, keeping seq order.
            if car.waiting and car.waiting[0].seq < back[-1].seq:
                merged = sorted([*back, *car.waiting], key=lambda e: e.seq)
                car.waiting = deque(merged)
            else:
                car.waiting.extendleft(reversed(back))
            self._update_ready(car_id, car)

    def _finish(self, entries: Iterable[Entry], state: State) -> None:
        for entry in entries:
            if entry.state is not State.IN_FLIGHT:
                continue
            entry.state = state
            if state is State.ACKED:
                self.counters.acked += 1
            else:
                self.counters.rejected += 1
            self._held -= 1
            car = self._cars[entry.car_id]
            car.in_flight -= 1
            self._update_ready(entry.car_id, car)
        self._prune()

    def _prune(self) -> None:
        order = self._order
        while order and order[0].state not in (State.WAITING, State.IN_FLIGHT):
            order.popleft()

    def _update_ready(self, car_id: str, car: _Car) -> None:
        if car.waiting and (not self.strict_order or car.in_flight == 0):
            self._ready.setdefault(car_id, None)
        else:
            self._ready.pop(car_id, None)
            if not car.waiting and not car.in_flight:
                self._cars.pop(car_id, None)

"""The session model: kWh and session ids from a car's consecutive events (pure, no I/O).

Per car the model remembers the previous event (its instant, battery and station)
and the session it belonged to. For the next event:

- ``Δ = battery − previous battery`` (both as the table stores them: float4);
- ``kwh_usage = |Δ| / 100 × pack_capacity_kwh``; the first event of a car has 0;
- ``session_kind``: ``charging`` when the battery rose, or held while plugged in at
  a station; otherwise ``driving`` when the car moves (velocity > 0); otherwise
  ``idle``;
- the session continues (same ``session_id``) when the kind and the station are
  unchanged and the gap to the previous event is at most ``gap_ms``; else a new
  session starts with ``session_id = "{car_id}:{start_ms}:{kind}"``.

An event no newer than the car's previous one (a replay, or a late duplicate) gets
0 kWh and a session id of its own, and leaves the car's state as it was: its
energy was already counted by the event that followed it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from greenlane.core.events import CarState

SessionKind = Literal["driving", "charging", "idle"]
SESSION_KINDS: Final[frozenset[str]] = frozenset({"driving", "charging", "idle"})

DEFAULT_PACK_CAPACITY_KWH: Final = 75.0
DEFAULT_GAP_MS: Final = 300_000


@dataclass(frozen=True, slots=True)
class SessionParams:
    """The model's two knobs."""

    pack_capacity_kwh: float = DEFAULT_PACK_CAPACITY_KWH
    gap_ms: int = DEFAULT_GAP_MS


@dataclass(frozen=True, slots=True)
class CarSession:
    """What the model remembers about a car: its last event and its current session."""

    timestamp: int  # Unix ms of the last event
    battery: float  # as stored (float4), see stored_battery()
    station_id: str  # "" when not plugged in
    kind: SessionKind
    session_id: str


@dataclass(frozen=True, slots=True)
class Accounted:
    """The model's verdict on one event."""

    kwh_usage: float
    session_kind: SessionKind
    session_id: str


def stored_battery(battery: float) -> float:
    """The battery as the table's float4 column gives it back.

    The state kept in memory and the state re-read from the table after a restart
    must compute the same kWh, so both use this precision.
    """
    value: float = struct.unpack("f", struct.pack("f", battery))[0]
    return value


def session_id(car_id: str, start_ms: int, kind: SessionKind) -> str:
    """Deterministic: the same events always give the same session id."""
    return f"{car_id}:{start_ms}:{kind}"


def classify(delta: float | None, velocity: float, station_id: str) -> SessionKind:
    """The kind of activity an event shows; delta is None for a car's first event."""
    if delta is not None and delta > 0:
        return "charging"
    if (delta is None or delta == 0) and station_id:
        return "charging"  # plugged in and holding (full, or the first event at a station)
    if velocity > 0:
        return "driving"
    return "idle"


def account(
    previous: CarSession | None, event: CarState, params: SessionParams
) -> tuple[Accounted, CarSession | None]:
    """Account one event against the car's previous state; returns the new state."""
    battery = stored_battery(event.battery)
    if previous is not None and event.timestamp <= previous.timestamp:
        kind = classify(None, event.velocity, event.station_id)
        return Accounted(0.0, kind, session_id(event.car_id, event.timestamp, kind)), previous
    if previous is None:
        kind = classify(None, event.velocity, event.station_id)
        kwh = 0.0
    else:
        delta = battery - previous.battery
        kind = classify(delta, event.velocity, event.station_id)
        kwh = abs(delta) / 100.0 * params.pack_capacity_kwh
    continues = (
        previous is not None
        and event.timestamp - previous.timestamp <= params.gap_ms
        and kind == previous.kind
        and event.station_id == previous.station_id
    )
    if continues:
        assert previous is not None
        sid = previous.session_id
    else:
        sid = session_id(event.car_id, event.timestamp, kind)
    state = CarSession(event.timestamp, battery, event.station_id, kind, sid)
    return Accounted(kwh, kind, sid), state


def account_batch(
    known: Mapping[str, CarSession | None], events: Iterable[CarState], params: SessionParams
) -> tuple[list[Accounted], dict[str, CarSession]]:
    """Account events in order; `known` is not changed, the states that moved are returned.

    `known` maps a car to its state before the batch (None: the car has no history).
    """
    states: dict[str, CarSession | None] = {}
    results: list[Accounted] = []
    for event in events:
        car = event.car_id
        previous = states[car] if car in states else known.get(car)
        accounted, state = account(previous, event, params)
        states[car] = state
        results.append(accounted)
    return results, {car: s for car, s in states.items() if s is not None}

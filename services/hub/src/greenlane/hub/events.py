"""Decoding fleet-events messages into hub updates; anything else is counted, never fatal."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from greenlane.core.auth import FLEET_PATTERN
from greenlane.core.errors import InvalidField
from greenlane.core.events import CAR_ID_PATTERN, CarState, FleetEvent, parse_event

CHARGING_PLAN: Final = "charging_plan"
BOOKING_ENDS: Final = frozenset({"booking_fulfilled", "booking_expired", "booking_cancelled"})
# Label values of greenlane_hub_events_total besides the known event types: a bounded set,
# so a producer cannot blow up the metric's cardinality with made-up types.
UNKNOWN: Final = "unknown"
MALFORMED: Final = "malformed"
MAX_PLAN_SLOTS: Final = 2000
MAX_TEXT: Final = 500


@dataclass(frozen=True, slots=True)
class CarEvent:
    """telemetry and booking_* events: the car's latest state, and the booking if any."""

    event_type: str
    car: CarState
    booking_id: str = ""
    expires_at: int = 0
    fleet: str = ""  # the fleet that sent it ("" when the event names none)


@dataclass(frozen=True, slots=True)
class PlanEvent:
    """A charging_plan: the car's plan as the dashboard shows it (JSON-ready)."""

    car_id: str
    plan: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Skipped:
    """A message the hub does not apply: an unknown event type or a malformed message."""

    label: str  # UNKNOWN or MALFORMED
    reason: str


Decoded = CarEvent | PlanEvent | Skipped


def _number(data: dict[str, Any], name: str, *, required: bool = True) -> float | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidField(name, "must be a number")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidField(name, "must be finite")
    return number


def _integer(data: dict[str, Any], name: str, *, required: bool = True) -> int | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField(name, "must be an integer")
    return value


def _ident(data: dict[str, Any], name: str, *, required: bool = True) -> str:
    value = data.get(name)
    if value in (None, "") and not required:
        return ""
    if not isinstance(value, str) or not CAR_ID_PATTERN.fullmatch(value):
        raise InvalidField(name, "must be 1 to 64 letters, digits and _ . : -")
    return value


def _fleet(data: dict[str, Any]) -> str:
    value = data.get("fleet")
    return value if isinstance(value, str) and FLEET_PATTERN.fullmatch(value) else ""


def _car_event(event: FleetEvent) -> CarEvent:
    assert event.state is not None
    fleet = _fleet(event.data)
    if event.event_type == "telemetry":
        return CarEvent(event.event_type, event.state, fleet=fleet)
    booking_id = _ident(event.data, "booking_id")
    required = event.event_type == "booking_created"
    expires_at = _integer(event.data, "expires_at", required=required) or 0
    return CarEvent(event.event_type, event.state, booking_id, expires_at, fleet)


def _plan_event(data: dict[str, Any]) -> PlanEvent:
    car_id = _ident(data, "car_id")
    plan: dict[str, Any] = {
        "car_id": car_id,
        "site_id": _ident(data, "site_id", required=False),
        "station_id": _ident(data, "station_id", required=False),
    }
    for name in ("timestamp", "start", "setpoint_until", "slot_minutes"):
        plan[name] = _integer(data, name, required=name != "slot_minutes")
    if plan["slot_minutes"] is not None and not 0 < plan["slot_minutes"] <= 1440:
        raise InvalidField("slot_minutes", "must be within 1..1440")
    for name in ("expected_kwh", "expected_cost", "shortfall_kwh", "setpoint_kw"):
        plan[name] = _number(data, name, required=name == "setpoint_kw")
    power = data.get("power_kw", [])
    if not isinstance(power, list) or len(power) > MAX_PLAN_SLOTS:
        raise InvalidField("power_kw", f"must be a list of at most {MAX_PLAN_SLOTS} numbers")
    slots = []
    for value in power:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise InvalidField("power_kw", "must hold finite numbers only")
        slots.append(round(float(value), 3))
    plan["power_kw"] = slots
    feasible = data.get("feasible", True)
    if not isinstance(feasible, bool):
        raise InvalidField("feasible", "must be true or false")
    plan["feasible"] = feasible
    reason = data.get("reason") or ""
    if not isinstance(reason, str):
        raise InvalidField("reason", "must be a string")
    plan["reason"] = reason[:MAX_TEXT]
    return PlanEvent(car_id, {k: v for k, v in plan.items() if v is not None and v != ""})


def decode(raw: bytes | None) -> Decoded:
    """One message of fleet-events, decoded; never raises."""
    if raw is None:
        return Skipped(MALFORMED, "value: missing (a tombstone record)")
    try:
        # Replayed events are old: only their own consistency is checked (no now_ms).
        event = parse_event(raw)
        if event.event_type == CHARGING_PLAN:
            return _plan_event(event.data)
        if event.state is not None:
            return _car_event(event)
    except InvalidField as exc:
        if exc.field == "event_type":
            return Skipped(UNKNOWN, "event_type: not one the hub knows")
        return Skipped(MALFORMED, str(exc))
    except (OverflowError, TypeError) as exc:
        return Skipped(MALFORMED, f"value: {exc}")
    return Skipped(UNKNOWN, "event_type: not one the hub knows")


def event_label(decoded: Decoded) -> str:
    """The event_type label of greenlane_hub_events_total for a decoded message."""
    if isinstance(decoded, Skipped):
        return decoded.label
    if isinstance(decoded, PlanEvent):
        return CHARGING_PLAN
    return decoded.event_type

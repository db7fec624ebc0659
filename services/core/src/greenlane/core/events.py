"""The fleet event schema: one table of car-state fields, and the registry of event kinds.

`CarState`'s fields, each with its `FieldRule` in the field metadata, are the single
definition of a car status. Everything else is derived from them: validation
(`validate_car_status`, keyword arguments only, and `validate_message` for a protobuf
`CarStatus`), the JSON event and its parser, the fields of the car's Redis hash
(greenlane.core.redis_state) and the car-state columns of a pricing row (`row_values`).
The hot-path functions (validation, JSON) are generated from the table once, at import,
so they run as fast as hand-written code: `generated_source()` shows what they are.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final, Literal

import orjson

from greenlane.core.errors import InvalidField
from greenlane.core.wire import FLEET_EVENTS_TOPIC

__all__ = [
    "CAR_ID_PATTERN",
    "CAR_STATE_FIELDS",
    "EVENT_KINDS",
    "FLEET_EVENTS_TOPIC",
    "CarState",
    "EventKind",
    "FieldRule",
    "FleetEvent",
    "encode_event",
    "event_json",
    "parse_event",
    "row_values",
    "state_from_hash",
    "validate_car_status",
    "validate_message",
    "validate_messages",
]

CAR_ID_MAX_LENGTH: Final = 64
CAR_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
MAX_VELOCITY_KMH: Final = 400.0
# Redis GEO cannot index the poles (its Mercator limit).
GEO_MAX_LAT: Final = 85.05112878
# A car may buffer statuses while offline for up to a week; nothing from the future
# beyond clock skew.
MAX_PAST_MS: Final = 7 * 24 * 3600 * 1000
MAX_FUTURE_MS: Final = 5 * 60 * 1000
# A charging goal's departure may be planned up to a week ahead.
MAX_GOAL_AHEAD_MS: Final = 7 * 24 * 3600 * 1000

FieldKind = Literal["id", "number", "timestamp"]


@dataclass(frozen=True, slots=True)
class FieldRule:
    """How one car-state field is checked, encoded and stored."""

    kind: FieldKind
    low: float = 0.0
    high: float = 0.0
    unit: str = ""  # said after the range in a rejection ("percent", "km/h")
    mapped: float = 0.0  # a number must also be within ±mapped (latitude: Redis GEO)
    # Unset ("" or 0, protobuf's defaults) when absent: left out of the JSON, NULL in a
    # row; when set, the rule applies.
    optional: bool = False
    future_ms: int = MAX_FUTURE_MS  # a timestamp may be at most this far ahead
    redis: bool = True  # a field of the car's Redis hash
    column: str | None = None  # the charging_sessions column it lands in


def _rule(kind: FieldKind, **options: Any) -> dict[str, FieldRule]:
    return {"rule": FieldRule(kind, **options)}


@dataclass(slots=True, kw_only=True)
class CarState:
    """A validated car status: what is stored in Redis and published to Kafka.

    Not frozen, for speed (a frozen dataclass is three times slower to build, and one
    is built per status); nothing changes a state once it is validated.
    """

    car_id: str = field(metadata=_rule("id", redis=False, column="car_id"))
    lat: float = field(metadata=_rule("number", low=-90, high=90, mapped=GEO_MAX_LAT, column="lat"))
    lon: float = field(metadata=_rule("number", low=-180, high=180, column="lon"))
    battery: float = field(
        metadata=_rule("number", low=0, high=100, unit="percent", column="battery")
    )
    velocity: float = field(metadata=_rule("number", low=0, high=MAX_VELOCITY_KMH, unit="km/h"))
    timestamp: int = field(metadata=_rule("timestamp", column="time"))  # Unix milliseconds
    # Set while plugged in at a station.
    station_id: str = field(default="", metadata=_rule("id", optional=True, column="station_id"))
    # The car's charging goal (docs/planner.md): the battery it wants, and when it leaves
    # (Unix ms). Optional; the planner falls back to the API's goal, then the fleet's.
    target_battery: float = field(
        default=0.0,
        metadata=_rule("number", low=1, high=100, unit="percent", optional=True, redis=False),
    )
    depart_at: int = field(
        default=0,
        metadata=_rule("timestamp", optional=True, redis=False, future_ms=MAX_GOAL_AHEAD_MS),
    )

    def to_event(self, event_type: str = "telemetry") -> dict[str, Any]:
        """The event as a dict, in the order of the JSON (optional fields only when set)."""
        event: dict[str, Any] = {}
        for name, rule in CAR_STATE_FIELDS:
            if not rule.optional:
                event[name] = getattr(self, name)
        event["event_type"] = event_type
        for name, rule in CAR_STATE_FIELDS:
            if rule.optional and getattr(self, name):
                # The seed's event shape stays exact for cars on the road.
                event[name] = getattr(self, name)
        return event

    def to_json(self, event_type: str = "telemetry") -> bytes:
        """The event as compact JSON (see event_json)."""
        if event_type != "telemetry" and event_type not in EVENT_KINDS:
            raise ValueError(f"unknown event type {event_type!r}")
        return event_json(self, event_type)


CAR_STATE_FIELDS: Final[tuple[tuple[str, FieldRule], ...]] = tuple(
    (f.name, f.metadata["rule"]) for f in fields(CarState)
)
# The fields of the car's Redis hash, in table order.
REDIS_FIELDS: Final = tuple(name for name, rule in CAR_STATE_FIELDS if rule.redis)


@dataclass(frozen=True, slots=True)
class EventKind:
    """One event type on the fleet-events topic.

    `car_state` kinds carry every CarState field; `fields` are the other fields an event
    of the kind must have, each checked as an id or a timestamp.
    """

    name: str
    car_state: bool
    fields: tuple[tuple[str, Literal["id", "timestamp"]], ...] = ()


EVENT_KINDS: Final[Mapping[str, EventKind]] = {
    kind.name: kind
    for kind in (
        EventKind("telemetry", car_state=True),
        EventKind("booking_created", car_state=True, fields=(("booking_id", "id"),)),
        EventKind("booking_fulfilled", car_state=True, fields=(("booking_id", "id"),)),
        EventKind("booking_expired", car_state=True, fields=(("booking_id", "id"),)),
        EventKind("booking_cancelled", car_state=True, fields=(("booking_id", "id"),)),
        # The planner's plan for a car at a site (setpoints and slots follow in the event).
        EventKind(
            "charging_plan",
            car_state=False,
            fields=(
                ("car_id", "id"),
                ("site_id", "id"),
                ("station_id", "id"),
                ("timestamp", "timestamp"),
            ),
        ),
        # A goal set through the planner's API (PUT /api/cars/{car_id}/goal): every
        # planner replica hears of it, and the one planning the car's site re-plans.
        EventKind(
            "charging_goal", car_state=False, fields=(("car_id", "id"), ("timestamp", "timestamp"))
        ),
    )
}
EVENT_TYPES: Final = frozenset(EVENT_KINDS)


# Called by the generated code when a fast check fails: they find the precise message.
def _bad_id(name: str, value: str, optional: bool) -> None:
    if not value:
        raise InvalidField(name, "is required")
    if optional:
        raise InvalidField(name, "must be 1 to 64 letters, digits and _ . : - when set")
    if len(value) > CAR_ID_MAX_LENGTH:
        raise InvalidField(name, f"is longer than {CAR_ID_MAX_LENGTH} characters")
    raise InvalidField(name, "may contain only letters, digits and _ . : -")


def _bad_number(name: str, value: float) -> None:
    rule = _RULES[name]
    unset = " (0 when not set)" if rule.optional else ""
    if not math.isfinite(value):
        raise InvalidField(name, f"must be a finite number, got {value!r}")
    if not rule.low <= value <= rule.high:
        unit = f" {rule.unit}" if rule.unit else ""
        raise InvalidField(
            name, f"must be within [{rule.low:g}, {rule.high:g}]{unit}{unset}, got {value}"
        )
    raise InvalidField(name, f"must be within ±{rule.mapped} to be mapped, got {value}")


def _ahead(ms: int) -> str:
    minutes = ms // 60_000
    if minutes % (24 * 60) == 0:
        days = minutes // (24 * 60)
        return f"{days} day{'s' if days != 1 else ''}"
    return f"{minutes} minutes"


def _bad_timestamp(name: str, value: int, now_ms: int) -> None:
    rule = _RULES.get(name)
    optional = rule is not None and rule.optional
    future_ms = rule.future_ms if rule is not None else MAX_FUTURE_MS
    if value <= 0:
        if optional:
            raise InvalidField(name, "must be Unix milliseconds after 1970 (0 when not set)")
        raise InvalidField(name, "is required (Unix milliseconds)")
    if value < now_ms - MAX_PAST_MS:
        raise InvalidField(name, "is more than 7 days in the past")
    raise InvalidField(name, f"is more than {_ahead(future_ms)} in the future")


_RULES: Final = dict(CAR_STATE_FIELDS)
# Ids that matched CAR_ID_PATTERN, so that a fleet's ids are matched once, not per status.
_KNOWN_IDS: Final[set[str]] = set()
_MAX_KNOWN_IDS: Final = 200_000
_fullmatch = CAR_ID_PATTERN.fullmatch


def _id_ok(value: str) -> bool:
    if _fullmatch(value) is None:
        return False
    if len(_KNOWN_IDS) >= _MAX_KNOWN_IDS:
        _KNOWN_IDS.clear()
    _KNOWN_IDS.add(value)
    return True


def _checks(indent: str) -> list[str]:
    """The rules of the table as statements on local variables named like the fields."""
    lines: list[str] = []
    for name, rule in CAR_STATE_FIELDS:
        if rule.kind == "id":
            guard = f"{name} and " if rule.optional else ""
            fail = f"_bad_id({name!r}, {name}, {rule.optional})"
            # Ids seen valid before skip the regex (a bounded set: a fleet's cars).
            lines.append(f"{indent}if {guard}{name} not in _ids and not _id_ok({name}): {fail}")
        elif rule.kind == "number":
            # NaN and the infinities fail the range: _bad_number then says why (NaN is
            # truthy, so an optional NaN is checked too).
            high = min(rule.high, rule.mapped) if rule.mapped else rule.high
            low = max(rule.low, -rule.mapped) if rule.mapped else rule.low
            guard = f"{name} and " if rule.optional else ""
            lines.append(
                f"{indent}if {guard}not {low!r} <= {name} <= {high!r}: "
                f"_bad_number({name!r}, {name})"
            )
        else:
            guard = f"{name} and " if rule.optional else ""
            lines.append(
                f"{indent}if {guard}not (0 < {name} and now_ms - {MAX_PAST_MS} <= {name} <= "
                f"now_ms + {rule.future_ms}): _bad_timestamp({name!r}, {name}, now_ms)"
            )
    return lines


# What an optional field holds when it is not set: protobuf's defaults.
_UNSET: Final[Mapping[FieldKind, object]] = {"id": "", "number": 0.0, "timestamp": 0}


def _generate() -> str:
    """Python source of the hot-path functions, from the table."""
    names = [name for name, _ in CAR_STATE_FIELDS]
    params = ", ".join(
        f"{name}={_UNSET[rule.kind]!r}" if rule.optional else name
        for name, rule in CAR_STATE_FIELDS
    )
    # Built without a call to __init__ (the dataclass's keyword one is four times slower):
    # a new object, then each field of the table.
    build = "; ".join(["o = _new(_CarState)", *(f"o.{n} = {n}" for n in names)])
    load = f"{', '.join(names)} = {', '.join(f'msg.{n}' for n in names)}"
    # JSON: required fields in table order, event_type, then optional fields when set
    # (orjson writes the same JSON as json.dumps, several times faster).
    required = [n for n, rule in CAR_STATE_FIELDS if not rule.optional]
    optional = [n for n, rule in CAR_STATE_FIELDS if rule.optional]
    event = ", ".join(f"{n!r}: s.{n}" for n in required)
    return "\n".join(
        [
            f"def validate_car_status(*, now_ms, {params}):",
            *_checks("    "),
            f"    {build}",
            "    return o",
            "",
            "def validate_message(msg, *, now_ms):",
            f"    {load}",
            *_checks("    "),
            f"    {build}",
            "    return o",
            "",
            "def validate_messages(msgs, *, now_ms):",
            "    valid, invalid = [], []",
            "    index = -1",
            "    for msg in msgs:",
            "        index += 1",
            f"        {load}",
            "        try:",
            *_checks("            "),
            "        except _InvalidField as err:",
            "            invalid.append((index, err))",
            "            continue",
            f"        {build}",
            "        valid.append(o)",
            "    return valid, invalid",
            "",
            "def event_json(s, event_type='telemetry'):",
            f"    event = {{{event}, 'event_type': event_type}}",
            *(f"    if s.{n}: event[{n!r}] = s.{n}" for n in optional),
            "    return _dumps(event)",
        ]
    )


_SOURCE: Final = _generate()
_namespace: dict[str, Any] = {
    "_id_ok": _id_ok,
    "_ids": _KNOWN_IDS,
    "_new": object.__new__,
    "_bad_id": _bad_id,
    "_bad_number": _bad_number,
    "_bad_timestamp": _bad_timestamp,
    "_CarState": CarState,
    "_InvalidField": InvalidField,
    "_dumps": orjson.dumps,
}
exec(compile(_SOURCE, "<greenlane.core.events generated>", "exec"), _namespace)  # noqa: S102

validate_car_status: Final[Callable[..., CarState]] = _namespace["validate_car_status"]
"""validate_car_status(*, now_ms, car_id, lat, lon, battery, velocity, timestamp,
station_id="", target_battery=0.0, depart_at=0) -> CarState: check one status;
InvalidField names the first bad field."""
validate_message: Final[Callable[..., CarState]] = _namespace["validate_message"]
"""validate_message(msg, *, now_ms) -> CarState: the same, for an object with the fields as
attributes (a protobuf CarStatus)."""
validate_messages: Final[Callable[..., tuple[list[CarState], list[tuple[int, InvalidField]]]]] = (
    _namespace["validate_messages"]
)
"""validate_messages(msgs, *, now_ms) -> (the valid states in order, [(position,
InvalidField)] of the others): a batch in one call."""
event_json: Final[Callable[[CarState, str], bytes]] = _namespace["event_json"]
"""event_json(state, event_type="telemetry") -> bytes: the event as compact JSON."""


def generated_source() -> str:
    """What the table generates (for reading and debugging)."""
    return _SOURCE


def row_values(state: CarState) -> dict[str, Any]:
    """The car state's values by charging_sessions column (optional fields: None if unset)."""
    out: dict[str, Any] = {}
    for name, rule in CAR_STATE_FIELDS:
        if rule.column is not None:
            value = getattr(state, name)
            out[rule.column] = (value or None) if rule.optional else value
    return out


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def state_from_hash(car_id: str, raw: Mapping[Any, Any]) -> CarState | None:
    """A CarState from the car's Redis hash; None if a field is missing or unreadable."""
    data = {_text(k): _text(v) for k, v in raw.items()}
    values: dict[str, Any] = {"car_id": car_id}
    try:
        for name in REDIS_FIELDS:
            rule = _RULES[name]
            text = data.get(name, "" if rule.optional else None)
            if text is None:
                return None
            if rule.kind == "number":
                values[name] = float(text)
            elif rule.kind == "timestamp":
                values[name] = int(text)
            else:
                values[name] = text
    except ValueError:
        return None
    return CarState(**values)


@dataclass(frozen=True, slots=True)
class FleetEvent:
    """One decoded fleet-events message."""

    event_type: str
    car_id: str
    timestamp: int
    state: CarState | None  # None for kinds that carry no car state (charging_plan, _goal)
    data: dict[str, Any]  # the JSON object as received


def _json_id(data: Mapping[str, Any], name: str, optional: bool) -> str:
    value = data.get(name)
    if optional:
        value = value or ""
    if not isinstance(value, str):
        raise InvalidField(name, "must be a string")
    return value


def _json_number(data: Mapping[str, Any], name: str, optional: bool = False) -> float:
    value = data.get(name)
    if optional and value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidField(name, "must be a number")
    try:
        return float(value)
    except OverflowError:
        raise InvalidField(name, "is out of range") from None


def _json_timestamp(data: Mapping[str, Any], name: str, optional: bool = False) -> int:
    value = data.get(name)
    if optional and value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField(name, "must be an integer (Unix milliseconds)")
    return value


def parse_event(raw: bytes, now_ms: int | None = None) -> FleetEvent:
    """Decode and validate one fleet-events message; InvalidField says what is wrong.

    An unregistered event type is invalid. Timestamps are checked against now_ms when
    given (else only for being positive).
    """
    try:
        data = json.loads(raw)
    except ValueError as exc:  # bad JSON, bad UTF-8, an integer too long to parse
        raise InvalidField("value", f"is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidField("value", "must be a JSON object")
    event_type = data.get("event_type", "telemetry")
    kind = EVENT_KINDS.get(event_type) if isinstance(event_type, str) else None
    if kind is None:
        raise InvalidField("event_type", f"unknown event type {event_type!r}")
    state: CarState | None = None
    if kind.car_state:
        values: dict[str, Any] = {}
        for name, rule in CAR_STATE_FIELDS:
            if rule.kind == "id":
                values[name] = _json_id(data, name, rule.optional)
            elif rule.kind == "number":
                values[name] = _json_number(data, name, rule.optional)
            else:
                values[name] = _json_timestamp(data, name, rule.optional)
        ts = values["timestamp"]
        state = validate_car_status(now_ms=now_ms if now_ms is not None else ts, **values)
    for name, kind_of in kind.fields:
        if kind_of == "id":
            value = _json_id(data, name, False)
            if not CAR_ID_PATTERN.fullmatch(value):
                _bad_id(name, value, False)
        else:
            value_ts = _json_timestamp(data, name)
            now = now_ms if now_ms is not None else value_ts
            if not (0 < value_ts and now - MAX_PAST_MS <= value_ts <= now + MAX_FUTURE_MS):
                _bad_timestamp(name, value_ts, now)
    if state is not None:
        return FleetEvent(event_type, state.car_id, state.timestamp, state, data)
    return FleetEvent(event_type, data["car_id"], data["timestamp"], None, data)


def encode_event(event_type: str, state: CarState | None = None, **extra: Any) -> bytes:
    """A registered kind's event as compact JSON: the car state (if the kind carries one)
    and the extra fields; a missing required field is a ValueError naming it."""
    kind = EVENT_KINDS.get(event_type)
    if kind is None:
        raise ValueError(f"unknown event type {event_type!r}")
    if kind.car_state and state is None:
        raise ValueError(f"{event_type} events carry the car's state")
    event = state.to_event(event_type) if state is not None else {"event_type": event_type}
    event.update(extra)
    missing = [name for name, _ in kind.fields if name not in event]
    if missing:
        raise ValueError(f"{event_type} events need {', '.join(missing)}")
    return json.dumps(event, separators=(",", ":")).encode()

"""The fleet event schema on Kafka and the rules every car status must meet."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Final

from greenlane.core.errors import InvalidField

FLEET_EVENTS_TOPIC: Final = "fleet-events"

CAR_ID_MAX_LENGTH: Final = 64
CAR_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
MAX_VELOCITY_KMH: Final = 400.0
# Redis GEO cannot index the poles (its Mercator limit).
GEO_MAX_LAT: Final = 85.05112878
# A car may buffer statuses while offline for up to a week; nothing from the future
# beyond clock skew.
MAX_PAST_MS: Final = 7 * 24 * 3600 * 1000
MAX_FUTURE_MS: Final = 5 * 60 * 1000

EVENT_TYPES: Final = frozenset(
    {
        "telemetry",
        "booking_created",
        "booking_fulfilled",
        "booking_expired",
        "booking_cancelled",
    }
)


@dataclass(frozen=True, slots=True)
class CarState:
    """A validated car status: what is stored in Redis and published to Kafka."""

    car_id: str
    lat: float
    lon: float
    battery: float
    velocity: float
    timestamp: int  # Unix milliseconds
    station_id: str = ""  # set while plugged in at a station

    def to_event(self, event_type: str = "telemetry") -> dict[str, Any]:
        event: dict[str, Any] = {
            "car_id": self.car_id,
            "lat": self.lat,
            "lon": self.lon,
            "battery": self.battery,
            "velocity": self.velocity,
            "timestamp": self.timestamp,
            "event_type": event_type,
        }
        if self.station_id:
            # Optional: the seed's event shape stays exact for cars on the road.
            event["station_id"] = self.station_id
        return event

    def to_json(self, event_type: str = "telemetry") -> bytes:
        """The event as compact JSON; built by hand because it is on the hot path.

        Safe without escaping: ids match CAR_ID_PATTERN, event types are fixed words and
        numbers are finite (validated), so repr() is valid JSON for each of them.
        """
        station = f',"station_id":"{self.station_id}"' if self.station_id else ""
        return (
            f'{{"car_id":"{self.car_id}","lat":{self.lat!r},"lon":{self.lon!r},'
            f'"battery":{self.battery!r},"velocity":{self.velocity!r},'
            f'"timestamp":{self.timestamp},"event_type":"{event_type}"{station}}}'
        ).encode()


def _finite(field: str, value: float) -> float:
    if not math.isfinite(value):
        raise InvalidField(field, f"must be a finite number, got {value!r}")
    return value


def validate_car_status(
    car_id: str,
    lat: float,
    lon: float,
    battery: float,
    velocity: float,
    timestamp: int,
    now_ms: int,
    station_id: str = "",
) -> CarState:
    """Check one car status against the rules; raise InvalidField naming the first bad field."""
    if not car_id:
        raise InvalidField("car_id", "is required")
    if len(car_id) > CAR_ID_MAX_LENGTH:
        raise InvalidField("car_id", f"is longer than {CAR_ID_MAX_LENGTH} characters")
    if not CAR_ID_PATTERN.fullmatch(car_id):
        raise InvalidField("car_id", "may contain only letters, digits and _ . : -")
    if not -90.0 <= _finite("lat", lat) <= 90.0:
        raise InvalidField("lat", f"must be within [-90, 90], got {lat}")
    if not -180.0 <= _finite("lon", lon) <= 180.0:
        raise InvalidField("lon", f"must be within [-180, 180], got {lon}")
    if not -GEO_MAX_LAT <= lat <= GEO_MAX_LAT:
        raise InvalidField("lat", f"must be within ±{GEO_MAX_LAT} to be mapped, got {lat}")
    if not 0.0 <= _finite("battery", battery) <= 100.0:
        raise InvalidField("battery", f"must be within [0, 100] percent, got {battery}")
    if not 0.0 <= _finite("velocity", velocity) <= MAX_VELOCITY_KMH:
        raise InvalidField(
            "velocity", f"must be within [0, {MAX_VELOCITY_KMH:g}] km/h, got {velocity}"
        )
    if timestamp <= 0:
        raise InvalidField("timestamp", "is required (Unix milliseconds)")
    if timestamp < now_ms - MAX_PAST_MS:
        raise InvalidField("timestamp", "is more than 7 days in the past")
    if timestamp > now_ms + MAX_FUTURE_MS:
        raise InvalidField("timestamp", "is more than 5 minutes in the future")
    if station_id and not CAR_ID_PATTERN.fullmatch(station_id):
        raise InvalidField("station_id", "must be 1 to 64 letters, digits and _ . : - when set")
    return CarState(car_id, lat, lon, battery, velocity, timestamp, station_id)


_EVENT_NUMBERS: Final = ("lat", "lon", "battery", "velocity")


def parse_event(raw: bytes, now_ms: int | None = None) -> tuple[CarState, str]:
    """Decode and validate one fleet-events message; InvalidField says what is wrong."""
    try:
        data = json.loads(raw)
    except ValueError as exc:  # bad JSON, bad UTF-8, an integer too long to parse
        raise InvalidField("value", f"is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidField("value", "must be a JSON object")
    event_type = data.get("event_type", "telemetry")
    if event_type not in EVENT_TYPES:
        raise InvalidField("event_type", f"unknown event type {event_type!r}")
    car_id = data.get("car_id")
    if not isinstance(car_id, str):
        raise InvalidField("car_id", "must be a string")
    numbers: dict[str, float] = {}
    for name in _EVENT_NUMBERS:
        v = data.get(name)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise InvalidField(name, "must be a number")
        try:
            numbers[name] = float(v)
        except OverflowError:
            raise InvalidField(name, "is out of range") from None
    ts = data.get("timestamp")
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise InvalidField("timestamp", "must be an integer (Unix milliseconds)")
    station_id = data.get("station_id") or ""
    if not isinstance(station_id, str):
        raise InvalidField("station_id", "must be a string")
    state = validate_car_status(
        car_id,
        numbers["lat"],
        numbers["lon"],
        numbers["battery"],
        numbers["velocity"],
        ts,
        now_ms if now_ms is not None else ts,
        station_id,
    )
    return state, event_type

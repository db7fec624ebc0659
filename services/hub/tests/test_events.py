"""Decoding fleet-events messages: known events become updates, anything else is counted."""

from __future__ import annotations

import json

import pytest

from greenlane.hub.events import (
    MALFORMED,
    UNKNOWN,
    CarEvent,
    PlanEvent,
    Skipped,
    decode,
    event_label,
)

TELEMETRY = {
    "car_id": "car-1",
    "lat": 40.75,
    "lon": -73.98,
    "battery": 55.5,
    "velocity": 30.0,
    "timestamp": 1_764_000_000_000,
    "event_type": "telemetry",
}
PLAN = {
    "event_type": "charging_plan",
    "car_id": "car-1",
    "site_id": "site-a",
    "station_id": "mh-001",
    "timestamp": 1_764_000_000_000,
    "slot_minutes": 15,
    "start": 1_764_000_000_000,
    "power_kw": [11, 7.5, 0],
    "expected_kwh": 4.6,
    "expected_cost": 1.2,
    "feasible": True,
    "shortfall_kwh": 0,
    "reason": "",
    "setpoint_kw": 11,
    "setpoint_until": 1_764_000_900_000,
}


def raw(value: object) -> bytes:
    return json.dumps(value).encode()


def test_a_telemetry_event_becomes_the_cars_state() -> None:
    decoded = decode(raw(TELEMETRY))
    assert isinstance(decoded, CarEvent)
    assert (decoded.car.car_id, decoded.car.battery, decoded.event_type) == (
        "car-1",
        55.5,
        "telemetry",
    )
    assert event_label(decoded) == "telemetry"


def test_a_booking_event_carries_its_booking_and_station() -> None:
    event = {**TELEMETRY, "event_type": "booking_created", "station_id": "mh-001"}
    event |= {"booking_id": "b-1", "expires_at": 1_764_000_600_000}
    decoded = decode(raw(event))
    assert isinstance(decoded, CarEvent)
    assert (decoded.booking_id, decoded.expires_at, decoded.car.station_id) == (
        "b-1",
        1_764_000_600_000,
        "mh-001",
    )


def test_a_charging_plan_keeps_its_fields_and_drops_the_event_type() -> None:
    decoded = decode(raw(PLAN))
    assert isinstance(decoded, PlanEvent)
    assert decoded.plan["setpoint_kw"] == 11
    assert decoded.plan["power_kw"] == [11.0, 7.5, 0.0]
    assert "event_type" not in decoded.plan and "reason" not in decoded.plan
    assert event_label(decoded) == "charging_plan"


def test_an_unknown_event_type_is_skipped_as_unknown_without_echoing_it() -> None:
    decoded = decode(raw({**TELEMETRY, "event_type": "x" * 500}))
    assert isinstance(decoded, Skipped) and decoded.label == UNKNOWN
    assert "x" * 10 not in decoded.reason  # labels and logs stay bounded


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (b"{not json", "value"),
        (b"[1, 2]", "value"),
        (raw({**TELEMETRY, "lat": "north"}), "lat"),
        (raw({**TELEMETRY, "battery": 120}), "battery"),
        (raw({**TELEMETRY, "timestamp": 1.5}), "timestamp"),
        (raw({**TELEMETRY, "car_id": "bad id"}), "car_id"),
        (raw({**TELEMETRY, "event_type": "booking_created", "booking_id": "b 1"}), "booking_id"),
        (raw({**PLAN, "power_kw": [1, "two"]}), "power_kw"),
        (raw({**PLAN, "setpoint_kw": None}), "setpoint_kw"),
        (raw({**PLAN, "feasible": "yes"}), "feasible"),
        (
            b'{"car_id":"c","lat":1e999,"lon":0,"battery":1,"velocity":0,"timestamp":1}',
            "lat",
        ),
    ],
)
def test_a_malformed_message_is_skipped_naming_the_field(value: bytes, field: str) -> None:
    decoded = decode(value)
    assert isinstance(decoded, Skipped) and decoded.label == MALFORMED
    assert decoded.reason.startswith(field), decoded.reason


def test_a_record_without_a_value_is_malformed() -> None:
    decoded = decode(None)
    assert isinstance(decoded, Skipped) and decoded.label == MALFORMED

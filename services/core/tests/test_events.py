"""The event schema: the field table, its generated validation and JSON, the event kinds."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenlane.core.errors import InvalidField
from greenlane.core.events import (
    CAR_STATE_FIELDS,
    EVENT_KINDS,
    REDIS_FIELDS,
    CarState,
    encode_event,
    parse_event,
    state_from_hash,
    validate_car_status,
)

NOW = 1_800_000_000_000
IDS = st.from_regex(r"[A-Za-z0-9_.:\-]{1,64}", fullmatch=True)
GOOD = {
    "car_id": "car-1",
    "lat": 40.7,
    "lon": -73.9,
    "battery": 50.0,
    "velocity": 10.0,
    "timestamp": NOW,
}


@given(
    car_id=IDS,
    lat=st.floats(-85.05, 85.05),
    lon=st.floats(-180, 180),
    battery=st.floats(0, 100),
    velocity=st.floats(0, 400),
    ts=st.integers(NOW - 1000, NOW),
    station=st.one_of(st.just(""), IDS),
)
def test_the_generated_json_equals_json_dumps_of_the_event_and_parses_back(
    car_id: str, lat: float, lon: float, battery: float, velocity: float, ts: int, station: str
) -> None:
    state = validate_car_status(
        now_ms=NOW,
        car_id=car_id,
        lat=lat,
        lon=lon,
        battery=battery,
        velocity=velocity,
        timestamp=ts,
        station_id=station,
    )
    assert json.loads(state.to_json()) == state.to_event()
    assert parse_event(state.to_json(), NOW).state == state


def test_the_event_keeps_the_seed_shape_without_a_station() -> None:
    event = json.loads(CarState(**GOOD).to_json())
    assert list(event) == ["car_id", "lat", "lon", "battery", "velocity", "timestamp", "event_type"]


def test_validation_takes_keyword_arguments_only() -> None:
    with pytest.raises(TypeError):
        validate_car_status("car-1", 40.7, -73.9, 50.0, 10.0, NOW, NOW)
    with pytest.raises(TypeError):
        CarState("car-1", 40.7, -73.9, 50.0, 10.0, NOW)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("bad", "field", "message"),
    [
        ({"car_id": ""}, "car_id", "is required"),
        ({"car_id": "x" * 65}, "car_id", "is longer than 64 characters"),
        ({"car_id": "a b"}, "car_id", "may contain only letters, digits and _ . : -"),
        ({"lat": 90.5}, "lat", "must be within [-90, 90], got 90.5"),
        ({"lat": 88.0}, "lat", "to be mapped"),
        ({"lat": float("nan")}, "lat", "must be a finite number, got nan"),
        ({"lon": float("inf")}, "lon", "must be a finite number, got inf"),
        ({"battery": 100.5}, "battery", "must be within [0, 100] percent, got 100.5"),
        ({"velocity": 401.0}, "velocity", "must be within [0, 400] km/h, got 401.0"),
        ({"timestamp": 0}, "timestamp", "is required (Unix milliseconds)"),
        ({"timestamp": NOW - 8 * 86_400_000}, "timestamp", "is more than 7 days in the past"),
        ({"timestamp": NOW + 600_000}, "timestamp", "is more than 5 minutes in the future"),
        ({"station_id": "a b"}, "station_id", "when set"),
    ],
)
def test_a_bad_field_is_named_with_its_rule(
    bad: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(InvalidField) as err:
        validate_car_status(now_ms=NOW, **{**GOOD, **bad})
    assert err.value.field == field
    assert message in err.value.message


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"not json", "value"),
        (b"[1, 2]", "value"),
        (b'{"car_id": 5}', "car_id"),
        (b'{"car_id": "a", "lat": "x"}', "lat"),
        (
            b'{"car_id": "a", "lat": 1, "lon": 1, "battery": 1, "velocity": 1, "timestamp": 1.5}',
            "timestamp",
        ),
        (b'{"car_id": "a", "event_type": "teleport"}', "event_type"),
        (b'{"car_id": "a", "event_type": 7}', "event_type"),
        # An integer too big for a float, and one too long for json to parse at all.
        (
            b'{"car_id": "a", "lat": 1' + b"0" * 400 + b', "lon": 1, "battery": 1, '
            b'"velocity": 1, "timestamp": 1}',
            "lat",
        ),
        (b'{"car_id": "a", "lat": 1' + b"0" * 5000 + b"}", "value"),
        # A registered kind still needs its own fields.
        (json.dumps({**GOOD, "event_type": "booking_created"}).encode(), "booking_id"),
        (
            json.dumps({"event_type": "charging_plan", "car_id": "c", "timestamp": NOW}).encode(),
            "site_id",
        ),
    ],
)
def test_a_bad_event_names_its_field(raw: bytes, field: str) -> None:
    with pytest.raises(InvalidField) as err:
        parse_event(raw, NOW)
    assert err.value.field == field


def test_a_charging_plan_is_a_registered_kind_without_a_car_state() -> None:
    raw = encode_event(
        "charging_plan",
        car_id="car-1",
        site_id="site-a",
        station_id="st-1",
        timestamp=NOW,
        slots=[{"start": NOW, "kw": 11.0}],
    )

    event = parse_event(raw, NOW)

    assert event.event_type == "charging_plan"
    assert (event.car_id, event.timestamp, event.state) == ("car-1", NOW, None)
    assert event.data["slots"] == [{"start": NOW, "kw": 11.0}]
    assert EVENT_KINDS["charging_plan"].car_state is False


def test_a_booking_event_carries_the_car_state_and_its_booking() -> None:
    state = CarState(**GOOD)
    raw = encode_event("booking_created", state, station_id="st-1", booking_id="b1")

    event = parse_event(raw, NOW)

    assert event.state == CarState(**{**GOOD, "station_id": "st-1"})
    assert event.data["booking_id"] == "b1"
    with pytest.raises(ValueError, match="booking_id"):
        encode_event("booking_cancelled", state)
    with pytest.raises(ValueError, match="unknown event type"):
        encode_event("teleport", state)


def test_the_redis_hash_gives_the_state_back() -> None:
    state = CarState(**{**GOOD, "station_id": "st-9"})
    stored = {name.encode(): str(getattr(state, name)).encode() for name in REDIS_FIELDS}

    assert state_from_hash("car-1", stored) == state
    assert state_from_hash("car-1", {}) is None
    assert state_from_hash("car-1", {**stored, b"lat": b"north"}) is None


def test_every_field_has_a_rule_and_the_car_id_is_the_key_not_a_hash_field() -> None:
    assert [name for name, _ in CAR_STATE_FIELDS] == [
        "car_id",
        "lat",
        "lon",
        "battery",
        "velocity",
        "timestamp",
        "station_id",
        "target_battery",
        "depart_at",
    ]
    assert "car_id" not in REDIS_FIELDS
    # A charging goal is for the planner, which reads it from the event, not Redis.
    assert "target_battery" not in REDIS_FIELDS and "depart_at" not in REDIS_FIELDS


GOAL_NOW = {**GOOD, "timestamp": NOW}


def test_a_charging_goal_rides_in_the_json_only_when_set_and_parses_back() -> None:
    plain = validate_car_status(now_ms=NOW, **GOAL_NOW)
    goal = validate_car_status(
        now_ms=NOW, **GOAL_NOW, target_battery=80.0, depart_at=NOW + 3_600_000
    )

    assert "target_battery" not in json.loads(plain.to_json())
    assert "depart_at" not in json.loads(plain.to_json())
    event = json.loads(goal.to_json())
    assert (event["target_battery"], event["depart_at"]) == (80.0, NOW + 3_600_000)
    assert parse_event(goal.to_json(), NOW).state == goal
    assert parse_event(plain.to_json(), NOW).state == plain


@pytest.mark.parametrize(
    ("goal", "message"),
    [
        ({"target_battery": 100.5}, "target_battery: must be within [1, 100] percent"),
        ({"target_battery": -3.0}, "target_battery: must be within [1, 100] percent"),
        ({"target_battery": float("inf")}, "target_battery: must be a finite number"),
        ({"target_battery": float("nan")}, "target_battery: must be a finite number"),
        ({"depart_at": -1}, "depart_at: must be Unix milliseconds after 1970"),
        ({"depart_at": NOW + 8 * 86_400_000}, "depart_at: is more than 7 days in the future"),
        ({"depart_at": NOW - 8 * 86_400_000}, "depart_at: is more than 7 days in the past"),
    ],
)
def test_a_bad_charging_goal_is_refused_naming_its_field(
    goal: dict[str, float], message: str
) -> None:
    with pytest.raises(InvalidField) as err:
        validate_car_status(now_ms=NOW, **GOAL_NOW, **goal)
    assert str(err.value).startswith(message)


def test_a_goal_event_of_the_planner_api_is_a_registered_kind_without_a_car_state() -> None:
    raw = encode_event("charging_goal", car_id="car-1", timestamp=NOW, target_battery=80)
    event = parse_event(raw, NOW)

    assert (event.event_type, event.car_id, event.state) == ("charging_goal", "car-1", None)
    with pytest.raises(ValueError, match="timestamp"):
        encode_event("charging_goal", car_id="car-1")

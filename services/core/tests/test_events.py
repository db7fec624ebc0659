"""The event schema: validation rules and the hand-built JSON."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenlane.core.errors import InvalidField
from greenlane.core.events import CarState, parse_event, validate_car_status

NOW = 1_800_000_000_000


@given(
    car_id=st.from_regex(r"[A-Za-z0-9_.:\-]{1,64}", fullmatch=True),
    lat=st.floats(-85.05, 85.05),
    lon=st.floats(-180, 180),
    battery=st.floats(0, 100),
    velocity=st.floats(0, 400),
    ts=st.integers(NOW - 1000, NOW),
    station=st.one_of(st.just(""), st.from_regex(r"[A-Za-z0-9_.:\-]{1,64}", fullmatch=True)),
)
def test_the_hand_built_json_equals_json_dumps_of_the_event(
    car_id: str, lat: float, lon: float, battery: float, velocity: float, ts: int, station: str
) -> None:
    state = validate_car_status(car_id, lat, lon, battery, velocity, ts, NOW, station)
    assert json.loads(state.to_json()) == state.to_event()
    assert parse_event(state.to_json(), NOW)[0] == state


def test_the_event_keeps_the_seed_shape_without_a_station() -> None:
    event = json.loads(CarState("car-1", 40.7, -73.9, 50.0, 10.0, NOW).to_json())
    assert list(event) == ["car_id", "lat", "lon", "battery", "velocity", "timestamp", "event_type"]


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
        # An integer too big for a float, and one too long for json to parse at all.
        (
            b'{"car_id": "a", "lat": 1' + b"0" * 400 + b', "lon": 1, "battery": 1, '
            b'"velocity": 1, "timestamp": 1}',
            "lat",
        ),
        (b'{"car_id": "a", "lat": 1' + b"0" * 5000 + b"}", "value"),
    ],
)
def test_a_bad_event_names_its_field(raw: bytes, field: str) -> None:
    with pytest.raises(InvalidField) as err:
        parse_event(raw, NOW)
    assert err.value.field == field

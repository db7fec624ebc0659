"""Each car-state field, end to end without I/O: proto -> state -> JSON -> parsed -> Redis
hash -> pricing row. Adding a field to greenlane.core.events.CarState must pass here."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from greenlane.core.events import (
    CAR_STATE_FIELDS,
    REDIS_FIELDS,
    FieldRule,
    parse_event,
    state_from_hash,
)
from greenlane.core.redis_state import _values
from greenlane.ingestion.servicer import to_state
from greenlane.pricing_worker.prices import Quote, instant_of
from greenlane.pricing_worker.sessions import stored_battery
from greenlane.pricing_worker.store import Row
from greenlane.pricing_worker.worker import PricingWorker, _Event
from greenlane.v1 import fleet_pb2

NOW = 1_800_000_000_000
# A value for each field that no other field has.
DISTINCT: dict[str, object] = {
    "car_id": "car-rt.1:x",
    "lat": 40.123456789,
    "lon": -73.98765,
    "battery": 42.5,
    "velocity": 12.25,
    "timestamp": NOW - 1234,
    "station_id": "st-rt:9",
    "target_battery": 87.5,
    "depart_at": NOW + 3_600_000,
}
# protobuf's defaults: what an optional field holds when a car leaves it out.
DEFAULTS: dict[str, object] = {"id": "", "number": 0.0, "timestamp": 0}
IN_ROW = {"time": lambda v: instant_of(v), "battery": lambda v: stored_battery(v)}


def test_the_table_and_the_proto_have_the_same_status_fields() -> None:
    # Not state: a request to the booking desk, and the status's trace (docs/observability.md).
    envelope = {"request_booking", "trace_context"}
    proto = {f.name for f in fleet_pb2.CarStatus.DESCRIPTOR.fields} - envelope
    assert proto == {name for name, _ in CAR_STATE_FIELDS} == set(DISTINCT)


def test_every_column_the_table_names_is_a_column_of_the_pricing_row() -> None:
    columns = {f.name for f in fields(Row)}
    assert {r.column for _, r in CAR_STATE_FIELDS if r.column} <= columns


@pytest.mark.parametrize(("name", "rule"), CAR_STATE_FIELDS, ids=[n for n, _ in CAR_STATE_FIELDS])
def test_a_field_survives_every_hop(name: str, rule: FieldRule) -> None:
    value = DISTINCT[name]
    msg = fleet_pb2.CarStatus(**DISTINCT)  # type: ignore[arg-type]

    state = to_state(msg, NOW)
    raw = state.to_json()
    parsed = parse_event(raw, NOW).state
    # ARGV per status: car_id, the hash fields, then the fleet claiming the car.
    argv = _values(state, "fleet-rt")
    assert (argv[0], argv[-1]) == (state.car_id, "fleet-rt")
    hashed = state_from_hash(state.car_id, dict(zip(REDIS_FIELDS, argv[1:-1], strict=True)))
    event = _Event(record=None, state=state, event_type="telemetry", instant=NOW)  # type: ignore[arg-type]
    row = PricingWorker._row(event, 0.0, "driving", "s-1", Quote(0.25, 0.5, "grid"))  # noqa: SLF001

    assert getattr(state, name) == value
    assert json.loads(raw)[name] == value
    assert parsed is not None and getattr(parsed, name) == value
    assert hashed is not None
    if rule.redis or name == "car_id":  # the car id is the hash's key
        assert getattr(hashed, name) == value
    else:  # not a field of the car's hash: read back as unset
        assert name not in REDIS_FIELDS and not getattr(hashed, name)
    if rule.column is not None:
        expected = IN_ROW.get(rule.column, lambda v: v)(value)
        assert getattr(row, rule.column) == expected


def test_an_optional_field_left_empty_is_absent_from_the_json_and_null_in_the_row() -> None:
    optional = [name for name, rule in CAR_STATE_FIELDS if rule.optional]
    unset = {name: DEFAULTS[rule.kind] for name, rule in CAR_STATE_FIELDS if rule.optional}
    msg = fleet_pb2.CarStatus(**{**DISTINCT, **unset})  # type: ignore[arg-type]

    state = to_state(msg, NOW)
    event = _Event(record=None, state=state, event_type="telemetry", instant=NOW)  # type: ignore[arg-type]
    row = PricingWorker._row(event, 0.0, "driving", "s-1", Quote(0.25, 0.5, "grid"))  # noqa: SLF001

    for name in optional:
        assert name not in json.loads(state.to_json())
        column = dict(CAR_STATE_FIELDS)[name].column
        assert column is None or getattr(row, column) is None

"""Fleets kept apart: cross-fleet writes, reads, cancels and fulfilments are all refused."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import httpx
import pytest
from adversary import ALPHA, BETA, OPS, READER, STATION, meta, status, stream
from redis.asyncio import Redis

from greenlane.core import keys
from greenlane.v1 import fleet_pb2, fleet_pb2_grpc

pytestmark = pytest.mark.integration


def h(token: str) -> dict[str, str]:
    return {"x-api-token": token}


async def test_a_car_belongs_to_the_first_fleet_that_writes_it_and_another_fleets_status_is_refused_alone(  # noqa: E501
    stub: fleet_pb2_grpc.FleetTelemetryStub, redis_client: Redis
) -> None:
    first = await stream(stub, ALPHA, [status("sec-car-1", 0, battery=64.0)])
    assert first[0].status == fleet_pb2.ACCEPTED
    # Beta's stream: a status for alpha's car between two of its own; the stream goes on.
    answers = await stream(
        stub,
        BETA,
        [status("sec-beta-1", 1), status("sec-car-1", 2, battery=1.0), status("sec-beta-2", 3)],
    )
    assert [a.status for a in answers] == [
        fleet_pb2.ACCEPTED,
        fleet_pb2.REJECTED,
        fleet_pb2.ACCEPTED,
    ]
    assert answers[1].field == "car_id"
    assert "another fleet" in answers[1].message
    # Nothing of beta's status was stored: alpha's state stands.
    state = await redis_client.hgetall(keys.car_state("sec-car-1"))
    assert state[b"battery"] == b"64.0"
    assert state[keys.OWNER_FIELD.encode()] == b"alpha"


async def test_a_unary_batch_of_only_another_fleets_cars_is_permission_denied_and_stores_nothing(
    stub: fleet_pb2_grpc.FleetTelemetryStub, redis_client: Redis
) -> None:
    await stream(stub, ALPHA, [status("sec-car-2", 0, battery=50.0)])
    batch = fleet_pb2.CarStatusBatch(statuses=[status("sec-car-2", 1, battery=2.0)])
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SendBatch(batch, metadata=meta(BETA))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "another fleet" in (err.value.details() or "")
    assert (await redis_client.hget(keys.car_state("sec-car-2"), "battery")) == b"50.0"


async def test_a_mixed_batch_stores_its_own_cars_and_lists_the_other_fleets_by_index(
    stub: fleet_pb2_grpc.FleetTelemetryStub,
) -> None:
    await stream(stub, ALPHA, [status("sec-car-3", 0)])
    batch = fleet_pb2.CarStatusBatch(statuses=[status("sec-beta-3", 1), status("sec-car-3", 2)])
    answer = await stub.SendBatch(batch, metadata=meta(BETA))
    assert answer.status == fleet_pb2.ACCEPTED
    assert answer.accepted == 1
    assert [(r.index, r.field) for r in answer.rejected] == [(1, "car_id")]


async def test_the_operator_writes_any_car_and_reassigns_it_to_another_fleet(
    stub: fleet_pb2_grpc.FleetTelemetryStub, api: httpx.AsyncClient, redis_client: Redis
) -> None:
    await stream(stub, ALPHA, [status("sec-car-4", 0)])
    by_ops = await stream(stub, OPS, [status("sec-car-4", 1, battery=70.0)])
    assert by_ops[0].status == fleet_pb2.ACCEPTED
    assert (await redis_client.hget(keys.car_state("sec-car-4"), "fleet")) == b"alpha"
    # Only the operator reassigns; then beta may write it and alpha may not.
    refused = await api.put("/api/cars/sec-car-4/fleet", json={"fleet": "beta"}, headers=h(ALPHA))
    assert refused.status_code == 403
    moved = await api.put("/api/cars/sec-car-4/fleet", json={"fleet": "beta"}, headers=h(OPS))
    assert moved.status_code == 200, moved.text
    after = await stream(stub, BETA, [status("sec-car-4", 2)])
    before = await stream(stub, ALPHA, [status("sec-car-4", 3)])
    assert [after[0].status, before[0].status] == [fleet_pb2.ACCEPTED, fleet_pb2.REJECTED]
    released = await api.delete("/api/cars/sec-car-4/fleet", headers=h(OPS))
    assert released.json() == {"car_id": "sec-car-4", "fleet": None}


async def book(stub: fleet_pb2_grpc.FleetTelemetryStub, token: str, car: str) -> Any:
    msg = status(car, 0, lat=STATION.lat, lon=STATION.lon, battery=10.0, request_booking=True)
    return (await stream(stub, token, [msg]))[0]


async def test_another_fleet_can_neither_list_nor_cancel_a_fleets_bookings(
    stub: fleet_pb2_grpc.FleetTelemetryStub, api: httpx.AsyncClient
) -> None:
    booked = await book(stub, ALPHA, "sec-car-5")
    assert booked.status == fleet_pb2.BOOKED
    booking_id = booked.booking.booking_id
    listed = await api.get("/api/cars/sec-car-5/bookings", headers=h(BETA))
    assert listed.status_code == 403
    assert listed.headers["content-type"] == "application/problem+json"
    cancelled = await api.delete(f"/api/bookings/{booking_id}", headers=h(BETA))
    assert cancelled.status_code == 403
    # A read-only credential of alpha lists but cannot cancel; alpha itself can.
    assert (await api.get("/api/cars/sec-car-5/bookings", headers=h(READER))).status_code == 200
    assert (await api.delete(f"/api/bookings/{booking_id}", headers=h(READER))).status_code == 403
    mine = await api.get("/api/cars/sec-car-5/bookings", headers=h(ALPHA))
    assert [b["booking_id"] for b in mine.json()["bookings"]] == [booking_id]
    assert (await api.delete(f"/api/bookings/{booking_id}", headers=h(ALPHA))).status_code == 200


async def test_another_fleet_cannot_fulfil_a_booking_by_plugging_the_car_in(
    stub: fleet_pb2_grpc.FleetTelemetryStub, api: httpx.AsyncClient
) -> None:
    booked = await book(stub, ALPHA, "sec-car-6")
    plug = status("sec-car-6", 5, station_id=STATION.station_id, battery=12.0)
    answer = (await stream(stub, BETA, [plug]))[0]
    assert answer.status == fleet_pb2.REJECTED
    bookings = (await api.get("/api/cars/sec-car-6/bookings", headers=h(ALPHA))).json()
    assert bookings["bookings"][0]["booking_id"] == booked.booking.booking_id
    assert bookings["bookings"][0]["status"] == "active"


async def test_invented_car_ids_cannot_take_every_slot_of_a_station(
    stub: fleet_pb2_grpc.FleetTelemetryStub,
) -> None:
    # Beta may hold 3 live bookings; the station has 4 slots: alpha still gets one.
    answers = await asyncio.gather(*(book(stub, BETA, f"sec-invented-{i}") for i in range(4)))
    outcomes = sorted(fleet_pb2.ResponseStatus.Name(a.status) for a in answers)
    assert outcomes == ["BOOKED", "BOOKED", "BOOKED", "NO_CAPACITY"]
    refused = next(a for a in answers if a.status == fleet_pb2.NO_CAPACITY)
    assert "its limit" in refused.message
    assert (await book(stub, ALPHA, "sec-car-7")).status == fleet_pb2.BOOKED


async def test_a_credential_without_the_telemetry_scope_may_not_stream(
    stub: fleet_pb2_grpc.FleetTelemetryStub, redis_client: Redis
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stream(stub, READER, [status("sec-car-8")])
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "telemetry:write" in (err.value.details() or "")
    assert not await redis_client.exists(keys.car_state("sec-car-8"))

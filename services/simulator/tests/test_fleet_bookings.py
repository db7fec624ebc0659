"""The driver's side of bookings: answers steer the car, statuses say what it does."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator

import grpc
import pytest

from greenlane.simulator.config import FleetConfig
from greenlane.simulator.fleet import _CarStream, _Fleet
from greenlane.simulator.physics import Mode
from greenlane.simulator.stats import Stats
from greenlane.v1 import fleet_pb2

STATION_LAT, STATION_LON = 40.7580, -73.9855


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    # A channel connects lazily: building a fleet on it sends nothing.
    channel = grpc.aio.insecure_channel("127.0.0.1:9")
    yield channel
    await channel.close()


def _car(channel: grpc.aio.Channel, **fields: object) -> _CarStream:
    config = FleetConfig.model_validate({"cars": 1, "seed": 3, **fields})
    return _Fleet(config, Stats(), [channel]).cars[0]


def _mode(car: _CarStream) -> Mode:
    return car.car.mode


def _booking(**fields: object) -> fleet_pb2.Booking:
    values: dict[str, object] = {
        "booking_id": "bk-1",
        "station_id": "st-times-sq",
        "station_name": "Times Square",
        "lat": STATION_LAT,
        "lon": STATION_LON,
        "distance_m": 900.0,
        "expires_at": time.time_ns() // 1_000_000 + 1_200_000,
        "power_kw": 150.0,
    }
    values.update(fields)
    return fleet_pb2.Booking(**values)  # type: ignore[arg-type]


async def test_a_low_driving_car_asks_for_a_booking_and_a_charged_one_does_not(
    channel: grpc.aio.Channel,
) -> None:
    low = _car(channel, initial_battery=(10.0, 15.0))
    status = low._advance(2.0)
    assert status.request_booking and status.station_id == ""
    high = _car(channel, initial_battery=(60.0, 90.0))
    assert not high._advance(2.0).request_booking
    # The client's own threshold, whatever ingestion's is.
    eager = _car(channel, initial_battery=(60.0, 90.0), charge_below=95.0)
    assert eager._advance(2.0).request_booking


async def test_an_empty_car_asks_even_with_no_threshold_and_stands_still(
    channel: grpc.aio.Channel,
) -> None:
    car = _car(channel, initial_battery=(0.0, 0.0), charge_below=0.0)
    first, second = car._advance(2.0), car._advance(2.0)
    assert first.request_booking and second.request_booking
    assert (second.lat, second.lon, second.velocity, second.battery) == (
        first.lat,
        first.lon,
        0.0,
        0.0,
    )


class FakeClock:
    """Wall time that moves 2 s per update, so a stop of minutes passes in a test."""

    def __init__(self) -> None:
        self.ms = time.time_ns() // 1_000_000

    def __call__(self) -> int:
        self.ms += 2000
        return self.ms


async def test_a_booked_car_drives_to_the_station_charges_there_and_drives_on(
    channel: grpc.aio.Channel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("greenlane.simulator.fleet._now_ms", FakeClock())
    car = _car(channel, initial_battery=(10.0, 15.0), charge_speedup=50.0, stop_minutes=(2, 2))
    car._booked(_booking())
    assert _mode(car) is Mode.TO_STATION
    statuses: list[fleet_pb2.CarStatus] = []
    while len(statuses) < 400 and car.fleet.stats.charging_sessions_finished == 0:
        statuses.append(car._advance(2.0))
    statuses += [car._advance(2.0) for _ in range(10)]
    plugged = [s for s in statuses if s.station_id]
    assert plugged, "the car never reached its station"
    assert all(s.station_id == "st-times-sq" for s in plugged)
    assert all((s.lat, s.lon, s.velocity) == (STATION_LAT, STATION_LON, 0.0) for s in plugged)
    batteries = [s.battery for s in plugged]
    # It charged up to its goal, sent with every status, then waited for its departure.
    (target,) = {s.target_battery for s in plugged}
    (depart_at,) = {s.depart_at for s in plugged}
    assert 70.0 <= target <= 85.0 and batteries == sorted(batteries)
    assert batteries[-1] == target and batteries.count(target) > 1
    assert depart_at - plugged[0].timestamp == pytest.approx(120_000, abs=2000)
    # Charging statuses sit together, then the car leaves, charged: it stops asking.
    first = statuses.index(plugged[0])
    after = statuses[first + len(plugged) :]
    assert statuses[first : first + len(plugged)] == plugged
    assert not any(s.request_booking or s.station_id for s in statuses[:first])
    assert after and not any(s.station_id or s.request_booking for s in after)
    assert after[0].velocity > 0
    stats = car.fleet.stats
    assert (stats.charging_sessions_started, stats.charging_sessions_finished) == (1, 1)
    # A late answer about the booking already used does not send it back.
    car._booked(_booking())
    assert _mode(car) is Mode.DRIVING


async def test_a_booking_that_expires_on_the_way_is_given_up(channel: grpc.aio.Channel) -> None:
    car = _car(channel, initial_battery=(10.0, 15.0))
    car._booked(_booking(expires_at=time.time_ns() // 1_000_000 - 1))
    assert _mode(car) is Mode.TO_STATION
    status = car._advance(2.0)
    assert _mode(car) is Mode.DRIVING
    assert car.fleet.stats.bookings_expired_en_route == 1
    # Back to a low driving car: it asks again, and follows a new booking.
    assert status.request_booking
    car._booked(_booking(booking_id="bk-2"))
    assert _mode(car) is Mode.TO_STATION


async def test_a_new_booking_on_the_way_replaces_the_one_followed(
    channel: grpc.aio.Channel,
) -> None:
    car = _car(channel, initial_battery=(10.0, 15.0))
    car._booked(_booking())
    car._booked(_booking(booking_id="bk-2", station_id="st-bryant-park", lat=40.7536, lon=-73.9832))
    assert car.car.station is not None and car.car.station.station_id == "st-bryant-park"
    # While plugged in, no answer moves the car.
    car.car = dataclasses.replace(car.car, mode=Mode.CHARGING, charge_target=90.0)
    car._booked(_booking(booking_id="bk-3"))
    assert _mode(car) is Mode.CHARGING and car.booking_id == "bk-2"


@pytest.mark.parametrize(
    "fields",
    [
        {"station_id": ""},
        {"station_id": "no spaces allowed"},
        {"lat": 0.0, "lon": 0.0},
        {"lat": 91.0},
    ],
)
async def test_a_booking_without_a_usable_station_is_ignored(
    channel: grpc.aio.Channel, fields: dict[str, object]
) -> None:
    car = _car(channel, initial_battery=(10.0, 15.0))
    car._booked(_booking(**fields))
    assert _mode(car) is Mode.DRIVING


async def test_a_booking_without_power_charges_at_a_default_power(
    channel: grpc.aio.Channel,
) -> None:
    car = _car(channel, initial_battery=(10.0, 15.0))
    car._booked(_booking(power_kw=0.0))
    assert car.car.station is not None and car.car.station.power_kw > 0

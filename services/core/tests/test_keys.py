"""The Redis key layout: no id reaches another kind's key, and each script's keys share a slot."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from greenlane.core import keys
from greenlane.core.keys import FLEET_SHARDS, Region

IDS = st.from_regex(r"[A-Za-z0-9_.:\-]{1,64}", fullmatch=True)
REGION = Region()


def every_key(i: str) -> dict[str, str]:
    """Each kind of key, named for the same id."""
    return {
        "car": keys.car_state(i),
        "plan": keys.plan(i),
        "goal": keys.goal(i),
        "car-spec": keys.car_spec(i),
        "station": REGION.station(i),
        "station-bookings": REGION.station_bookings(i),
        "car-bookings": REGION.car_bookings(i),
        "site": REGION.site(i),
        "site-stations": REGION.site_stations(i),
        "site-schedule": REGION.site_schedule(i),
    }


FIXED = {
    keys.FLEET_LOCATIONS,
    keys.FLEET_TIMESTAMPS,
    REGION.stations_locations,
    REGION.bookings,
    REGION.booking_expiry,
    REGION.booking_ended,
    REGION.car_booking,
    REGION.sites,
    REGION.planner_replicas,
}


@given(a=IDS, b=IDS)
def test_no_id_names_another_kind_s_key_nor_another_id_s(a: str, b: str) -> None:
    ka, kb = every_key(a), every_key(b)
    for kind_a, key_a in ka.items():
        assert key_a not in FIXED
        for kind_b, key_b in kb.items():
            if (kind_a, a) != (kind_b, b):
                assert key_a != key_b, (kind_a, a, kind_b, b)


def test_the_car_x_booking_is_only_ever_a_car() -> None:
    # The old layout's stall: car id `X:booking` named car X's booking pointer.
    assert keys.car_state("X:booking").endswith(":car:X:booking")
    assert keys.car_state("X:booking") not in FIXED | set(every_key("X").values())


@given(car=IDS, station=IDS)
def test_a_car_s_state_and_plan_share_a_slot_and_a_region_has_one_slot(
    car: str, station: str
) -> None:
    car_slot = key_slot(keys.car_state(car).encode())
    assert {key_slot(k(car).encode()) for k in (keys.plan, keys.goal, keys.car_spec)} == {car_slot}
    region_slots = {
        key_slot(k.encode())
        for k in (
            *FIXED - {keys.FLEET_LOCATIONS, keys.FLEET_TIMESTAMPS},
            *every_key(station).values(),
        )
        if k.startswith(REGION.tag)
    }
    assert region_slots == {key_slot(b"manhattan")}
    assert key_slot(keys.FLEET_LOCATIONS.encode()) == key_slot(keys.FLEET_TIMESTAMPS.encode())


def test_cars_spread_over_the_shards() -> None:
    shards = {keys.fleet_shard(f"car-{i}") for i in range(1000)}
    assert shards == set(range(FLEET_SHARDS))
    assert keys.fleet_shard("car-7") == keys.fleet_shard("car-7")


@pytest.mark.parametrize("name", ["", "Manhattan", "a:b", "{x}", "x" * 33, "-lead"])
def test_a_region_name_that_could_break_a_key_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="is not a region name"):
        Region(name)

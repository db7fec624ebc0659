"""The session model: kWh from battery changes, session kinds and ids, replays."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenlane.core.events import CarState
from greenlane.pricing_worker.sessions import (
    CarSession,
    SessionParams,
    account,
    account_batch,
    classify,
    stored_battery,
)

PARAMS = SessionParams(pack_capacity_kwh=75.0, gap_ms=300_000)
T0 = 1_780_000_000_000


def ev(
    ts: int, battery: float, velocity: float = 0.0, station: str = "", car: str = "car-1"
) -> CarState:
    return CarState(
        car_id=car,
        lat=40.75,
        lon=-73.98,
        battery=battery,
        velocity=velocity,
        timestamp=ts,
        station_id=station,
    )


def kwh(delta_percent: float) -> float:
    return delta_percent / 100 * 75.0


def test_the_first_event_of_a_car_uses_no_energy_and_starts_a_session() -> None:
    accounted, state = account(None, ev(T0, 80.0, velocity=30), PARAMS)
    assert accounted.kwh_usage == 0.0
    assert accounted.session_kind == "driving"
    assert accounted.session_id == f"car-1:{T0}:driving"
    assert state == CarSession(T0, 80.0, "", "driving", f"car-1:{T0}:driving")


def test_a_falling_battery_while_moving_is_driving_energy_in_one_session() -> None:
    events = [ev(T0 + i * 2000, 80.0 - 0.5 * i, velocity=40) for i in range(4)]
    accounted, states = account_batch({}, events, PARAMS)
    assert [a.session_kind for a in accounted] == ["driving"] * 4
    assert {a.session_id for a in accounted} == {f"car-1:{T0}:driving"}
    assert [a.kwh_usage for a in accounted] == pytest.approx([0, kwh(0.5), kwh(0.5), kwh(0.5)])
    assert states["car-1"].timestamp == T0 + 6000


def test_a_rising_battery_at_a_station_is_a_charging_session_of_its_own() -> None:
    events = [
        ev(T0, 50.0, velocity=20),
        ev(T0 + 2000, 49.0, velocity=0, station="st-1"),  # arrives, not charging yet
        ev(T0 + 4000, 51.0, station="st-1"),
        ev(T0 + 6000, 53.5, station="st-1"),
        ev(T0 + 8000, 53.5, station="st-1"),  # full or paused: still plugged in
    ]
    accounted, _ = account_batch({}, events, PARAMS)
    assert [a.session_kind for a in accounted] == [
        "driving",
        "idle",
        "charging",
        "charging",
        "charging",
    ]
    assert [a.kwh_usage for a in accounted] == pytest.approx([0, kwh(1.0), kwh(2.0), kwh(2.5), 0.0])
    charging = {a.session_id for a in accounted[2:]}
    assert charging == {f"car-1:{T0 + 4000}:charging"}
    assert accounted[1].session_id == f"car-1:{T0 + 2000}:idle"


def test_a_gap_longer_than_the_limit_starts_a_new_session_of_the_same_kind() -> None:
    first = ev(T0, 70.0, velocity=30)
    after_gap = ev(T0 + 300_001, 69.0, velocity=30)
    within = ev(T0 + 300_001 + 300_000, 68.0, velocity=30)
    accounted, _ = account_batch({}, [first, after_gap, within], PARAMS)
    assert accounted[0].session_id == f"car-1:{T0}:driving"
    assert accounted[1].session_id == f"car-1:{T0 + 300_001}:driving"
    assert accounted[2].session_id == accounted[1].session_id
    # The energy used across the gap still belongs to the car: it is counted once.
    assert accounted[1].kwh_usage == pytest.approx(kwh(1.0))


def test_moving_to_another_station_starts_a_new_charging_session() -> None:
    events = [
        ev(T0, 40.0, station="st-1"),
        ev(T0 + 2000, 41.0, station="st-1"),
        ev(T0 + 4000, 42.0, station="st-2"),
    ]
    accounted, _ = account_batch({}, events, PARAMS)
    assert accounted[0].session_id == accounted[1].session_id == f"car-1:{T0}:charging"
    assert accounted[2].session_id == f"car-1:{T0 + 4000}:charging"


def test_a_replayed_or_late_event_uses_no_energy_and_leaves_the_state_alone() -> None:
    _, states = account_batch({}, [ev(T0, 60.0, 30), ev(T0 + 2000, 59.0, 30)], PARAMS)
    before = states["car-1"]
    accounted, after = account(before, ev(T0 + 2000, 59.0, 30), PARAMS)
    assert accounted.kwh_usage == 0.0
    assert after is before
    late, after = account(before, ev(T0 + 1000, 10.0, 30), PARAMS)
    assert late.kwh_usage == 0.0
    assert after is before


def test_cars_are_accounted_independently_and_the_input_state_is_not_changed() -> None:
    known = {"car-2": CarSession(T0 - 2000, 30.0, "", "driving", "car-2:1:driving")}
    events = [ev(T0, 80.0, 10, car="car-1"), ev(T0, 29.0, 10, car="car-2")]
    accounted, states = account_batch(known, events, PARAMS)
    assert accounted[0].kwh_usage == 0.0
    assert accounted[1].kwh_usage == pytest.approx(kwh(1.0))
    assert accounted[1].session_id == "car-2:1:driving"
    assert known["car-2"].timestamp == T0 - 2000
    assert set(states) == {"car-1", "car-2"}


def test_the_battery_is_compared_at_the_precision_the_table_stores() -> None:
    # 80.1 is not exact in float4: a state re-read from the table must give the same kWh.
    in_memory, _ = account_batch({}, [ev(T0, 80.1, 20), ev(T0 + 2000, 79.7, 20)], PARAMS)
    seeded = CarSession(T0, stored_battery(80.1), "", "driving", f"car-1:{T0}:driving")
    after_restart, _ = account(seeded, ev(T0 + 2000, 79.7, 20), PARAMS)
    assert after_restart == in_memory[1]


@pytest.mark.parametrize(
    ("delta", "velocity", "station", "kind"),
    [
        (None, 0.0, "", "idle"),
        (None, 10.0, "", "driving"),
        (None, 0.0, "st-1", "charging"),
        (1.0, 0.0, "", "charging"),
        (-1.0, 10.0, "", "driving"),
        (-1.0, 0.0, "", "idle"),
        (-1.0, 0.0, "st-1", "idle"),
        (0.0, 0.0, "st-1", "charging"),
        (0.0, 12.0, "", "driving"),
    ],
)
def test_classify_names_the_activity(
    delta: float | None, velocity: float, station: str, kind: str
) -> None:
    assert classify(delta, velocity, station) == kind


@given(
    st.lists(
        st.tuples(
            st.integers(1, 400_000),
            st.floats(0, 100, allow_nan=False),
            st.sampled_from([0.0, 25.0]),
            st.sampled_from(["", "st-1"]),
        ),
        min_size=1,
        max_size=30,
    ),
    st.integers(1, 29),
    st.integers(0, 29),
)
def test_a_restart_anywhere_gives_the_same_rows_as_an_uninterrupted_run(
    steps: list[tuple[int, float, float, str]], cut: int, replayed: int
) -> None:
    ts = T0
    events = []
    for gap, battery, velocity, station in steps:
        ts += gap
        events.append(ev(ts, battery, velocity, station))
    cut = min(cut, len(events))
    whole, _ = account_batch({}, events, PARAMS)
    # The restarted worker seeds the car from the last row written before the cut.
    first_part, states = account_batch({}, events[:cut], PARAMS)
    seed = states["car-1"]
    seed = CarSession(
        seed.timestamp, stored_battery(seed.battery), seed.station_id, seed.kind, seed.session_id
    )
    rest, _ = account_batch({"car-1": seed}, events[cut:], PARAMS)
    assert first_part + rest == whole
    # Uncommitted offsets: some stored events come again first; the new ones are unchanged.
    replayed = min(replayed, cut)
    again, _ = account_batch({"car-1": seed}, events[cut - replayed :], PARAMS)
    assert again[replayed:] == whole[cut:]
    assert all(a.kwh_usage == 0 for a in again[:replayed])
    assert all(a.kwh_usage >= 0 for a in whole)

"""The hub's state: sequence numbers, coalescing, tombstones, stations, bookings, stats."""

from __future__ import annotations

from greenlane.core.events import CarState
from greenlane.core.stations import Station as StationInfo
from greenlane.hub.events import CarEvent, PlanEvent
from greenlane.hub.state import FleetState, heading_degrees

T0 = 1_764_000_000_000
STATION = StationInfo("mh-001", "Battery Park", 40.70, -74.01, 4, 150.0)


def telemetry(
    car_id: str, t: int, battery: float = 60.0, lat: float = 40.75, **kw: str
) -> CarEvent:
    return CarEvent(
        "telemetry",
        CarState(
            car_id=car_id,
            lat=lat,
            lon=-73.98,
            battery=battery,
            velocity=20.0,
            timestamp=t,
            station_id=kw.get("station", ""),
        ),
    )


def booking(kind: str, car_id: str, booking_id: str, t: int, station: str = "mh-001") -> CarEvent:
    state = CarState(
        car_id=car_id,
        lat=40.75,
        lon=-73.98,
        battery=15.0,
        velocity=20.0,
        timestamp=t,
        station_id=station,
    )
    return CarEvent(kind, state, booking_id, t + 1_200_000 if kind == "booking_created" else 0)


def test_every_change_takes_the_next_sequence_number() -> None:
    state = FleetState(seq_base=100)
    state.apply(telemetry("a", T0), T0)
    state.apply(telemetry("b", T0), T0)
    state.apply(telemetry("a", T0 + 1000, lat=40.76), T0)
    assert state.seq == 103
    entries, folded = state.changes_since(100)
    assert [(e.key, e.seq) for e in entries] == [("b", 102), ("a", 103)]
    assert folded == 1  # a's first change is folded into its second


def test_an_unchanged_value_is_no_change() -> None:
    state = FleetState(seq_base=0)
    state.set_stations([STATION])
    seq = state.seq
    state.set_stations([STATION])
    assert state.seq == seq


def test_changes_since_a_position_hold_each_object_once_with_its_latest_value() -> None:
    state = FleetState(seq_base=0)
    for i in range(5):
        state.apply(telemetry("a", T0 + i * 1000, battery=60 - i), T0)
    state.apply(telemetry("b", T0), T0)
    entries, folded = state.changes_since(2)
    assert [(e.key, e.value and e.value["battery"]) for e in entries] == [("a", 56.0), ("b", 60.0)]
    assert folded == 2  # changes 3 and 4 of a
    assert state.changes_since(state.seq) == ([], 0)


def test_a_removed_object_is_sent_as_a_tombstone_to_clients_that_had_it() -> None:
    state = FleetState(seq_base=0)
    state.set_stations([STATION])
    state.apply(booking("booking_created", "a", "b-1", T0), T0)
    before = state.seq
    state.apply(booking("booking_fulfilled", "a", "b-1", T0 + 5000), T0)
    entries, _ = state.changes_since(before)
    assert ("bookings", "b-1", None) in [(e.kind, e.key, e.value) for e in entries]
    assert "b-1" not in {e.key for e in state.entries()}


def test_an_object_that_came_and_went_after_a_position_is_not_sent_to_it() -> None:
    state = FleetState(seq_base=0)
    state.set_stations([STATION])
    before = state.seq
    state.apply(booking("booking_created", "a", "b-1", T0), T0)
    state.apply(booking("booking_cancelled", "a", "b-1", T0), T0)
    entries, folded = state.changes_since(before)
    assert [e.kind for e in entries] == ["stations"]  # booked 1, then 0 again
    assert folded == state.seq - before - 1


def test_forgetting_tombstones_raises_the_floor_so_older_positions_reset() -> None:
    state = FleetState(seq_base=0, max_tombstones=100)
    state.set_stations([STATION])
    start = state.seq
    for i in range(150):
        state.apply(booking("booking_created", f"c{i}", f"b-{i}", T0), T0)
        state.apply(booking("booking_cancelled", f"c{i}", f"b-{i}", T0), T0)
    assert state.floor > start
    assert state.resume_problem(start) == "too_old"
    assert state.resume_problem(state.floor) is None
    assert state.resume_problem(state.seq) is None


def test_a_position_of_another_hub_instance_is_not_resumable() -> None:
    state = FleetState(seq_base=1000)
    state.apply(telemetry("a", T0), T0)
    assert state.resume_problem(999) == "epoch"  # before this instance's first number
    assert state.resume_problem(state.seq + 1) == "epoch"  # ahead of it


def test_stations_count_bookings_and_plugged_cars_against_their_capacity() -> None:
    state = FleetState(seq_base=0)
    state.set_stations([STATION])
    state.apply(booking("booking_created", "a", "b-1", T0), T0)
    state.apply(telemetry("b", T0, station="mh-001"), T0)
    value = next(e.value for e in state.entries() if e.key == "mh-001")
    assert value is not None
    assert (value["booked"], value["plugged"], value["free"]) == (1, 1, 2)
    state.apply(telemetry("b", T0 + 2000), T0)  # unplugged
    value = next(e.value for e in state.entries() if e.key == "mh-001")
    assert value is not None and (value["plugged"], value["free"]) == (0, 3)


def test_a_booking_event_does_not_move_the_car_or_plug_it_in() -> None:
    state = FleetState(seq_base=0)
    state.set_stations([STATION])
    state.apply(telemetry("a", T0, lat=40.8), T0)
    state.apply(booking("booking_created", "a", "b-1", T0 + 5), T0)
    car = state.cars["a"]
    assert (car.lat, car.station_id) == (40.8, "")
    assert state.car_booking == {"a": "b-1"}


def test_a_new_booking_of_a_car_ends_its_previous_one() -> None:
    state = FleetState(seq_base=0)
    state.set_stations([STATION])
    state.apply(booking("booking_created", "a", "b-1", T0), T0)
    state.apply(booking("booking_created", "a", "b-2", T0 + 1), T0)
    assert set(state.bookings) == {"b-2"}
    value = next(e.value for e in state.entries() if e.key == "mh-001")
    assert value is not None and value["booked"] == 1


def test_an_overdue_booking_ends_even_without_its_expiry_event() -> None:
    state = FleetState(seq_base=0)
    state.set_stations([STATION])
    state.apply(booking("booking_created", "a", "b-1", T0), T0)
    state.expire(T0 + 1_200_000 + 10_000, caught_up=True)
    assert "b-1" in state.bookings  # within the grace: its event may still come
    state.expire(T0 + 1_200_000 + 31_000, caught_up=True)
    assert state.bookings == {}


def test_a_low_car_without_a_booking_counts_as_no_capacity_after_the_grace() -> None:
    state = FleetState(seq_base=0, booking_threshold=20.0)
    state.apply(telemetry("a", T0, battery=12.0), T0)
    state.apply(telemetry("b", T0, battery=12.0), T0)
    state.apply(booking("booking_created", "b", "b-1", T0 + 3), T0 + 3)  # b got a slot
    state.expire(T0 + 1000, caught_up=True)
    assert state.stats(T0 + 1000).no_capacity_10min == 0  # a's booking may still come
    state.expire(T0 + 2500, caught_up=True)
    assert state.stats(T0 + 2500).no_capacity_10min == 1
    assert state.stats(T0 + 11 * 60_000).no_capacity_10min == 0  # out of the window


def test_stats_count_online_cars_and_the_battery_bands() -> None:
    state = FleetState(seq_base=0, online_ms=60_000)
    for car_id, battery in [("a", 80.0), ("b", 19.9), ("c", 14.9), ("d", 20.0)]:
        state.apply(telemetry(car_id, T0, battery=battery), T0)
    state.apply(telemetry("old", T0 - 120_000, battery=5.0), T0)
    stats = state.stats(T0)
    assert (stats.cars_online, stats.low_battery, stats.critical_battery) == (4, 2, 1)


def test_a_silent_car_leaves_the_map_after_the_forget_time() -> None:
    state = FleetState(seq_base=0, forget_ms=60_000)
    state.apply(telemetry("a", T0), T0)
    state.expire(T0 + 61_000, caught_up=True)
    assert "a" not in state.cars
    entries, _ = state.changes_since(1)
    assert [(e.key, e.value) for e in entries] == [("a", None)]


def test_heading_follows_the_cars_movement() -> None:
    assert round(heading_degrees(40.0, -74.0, 40.1, -74.0)) == 0
    assert round(heading_degrees(40.0, -74.0, 40.0, -73.9)) == 90
    assert round(heading_degrees(40.0, -74.0, 39.9, -74.0)) == 180
    state = FleetState(seq_base=0)
    state.apply(telemetry("a", T0, lat=40.75), T0)
    state.apply(telemetry("a", T0 + 1000, lat=40.74), T0)
    assert state.cars["a"].heading is not None and round(state.cars["a"].heading) == 180
    state.apply(telemetry("a", T0 + 2000, lat=40.74), T0)  # standing still keeps it
    assert round(state.cars["a"].heading or 0) == 180


def test_a_cars_battery_history_keeps_one_sample_per_step_within_the_window() -> None:
    state = FleetState(seq_base=0, history_ms=60_000, history_step_ms=10_000)
    for i in range(0, 120):
        state.apply(telemetry("a", T0 + i * 1000, battery=100 - i * 0.1), T0)
    detail = state.car_detail("a")
    assert detail is not None
    times = [t for t, _ in detail["history"]]
    assert times == [T0 + s * 1000 for s in range(50, 120, 10)]  # the last 60 s
    assert state.car_detail("nobody") is None


def test_a_plan_replaces_the_cars_previous_plan() -> None:
    state = FleetState(seq_base=0)
    state.apply(PlanEvent("a", {"car_id": "a", "setpoint_kw": 7.0}), T0)
    state.apply(PlanEvent("a", {"car_id": "a", "setpoint_kw": 11.0}), T0)
    plans = [e.value for e in state.entries() if e.kind == "plans"]
    assert plans == [{"car_id": "a", "setpoint_kw": 11.0}]

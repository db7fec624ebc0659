"""The client's outbox and backoff: kept until acknowledged, per-car order, bounded."""

from __future__ import annotations

import random

import pytest

from greenlane.client import Backoff, Outbox, State
from greenlane.v1 import fleet_pb2


def status(car: str, ts: int) -> fleet_pb2.CarStatus:
    return fleet_pb2.CarStatus(car_id=car, lat=40.75, lon=-73.98, battery=50, timestamp=ts)


def stamps(entries: list) -> list[tuple[str, int]]:  # type: ignore[type-arg]
    return [(e.car_id, e.status.timestamp) for e in entries]


def test_a_status_stays_in_the_outbox_until_it_is_acknowledged() -> None:
    box = Outbox(10)
    box.put(status("a", 1))
    sent = box.take(5)
    assert len(box) == 1 and box.in_flight == 1 and box.waiting == 0
    box.failed(sent)
    assert len(box) == 1 and box.waiting == 1
    again = box.take(5)
    assert again[0] is sent[0] and again[0].attempts == 2
    box.acked(again)
    assert len(box) == 0
    assert box.counters.as_dict() == {
        "put": 1,
        "sent": 2,
        "resent": 1,
        "acked": 1,
        "rejected": 0,
        "dropped": 0,
        "dropped_latest": 0,
    }


def test_a_car_has_one_message_in_flight_so_its_later_status_never_overtakes() -> None:
    box = Outbox(10)
    box.put(status("a", 1))
    first = box.take(1)
    box.put(status("a", 2))
    box.put(status("b", 1))
    # a's second status waits behind the first, b goes ahead.
    assert stamps(box.take(10)) == [("b", 1)]
    box.failed(first)
    assert stamps(box.take(10)) == [("a", 1), ("a", 2)]


def test_failed_entries_go_back_before_what_waits_in_their_original_order() -> None:
    box = Outbox(10)
    for ts in (1, 2, 3):
        box.put(status("a", ts))
    sent = box.take(2)
    box.put(status("a", 4))
    box.failed(list(reversed(sent)))
    assert stamps(box.take(10)) == [("a", 1), ("a", 2), ("a", 3), ("a", 4)]


def test_without_strict_order_a_car_may_pipeline_and_a_failed_status_comes_back_first() -> None:
    box = Outbox(10, strict_order=False)
    box.put(status("a", 1))
    first = box.take(1)
    box.put(status("a", 2))
    second = box.take(1)
    assert stamps(second) == [("a", 2)]
    box.put(status("a", 3))
    box.failed(first)
    assert stamps(box.take(10)) == [("a", 1), ("a", 3)]


def test_a_batch_takes_each_cars_backlog_contiguously_and_in_order() -> None:
    box = Outbox(100)
    for ts in range(3):
        for car in ("a", "b"):
            box.put(status(car, ts))
    assert stamps(box.take(100)) == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1), ("b", 2)]


def test_a_full_outbox_drops_the_oldest_status_that_is_not_its_cars_latest() -> None:
    box = Outbox(3)
    box.put(status("a", 1))
    box.put(status("b", 1))
    box.put(status("b", 2))
    dropped = box.put(status("c", 1))
    # a's only status is its latest; b's first is history: that one goes.
    assert dropped is not None and (dropped.car_id, dropped.status.timestamp) == ("b", 1)
    assert dropped.state is State.DROPPED
    assert stamps(box.take(10)) == [("a", 1), ("b", 2), ("c", 1)]
    assert box.counters.dropped == 1 and box.counters.dropped_latest == 0


def test_when_every_car_holds_only_its_latest_the_oldest_is_dropped_and_counted_apart() -> None:
    box = Outbox(2)
    box.put(status("a", 1))
    box.put(status("b", 1))
    dropped = box.put(status("c", 1))
    assert dropped is not None and dropped.car_id == "a"
    assert box.counters.dropped == 1 and box.counters.dropped_latest == 1


def test_when_everything_held_is_in_flight_the_new_status_is_refused_and_counted() -> None:
    box = Outbox(1)
    box.put(status("a", 1))
    box.take(1)
    refused = box.put(status("a", 2))
    assert refused is not None and refused.state is State.DROPPED
    assert refused.status.timestamp == 2 and len(box) == 1
    assert box.counters.dropped == 1


def test_every_status_put_ends_acked_rejected_or_dropped_under_random_failures() -> None:
    rng = random.Random(7)
    box = Outbox(50)
    put = 0
    delivered: dict[str, list[int]] = {}
    in_flight: list = []  # type: ignore[type-arg]
    for step in range(3000):
        if rng.random() < 0.6:
            car = f"c{rng.randrange(8)}"
            box.put(status(car, step))
            put += 1
        if rng.random() < 0.5:
            in_flight.append(box.take(rng.randrange(1, 6)))
        if in_flight and rng.random() < 0.6:
            message = in_flight.pop(rng.randrange(len(in_flight)))
            fate = rng.random()
            if fate < 0.3:
                box.failed(message)
            elif fate < 0.35:
                box.rejected(message)
            else:
                box.acked(message)
                for e in message:
                    delivered.setdefault(e.car_id, []).append(e.status.timestamp)
    for message in in_flight:
        box.failed(message)
    while len(box):
        message = box.take(10)
        box.acked(message)
        for e in message:
            delivered.setdefault(e.car_id, []).append(e.status.timestamp)
    c = box.counters
    assert c.put == put == c.acked + c.rejected + c.dropped
    for timestamps in delivered.values():
        assert timestamps == sorted(timestamps)  # per-car order, resends included


def test_take_refuses_a_size_below_one_naming_the_argument() -> None:
    with pytest.raises(ValueError, match="max_statuses"):
        Outbox(1).take(0)
    with pytest.raises(ValueError, match="capacity"):
        Outbox(0)


def test_backoff_doubles_up_to_its_maximum_with_jitter_below_each_step() -> None:
    backoff = Backoff(0.1, 1.0, jitter=0.5, rng=random.Random(1))
    delays = [backoff.next() for _ in range(8)]
    bases = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]
    for delay, base in zip(delays, bases, strict=True):
        assert base * 0.5 <= delay <= base
    assert len(set(delays)) == len(delays)  # jittered: no two alike
    backoff.reset()
    assert backoff.next() <= 0.1 and backoff.failures == 1


def test_backoff_never_waits_less_than_the_servers_retry_hint() -> None:
    backoff = Backoff(0.1, 1.0, rng=random.Random(1))
    assert backoff.next(hint=2.5) == 2.5
    assert backoff.next(hint=0.0001) >= 0.1  # the hint is a floor, not a ceiling


def test_backoff_refuses_bad_settings_naming_them() -> None:
    with pytest.raises(ValueError, match="maximum"):
        Backoff(1.0, 0.5)
    with pytest.raises(ValueError, match="jitter"):
        Backoff(jitter=2)

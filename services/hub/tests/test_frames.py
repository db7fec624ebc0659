"""The frame encodings are JSON with the documented shapes."""

from __future__ import annotations

import json

from greenlane.hub.frames import encode_changes, encode_error, encode_snapshot
from greenlane.hub.state import Entry


def test_a_snapshot_lists_every_kind_even_when_empty() -> None:
    entries = [Entry("cars", "a", {"lat": 1.0}, 5), Entry("stations", "s", {"free": 2}, 6)]
    data = json.loads(encode_snapshot("e1", 6, entries, {"cars_online": 1}, "slow"))
    assert data == {
        "type": "snapshot",
        "epoch": "e1",
        "seq": 6,
        "reason": "slow",
        "cars": {"a": {"lat": 1.0}},
        "stations": {"s": {"free": 2}},
        "bookings": {},
        "plans": {},
        "stats": {"cars_online": 1},
    }


def test_changes_hold_only_the_kinds_that_changed_and_null_for_a_removal() -> None:
    entries = [Entry("cars", "a", {"lat": 1.0}, 5), Entry("bookings", "b-1", None, 6)]
    data = json.loads(encode_changes(4, 6, entries, 0, None))
    assert data == {
        "type": "changes",
        "from": 4,
        "seq": 6,
        "coalesced": 0,
        "cars": {"a": {"lat": 1.0}},
        "bookings": {"b-1": None},
    }


def test_an_error_frame_names_the_field() -> None:
    assert json.loads(encode_error("since", "bad")) == {
        "type": "error",
        "field": "since",
        "message": "bad",
    }

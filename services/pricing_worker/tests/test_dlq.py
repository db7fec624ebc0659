"""Dead letters carry the original message, where it came from and why."""

from __future__ import annotations

from greenlane.pricing_worker.dlq import DeadLetter


def test_a_dead_letter_keeps_the_original_headers_and_says_where_and_why() -> None:
    letter = DeadLetter(
        "invalid_event",
        "battery: must be within [0, 100] percent, got 150.0",
        "fleet-events",
        3,
        42,
        b"car-1",
        b'{"car_id":"car-1"}',
        (("traceparent", b"00-abc-def-01"), ("x-dlq-reason", b"stale")),
    )
    headers = dict(letter.dlq_headers())
    assert headers == {
        "traceparent": b"00-abc-def-01",
        "x-dlq-reason": b"invalid_event: battery: must be within [0, 100] percent, got 150.0",
        "x-dlq-code": b"invalid_event",
        "x-original-topic": b"fleet-events",
        "x-original-partition": b"3",
        "x-original-offset": b"42",
    }
    assert len(letter.dlq_headers()) == 6  # a header of ours is replaced, not repeated

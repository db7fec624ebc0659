"""The one host:port rule every service and client uses."""

from __future__ import annotations

import pytest

from greenlane.core.settings import parse_host_port, parse_host_ports


@pytest.mark.parametrize("good", ["127.0.0.1:50051", " broker:9092 ", "[::1]:19092"])
def test_a_host_and_port_is_accepted_stripped(good: str) -> None:
    assert parse_host_port(good) == good.strip()


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("localhost", "HOST:PORT"),
        (":9092", "HOST:PORT"),
        ("host:0", "1..65535"),
        ("host:70000", "1..65535"),
        ("host:http", "HOST:PORT"),
        ("::1:9092", "brackets"),
    ],
)
def test_a_bad_address_is_refused_saying_why(bad: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_host_port(bad)


def test_a_list_is_checked_part_by_part() -> None:
    assert parse_host_ports("a:1, b:2") == "a:1,b:2"
    with pytest.raises(ValueError, match="'b'"):
        parse_host_ports("a:1,b")

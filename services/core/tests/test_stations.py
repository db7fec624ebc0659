"""Station files: what is accepted, and how a bad line is named."""

from __future__ import annotations

import pytest

from greenlane.core.stations import StationFileError, parse_stations

HEADER = "id,name,lat,lon,capacity,power_kw\n"


def test_a_valid_file_gives_its_stations_in_order() -> None:
    stations = parse_stations(HEADER + "a,Alpha,40.7,-73.9,4,150\n\nb,Bravo,40.8,-73.95,2,50\n")
    assert [(s.station_id, s.capacity, s.power_kw) for s in stations] == [
        ("a", 4, 150.0),
        ("b", 2, 50.0),
    ]


@pytest.mark.parametrize(
    ("body", "line", "field"),
    [
        ("a,Alpha,40.7,-73.9,4\n", 2, "row"),
        ("a b,Alpha,40.7,-73.9,4,150\n", 2, "id"),
        ("a,Alpha,40.7,-73.9,4,150\na,Again,40.7,-73.9,4,150\n", 3, "id"),
        ("a,,40.7,-73.9,4,150\n", 2, "name"),
        ("a,Alpha,north,-73.9,4,150\n", 2, "lat"),
        ("a,Alpha,89.9,-73.9,4,150\n", 2, "lat"),
        ("a,Alpha,40.7,-190,4,150\n", 2, "lon"),
        ("a,Alpha,40.7,-73.9,0,150\n", 2, "capacity"),
        ("a,Alpha,40.7,-73.9,2.5,150\n", 2, "capacity"),
        ("a,Alpha,40.7,-73.9,2,-5\n", 2, "power_kw"),
        ("a,Alpha,40.7,-73.9,2,nan\n", 2, "power_kw"),
    ],
)
def test_a_bad_line_is_refused_naming_the_line_and_field(body: str, line: int, field: str) -> None:
    with pytest.raises(StationFileError) as err:
        parse_stations(HEADER + body)
    assert (err.value.line, err.value.field) == (line, field)
    assert str(err.value).startswith(f"line {line}: {field}:")


def test_a_wrong_header_or_an_empty_file_is_refused() -> None:
    with pytest.raises(StationFileError, match="header"):
        parse_stations("id,name,lat,lon\n")
    with pytest.raises(StationFileError, match="empty"):
        parse_stations("")
    with pytest.raises(StationFileError, match="no station"):
        parse_stations(HEADER)


def test_the_shipped_manhattan_file_is_valid() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    stations = parse_stations((root / "data/stations/manhattan.csv").read_text())
    assert len(stations) >= 30
    assert all(40.69 < s.lat < 40.89 and -74.03 < s.lon < -73.90 for s in stations)

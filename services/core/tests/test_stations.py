"""Station files: what is accepted, and how a bad line is named."""

from __future__ import annotations

import pytest

from greenlane.core.stations import (
    Site,
    SiteFileError,
    StationFileError,
    parse_stations,
    read_station_files,
)

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


SITES = "site_id,name,limit_kw\nnorth,North yard,150\nsouth,South yard,80.5\n"
WITH_SITES = HEADER.rstrip("\n") + ",site_id\n"


def test_stations_name_their_site_and_the_sites_carry_their_limit() -> None:
    stations, sites = read_station_files(
        WITH_SITES + "a,Alpha,40.7,-73.9,4,150,north\nb,Bravo,40.8,-73.95,2,50,south\n", SITES
    )
    assert [(s.station_id, s.site_id) for s in stations] == [("a", "north"), ("b", "south")]
    assert sites == [Site("north", "North yard", 150.0), Site("south", "South yard", 80.5)]


def test_a_station_file_without_the_site_column_is_read_with_stations_in_no_site() -> None:
    stations, sites = read_station_files(HEADER + "a,Alpha,40.7,-73.9,4,150\n", None)
    assert [s.site_id for s in stations] == [""] and sites == []


@pytest.mark.parametrize(
    ("stations", "sites", "error", "line", "field"),
    [
        ("a,Alpha,40.7,-73.9,4,150,west\n", SITES, StationFileError, 2, "site_id"),
        ("a,Alpha,40.7,-73.9,4,150,\n", SITES, StationFileError, 2, "site_id"),
        ("a,Alpha,40.7,-73.9,4,150,north\n", None, StationFileError, 1, "site_id"),
        ("a,Alpha,40.7,-73.9,4,150,north\n", SITES, SiteFileError, 3, "site_id"),
        (
            "a,Alpha,40.7,-73.9,4,150,north\n",
            "site_id,name,limit_kw\nnorth,N,1\nnorth,N,2\n",
            SiteFileError,
            3,
            "site_id",
        ),
        (
            "a,Alpha,40.7,-73.9,4,150,north\n",
            "site_id,name,limit_kw\nnorth,N,0\n",
            SiteFileError,
            2,
            "limit_kw",
        ),
        (
            "a,Alpha,40.7,-73.9,4,150,north\n",
            "site_id,name,limit_kw\nnorth,N,-4\n",
            SiteFileError,
            2,
            "limit_kw",
        ),
        (
            "a,Alpha,40.7,-73.9,4,150,north\n",
            "site_id,name,limit_kw\nnorth,N,lots\n",
            SiteFileError,
            2,
            "limit_kw",
        ),
        (
            "a,Alpha,40.7,-73.9,4,150,north\n",
            "site_id,name,limit_kw\nnorth,N,inf\n",
            SiteFileError,
            2,
            "limit_kw",
        ),
        (
            "a,Alpha,40.7,-73.9,4,150,north\n",
            "site_id,name,limit_kw\nnorth,,10\n",
            SiteFileError,
            2,
            "name",
        ),
        (
            "a,Alpha,40.7,-73.9,4,150,north\n",
            "site_id,name,limit_kw\nno rth,N,10\n",
            SiteFileError,
            2,
            "site_id",
        ),
        ("a,Alpha,40.7,-73.9,4,150,north\n", "site_id,name\nnorth,N\n", SiteFileError, 1, "header"),
        ("a,Alpha,40.7,-73.9,4,150,north\n", "site_id,name,limit_kw\n", SiteFileError, 1, "rows"),
    ],
)
def test_a_bad_site_or_a_station_of_an_unknown_site_is_refused_naming_line_and_field(
    stations: str, sites: str | None, error: type[Exception], line: int, field: str
) -> None:
    with pytest.raises(error) as err:
        read_station_files(WITH_SITES + stations, sites)
    assert type(err.value) is error
    assert (err.value.line, err.value.field) == (line, field)  # type: ignore[attr-defined]


def test_the_shipped_sites_hold_every_station_and_most_limits_bind() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    stations, sites = read_station_files(
        (root / "data/stations/manhattan.csv").read_text(),
        (root / "data/sites/manhattan.csv").read_text(),
    )
    assert all(s.site_id for s in stations)
    connectors = {
        site.site_id: sum(s.capacity * s.power_kw for s in stations if s.site_id == site.site_id)
        for site in sites
    }
    binding = [site for site in sites if site.limit_kw < connectors[site.site_id]]
    # The planner has something to do: most sites cannot run every connector at once.
    assert len(binding) >= len(sites) // 2

"""`greenlane report` and `greenlane migrate` on real PostgreSQL with known rows."""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from greenlane.cli import reports
from greenlane.cli.commands import migrate, report
from greenlane.cli.embedded import EmbeddedPostgres, free_port
from greenlane.core.migrations import apply_migrations

pytestmark = pytest.mark.integration

DAY = date(2026, 4, 7)
D0 = datetime(2026, 4, 7, tzinfo=UTC)

INSERT = """
INSERT INTO charging_sessions (time, event_key, session_id, car_id, station_id, event_type,
    session_kind, kwh_usage, price_rate, cost, battery, lat, lon, energy_source, grid_load)
VALUES (%s, %s, %s, %s, %s, 'telemetry', %s, %s, %s, %s, %s, 40.75, -73.98, 'grid', 0.5)
"""


def event(
    at: datetime,
    car: str,
    session: str,
    station: str | None,
    kwh: float,
    price: str,
    battery: float = 50.0,
) -> tuple[Any, ...]:
    kind = "charging" if station else "driving"
    cost = Decimal(str(kwh)) * Decimal(price)
    key = f"{car}:{int(at.timestamp() * 1000)}:telemetry"
    return (at, key, session, car, station, kind, kwh, Decimal(price), cost, battery)


def at(hours: float) -> datetime:
    return D0 + timedelta(hours=hours)


ROWS = [
    # Station A: s1 (car-1) 08:00-09:00 and s2 (car-2) 08:45-10:00 overlap:
    # occupied 08:00-10:00 = 120 min, charging 60 + 75 = 135 min.
    event(at(8), "car-1", "s1", "st-a", 1.0, "0.20000", 20),
    event(at(8.5), "car-1", "s1", "st-a", 2.0, "0.30000", 30),
    event(at(9), "car-1", "s1", "st-a", 1.0, "0.30000", 40),
    event(at(8.75), "car-2", "s2", "st-a", 0.5, "0.40000"),
    event(at(10), "car-2", "s2", "st-a", 0.5, "0.20000"),
    # Station B: s3 12:00-12:30 (30 min); s4 began the day before, only its 00:10 event
    # is in the day (a span of 0 min).
    event(at(12), "car-3", "s3", "st-b", 3.0, "0.10000"),
    event(at(12.5), "car-3", "s3", "st-b", 1.0, "0.10000"),
    event(at(-10 / 60), "car-4", "s4", "st-b", 2.0, "0.50000"),
    event(at(10 / 60), "car-4", "s4", "st-b", 2.0, "0.50000"),
    # Driving (no station) at 08:10, and one event the next day: in no station's day.
    event(at(8 + 10 / 60), "car-1", "d1", None, 0.25, "0.20000", 25),
    event(at(24 + 1), "car-1", "s5", "st-a", 1.0, "0.30000", 90),
]


@pytest.fixture(scope="module")
def database_url(postgres_server: EmbeddedPostgres) -> Iterator[str]:
    """A migrated database of this module's own, holding ROWS."""
    name = f"rep_{uuid.uuid4().hex[:12]}"
    base = postgres_server.url.rsplit("/", 1)[0]
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    url = f"{base}/{name}"
    apply_migrations(url)
    with psycopg.connect(url) as conn:
        conn.cursor().executemany(INSERT, ROWS)
    yield url
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)'.encode())


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, options="-c TimeZone=UTC") as connection:
        yield connection


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="greenlane")
    sub = parser.add_subparsers(dest="command", required=True)
    report.add_parser(sub)
    migrate.add_parser(sub)
    return parser.parse_args(argv)


def run(argv: list[str]) -> int:
    args = parse(argv)
    module = report if args.command == "report" else migrate
    return int(module.main(args))


# --- the queries ---------------------------------------------------------------------


def test_recent_car_events_are_the_newest_first_and_respect_limit_and_since(
    conn: psycopg.Connection[Any],
) -> None:
    newest = reports.recent_car_events(conn, "car-1", limit=3)
    since = reports.recent_car_events(conn, "car-1", limit=10, since=at(8.5))

    assert [(e.time, e.session_id, e.station_id) for e in newest] == [
        (at(25), "s5", "st-a"),
        (at(9), "s1", "st-a"),
        (at(8.5), "s1", "st-a"),
    ]
    assert newest[1].kwh_usage == 1.0 and newest[1].price_rate == Decimal("0.30000")
    assert newest[2].cost == Decimal("0.60000") and newest[2].battery == 30
    assert [e.time for e in since] == [at(25), at(9), at(8.5)]
    assert reports.recent_car_events(conn, "nobody") == []


def test_average_price_by_hour_weights_stations_by_their_events(
    conn: psycopg.Connection[Any],
) -> None:
    rows = reports.average_price_by_hour(conn, hours=3, until=at(10.5))

    # 08:00: 0.20, 0.30 (st-a), 0.40 (st-a, 08:45), 0.20 (driving) -> avg 0.275;
    # kWh 1 + 2 + 0.5 + 0.25 = 3.75; cost 0.2 + 0.6 + 0.2 + 0.05 = 1.05.
    # 09:00: 0.30 -> 1 event.  10:00: 0.20 -> 1 event.
    assert [(r.bucket, r.events) for r in rows] == [(at(8), 4), (at(9), 1), (at(10), 1)]
    assert rows[0].avg_price == Decimal("0.275")
    assert rows[0].kwh == 3.75
    assert rows[0].cost == Decimal("1.05")
    assert (rows[0].min_price, rows[0].max_price) == (Decimal("0.2"), Decimal("0.4"))
    assert rows[2].avg_price == Decimal("0.2")


def test_average_price_by_hour_of_one_station(conn: psycopg.Connection[Any]) -> None:
    rows = reports.average_price_by_hour(conn, hours=24, station_id="st-b", until=at(23))

    # 00:00: s4 at 00:10 (0.50); 12:00: s3 at 12:00 and 12:30 (0.10, 0.10).
    assert [(r.bucket, r.events, r.kwh) for r in rows] == [(at(0), 1, 2.0), (at(12), 2, 4.0)]
    assert [r.avg_price for r in rows] == [Decimal("0.5"), Decimal("0.1")]


def test_the_hour_window_ends_with_the_hour_of_until() -> None:
    start, end = reports.hours_window(3, datetime(2026, 4, 7, 10, 59, 59, tzinfo=UTC))
    assert (start, end) == (at(8), at(11))


def test_station_utilisation_counts_the_union_of_overlapping_sessions_once(
    conn: psycopg.Connection[Any],
) -> None:
    a, b = reports.station_utilisation(conn, DAY)

    assert (a.station_id, a.sessions, a.cars, a.events) == ("st-a", 2, 2, 5)
    assert a.kwh == 5.0 and a.cost == Decimal("0.2") + Decimal("0.6") + Decimal("0.3") + (
        Decimal("0.2") + Decimal("0.1")
    )
    assert a.charging_minutes == 135 and a.occupied_minutes == 120
    assert a.occupied_share == pytest.approx(Decimal(120) / 1440)
    assert (b.station_id, b.sessions, b.cars, b.events) == ("st-b", 2, 2, 3)
    assert b.kwh == 6.0
    assert b.charging_minutes == 30 and b.occupied_minutes == 30
    assert reports.station_utilisation(conn, date(2026, 4, 1)) == []


# --- the commands --------------------------------------------------------------------


def test_report_car_prints_a_table(
    database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code = run(["report", "car", "car-1", "--limit", "2", "--database-url", database_url])
    out = capsys.readouterr().out

    assert code == 0
    assert "car car-1: 2 most recent events (UTC)" in out
    assert "2026-04-08 01:00:00" in out and "2026-04-07 09:00:00" in out
    assert "2026-04-07 08:30:00" not in out


def test_report_prices_and_stations_print_json(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--database-url", database_url, "--json"]
    assert run(["report", "prices", "--hours", "1", "--until", "2026-04-07T08:59Z", *base]) == 0
    prices = json.loads(capsys.readouterr().out)
    assert run(["report", "stations", "--day", "2026-04-07", *base]) == 0
    stations = json.loads(capsys.readouterr().out)

    assert prices == [
        {
            "bucket": "2026-04-07T08:00:00+00:00",
            "events": 4,
            "kwh": 3.75,
            "cost": 1.05,
            "avg_price": 0.275,
            "min_price": 0.2,
            "max_price": 0.4,
        }
    ]
    assert [(s["station_id"], s["occupied_minutes"]) for s in stations] == [
        ("st-a", 120.0),
        ("st-b", 30.0),
    ]


def test_report_stations_prints_the_share_of_the_day(
    database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert run(["report", "stations", "--day", "2026-04-07", "--database-url", database_url]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "st-a" in line]

    assert len(lines) == 1
    assert "135.0" in lines[0] and "8.3%" in lines[0]


@pytest.mark.parametrize(
    ("argv", "flag", "detail"),
    [
        (["report", "stations", "--day", "2026-02-30"], "--day", "is not a date (YYYY-MM-DD)"),
        (["report", "car", "c", "--since", "yesterday"], "--since", "is not an ISO-8601 time"),
        (["report", "car", "c", "--limit", "0"], "--limit", "must be between 1 and 10000"),
        (["report", "prices", "--hours", "x"], "--hours", "is not an integer"),
    ],
)
def test_a_bad_flag_is_refused_by_name(
    argv: list[str], flag: str, detail: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse(argv)
    err = capsys.readouterr().err

    assert exit_info.value.code == 2
    assert f"argument {flag}: " in err and detail in err


@pytest.mark.parametrize("command", [["report", "prices"], ["migrate"]])
def test_an_unreachable_database_is_one_line_without_the_password(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql://fleet:s3cret-pw@127.0.0.1:{free_port()}/greenlane"
    code = run([*command, "--database-url", url])
    err = capsys.readouterr().err

    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith(f"greenlane {command[0]}: cannot connect to PostgreSQL at ")
    assert "postgresql://fleet@127.0.0.1" in err
    assert "s3cret-pw" not in err and "Traceback" not in err


def test_a_report_on_an_unmigrated_database_says_to_migrate(
    postgres_server: EmbeddedPostgres, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = postgres_server.url.rsplit("/", 1)[0] + "/postgres"
    assert run(["report", "car", "x", "--database-url", empty]) == 1
    err = capsys.readouterr().err
    assert "the schema is missing" in err and "run `greenlane migrate`" in err


def test_migrate_prints_what_it_applied_then_that_the_schema_is_up_to_date(
    postgres_server: EmbeddedPostgres,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    name = f"cli_{uuid.uuid4().hex[:12]}"
    base = postgres_server.url.rsplit("/", 1)[0]
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        assert run(["migrate", "--database-url", f"{base}/{name}", "--json"]) == 0
        first = json.loads(capsys.readouterr().out)
        assert run(["migrate", "--database-url", f"{base}/{name}"]) == 0
        second = capsys.readouterr().out
    finally:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)'.encode())

    assert first["path"] == "plain PostgreSQL"
    assert [(m["name"], m["outcome"]) for m in first["migrations"]] == [
        ("0001_charging_sessions", "applied"),
        ("0002_timescaledb_hypertable", "skipped"),
        ("0003_timescaledb_hourly", "skipped"),
        ("0004_postgres_hourly", "applied"),
        ("0005_timescaledb_hourly_policy", "skipped"),
        ("0006_demand_factor", "applied"),
    ]
    assert "schema up to date (all 6 migrations recorded, plain PostgreSQL)" in second

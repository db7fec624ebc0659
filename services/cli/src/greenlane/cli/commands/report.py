"""`greenlane report car|prices|stations`: the seed's three queries as tables (or JSON)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table

from greenlane.cli import reports
from greenlane.core import cliargs
from greenlane.core.db import (
    DATABASE_URL_VARIABLE,
    DEFAULT_DATABASE_URL,
    connect,
    resolve_database_url,
)
from greenlane.core.errors import BackendUnavailable

EXIT_OK, EXIT_FAILED = 0, 1


def database_options() -> argparse.ArgumentParser:
    """--database-url, shared by every command that talks to PostgreSQL."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--database-url",
        metavar="URL",
        help=f"PostgreSQL URL (default: ${DATABASE_URL_VARIABLE}, else the one in "
        f".greenlane/dev.env, else {DEFAULT_DATABASE_URL})",
    )
    return parent


def add_parser(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False, parents=[database_options()])
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser = sub.add_parser(
        "report",
        help="reports on charging sessions (car, prices, stations)",
        description="Reports on the charging_sessions table. Times are UTC.",
    )
    kinds = parser.add_subparsers(dest="report", required=True, metavar="REPORT")

    car = kinds.add_parser("car", parents=[common], help="recent events of one car, newest first")
    car.add_argument("car_id", metavar="CAR_ID")
    car.add_argument(
        "--limit",
        type=cliargs.integer(1, reports.MAX_LIMIT),
        default=20,
        help="how many events (default 20)",
    )
    car.add_argument(
        "--since",
        type=cliargs.iso_datetime,
        metavar="ISO",
        help="only events at or after this time",
    )

    prices = kinds.add_parser(
        "prices", parents=[common], help="average grid price, energy and cost by hour"
    )
    prices.add_argument(
        "--hours",
        type=cliargs.integer(1, reports.MAX_HOURS),
        default=24,
        help="how many hourly buckets, ending with the hour of --until (default 24)",
    )
    prices.add_argument("--station", metavar="ID", help="only events at this station")
    prices.add_argument(
        "--until", type=cliargs.iso_datetime, metavar="ISO", help="last hour to show (default now)"
    )

    stations = kinds.add_parser(
        "stations", parents=[common], help="station utilisation over one UTC day"
    )
    stations.add_argument(
        "--day",
        type=cliargs.iso_date,
        metavar="YYYY-MM-DD",
        default=None,
        help="the UTC day (default today)",
    )


def _jsonable(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _to_json(rows: Sequence[Any]) -> str:
    return json.dumps(
        [{k: _jsonable(v) for k, v in dataclasses.asdict(r).items()} for r in rows], indent=2
    )


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def car_table(car_id: str, rows: Sequence[reports.CarEvent]) -> Table:
    table = Table(title=f"car {car_id}: {len(rows)} most recent events (UTC)")
    for name in ("time", "session", "event", "kind", "station"):
        table.add_column(name)
    for name in ("kWh", "$/kWh", "cost $", "battery %"):
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(
            _when(r.time),
            r.session_id,
            r.event_type,
            r.session_kind,
            r.station_id or "-",
            f"{r.kwh_usage:.4f}",
            f"{r.price_rate:.4f}",
            f"{r.cost:.4f}",
            f"{r.battery:.1f}",
        )
    return table


def prices_table(title: str, rows: Sequence[reports.HourlyPrice]) -> Table:
    table = Table(title=title)
    table.add_column("hour (UTC)")
    for name in ("events", "kWh", "avg $/kWh", "min", "max", "cost $"):
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(
            r.bucket.astimezone(UTC).strftime("%Y-%m-%d %H:00"),
            str(r.events),
            f"{r.kwh:.3f}",
            f"{r.avg_price:.4f}",
            f"{r.min_price:.4f}",
            f"{r.max_price:.4f}",
            f"{r.cost:.2f}",
        )
    return table


def stations_table(day: date, rows: Sequence[reports.StationDay]) -> Table:
    table = Table(title=f"station utilisation on {day.isoformat()} (UTC)")
    table.add_column("station")
    for name in ("sessions", "cars", "events", "kWh", "cost $", "charging min", "occupied"):
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(
            r.station_id,
            str(r.sessions),
            str(r.cars),
            str(r.events),
            f"{r.kwh:.3f}",
            f"{r.cost:.2f}",
            f"{r.charging_minutes:.1f}",
            f"{r.occupied_share:.1%}",
        )
    return table


def _run(args: argparse.Namespace, conn: psycopg.Connection[Any], console: Console) -> None:
    rows: Sequence[Any]
    if args.report == "car":
        rows = reports.recent_car_events(conn, args.car_id, limit=args.limit, since=args.since)
        table = car_table(args.car_id, rows)
        empty = f"no events for car {args.car_id}"
    elif args.report == "prices":
        # now() read once: the query and the title name the same window.
        until = args.until or datetime.now(UTC)
        start, end = reports.hours_window(args.hours, until)
        rows = reports.average_price_by_hour(
            conn, hours=args.hours, station_id=args.station, until=until
        )
        where = f" at station {args.station}" if args.station else ""
        span = f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
        table = prices_table(f"average price by hour{where}, {span}", rows)
        empty = f"no events{where} from {span}"
    else:
        day = args.day or datetime.now(UTC).date()
        rows = reports.station_utilisation(conn, day)
        table = stations_table(day, rows)
        empty = f"no station events on {day.isoformat()}"
    if args.json:
        sys.stdout.write(_to_json(rows) + "\n")
    elif rows:
        console.print(table)
    else:
        console.print(empty, soft_wrap=True)


def fail(command: str, message: str) -> int:
    """One line on stderr, no traceback."""
    sys.stderr.write(f"greenlane {command}: {' '.join(message.split())}\n")
    return EXIT_FAILED


def main(args: argparse.Namespace) -> int:
    try:
        with connect(resolve_database_url(args.database_url)) as conn:
            # markup off: car and station ids are data, not rich markup.
            _run(args, conn, Console(markup=False))
    except BackendUnavailable as error:
        return fail("report", str(error))
    except psycopg.errors.UndefinedTable as error:
        return fail(
            "report",
            f"the schema is missing ({error.diag.message_primary}); run `greenlane migrate`",
        )
    except psycopg.Error as error:
        return fail("report", f"database error: {error}")
    return EXIT_OK

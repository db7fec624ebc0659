"""`greenlane migrate`: apply the sql/ migrations (TimescaleDB or plain PostgreSQL path)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table

from greenlane.cli.commands.report import EXIT_OK, database_options, fail
from greenlane.core.db import connect, redact, resolve_database_url
from greenlane.core.errors import BackendUnavailable
from greenlane.core.migrations import (
    MigrationError,
    MigrationFailed,
    PlannedMigration,
    PsycopgSession,
    load_migrations,
    migrations_dir,
    run_migrations,
)

TIMESCALEDB_VERSION = "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "migrate",
        parents=[database_options()],
        help="apply the database migrations (idempotent)",
        description="Apply the sql/ migrations not yet recorded in schema_migrations. "
        "TimescaleDB-only files are recorded as skipped where the extension is not "
        "available (see docs/database.md).",
    )
    parser.add_argument(
        "--directory",
        type=Path,
        metavar="DIR",
        help="migration files (default: $GREENLANE_MIGRATIONS_DIR, else sql/ of the source tree)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _summary(plan: list[PlannedMigration], schema_path: str) -> dict[str, Any]:
    return {
        "path": schema_path,
        "migrations": [
            {"name": p.name, "outcome": p.outcome, "reason": p.reason or None} for p in plan
        ],
    }


def main(args: argparse.Namespace) -> int:
    url = resolve_database_url(args.database_url)
    try:
        migrations = load_migrations(args.directory or migrations_dir())
        with connect(url, autocommit=True) as conn:
            plan = run_migrations(PsycopgSession(conn), migrations)
            version = conn.execute(TIMESCALEDB_VERSION).fetchone()
    except (BackendUnavailable, MigrationError, MigrationFailed, FileNotFoundError) as error:
        return fail("migrate", str(error))
    except psycopg.Error as error:
        return fail("migrate", f"database error: {error}")
    schema_path = f"TimescaleDB {version[0]}" if version else "plain PostgreSQL"
    if args.json:
        sys.stdout.write(json.dumps(_summary(plan, schema_path), indent=2) + "\n")
        return EXIT_OK
    console = Console()
    if not plan:
        console.print(
            f"{redact(url)}: schema up to date (all {len(migrations)} migrations recorded, "
            f"{schema_path})",
            soft_wrap=True,
        )
        return EXIT_OK
    table = Table(title=f"migrations on {redact(url)} ({schema_path})")
    table.add_column("migration")
    table.add_column("outcome")
    table.add_column("why")
    for p in plan:
        colour = "green" if p.outcome == "applied" else "yellow"
        table.add_row(p.name, f"[{colour}]{p.outcome}[/{colour}]", p.reason)
    console.print(table)
    return EXIT_OK

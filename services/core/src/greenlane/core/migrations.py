"""Forward-only SQL migrations from sql/NNNN_*.sql, tracked in schema_migrations.

One planner, several executors: `plan_migrations` turns the files, what the database
has already recorded and the extensions it offers into `Step`s (SQL text plus whether
it runs inside a transaction). `run_migrations` executes them through any `SqlSession`:
psycopg here, the PGlite (TimescaleDB in WASM) helper in the tests. The header
directives of a file (see docs/database.md):

    -- greenlane: requires-extension timescaledb   run only where the extension exists
    -- greenlane: unless-extension timescaledb     run only where it does not
    -- greenlane: no-transaction                   one statement, outside a transaction

A migration whose condition does not hold is recorded as `skipped`, so a second run
applies nothing and a database never changes path halfway through its life.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import psycopg

log = logging.getLogger(__name__)

MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Any constant: concurrent runners (two pods, a Job and a developer) take turns.
ADVISORY_LOCK_ID = 0x6C616E65

_DIRECTIVE = re.compile(r"^--\s*greenlane:\s*(?P<key>[a-z-]+)(?:\s+(?P<value>\S+))?\s*$")
_EXTENSION_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")

Outcome = Literal["applied", "skipped"]

BOOKKEEPING_DDL = """\
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    outcome    text NOT NULL DEFAULT 'applied' CHECK (outcome IN ('applied', 'skipped')),
    applied_at timestamptz NOT NULL DEFAULT now()
);
-- Databases migrated by the first runner lack the outcome column.
ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS outcome text NOT NULL DEFAULT 'applied'"""

APPLIED_QUERY = "SELECT version, checksum FROM schema_migrations ORDER BY version"
EXTENSIONS_QUERY = "SELECT name FROM pg_available_extensions ORDER BY name"
LOCK_QUERY = f"SELECT pg_advisory_lock({ADVISORY_LOCK_ID})"
UNLOCK_QUERY = f"SELECT pg_advisory_unlock({ADVISORY_LOCK_ID})"


class MigrationError(ValueError):
    """A migration file is misnamed or has a bad header directive."""


class MigrationFailed(RuntimeError):
    """A migration's SQL failed; the message names the migration, the cause is chained."""


@dataclass(frozen=True)
class Directives:
    """What the header of a migration file asks for."""

    requires_extensions: tuple[str, ...] = ()
    unless_extensions: tuple[str, ...] = ()
    transaction: bool = True


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str = field(repr=False)
    directives: Directives = field(default_factory=Directives)

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class Step:
    """SQL for an executor: several statements in one transaction, or one in autocommit."""

    sql: str
    transaction: bool


@dataclass(frozen=True)
class PlannedMigration:
    migration: Migration
    outcome: Outcome
    reason: str
    steps: tuple[Step, ...]

    @property
    def name(self) -> str:
        return self.migration.name


class SqlSession(Protocol):
    """One connection to run migration steps on (psycopg, or PGlite in the tests)."""

    def execute(self, step: Step) -> None: ...

    def query(self, sql: str) -> list[tuple[Any, ...]]: ...


def migrations_dir() -> Path:
    """GREENLANE_MIGRATIONS_DIR, else the sql/ folder of the source tree."""
    configured = os.environ.get("GREENLANE_MIGRATIONS_DIR")
    if configured:
        return Path(configured)
    for parent in Path(__file__).resolve().parents:
        if (parent / "sql").is_dir() and (parent / "services").is_dir():
            return parent / "sql"
    raise FileNotFoundError("no sql/ directory found: set GREENLANE_MIGRATIONS_DIR")


def parse_directives(sql: str, filename: str = "<sql>") -> Directives:
    """Read `-- greenlane: ...` lines from the header (the leading comment block)."""
    requires: list[str] = []
    unless: list[str] = []
    transaction = True
    in_header = True
    for number, raw in enumerate(sql.splitlines(), start=1):
        line = raw.strip()
        if in_header and line and not line.startswith("--"):
            in_header = False
        if not line.startswith("--") or not re.match(r"^--\s*greenlane:", line):
            continue
        if not in_header:
            raise MigrationError(
                f"{filename}:{number}: greenlane directives belong in the header, "
                "before the first statement"
            )
        match = _DIRECTIVE.match(line)
        key = match.group("key") if match else ""
        value = match.group("value") if match else None
        if key in ("requires-extension", "unless-extension") and value:
            if not _EXTENSION_NAME.match(value):
                raise MigrationError(f"{filename}:{number}: bad extension name {value!r}")
            (requires if key == "requires-extension" else unless).append(value)
        elif key == "no-transaction" and value is None:
            transaction = False
        else:
            raise MigrationError(
                f"{filename}:{number}: unknown directive {line!r}; known: "
                "'requires-extension NAME', 'unless-extension NAME', 'no-transaction'"
            )
    return Directives(tuple(requires), tuple(unless), transaction)


def load_migrations(directory: Path) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = MIGRATION_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_description.sql")
        sql = path.read_text()
        found.append(Migration(match.group(1), path.stem, sql, parse_directives(sql, path.name)))
    versions = [m.version for m in found]
    if len(versions) != len(set(versions)):
        raise MigrationError(f"duplicate migration numbers in {directory}")
    return found


def _record_sql(migration: Migration, outcome: Outcome) -> str:
    # Values are literals so that every executor runs the same text; each one is
    # constrained (digits, [a-z0-9_], hex, a fixed word), so quoting is enough.
    values = (migration.version, migration.name, migration.checksum, outcome)
    literals = ", ".join("'" + v.replace("'", "''") + "'" for v in values)
    return f"INSERT INTO schema_migrations (version, name, checksum, outcome) VALUES ({literals})"


def _condition(migration: Migration, available: Collection[str]) -> str | None:
    """Why the migration must be skipped here, or None to apply it."""
    for name in migration.directives.requires_extensions:
        if name not in available:
            return f"extension {name} is not available"
    for name in migration.directives.unless_extensions:
        if name in available:
            return f"extension {name} is available"
    return None


def plan_migrations(
    migrations: Sequence[Migration],
    applied: Mapping[str, str],
    available_extensions: Collection[str],
) -> list[PlannedMigration]:
    """The steps that bring a database from `applied` (version -> checksum) up to date."""
    plan: list[PlannedMigration] = []
    for m in migrations:
        if m.version in applied:
            if applied[m.version] != m.checksum:
                log.warning("migration %s changed after it was applied", m.name)
            continue
        reason = _condition(m, available_extensions)
        if reason is not None:
            steps: tuple[Step, ...] = (Step(_record_sql(m, "skipped"), transaction=True),)
            plan.append(PlannedMigration(m, "skipped", reason, steps))
        elif m.directives.transaction:
            # The extra ';' ends a last statement that lacks one (an empty statement is fine).
            sql = m.sql + "\n;\n" + _record_sql(m, "applied")
            plan.append(PlannedMigration(m, "applied", "", (Step(sql, transaction=True),)))
        else:
            # One statement, sent as it is, outside any transaction; executors send it so
            # that PostgreSQL refuses a second statement (a multi-statement string would
            # be one implicit transaction again). Recorded once it succeeded.
            steps = (
                Step(m.sql, transaction=False),
                Step(_record_sql(m, "applied"), transaction=True),
            )
            plan.append(PlannedMigration(m, "applied", "", steps))
    return plan


def run_migrations(session: SqlSession, migrations: Sequence[Migration]) -> list[PlannedMigration]:
    """Apply (or record as skipped) what is not yet recorded; return what was done."""
    session.query(LOCK_QUERY)
    try:
        plan = _run_locked(session, migrations)
    except BaseException:
        # Keep the original error: a failed unlock (say, a dropped connection) is moot.
        with contextlib.suppress(Exception):
            session.query(UNLOCK_QUERY)
        raise
    session.query(UNLOCK_QUERY)
    return plan


def _run_locked(session: SqlSession, migrations: Sequence[Migration]) -> list[PlannedMigration]:
    session.execute(Step(BOOKKEEPING_DDL, transaction=True))
    applied = {str(v): str(c) for v, c in session.query(APPLIED_QUERY)}
    available = {str(row[0]) for row in session.query(EXTENSIONS_QUERY)}
    plan = plan_migrations(migrations, applied, available)
    for planned in plan:
        try:
            for step in planned.steps:
                session.execute(step)
        except Exception as error:
            hint = ""
            if not planned.migration.directives.transaction:
                hint = " (a no-transaction migration holds exactly one statement)"
            raise MigrationFailed(f"migration {planned.name} failed: {error}{hint}") from error
        if planned.outcome == "applied":
            log.info("applied migration %s", planned.name)
        else:
            log.info("skipped migration %s: %s", planned.name, planned.reason)
    return plan


class PsycopgSession:
    """SqlSession over a psycopg connection in autocommit mode."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, step: Step) -> None:
        # bytes: the text comes from files, not from literals, and has no parameters.
        if step.transaction:
            with self.conn.transaction():
                self.conn.execute(step.sql.encode())
        else:
            # The extended protocol (prepare) takes one statement: PostgreSQL refuses a
            # second one instead of wrapping both in an implicit transaction.
            self.conn.execute(step.sql.encode(), prepare=True)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return list(self.conn.execute(sql.encode()).fetchall())


def migrate(conninfo: str, directory: Path | None = None) -> list[PlannedMigration]:
    """Run the migrations of `directory` (default `migrations_dir()`) on a PostgreSQL URL."""
    migrations = load_migrations(directory or migrations_dir())
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return run_migrations(PsycopgSession(conn), migrations)


def apply_migrations(conninfo: str, directory: Path | None = None) -> list[str]:
    """Apply the migrations not yet recorded; return the names of those applied now."""
    return [p.name for p in migrate(conninfo, directory) if p.outcome == "applied"]


def main() -> int:
    """`python -m greenlane.core.migrations` (the chart's migrations Job).

    Reads GREENLANE_DATABASE_URL (and GREENLANE_MIGRATIONS_DIR, GREENLANE_LOG_LEVEL,
    GREENLANE_LOG_FORMAT); waits up to GREENLANE_MIGRATIONS_WAIT_SECONDS (default 60)
    for the database to accept connections, since a bundled TimescaleDB may still be
    starting. Exit 0 when up to date, 1 on failure, 2 on bad configuration.
    """
    import sys
    import time

    from pydantic import Field, SecretStr

    from greenlane.core.db import one_line, redact
    from greenlane.core.errors import ConfigurationError
    from greenlane.core.logs import setup_logging
    from greenlane.core.settings import BaseServiceSettings, load_settings

    class MigrationSettings(BaseServiceSettings):
        database_url: SecretStr
        migrations_wait_seconds: float = Field(60.0, ge=0)

    try:
        settings = load_settings(MigrationSettings)
    except ConfigurationError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    setup_logging("migrations", settings.log_level, settings.log_format)
    url = settings.database_url.get_secret_value()
    deadline = time.monotonic() + settings.migrations_wait_seconds
    while True:
        try:
            plan = migrate(url)
            break
        except psycopg.OperationalError as error:
            if time.monotonic() >= deadline:
                log.error("cannot reach %s: %s", redact(url), one_line(error, url))
                return 1
            log.info("waiting for %s: %s", redact(url), one_line(error, url))
            time.sleep(2)
        except (MigrationError, MigrationFailed, FileNotFoundError) as error:
            log.error("%s", error)
            return 1
    applied = [p.name for p in plan if p.outcome == "applied"]
    skipped = [p.name for p in plan if p.outcome == "skipped"]
    log.info(
        "migrations on %s: applied %s; skipped %s",
        redact(url),
        ", ".join(applied) or "none",
        ", ".join(skipped) or "none",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The migration planner without a database: directives, statement splitting, plans."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from greenlane.core.db import redact, resolve_database_url
from greenlane.core.devenv import read_env_file
from greenlane.core.migrations import (
    Directives,
    Migration,
    MigrationError,
    MigrationFailed,
    Step,
    load_migrations,
    migrations_dir,
    parse_directives,
    plan_migrations,
    run_migrations,
)


def migration(version: str, sql: str) -> Migration:
    return Migration(version, f"{version}_test", sql, parse_directives(sql))


def test_header_directives_are_read() -> None:
    sql = (
        "-- greenlane: requires-extension timescaledb\n"
        "--greenlane:  no-transaction\n"
        "-- a comment\n\n"
        "SELECT 1;\n"
    )
    assert parse_directives(sql) == Directives(("timescaledb",), (), transaction=False)


def test_a_file_without_directives_runs_in_a_transaction_everywhere() -> None:
    assert parse_directives("CREATE TABLE t (x int);") == Directives()


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("-- greenlane: requires-extensions timescaledb\nSELECT 1;", "unknown directive"),
        ("-- greenlane: no-transaction please\nSELECT 1;", "unknown directive"),
        ("-- greenlane: requires-extension\nSELECT 1;", "unknown directive"),
        ("-- greenlane: unless-extension Bad-Name\nSELECT 1;", "bad extension name"),
        ("SELECT 1;\n-- greenlane: no-transaction\n", "belong in the header"),
    ],
)
def test_a_bad_directive_names_the_file_and_line(sql: str, message: str) -> None:
    with pytest.raises(MigrationError, match=rf"^0009_x\.sql:\d+: .*{message}"):
        parse_directives(sql, "0009_x.sql")


PLAIN = migration("0001", "CREATE TABLE t (x int);")
TIMESCALE = migration(
    "0002", "-- greenlane: requires-extension timescaledb\nSELECT create_hypertable('t');"
)
CAGG = migration(
    "0003",
    "-- greenlane: requires-extension timescaledb\n-- greenlane: no-transaction\n"
    "CREATE MATERIALIZED VIEW IF NOT EXISTS v AS SELECT 1 WITH DATA;\n",
)
VIEW = migration("0004", "-- greenlane: unless-extension timescaledb\nCREATE VIEW v AS SELECT 1;")
ALL = [PLAIN, TIMESCALE, CAGG, VIEW]


def test_without_timescaledb_its_files_are_recorded_as_skipped() -> None:
    plan = plan_migrations(ALL, applied={}, available_extensions={"plpgsql"})

    assert [(p.name, p.outcome) for p in plan] == [
        ("0001_test", "applied"),
        ("0002_test", "skipped"),
        ("0003_test", "skipped"),
        ("0004_test", "applied"),
    ]
    assert plan[1].reason == "extension timescaledb is not available"
    assert plan[1].steps == (
        Step(
            "INSERT INTO schema_migrations (version, name, checksum, outcome) VALUES "
            f"('0002', '0002_test', '{TIMESCALE.checksum}', 'skipped')",
            transaction=True,
        ),
    )


def test_with_timescaledb_the_plain_view_is_skipped_and_a_no_transaction_file_runs_alone() -> None:
    plan = plan_migrations(ALL, applied={}, available_extensions={"timescaledb"})

    assert [(p.name, p.outcome) for p in plan] == [
        ("0001_test", "applied"),
        ("0002_test", "applied"),
        ("0003_test", "applied"),
        ("0004_test", "skipped"),
    ]
    assert plan[3].reason == "extension timescaledb is available"
    one_transaction = plan[1].steps
    assert len(one_transaction) == 1 and one_transaction[0].transaction
    assert one_transaction[0].sql.startswith(TIMESCALE.sql)
    assert "'0002', '0002_test'" in one_transaction[0].sql
    # The file as it is, outside a transaction, then its record in one.
    statement, record = plan[2].steps
    assert statement == Step(CAGG.sql, transaction=False)
    assert record.transaction and "'0003', '0003_test'" in record.sql and "'applied')" in record.sql


def test_a_failing_no_transaction_file_is_told_it_must_hold_one_statement() -> None:
    class Refusing(RecordingSession):
        def execute(self, step: Step) -> None:
            if not step.transaction:
                raise RuntimeError("cannot insert multiple commands into a prepared statement")
            super().execute(step)

    with pytest.raises(MigrationFailed, match=r"holds exactly one statement\)$"):
        run_migrations(Refusing(["timescaledb"]), ALL)


def test_recorded_migrations_are_not_planned_again() -> None:
    applied = {m.version: m.checksum for m in ALL}
    assert plan_migrations(ALL, applied, {"timescaledb"}) == []


def test_a_changed_applied_migration_is_only_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    plan = plan_migrations([PLAIN], {"0001": "another checksum"}, set())
    assert plan == []
    assert "0001_test changed after it was applied" in caplog.text


class RecordingSession:
    """A SqlSession that remembers what it was asked to run."""

    def __init__(self, extensions: list[str]) -> None:
        self.extensions = extensions
        self.steps: list[Step] = []
        self.queries: list[str] = []

    def execute(self, step: Step) -> None:
        self.steps.append(step)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        self.queries.append(sql)
        if "pg_available_extensions" in sql:
            return [(name,) for name in self.extensions]
        return []


def test_a_run_takes_the_advisory_lock_creates_the_bookkeeping_table_and_releases_the_lock() -> (
    None
):
    session = RecordingSession(["timescaledb"])
    plan = run_migrations(session, ALL)

    assert session.queries[0].startswith("SELECT pg_advisory_lock(")
    assert session.queries[-1].startswith("SELECT pg_advisory_unlock(")
    assert "CREATE TABLE IF NOT EXISTS schema_migrations" in session.steps[0].sql
    assert session.steps[1:] == [s for p in plan for s in p.steps]


def test_a_failing_step_names_its_migration_and_the_lock_is_released() -> None:
    class Failing(RecordingSession):
        def execute(self, step: Step) -> None:
            if "create_hypertable" in step.sql:
                raise RuntimeError("boom")
            super().execute(step)

    session = Failing(["timescaledb"])
    with pytest.raises(MigrationFailed, match=r"^migration 0002_test failed: boom$"):
        run_migrations(session, ALL)
    assert session.queries[-1].startswith("SELECT pg_advisory_unlock(")


def test_the_repository_migrations_load_and_pair_up_by_extension() -> None:
    found = load_migrations(migrations_dir())
    with_ts = {
        m.name for m in plan_migrations(found, {}, {"timescaledb"}) if m.outcome == "applied"
    }
    without = {m.name for m in plan_migrations(found, {}, set()) if m.outcome == "applied"}

    assert found[0].name == "0001_charging_sessions"
    assert with_ts & without == {"0001_charging_sessions", "0006_demand_factor"}
    assert with_ts | without == {m.name for m in found}


def test_misnamed_and_duplicate_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="duplicate migration numbers"):
        load_migrations(tmp_path)
    (tmp_path / "1_Bad.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNNN_description.sql"):
        load_migrations(tmp_path)


def test_the_database_url_comes_from_the_flag_the_variable_dev_env_or_the_default(
    tmp_path: Path,
) -> None:
    dev_env = tmp_path / "dev.env"
    dev_env.write_text(
        "# written by greenlane dev\nexport GREENLANE_REDIS_URL=redis://x\n"
        "GREENLANE_DATABASE_URL='postgresql://postgres@127.0.0.1:6543/greenlane'\n"
    )
    variable = {"GREENLANE_DATABASE_URL": "postgresql://env/db"}

    assert resolve_database_url("postgresql://flag/db", environ=variable, dev_env=dev_env) == (
        "postgresql://flag/db"
    )
    assert resolve_database_url(None, environ=variable, dev_env=dev_env) == "postgresql://env/db"
    assert resolve_database_url(None, environ={}, dev_env=dev_env) == (
        "postgresql://postgres@127.0.0.1:6543/greenlane"
    )
    assert resolve_database_url(None, environ={}, dev_env=tmp_path / "missing") == (
        "postgresql://postgres@127.0.0.1:5432/greenlane"
    )
    assert read_env_file(dev_env)["GREENLANE_REDIS_URL"] == "redis://x"


def test_redacted_urls_keep_no_password() -> None:
    assert redact("postgresql://app:s3cret@db.example:6432/fleet") == (
        "postgresql://app@db.example:6432/fleet"
    )
    assert redact("host=db password=s3cret dbname=x user=u") == "postgresql://u@db:5432/x"

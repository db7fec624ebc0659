"""The sql/ migrations on real PostgreSQL (plain path) and on TimescaleDB in PGlite.

Both paths run the same Python planner (greenlane.core.migrations.run_migrations); the
PGlite path only swaps the executor for scripts/pglite/run.mjs, which executes the
planned steps in WASM PostgreSQL 17 with TimescaleDB 2.23.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from greenlane.cli import reports
from greenlane.cli.embedded import EmbeddedPostgres
from greenlane.core.migrations import (
    MigrationFailed,
    Step,
    load_migrations,
    migrate,
    migrations_dir,
    run_migrations,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "scripts" / "pglite" / "install.sh"
RUNNER = ROOT / "scripts" / "pglite" / "run.mjs"

COLUMNS = (
    "time, event_key, session_id, car_id, station_id, event_type, session_kind, kwh_usage,"
    " price_rate, cost, battery, lat, lon, energy_source, grid_load"
)
INSERT_PG = (
    f"INSERT INTO charging_sessions ({COLUMNS}) VALUES"
    " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
INSERT_PGLITE = (
    f"INSERT INTO charging_sessions ({COLUMNS}) VALUES"
    " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) ON CONFLICT DO NOTHING"
)


def row(at: datetime, car: str, station: str | None, kwh: float, price: str) -> tuple[Any, ...]:
    """A charging_sessions row; kWh values are binary fractions so float sums are exact."""
    cost = f"{kwh * float(price):.5f}"
    key = f"{car}:{int(at.timestamp() * 1000)}:telemetry"
    kind = "charging" if station else "driving"
    session = f"{car}-{station or 'road'}"
    return (at.isoformat(), key, session, car, station, "telemetry", kind, kwh, price, cost)


def full(r: tuple[Any, ...]) -> tuple[Any, ...]:
    return (*r, 50.0, 40.75, -73.98, "grid", 0.5)


# Relative to now: TimescaleDB compares chunk ages and refresh windows with the clock.
T0 = (datetime.now(UTC) - timedelta(days=60)).replace(minute=0, second=0, microsecond=0)
# Two hours, two stations and driving rows (station NULL): the aggregate's groups.
AGG_ROWS = [
    row(T0 + timedelta(minutes=5), "agg-car-1", "agg-st-1", 1.5, "0.20000"),
    row(T0 + timedelta(minutes=35), "agg-car-1", "agg-st-1", 2.5, "0.30000"),
    row(T0 + timedelta(minutes=40), "agg-car-2", "agg-st-2", 4.0, "0.25000"),
    row(T0 + timedelta(minutes=50), "agg-car-3", None, 0.25, "0.40000"),
    row(T0 + timedelta(minutes=65), "agg-car-1", "agg-st-1", 0.5, "0.10000"),
    row(T0 + timedelta(minutes=119), "agg-car-3", None, 0.75, "0.20000"),
]
# By hand: 10:00 agg-st-1 2 events 4.0 kWh cost 0.3+0.75=1.05 avg 0.25;
# agg-st-2 1 event 4.0 kWh cost 1.0 avg 0.25; NULL 1 event 0.25 kWh cost 0.1 avg 0.4.
# 11:00 agg-st-1 1 event 0.5 kWh cost 0.05 avg 0.1; NULL 1 event 0.75 kWh cost 0.15 avg 0.2.
EXPECTED_HOURLY = [
    (T0, "agg-st-1", 2, 4.0, "1.05000", "0.25000", "0.20000", "0.30000"),
    (T0, "agg-st-2", 1, 4.0, "1.00000", "0.25000", "0.25000", "0.25000"),
    (T0, None, 1, 0.25, "0.10000", "0.40000", "0.40000", "0.40000"),
    (T0 + timedelta(hours=1), "agg-st-1", 1, 0.5, "0.05000", "0.10000", "0.10000", "0.10000"),
    (T0 + timedelta(hours=1), None, 1, 0.75, "0.15000", "0.20000", "0.20000", "0.20000"),
]

# The hourly relation and the raw GROUP BY it must equal, in comparable text form.
HOURLY_SQL = f"""
SELECT extract(epoch FROM bucket)::bigint, station_id, events, kwh,
       round(cost, 5)::text, round(avg_price, 5)::text, min_price::text, max_price::text
FROM charging_sessions_hourly
WHERE bucket >= '{T0.isoformat()}' AND bucket < '{(T0 + timedelta(hours=2)).isoformat()}'
ORDER BY 1, 2 NULLS LAST
"""
RAW_SQL = f"""
SELECT extract(epoch FROM date_bin('1 hour', time, TIMESTAMPTZ '2000-01-01 00:00+00'))::bigint,
       station_id, count(*), sum(kwh_usage), round(sum(cost), 5)::text,
       round(avg(price_rate), 5)::text, min(price_rate)::text, max(price_rate)::text
FROM charging_sessions
WHERE time >= '{T0.isoformat()}' AND time < '{(T0 + timedelta(hours=2)).isoformat()}'
GROUP BY 1, 2 ORDER BY 1, 2 NULLS LAST
"""


def expected_hourly() -> list[tuple[Any, ...]]:
    ordered = sorted(EXPECTED_HOURLY, key=lambda r: (r[0], r[1] is None, r[1] or ""))
    return [(int(b.timestamp()), *rest) for b, *rest in ordered]


def hourly_columns_sql() -> str:
    return (
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_name = 'charging_sessions_hourly' ORDER BY ordinal_position"
    )


# --- plain PostgreSQL --------------------------------------------------------------


@pytest.fixture
def database_url(postgres_server: EmbeddedPostgres) -> Iterator[str]:
    """A fresh database of its own on the session's PostgreSQL server."""
    name = f"mig_{uuid.uuid4().hex[:12]}"
    admin = postgres_server.url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    yield postgres_server.url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)'.encode())


def test_migrations_apply_on_postgresql_and_a_second_run_applies_nothing(
    database_url: str,
) -> None:
    first = migrate(database_url)
    second = migrate(database_url)

    assert [(p.name, p.outcome) for p in first] == [
        ("0001_charging_sessions", "applied"),
        ("0002_timescaledb_hypertable", "skipped"),
        ("0003_timescaledb_hourly", "skipped"),
        ("0004_postgres_hourly", "applied"),
        ("0005_timescaledb_hourly_policy", "skipped"),
        ("0006_demand_factor", "applied"),
    ]
    assert first[1].reason == "extension timescaledb is not available"
    assert second == []
    with psycopg.connect(database_url) as conn:
        recorded = conn.execute(
            "SELECT version, outcome FROM schema_migrations ORDER BY version"
        ).fetchall()
        indexes: dict[str, str] = dict(
            conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'charging_sessions'"
            ).fetchall()
        )
        view = conn.execute(
            "SELECT relkind FROM pg_class WHERE relname = 'charging_sessions_hourly'"
        ).fetchone()
    assert recorded == [
        ("0001", "applied"),
        ("0002", "skipped"),
        ("0003", "skipped"),
        ("0004", "applied"),
        ("0005", "skipped"),
        ("0006", "applied"),
    ]
    assert 'btree (station_id, "time" DESC)' in indexes["charging_sessions_station_time"]
    assert 'btree (car_id, "time" DESC)' in indexes["charging_sessions_car_time"]
    assert "UNIQUE INDEX" in indexes["charging_sessions_event_key"]
    assert '(event_key, "time")' in indexes["charging_sessions_event_key"]
    assert view == ("v",)


def test_the_hourly_view_equals_the_raw_group_by_on_postgresql(database_url: str) -> None:
    migrate(database_url)
    with psycopg.connect(database_url) as conn:
        conn.cursor().executemany(INSERT_PG, [full(r) for r in AGG_ROWS])
        conn.commit()
        hourly = conn.execute(HOURLY_SQL).fetchall()
        raw = conn.execute(RAW_SQL).fetchall()
    assert hourly == raw
    assert hourly == expected_hourly()


def test_a_replayed_event_leaves_one_row_on_postgresql(database_url: str) -> None:
    migrate(database_url)
    event = full(row(T0, "dup-car", "dup-st", 1.0, "0.25000"))
    with psycopg.connect(database_url) as conn:
        for _ in range(3):
            conn.execute(INSERT_PG, event)
        conn.commit()
        count = conn.execute(
            "SELECT count(*) FROM charging_sessions WHERE car_id = 'dup-car'"
        ).fetchone()
    assert count == (1,)


def test_a_failing_migration_leaves_nothing_behind_and_runs_again_once_fixed(
    database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE first_table (x int);")
    broken = tmp_path / "0002_second.sql"
    broken.write_text("CREATE TABLE second_table (x int);\nSELECT 1 / 0;")

    with pytest.raises(MigrationFailed, match="migration 0002_second failed: division by zero"):
        migrate(database_url, tmp_path)
    with psycopg.connect(database_url) as conn:
        recorded = conn.execute("SELECT version FROM schema_migrations").fetchall()
        second = conn.execute("SELECT to_regclass('second_table')").fetchone()
    broken.write_text("CREATE TABLE second_table (x int);")
    again = migrate(database_url, tmp_path)

    assert recorded == [("0001",)]
    assert second == (None,)
    assert [p.name for p in again] == ["0002_second"]


def test_a_no_transaction_migration_runs_outside_a_transaction_and_alone(
    database_url: str, tmp_path: Path
) -> None:
    head = "-- greenlane: no-transaction\n"
    (tmp_path / "0001_table.sql").write_text("CREATE TABLE nt (x int);")
    # CONCURRENTLY refuses any transaction block, an implicit one included.
    (tmp_path / "0002_index.sql").write_text(head + "CREATE INDEX CONCURRENTLY nt_x ON nt (x);\n")
    assert [p.name for p in migrate(database_url, tmp_path)] == ["0001_table", "0002_index"]

    (tmp_path / "0003_two.sql").write_text(head + "CREATE TABLE nt2 (x int);\nSELECT 1;\n")
    with pytest.raises(MigrationFailed, match=r"cannot insert multiple commands.*one statement"):
        migrate(database_url, tmp_path)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('nt2')").fetchone() == (None,)


def test_the_migrations_job_entry_point_migrates_and_names_a_missing_variable(
    database_url: str,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLANE_")}
    command = [sys.executable, "-m", "greenlane.core.migrations"]
    missing = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    done = subprocess.run(
        command,
        env={**env, "GREENLANE_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert missing.returncode == 2
    assert "GREENLANE_DATABASE_URL" in missing.stderr
    assert done.returncode == 0, done.stderr
    assert "applied 0001_charging_sessions, 0004_postgres_hourly" in done.stderr
    assert "skipped 0002_timescaledb_hypertable, 0003_timescaledb_hourly" in done.stderr


# --- TimescaleDB in PGlite ----------------------------------------------------------


class PgliteError(RuntimeError):
    def __init__(self, message: str, code: str | None) -> None:
        super().__init__(f"{message} (SQLSTATE {code})")
        self.code = code


class PgliteSession:
    """A SqlSession over scripts/pglite/run.mjs: JSON lines in, JSON lines out."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(
            ["node", str(RUNNER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=ROOT,
        )
        self.notices: list[str] = []

    def _request(self, payload: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(payload) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            raise RuntimeError(
                f"run.mjs exited ({self.proc.returncode}): {self.log_path.read_text()[-2000:]}"
            )
        answer: dict[str, Any] = json.loads(line)
        self.notices += answer.get("notices", [])
        if not answer["ok"]:
            raise PgliteError(answer["error"], answer["code"])
        return answer

    def execute(self, step: Step) -> None:
        if step.transaction:
            self._request({"op": "exec", "sql": step.sql, "transaction": True})
        else:
            # One statement, by the extended protocol, as PsycopgSession sends it.
            self._request({"op": "query", "sql": step.sql, "params": []})

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        answer = self._request({"op": "query", "sql": sql, "params": list(params)})
        return [tuple(r) for r in answer["rows"]]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self._log.close()


def install_pglite() -> None:
    """scripts/pglite/install.sh: a no-op when .tools/pglite is up to date, else npm ci."""
    result = subprocess.run(
        ["bash", str(INSTALL)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.fail(
            "could not install PGlite with TimescaleDB (npm) for the TimescaleDB tests: "
            f"{INSTALL} exited {result.returncode}:\n{result.stdout}{result.stderr}",
            pytrace=False,
        )


@contextlib.contextmanager
def pglite(log_dir: Path) -> Iterator[tuple[PgliteSession, list[str]]]:
    """A migrated PGlite with TimescaleDB, and the name:outcome list of its first run."""
    install_pglite()
    session = PgliteSession(log_dir / "run.mjs.log")
    try:
        session.query("SET TimeZone = 'UTC'")
        first = run_migrations(session, load_migrations(migrations_dir()))
        yield session, [f"{p.name}:{p.outcome}" for p in first]
    finally:
        session.close()


@pytest.fixture(scope="module")
def timescale(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[PgliteSession, list[str]]]:
    with pglite(tmp_path_factory.mktemp("pglite")) as migrated:
        yield migrated


def test_migrations_apply_on_timescaledb_and_a_second_run_applies_nothing(
    timescale: tuple[PgliteSession, list[str]],
) -> None:
    session, first = timescale
    second = run_migrations(session, load_migrations(migrations_dir()))

    assert first == [
        "0001_charging_sessions:applied",
        "0002_timescaledb_hypertable:applied",
        "0003_timescaledb_hourly:applied",
        "0004_postgres_hourly:skipped",
        "0005_timescaledb_hourly_policy:applied",
        "0006_demand_factor:applied",
    ]
    assert second == []
    assert not [n for n in session.notices if n.startswith("WARNING")]


def test_charging_sessions_is_a_compressed_hypertable_with_weekly_chunks_and_policies(
    timescale: tuple[PgliteSession, list[str]],
) -> None:
    session, _ = timescale
    hypertable = session.query(
        "SELECT compression_enabled FROM timescaledb_information.hypertables"
        " WHERE hypertable_name = 'charging_sessions'"
    )
    interval = session.query(
        "SELECT time_interval::text FROM timescaledb_information.dimensions"
        " WHERE hypertable_name = 'charging_sessions' AND column_name = 'time'"
    )
    settings = session.query(
        "SELECT attname, segmentby_column_index, orderby_column_index, orderby_asc"
        " FROM timescaledb_information.compression_settings"
        " WHERE hypertable_name = 'charging_sessions' ORDER BY attname"
    )
    jobs = session.query(
        "SELECT proc_name, hypertable_name, config::text FROM timescaledb_information.jobs"
        " WHERE hypertable_name IN ('charging_sessions', 'charging_sessions_hourly')"
        " ORDER BY proc_name"
    )
    cagg = session.query(
        "SELECT hypertable_name, materialized_only"
        " FROM timescaledb_information.continuous_aggregates"
        " WHERE view_name = 'charging_sessions_hourly'"
    )
    indexes = {
        name
        for (name,) in session.query(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'charging_sessions'"
        )
    }

    assert hypertable == [(True,)]
    assert interval == [("7 days",)]
    assert settings == [
        ("car_id", 1, None, None),
        ("event_key", None, 2, True),
        ("time", None, 1, False),
    ]
    assert [(proc, table) for proc, table, _ in jobs] == [
        ("policy_compression", "charging_sessions"),
        ("policy_refresh_continuous_aggregate", "charging_sessions_hourly"),
        ("policy_retention", "charging_sessions"),
    ]
    configs = {proc: json.loads(config) for proc, _, config in jobs}
    assert configs["policy_compression"]["compress_after"] == "7 days"
    assert configs["policy_retention"]["drop_after"] == "365 days"
    assert configs["policy_refresh_continuous_aggregate"]["start_offset"] == "30 days"
    assert cagg == [("charging_sessions", False)]
    assert {
        "charging_sessions_station_time",
        "charging_sessions_car_time",
        "charging_sessions_event_key",
    } <= indexes


def _insert(session: PgliteSession, rows: Sequence[tuple[Any, ...]]) -> None:
    for r in rows:
        session.query(INSERT_PGLITE, full(r))


def test_the_continuous_aggregate_equals_the_raw_group_by_before_and_after_refresh(
    timescale: tuple[PgliteSession, list[str]],
) -> None:
    session, _ = timescale
    _insert(session, AGG_ROWS)
    # Real-time aggregation (materialized_only = false): right before any refresh.
    before = session.query(HOURLY_SQL)
    session.execute(
        Step("CALL refresh_continuous_aggregate('charging_sessions_hourly', NULL, NULL)", False)
    )
    materialized = session.query(
        "SELECT count(*) FROM _timescaledb_internal."
        + session.query(
            "SELECT materialization_hypertable_name"
            " FROM timescaledb_information.continuous_aggregates"
            " WHERE view_name = 'charging_sessions_hourly'"
        )[0][0]
    )
    after = session.query(HOURLY_SQL)
    raw = session.query(RAW_SQL)

    assert raw == expected_hourly()
    assert before == raw
    assert after == raw
    assert materialized[0][0] >= len(EXPECTED_HOURLY)


def test_the_price_report_reads_the_same_numbers_from_the_continuous_aggregate(
    timescale: tuple[PgliteSession, list[str]],
) -> None:
    session, _ = timescale
    rows = [
        row(T0 + timedelta(hours=30, minutes=m), f"rep-car-{m}", "rep-st", 1.0, price)
        for m, price in ((1, "0.10000"), (2, "0.20000"), (3, "0.60000"))
    ]
    _insert(session, rows)
    session.execute(
        Step("CALL refresh_continuous_aggregate('charging_sessions_hourly', NULL, NULL)", False)
    )
    sql, params = _dollar_params(
        reports.PRICES_STATION_SQL,
        {
            "start": (T0 + timedelta(hours=30)).isoformat(),
            "end": (T0 + timedelta(hours=31)).isoformat(),
            "station": "rep-st",
        },
    )
    (bucket, events, kwh, cost, avg_price, low, high), *more = session.query(sql, params)

    assert more == []
    assert bucket == (T0 + timedelta(hours=30)).isoformat().replace("+00:00", ".000Z")
    assert (events, kwh) == (3, 3.0)
    assert float(avg_price) == pytest.approx(0.3)
    assert (float(low), float(high)) == (0.1, 0.6)
    assert float(cost) == pytest.approx(0.9)


def _dollar_params(sql: str, values: dict[str, Any]) -> tuple[str, list[Any]]:
    """psycopg's %(name)s placeholders as PGlite's $n ones."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return re.sub(r"%\((\w+)\)s", number, sql), [values[n] for n in names]


def test_a_replayed_event_leaves_one_row_on_timescaledb_even_in_a_compressed_chunk(
    timescale: tuple[PgliteSession, list[str]],
) -> None:
    session, _ = timescale
    old = datetime.now(UTC).replace(microsecond=0) - timedelta(days=20)
    recent = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    events = [
        row(old, "dup-car", "dup-st", 1.0, "0.25000"),
        row(recent, "dup-car", None, 1.0, "0.25000"),
    ]
    _insert(session, events)
    compressed = session.query(
        "SELECT compress_chunk(c, if_not_compressed => true)"
        " FROM show_chunks('charging_sessions', older_than => INTERVAL '7 days') AS c"
    )
    _insert(session, events)
    _insert(session, events)
    chunks = session.query(
        "SELECT is_compressed FROM timescaledb_information.chunks"
        " WHERE hypertable_name = 'charging_sessions' AND range_start <= $1 AND $1 < range_end",
        [old.isoformat()],
    )
    count = session.query("SELECT count(*) FROM charging_sessions WHERE car_id = 'dup-car'")

    assert compressed
    assert chunks == [(True,)]
    assert count == [(2,)]


def test_the_hourly_relation_has_the_same_columns_on_both_paths(
    timescale: tuple[PgliteSession, list[str]], database_url: str
) -> None:
    session, _ = timescale
    migrate(database_url)
    with psycopg.connect(database_url) as conn:
        plain = conn.execute(hourly_columns_sql().encode()).fetchall()
    assert [tuple(r) for r in session.query(hourly_columns_sql())] == plain
    assert [name for name, _ in plain] == [
        "bucket",
        "station_id",
        "events",
        "kwh",
        "cost",
        "avg_price",
        "min_price",
        "max_price",
    ]


def test_the_policies_compress_drop_and_materialize_when_their_jobs_run(tmp_path: Path) -> None:
    # PGlite has no background workers: the scheduler never starts a job, run_job does.
    with pglite(tmp_path) as (session, _):
        now = datetime.now(UTC).replace(microsecond=0)
        ages = (timedelta(days=400), timedelta(days=20), timedelta(days=2), timedelta(hours=3))
        _insert(
            session, [row(now - age, "policy-car", "policy-st", 1.0, "0.25000") for age in ages]
        )
        jobs = dict(
            session.query(
                "SELECT proc_name, job_id FROM timescaledb_information.jobs"
                " WHERE hypertable_name IN ('charging_sessions', 'charging_sessions_hourly')"
            )
        )
        for name in (
            "policy_retention",
            "policy_compression",
            "policy_refresh_continuous_aggregate",
        ):
            session.execute(Step(f"CALL run_job({jobs[name]})", transaction=False))
        left = session.query(
            "SELECT extract(epoch FROM $1::timestamptz - time)::bigint / 3600"
            " FROM charging_sessions ORDER BY time",
            [now.isoformat()],
        )
        compressed = session.query(
            "SELECT range_end <= $1::timestamptz - INTERVAL '7 days', is_compressed"
            " FROM timescaledb_information.chunks WHERE hypertable_name = 'charging_sessions'"
            " ORDER BY range_start",
            [now.isoformat()],
        )
        materialized = session.query(
            "SELECT count(*) FROM _timescaledb_internal."
            + session.query(
                "SELECT materialization_hypertable_name"
                " FROM timescaledb_information.continuous_aggregates"
                " WHERE view_name = 'charging_sessions_hourly'"
            )[0][0]
        )

    assert left == [(20 * 24,), (2 * 24,), (3,)]  # the 400-day-old row is gone
    assert all(old == is_compressed for old, is_compressed in compressed)
    assert (True, True) in compressed
    # 20 days and 2 days ago fall in the 30-day refresh window; 3 hours ago too.
    assert materialized == [(3,)]

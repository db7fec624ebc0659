"""Every SQL query of the dashboards on real TimescaleDB (PGlite), compression included.

tests/integration/test_prometheus.py runs them on the plain-PostgreSQL path of
greenlane dev; this runs them, with Grafana's macros filled, on the TimescaleDB path
the chart deploys: the hypertable, the continuous aggregate, a compressed chunk.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from integration.test_migrations import _insert, pglite, row

from observability.dashboards import BOARDS

pytestmark = pytest.mark.integration

TIME_FILTER = re.compile(r"\$__timeFilter\((\w+)\)")
LAST_30_DAYS = r"\1 BETWEEN now() - interval '30 days' AND now() + interval '1 hour'"


def fill(sql: str) -> str:
    sql = TIME_FILTER.sub(
        r"\1 BETWEEN now() - interval '30 days' AND now() + interval '1 hour'", sql
    )
    assert "$__" not in sql, f"a Grafana macro the test does not fill: {sql}"
    return sql


def test_every_dashboard_sql_query_answers_on_timescaledb(tmp_path: Path) -> None:
    queries = [(b.uid, p.title, q) for b in BOARDS for p, q in b.queries() if q.sql]
    assert queries
    with pglite(tmp_path) as (session, _):
        now = datetime.now(UTC).replace(microsecond=0)
        _insert(
            session,
            [
                row(now - timedelta(days=20), "old-car", "st-1", 1.0, "0.25000"),
                row(now - timedelta(minutes=1), "car-a", "st-1", 0.5, "0.30000"),
                row(now - timedelta(minutes=1), "car-b", None, 0.25, "0.30000"),
            ],
        )
        session.query(
            "SELECT compress_chunk(c, if_not_compressed => true)"
            " FROM show_chunks('charging_sessions', older_than => INTERVAL '7 days') AS c"
        )
        answers = {(uid, title): session.query(fill(q.expr)) for uid, title, q in queries}

    empty = [key for key, rows in answers.items() if not rows]
    assert empty == []
    assert answers[("greenlane-fleet", "Cars online")] == [(2,)]
    (stats,) = answers[("greenlane-platform", "TimescaleDB: compression")]
    assert stats[1] == 1  # number_compressed_chunks

"""A real Prometheus (Debian's) scraping a running platform: every dashboard query and every rule.

`greenlane dev --observability` starts the platform, Prometheus and the Redis and
PostgreSQL exporters on free ports; a simulated fleet makes traffic. Then every
PromQL query of every dashboard panel runs through /api/v1/query and every SQL query
on the platform's PostgreSQL: each must be valid and return data, except those the
dashboard code marks as event-driven (a series that appears with its first event),
as having data only on Kubernetes or TimescaleDB, or as reading a service that is not
not started by `greenlane dev` yet; those are counted separately and still must be valid.
Prometheus itself evaluates every rule of observability/prometheus/rules.yml.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from greenlane.cli.devstack import Ports
from greenlane.cli.embedded import free_port
from observability.dashboards import BOARDS
from observability.dashboards.kit import Board, Query

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "observability" / "prometheus" / "rules.yml"
# Grafana's variables and macros, as a dashboard opened on "All" and the last hours fills them.
VARIABLES = {"$namespace": ".*"}
SQL_MACROS = [
    (
        re.compile(r"\$__timeFilter\((\w+)\)"),
        r"\1 BETWEEN now() - interval '6 hours' AND now() + interval '1 hour'",
    ),
]
# Metrics that appear only with their first event (labelled counters with no child yet),
# or only where a component runs that greenlane dev does not start.
EVENT_DRIVEN_METRICS = {
    "greenlane_ingestion_backend_errors_total": "a failed backend write",
    "greenlane_pricing_worker_dlq_messages_total": "a dead-lettered event",
    "greenlane_operator_reconciles_total": "the operator (Kubernetes only)",
}
SERVICE_PREFIXES = {"planner": "greenlane_planner_", "hub": "greenlane_hub_"}


def present(service: str | None) -> bool:
    """Whether `greenlane dev` runs the service, so its metrics must have series here."""
    from greenlane.cli.devstack import LOCAL_SERVICES

    return service is None or service.replace("-", "_") in {s.name for s in LOCAL_SERVICES}


def prometheus_query(url: str, expr: str) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=10) as resp:  # noqa: S310
        body = json.load(resp)
    assert body["status"] == "success", f"{expr}: {body}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def prometheus_get(url: str, path: str) -> Any:
    with urllib.request.urlopen(f"{url}{path}", timeout=10) as resp:  # noqa: S310
        return json.load(resp)["data"]


def fill(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def fill_sql(sql: str) -> str:
    for pattern, replacement in SQL_MACROS:
        sql = pattern.sub(replacement, sql)
    assert "$__" not in sql, f"a Grafana macro the test does not fill: {sql}"
    return sql


@pytest.fixture(scope="module")
def platform() -> Iterator[dict[str, str]]:
    """greenlane dev --observability with a fleet, until Prometheus has a few minutes' data."""
    assert shutil.which("prometheus"), "Debian's prometheus package is needed (.ci/run installs it)"
    base = Path(tempfile.mkdtemp(prefix="greenlane-prometheus-test-"))
    workdir = base / ".greenlane"
    ports = {name: free_port() for name in Ports.VARIABLES}
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLANE_")}
    env.update({Ports.VARIABLES[name]: str(port) for name, port in ports.items()})
    argv = [sys.executable, "-m", "greenlane.cli", "dev", "--observability", "--no-feed"]
    argv += ["--cars", "30", "--interval", "0.5", "--workdir", str(workdir)]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    try:
        seen = b""
        deadline = time.monotonic() + 150
        while b"platform up" not in seen and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen += line
        assert b"platform up" in seen, seen.decode()[-3000:]
        url = f"http://127.0.0.1:{ports['prometheus']}"
        settings = dict(
            line.split("=", 1)
            for line in (workdir / "dev.env").read_text().splitlines()
            if "=" in line and not line.startswith("#")
        )
        # Enough for rates over 1m and two evaluations of the 30 s recording rules.
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            rows = prometheus_query(url, "greenlane:pricing_worker_rows_written:rate5m > 0")
            ready = prometheus_query(url, "count(up == 1) >= count(up)")
            if rows and ready and time.monotonic() > deadline - 90:
                break
            time.sleep(2)
        yield {
            "prometheus": url,
            "database": settings["GREENLANE_DATABASE_URL"],
            "log": str(workdir),
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        shutil.rmtree(base, ignore_errors=True)


def classify(board: Board, query: Query) -> str:
    """What a query is held to: "data", or the reason it may be empty here."""
    if not present(board.service_of(query)):
        return "service not started by greenlane dev yet"
    if query.only_on is not None:
        return f"data only on {query.only_on}"
    if query.quiet is not None:
        return "event-driven"
    return "data"


def test_prometheus_scrapes_every_local_service_and_exporter(platform: dict[str, str]) -> None:
    targets = prometheus_get(platform["prometheus"], "/api/v1/targets")["activeTargets"]
    health = {t["labels"]["component"]: t["health"] for t in targets}
    assert health == {
        "grid": "up",
        "hub": "up",
        "ingestion": "up",
        "planner": "up",
        "pricing-worker": "up",
        "redis": "up",
        "postgres": "up",
        "prometheus": "up",
    }


def test_every_dashboard_query_is_valid_and_returns_data_unless_marked(
    platform: dict[str, str],
) -> None:
    counts: Counter[str] = Counter()
    empty: list[str] = []
    with psycopg.connect(platform["database"], autocommit=True) as db:
        for board in BOARDS:
            for panel, query in board.queries():
                kind = classify(board, query)
                where = f"{board.uid} / {panel.title}: {query.expr}"
                if query.sql:
                    if query.only_on == "timescaledb":
                        counts[kind] += 1  # plain PostgreSQL here: its functions do not exist
                        continue
                    rows = db.execute(fill_sql(query.expr)).fetchall()  # type: ignore[arg-type]
                    found = bool(rows)
                else:
                    found = bool(prometheus_query(platform["prometheus"], fill(query.expr)))
                counts[kind] += 1
                if kind == "data" and not found:
                    empty.append(where)
    print(f"\ndashboard queries: {dict(counts)}")
    assert empty == []
    assert counts["data"], "no query was held to returning data"


def test_a_query_for_a_metric_nobody_exports_comes_back_empty(platform: dict[str, str]) -> None:
    # The checks above can fail: a misspelt metric returns no series.
    assert (
        prometheus_query(platform["prometheus"], "sum(greenlane_ingestion_statuses_acceptd_total)")
        == []
    )
    assert prometheus_query(
        platform["prometheus"], "sum(greenlane_ingestion_statuses_accepted_total)"
    )


def test_prometheus_evaluates_every_rule_without_an_error(platform: dict[str, str]) -> None:
    groups = prometheus_get(platform["prometheus"], "/api/v1/rules")["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    written = [
        r.get("record") or r.get("alert")
        for g in yaml.safe_load(RULES.read_text())["groups"]
        for r in g["rules"]
    ]
    assert sorted(loaded) == sorted(written)
    assert {n: r["health"] for n, r in loaded.items() if r["health"] != "ok"} == {}
    firing = [r["name"] for r in loaded.values() if r.get("state") == "firing"]
    assert firing == [], "a healthy platform fires no alert"


def test_every_rule_reads_series_that_exist_unless_they_are_event_driven(
    platform: dict[str, str],
) -> None:
    counts: Counter[str] = Counter()
    missing: list[str] = []
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            expr = rule["expr"]
            prometheus_query(platform["prometheus"], expr)  # valid as written
            names = set(re.findall(r"\b(?:greenlane[_:][a-z0-9_:]+|up)\b", expr))
            names |= {rule["record"]} if "record" in rule else set()
            for metric in sorted(names):
                pending = [s for s, p in SERVICE_PREFIXES.items() if metric.startswith(p)]
                if pending and not present(pending[0]):
                    counts["service not started by greenlane dev yet"] += 1
                    continue
                if metric in EVENT_DRIVEN_METRICS:
                    counts["event-driven"] += 1
                    continue
                counts["data"] += 1
                if not prometheus_query(platform["prometheus"], f'{{__name__="{metric}"}}'):
                    missing.append(f"{rule.get('record') or rule.get('alert')}: {metric}")
    print(f"\nrule series: {dict(counts)}")
    assert missing == []

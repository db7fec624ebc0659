"""Grafana dashboards and Prometheus rules: well-formed, and about metrics the services export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from chart.helm import CHART, ROOT

DASHBOARDS = sorted((ROOT / "observability" / "grafana" / "dashboards").glob("*.json"))
RULES = ROOT / "observability" / "prometheus" / "rules.yml"
METRIC = re.compile(r"\bgreenlane_[a-z0-9_]+\b")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
DURATION = re.compile(r"^\d+[smhd]$")


def exported_metrics() -> set[str]:
    """greenlane_* metric names declared in the services' code."""
    names = set()
    for source in ROOT.glob("services/*/src/greenlane/**/*.py"):
        names.update(re.findall(r"[\"'](greenlane_[a-z0-9_]+)[\"']", source.read_text()))
    return names


def unknown_metrics(text: str, known: set[str]) -> set[str]:
    found = set()
    for name in METRIC.findall(text):
        base = next((name.removesuffix(s) for s in HISTOGRAM_SUFFIXES if name.endswith(s)), name)
        if name not in known and base not in known:
            found.add(name)
    return found


def expressions(dashboard: dict[str, object]) -> list[str]:
    panels = dashboard["panels"]
    assert isinstance(panels, list)
    return [t["expr"] for p in panels for t in p["targets"]]


def test_the_chart_ships_the_observability_folder_itself() -> None:
    # Symlinks: one source for the files Prometheus/Grafana load and the chart packages.
    assert (CHART / "dashboards").resolve() == DASHBOARDS[0].parent.resolve()
    assert (CHART / "prometheus").resolve() == RULES.parent.resolve()


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_each_dashboard_is_importable_grafana_json(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"] == path.stem
    assert dashboard["title"].startswith("GreenLane / ")
    assert {v["name"] for v in dashboard["templating"]["list"]} >= {"datasource"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_each_dashboard_queries_only_metrics_the_services_export(path: Path) -> None:
    text = " ".join(expressions(json.loads(path.read_text())))
    assert unknown_metrics(text, exported_metrics()) == set()


def test_the_metric_check_notices_a_metric_nobody_exports() -> None:
    known = {"greenlane_grid_requests_total", "greenlane_ingestion_ack_latency_seconds"}
    text = (
        "rate(greenlane_grid_requests_total[1m]) + greenlane_ingestion_ack_latency_seconds_bucket"
        " + greenlane_grid_requets_total"
    )
    assert unknown_metrics(text, known) == {"greenlane_grid_requets_total"}


def test_the_rules_are_well_formed_prometheus_rule_groups() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    names = [g["name"] for g in groups]
    assert len(names) == len(set(names))
    records = set()
    for group in groups:
        for rule in group["rules"]:
            assert ("record" in rule) != ("alert" in rule), rule
            assert rule["expr"].strip()
            if "record" in rule:
                assert re.fullmatch(r"greenlane:[a-z0-9_]+:[a-z0-9_]+", rule["record"])
                records.add(rule["record"])
            else:
                assert rule["labels"]["severity"] in ("warning", "critical")
                assert rule["annotations"]["summary"] and rule["annotations"]["description"]
                assert DURATION.match(rule.get("for", "0s"))
    # Alerts may build on the recording rules.
    assert records


def test_the_rules_use_only_exported_metrics_and_recorded_series() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    text = " ".join(r["expr"] for g in groups for r in g["rules"])
    assert unknown_metrics(text, exported_metrics()) == set()

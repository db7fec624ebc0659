"""The Prometheus configuration of greenlane dev --observability: every service, labelled."""

from __future__ import annotations

from pathlib import Path

from greenlane.cli.devstack import Ports
from greenlane.cli.observability import EXPORTERS, RULES, prometheus_config


def targets(config: dict[str, object]) -> dict[str, str]:
    jobs = config["scrape_configs"]
    assert isinstance(jobs, list)
    return {
        j["static_configs"][0]["labels"]["component"]: j["static_configs"][0]["targets"][0]
        for j in jobs
    }


def test_every_started_service_is_scraped_on_its_metrics_port_with_its_component_label() -> None:
    ports = Ports(grid=18081, ingestion_metrics=19101, pricing_metrics=19102, prometheus=19090)
    config = prometheus_config(ports, ["grid", "ingestion", "pricing_worker"], [], None)
    assert targets(config) == {
        "grid": "127.0.0.1:18081",
        "ingestion": "127.0.0.1:19101",
        "pricing-worker": "127.0.0.1:19102",
        "prometheus": "127.0.0.1:19090",
    }
    assert "rule_files" not in config


def test_a_service_not_started_is_not_scraped_and_exporters_and_rules_are() -> None:
    config = prometheus_config(Ports(), ["grid"], list(EXPORTERS), Path("/x/rules.yml"))
    assert targets(config) == {
        "grid": "127.0.0.1:8081",
        "redis": "127.0.0.1:9121",
        "postgres": "127.0.0.1:9187",
        "prometheus": "127.0.0.1:9090",
    }
    assert config["rule_files"] == ["/x/rules.yml"]


def test_the_rules_are_the_repositorys_rule_file() -> None:
    assert RULES.is_file()
    assert RULES.parts[-3:] == ("observability", "prometheus", "rules.yml")

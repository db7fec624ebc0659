"""`greenlane dev --observability`: a local Prometheus scraping every service, and exporters.

Prometheus (Debian's `prometheus` package, or any `prometheus` binary on PATH) scrapes
every local service on its metrics port, loads the alert rules of
observability/prometheus/rules.yml, and, when Debian's `prometheus-redis-exporter` and
`prometheus-postgres-exporter` are on PATH, Redis and PostgreSQL through them. The
Grafana dashboards of observability/grafana/dashboards read the same series.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from greenlane.cli.devstack import LOCAL_SERVICES, Child, DevStack, Ports
from greenlane.cli.embedded import spawn

log = logging.getLogger(__name__)

# The repository's rule file, when greenlane runs from a checkout.
RULES = Path(__file__).resolve().parents[5] / "observability" / "prometheus" / "rules.yml"
SCRAPE_INTERVAL = "5s"


@dataclass(frozen=True)
class Exporter:
    """A Prometheus exporter for a backend that has no /metrics of its own."""

    component: str
    binary: str
    port_field: str


EXPORTERS = (
    Exporter("redis", "prometheus-redis-exporter", "redis_exporter"),
    Exporter("postgres", "prometheus-postgres-exporter", "postgres_exporter"),
)


def prometheus_config(
    ports: Ports, services: list[str], exporters: list[Exporter], rules: Path | None
) -> dict[str, Any]:
    """prometheus.yml for the local platform; each target labelled with its component."""
    jobs: list[dict[str, Any]] = []
    for service in LOCAL_SERVICES:
        if service.name in services:
            jobs.append(
                _job(
                    f"greenlane-{service.component}",
                    service.component,
                    service.metrics_target(ports),
                )
            )
    for exporter in exporters:
        target = f"127.0.0.1:{getattr(ports, exporter.port_field)}"
        jobs.append(_job(f"{exporter.component}-exporter", exporter.component, target))
    jobs.append(_job("prometheus", "prometheus", f"127.0.0.1:{ports.prometheus}"))
    config: dict[str, Any] = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": jobs,
    }
    if rules is not None:
        config["rule_files"] = [str(rules)]
    return config


def _job(name: str, component: str, target: str) -> dict[str, Any]:
    return {
        "job_name": name,
        "static_configs": [{"targets": [target], "labels": {"component": component}}],
    }


def exporter_argv(
    exporter: Exporter, binary: str, stack: DevStack
) -> tuple[list[str], dict[str, str]]:
    """Command line and environment of one exporter (no secret on the command line)."""
    listen = f"127.0.0.1:{getattr(stack.ports, exporter.port_field)}"
    if exporter.component == "redis":
        return [binary, f"-web.listen-address={listen}"], {
            "REDIS_ADDR": stack.settings["GREENLANE_REDIS_URL"]
        }
    url = stack.settings["GREENLANE_DATABASE_URL"]
    if "sslmode=" not in url:
        # lib/pq (the exporter's driver) defaults to sslmode=require and knows no prefer;
        # the embedded server listens on loopback without TLS. Name sslmode to choose.
        url += ("&" if "?" in url else "?") + "sslmode=disable"
    return [binary, f"--web.listen-address={listen}"], {"DATA_SOURCE_NAME": url}


def start_observability(stack: DevStack, services: list[str]) -> list[tuple[str, str]]:
    """Start the exporters found on PATH and Prometheus; (what, where) rows for the table."""
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        log.warning(
            "--observability: no prometheus binary on PATH (Debian: apt-get install "
            "prometheus); the services' /metrics endpoints are listed above"
        )
        return [("Prometheus", "not started: no prometheus binary on PATH")]
    rows: list[tuple[str, str]] = []
    running: list[Exporter] = []
    for exporter in EXPORTERS:
        binary = shutil.which(exporter.binary)
        if binary is None:
            rows.append((f"{exporter.component} exporter", f"not started: no {exporter.binary}"))
            continue
        argv, extra = exporter_argv(exporter, binary, stack)
        log_path = stack.logs / f"{exporter.component}-exporter.log"
        proc = spawn(argv, log_path, env={**stack.child_env(), **extra})
        port = getattr(stack.ports, exporter.port_field)
        stack.children.append(
            Child(
                f"{exporter.component}-exporter",
                proc,
                log_path,
                f"http://127.0.0.1:{port}/metrics",
                required=False,
            )
        )
        running.append(exporter)
        rows.append((f"{exporter.component} exporter", f"http://127.0.0.1:{port}/metrics"))
    home = stack.workdir / "prometheus"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "prometheus.yml"
    rules = RULES if RULES.is_file() else None
    config.write_text(yaml.safe_dump(prometheus_config(stack.ports, services, running, rules)))
    url = f"http://127.0.0.1:{stack.ports.prometheus}"
    log_path = stack.logs / "prometheus.log"
    proc = spawn(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{stack.ports.prometheus}",
            "--storage.tsdb.retention.time=1d",
        ],
        log_path,
        env=stack.child_env(),
    )
    stack.children.append(Child("prometheus", proc, log_path, f"{url}/-/ready", required=False))
    stack.wait_ready(30.0)
    rows.insert(0, ("Prometheus", f"{url}/targets  (rules: {rules or 'none'})"))
    return rows

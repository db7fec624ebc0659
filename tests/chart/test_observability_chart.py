"""The observability sub-chart: Prometheus, Grafana, the Collector, Jaeger and the exporters.

Rendered with ci/kind-values.yaml (on) and the defaults (off). Strict validation on
every supported Kubernetes version, the policies and the duplicate-key check run on
the kind set with every other value set (test_chart.py, test_policies.py,
test_gitops.py); here: what the pieces say to each other.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart.helm import CHART, NAMESPACE, ROOT, render, run_helm, template
from chart.netpol import reachability

DASHBOARDS = ROOT / "observability" / "grafana" / "dashboards"
RULES = ROOT / "observability" / "prometheus" / "rules.yml"
PIECES = (
    "prometheus",
    "grafana",
    "otel-collector",
    "jaeger",
    "redis-exporter",
    "postgres-exporter",
)


def config_map(name: str) -> dict[str, Any]:
    return render("kind").named("ConfigMap", name)


def env_of(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e for e in container.get("env", [])}


def test_the_kind_values_deploy_every_piece_and_the_defaults_none() -> None:
    kind = {m["metadata"]["name"] for m in render("kind").of_kind("Deployment")}
    assert {f"greenlane-{p}" for p in PIECES} <= kind
    default = {m["metadata"]["name"] for m in render("default").of_kind("Deployment")}
    assert default & {f"greenlane-{p}" for p in PIECES} == set()


def test_without_the_stack_the_dashboards_still_ship_for_the_users_own_grafana() -> None:
    names = {m["metadata"]["name"] for m in render("default").of_kind("ConfigMap")}
    assert {f"greenlane-dashboard-{p.stem}" for p in DASHBOARDS.glob("*.json")} <= names


def test_grafana_provisions_every_dashboard_of_the_folder() -> None:
    data = config_map("greenlane-grafana-dashboards")["data"]
    assert sorted(data) == sorted(p.name for p in DASHBOARDS.glob("*.json"))
    for name, text in data.items():
        assert json.loads(text) == json.loads((DASHBOARDS / name).read_text())


def test_grafana_has_the_prometheus_jaeger_and_timescale_datasources_without_a_password() -> None:
    provisioning = config_map("greenlane-grafana-provisioning")["data"]
    sources = {d["uid"]: d for d in yaml.safe_load(provisioning["datasources.yaml"])["datasources"]}
    assert {u: d["type"] for u, d in sources.items()} == {
        "prometheus": "prometheus",
        "jaeger": "jaeger",
        "timescale": "grafana-postgresql-datasource",
    }
    assert sources["prometheus"]["url"] == "http://greenlane-prometheus:9090"
    assert sources["jaeger"]["url"] == "http://greenlane-jaeger:16686"
    assert sources["timescale"]["url"] == "greenlane-timescale:5432"
    assert sources["prometheus"]["jsonData"]["exemplarTraceIdDestinations"][0]["datasourceUid"] == (
        "jaeger"
    )
    # The password comes from the TimescaleDB Secret through the environment.
    assert (
        sources["timescale"]["secureJsonData"]["password"] == "$__env{GREENLANE_DATABASE_PASSWORD}"
    )
    grafana = env_of(render("kind").named("Deployment", "greenlane-grafana"))
    assert grafana["GREENLANE_DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "greenlane-timescale",
        "key": "password",
    }
    dashboards = yaml.safe_load(provisioning["dashboards.yaml"])["providers"][0]
    assert dashboards["options"]["path"] == "/etc/grafana/dashboards"


def test_prometheus_loads_the_repositorys_rules_and_promtool_accepts_its_config(
    tmp_path: Path,
) -> None:
    data = config_map("greenlane-prometheus")["data"]
    assert data["rules.yml"].strip() == RULES.read_text().strip()
    config = yaml.safe_load(data["prometheus.yml"])
    (job,) = config["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [
        {"role": "endpointslice", "namespaces": {"names": [NAMESPACE]}}
    ]
    # promtool checks the rendered file as the pod would load it, relabelling included;
    # Debian's build has no Kubernetes discovery, so a static target stands in for it.
    job["static_configs"] = [{"targets": ["127.0.0.1:9"]}]
    del job["kubernetes_sd_configs"]
    (tmp_path / "rules.yml").write_text(data["rules.yml"])
    config["rule_files"] = [str(tmp_path / "rules.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not on PATH: apt-get install -y prometheus"
    done = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _selected(service: dict[str, Any], workloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    selector = service["spec"].get("selector") or {}
    return [
        w
        for w in workloads
        if selector
        and all(
            w["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in selector.items()
        )
    ]


def test_every_scraped_service_names_a_port_its_pods_listen_on() -> None:
    rendered = render("kind")
    workloads = rendered.of_kind("Deployment") + rendered.of_kind("StatefulSet")
    scraped = {}
    for service in rendered.of_kind("Service"):
        annotations = service["metadata"].get("annotations") or {}
        if annotations.get("prometheus.io/scrape") != "true":
            continue
        (pod,) = _selected(service, workloads)
        ports = {
            p["containerPort"]
            for c in pod["spec"]["template"]["spec"]["containers"]
            for p in c["ports"]
        }
        assert int(annotations["prometheus.io/port"]) in ports, service["metadata"]["name"]
        scraped[service["metadata"]["labels"]["app.kubernetes.io/component"]] = annotations[
            "prometheus.io/path"
        ]
    # Every GreenLane component, the operator, Redpanda's own metrics, both exporters.
    assert {"ingestion", "grid", "pricing-worker", "operator", "broker"} <= set(scraped)
    assert {"redis-exporter", "postgres-exporter", "otel-collector", "jaeger"} <= set(scraped)
    assert scraped["broker"] == "/public_metrics"


def test_every_service_exports_traces_to_the_collector_which_sends_them_to_jaeger() -> None:
    rendered = render("kind")
    env = rendered.named("ConfigMap", "greenlane-env")["data"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://greenlane-otel-collector:4317"
    collector = rendered.named("Service", "greenlane-otel-collector")
    assert {"name": "otlp-grpc", "port": 4317} in [
        {k: p[k] for k in ("name", "port")} for p in collector["spec"]["ports"]
    ]
    config = yaml.safe_load(config_map("greenlane-otel-collector")["data"]["config.yaml"])
    assert config["exporters"]["otlp/jaeger"]["endpoint"] == "greenlane-jaeger:4317"
    assert config["service"]["pipelines"]["traces"]["exporters"] == ["otlp/jaeger"]
    jaeger = rendered.named("Service", "greenlane-jaeger")
    assert 4317 in [p["port"] for p in jaeger["spec"]["ports"]]
    # Users with their own collector keep config.otlpEndpoint; without the stack, no default.
    assert (
        "OTEL_EXPORTER_OTLP_ENDPOINT"
        not in render("default").named("ConfigMap", "greenlane-env")["data"]
    )


def test_the_exporters_read_the_bundled_backends_passwords_from_their_secrets() -> None:
    rendered = render("kind")
    redis = env_of(rendered.named("Deployment", "greenlane-redis-exporter"))
    assert redis["REDIS_ADDR"]["value"] == "redis://greenlane-redis:6379"
    assert redis["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "greenlane-redis"
    assert redis["REDIS_USER"]["value"] == "monitor"  # the bundled Redis's read-only user
    postgres = env_of(rendered.named("Deployment", "greenlane-postgres-exporter"))
    assert (
        postgres["DATA_SOURCE_URI"]["value"] == "greenlane-timescale:5432/greenlane?sslmode=disable"
    )
    assert (
        postgres["DATA_SOURCE_PASS"]["valueFrom"]["secretKeyRef"]["name"] == "greenlane-timescale"
    )


def test_with_network_policies_the_bundled_prometheus_scrapes_and_grafana_queries() -> None:
    table = reachability(
        template(
            "--values",
            CHART / "ci" / "kind-values.yaml",
            "--set",
            "global.networkPolicy.enabled=true",
        )
    )
    prometheus = "pods app.kubernetes.io/instance=greenlane,app.kubernetes.io/name=prometheus"
    grafana = "pods app.kubernetes.io/instance=greenlane,app.kubernetes.io/name=grafana"
    assert prometheus in table["greenlane-grid"]["http"]
    assert "every namespace" not in table["greenlane-grid"]["http"]
    assert table["greenlane-ingestion"]["metrics"] == {prometheus}
    assert table["greenlane-prometheus"]["http"] == {grafana, prometheus}
    assert table["greenlane-jaeger"]["ui"] == {grafana}
    assert table["greenlane-otel-collector"]["otlp-grpc"] == {
        "pods app.kubernetes.io/instance=greenlane"
    }
    assert table["greenlane-grafana"]["http"] == {"anyone"}


def test_the_install_notes_tell_how_to_open_grafana_jaeger_and_prometheus() -> None:
    out = run_helm(
        "install",
        "greenlane",
        CHART,
        "--namespace",
        NAMESPACE,
        "--dry-run=client",
        "--values",
        CHART / "ci" / "kind-values.yaml",
    )
    notes = out.stdout.split("NOTES:", 1)[1]
    for expected in (
        "port-forward svc/greenlane-grafana 3000:3000",
        "port-forward svc/greenlane-jaeger 16686:16686",
        "port-forward svc/greenlane-prometheus 9090:9090",
        "get secret greenlane-grafana",
    ):
        assert expected in notes


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("observability.grafana.image.tag=latest", "'/grafana/image/tag': 'latest' does not match"),
        ("observability.jaeger.maxTraces=5", "'/jaeger/maxTraces': minimum"),
        ("observability.promethus.enabled=true", "additional properties 'promethus' not allowed"),
    ],
)
def test_the_sub_charts_schema_refuses_a_floating_tag_or_an_unknown_key(
    setting: str, complaint: str
) -> None:
    from chart.helm import HelmError

    with pytest.raises(HelmError, match=complaint):
        template("--set", "observability.enabled=true", "--set", setting)

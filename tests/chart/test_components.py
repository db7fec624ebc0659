"""Components: entries over `default`, with the ports and probes greenlane dev uses."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from chart.helm import CHART, HelmError, render, template
from chart.policies import all_policies

from greenlane.cli.devstack import LOCAL_SERVICES, Ports

VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def deployment(manifests: tuple[dict[str, Any], ...], name: str) -> dict[str, Any]:
    (found,) = [m for m in manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == name]
    return found


def test_a_new_service_is_one_entry_that_names_only_what_differs(tmp_path: Any) -> None:
    values = tmp_path / "example.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "components": {
                    "example": {
                        "image": {"repository": "greenlane-example"},
                        "env": {"GREENLANE_EXAMPLE_PORT": "8099"},
                        "ports": {
                            "http": {"containerPort": 8099, "servicePort": 8099},
                            "metrics": {"containerPort": 9104, "servicePort": 9104},
                        },
                    }
                }
            }
        )
    )
    manifests = template(values=values)
    example = deployment(manifests, "greenlane-example")
    container = example["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "greenlane-example:0.1.0"
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["resources"] == VALUES["default"]["resources"]
    assert {m["kind"] for m in manifests if m["metadata"]["name"] == "greenlane-example"} == {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",  # on by default
    }
    policies = all_policies("0.1.0")
    assert {name: check([example]) for name, check in policies.items()} == {n: [] for n in policies}


def test_a_components_false_overrides_the_defaults_true() -> None:
    manifests = template("--set", "components.grid.podDisruptionBudget.enabled=false")
    pdbs = {m["metadata"]["name"] for m in manifests if m["kind"] == "PodDisruptionBudget"}
    assert "greenlane-grid" not in pdbs
    assert "greenlane-ingestion" in pdbs


def test_a_components_probe_replaces_the_default_probe_as_a_whole() -> None:
    ingestion = deployment(render("default").manifests, "greenlane-ingestion")
    probe = ingestion["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    assert "httpGet" not in probe
    assert probe["grpc"] == {"port": 50051}


def test_a_component_without_an_image_or_ports_is_refused() -> None:
    with pytest.raises(HelmError) as caught:
        template("--set", "components.extra.enabled=true")
    assert "components.extra.image.repository is empty" in str(caught.value)
    assert "components.extra.ports is empty" in str(caught.value)


# ---------------------------------------------------------------- the chart and greenlane dev


@pytest.mark.parametrize("service", LOCAL_SERVICES, ids=lambda s: s.component)
def test_greenlane_dev_runs_each_component_on_the_charts_ports_and_probes(service: Any) -> None:
    chart = render("default")
    container = deployment(chart.manifests, f"greenlane-{service.component}")["spec"]["template"][
        "spec"
    ]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    defaults = Ports()
    # Same port names, same default numbers, read from the same variables.
    assert set(ports) == set(service.ports)
    for port_name, local in service.ports.items():
        assert ports[port_name] == getattr(defaults, local.field), port_name
        assert env[local.variable] == str(ports[port_name]), local.variable
    # The readiness and liveness paths dev waits on are the chart's probes.
    ready = container["readinessProbe"]["httpGet"]
    assert (ready["port"], ready["path"]) == service.ready
    components = VALUES["components"][service.component]
    assert components.get("metricsPort", VALUES["default"]["metricsPort"]) == service.metrics


def test_every_chart_component_is_one_greenlane_dev_starts() -> None:
    assert {s.component for s in LOCAL_SERVICES} == set(VALUES["components"])

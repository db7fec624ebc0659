"""compose.yaml: valid by the Compose specification, the chart's images and hardening.

tests/containers/test_compose_run.py runs it; these checks need no engine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import container_images as ci
import pytest
import yaml
from chart.helm import CHART, ROOT

COMPOSE = ROOT / "compose.yaml"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
MODEL: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
SERVICES: dict[str, Any] = MODEL["services"]
GREENLANE = {n: s for n, s in SERVICES.items() if str(s["image"]).startswith("greenlane-")}
UPSTREAM = {n: s for n, s in SERVICES.items() if n not in GREENLANE}


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def values(chart: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((chart / "values.yaml").read_text())
    return loaded


def test_compose_yaml_is_valid_by_the_compose_specification() -> None:
    done = validate(COMPOSE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_compose_schema_check_fails_a_misspelt_key(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text(
        COMPOSE.read_text().replace("    read_only: true\n", "    readonly: true\n", 1)
    )
    done = validate(broken)
    assert done.returncode != 0
    assert "readonly" in done.stdout


def test_every_image_the_dockerfile_builds_is_in_compose_but_the_operator() -> None:
    # The operator needs a Kubernetes API: kind and the chart, not Compose.
    images = {str(s["image"]).split(":")[0] for s in GREENLANE.values()}
    assert images == {ci.image_name(s) for s in ci.services()} - {"greenlane-operator"}


@pytest.mark.parametrize("name", sorted(GREENLANE))
def test_each_greenlane_service_is_built_from_the_dockerfile_at_the_charts_version(
    name: str,
) -> None:
    service = GREENLANE[name]
    build = service["build"]
    assert (build["context"], build["dockerfile"]) == (".", "Dockerfile")
    folder = build["args"]["SERVICE"]
    assert folder in ci.services()
    assert service["image"] == f"{ci.image_name(folder)}:{ci.app_version()}"


@pytest.mark.parametrize("name", sorted(GREENLANE))
def test_each_greenlane_service_is_hardened_like_the_charts_pods(name: str) -> None:
    service, chart = GREENLANE[name], values(CHART)
    pod, container = chart["podSecurityContext"], chart["containerSecurityContext"]
    assert service["user"] == f"{pod['runAsUser']}:{pod['runAsGroup']}"
    assert service["read_only"] is container["readOnlyRootFilesystem"] is True
    assert service["cap_drop"] == container["capabilities"]["drop"] == ["ALL"]
    assert container["allowPrivilegeEscalation"] is False
    assert "no-new-privileges:true" in service["security_opt"]
    assert any(t.startswith("/tmp:") for t in service["tmpfs"])  # the chart's tmp emptyDir


@pytest.mark.parametrize("name", sorted(UPSTREAM))
def test_each_backend_is_the_image_of_the_charts_sub_chart_hardened_too(name: str) -> None:
    sub_chart = {"redis": "redis", "redpanda": "redpanda", "timescaledb": "timescale"}[name]
    image = values(CHART / "charts" / sub_chart)["image"]
    assert SERVICES[name]["image"] == f"{image['repository']}:{image['tag']}"
    assert SERVICES[name]["read_only"] is True and SERVICES[name]["cap_drop"] == ["ALL"]
    assert not str(SERVICES[name]["user"]).startswith("0")


def test_the_migration_runs_the_charts_job_command_before_the_worker_starts() -> None:
    job = (CHART / "templates" / "migrations-job.yaml").read_text()
    assert 'command: ["python", "-m", "greenlane.core.migrations"]' in job
    migrate = SERVICES["migrate"]
    assert migrate["entrypoint"] == ["python", "-m", "greenlane.core.migrations"]
    assert migrate["build"]["args"]["SERVICE"] == "pricing_worker"
    assert migrate["restart"] == "no"
    waits = SERVICES["pricing-worker"]["depends_on"]
    assert waits["migrate"] == {"condition": "service_completed_successfully"}


def test_every_dependency_exists_and_waits_for_health_or_completion() -> None:
    for name, service in SERVICES.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            assert dep in SERVICES, (name, dep)
            wanted = "service_completed_successfully" if dep == "migrate" else "service_healthy"
            assert spec == {"condition": wanted}, (name, dep)
            assert wanted == "service_completed_successfully" or "healthcheck" in SERVICES[dep]


def test_every_long_running_service_has_a_health_check() -> None:
    clients = {"migrate", "simulator"}  # a one-shot job, and a client with nothing to serve
    assert {n for n, s in SERVICES.items() if "healthcheck" not in s} == clients


def test_ports_are_published_on_the_loopback_address_only() -> None:
    published = [p for s in SERVICES.values() for p in s.get("ports") or ()]
    assert published and all(str(p).startswith("127.0.0.1:") for p in published)


def test_no_secret_has_a_default_but_the_local_database_password() -> None:
    text = COMPOSE.read_text()
    assert "${GREENLANE_API_TOKENS:?" in text  # compose refuses to start without tokens
    # ... and without a Redis password, which reaches Redis and every client of it.
    redis = MODEL["services"]["redis"]
    assert redis["environment"]["REDIS_PASSWORD"].startswith("${GREENLANE_REDIS_PASSWORD:?")
    assert '--requirepass "$$REDIS_PASSWORD"' in redis["command"][-1]
    clients = [
        s for s in MODEL["services"].values() if "GREENLANE_REDIS_URL" in s.get("environment", {})
    ]
    # ingestion, the planner and the hub
    assert len(clients) == 3
    for client in clients:
        assert client["environment"]["GREENLANE_REDIS_URL"].startswith(
            "redis://:${GREENLANE_REDIS_PASSWORD:?"
        )
    assert "greenlane-secret-token" not in text  # the dev token is the embedded default's only

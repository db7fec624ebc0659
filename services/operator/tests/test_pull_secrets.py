"""Simulator Jobs pull from a private registry with the chart's imagePullSecrets."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import ValidationError

from greenlane.operator.job import SimulatorDefaults, build_job
from greenlane.operator.settings import OperatorSettings
from greenlane.operator.spec import parse_spec

DEFAULTS = SimulatorDefaults(
    image="ghcr.io/acme/greenlane-simulator:1.0.0",
    pull_policy="IfNotPresent",
    target="ingestion.greenlane.svc:50051",
    requests={"cpu": "100m", "memory": "128Mi"},
    limits={"cpu": "1", "memory": "512Mi"},
)


def job_pod(defaults: SimulatorDefaults) -> dict[str, object]:
    spec = parse_spec({"cars": 3, "region": "sf", "tokenSecretRef": {"name": "tok"}})
    job = build_job(name="s", namespace="ns", uid="u", generation=1, spec=spec, defaults=defaults)
    pod: dict[str, object] = job["spec"]["template"]["spec"]
    return pod


def test_the_job_pod_names_each_pull_secret_in_order() -> None:
    pod = job_pod(dataclasses.replace(DEFAULTS, pull_secrets=("ghcr-pull", "mirror")))
    assert pod["imagePullSecrets"] == [{"name": "ghcr-pull"}, {"name": "mirror"}]


def test_without_pull_secrets_the_job_pod_has_no_image_pull_secrets_field() -> None:
    assert "imagePullSecrets" not in job_pod(DEFAULTS)


def test_the_setting_reads_comma_separated_secret_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENLANE_SIMULATOR_IMAGE_PULL_SECRETS", "ghcr-pull, mirror ,")
    assert OperatorSettings().simulator_image_pull_secrets == ("ghcr-pull", "mirror")  # type: ignore[call-arg]


def test_the_setting_refuses_a_name_that_is_no_secret_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GREENLANE_SIMULATOR_IMAGE_PULL_SECRETS", "Ghcr_Pull")
    with pytest.raises(ValidationError, match="simulator_image_pull_secrets"):
        OperatorSettings()  # type: ignore[call-arg]

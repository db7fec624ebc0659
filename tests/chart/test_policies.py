"""Policies over the rendered manifests: the chart meets each one, and each one catches its breach.

Every manifest of every value set is checked, the operator's templates and the
third-party sub-charts included. Each policy is then fed deliberately broken
copies of real rendered manifests, to show it fails when its rule is broken.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from typing import Any

import pytest
from chart.helm import VALUE_SETS, app_version, render
from chart.policies import Manifest, all_policies

POLICIES = all_policies(app_version())


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_every_rendered_manifest_meets_the_policy(policy: str, value_set: str) -> None:
    assert POLICIES[policy](render(value_set).manifests) == []


def test_the_policies_see_every_kind_of_workload_the_chart_renders() -> None:
    kinds = {m["kind"] for s in VALUE_SETS for m in render(s).manifests}
    # A new workload kind would need the policies' pod_spec() to know it.
    assert kinds & {"CronJob", "DaemonSet", "ReplicaSet"} == set()
    assert {"Deployment", "StatefulSet", "Job", "Pod"} <= kinds


# ---------------------------------------------------------------- broken manifests


def grid() -> Manifest:
    return copy.deepcopy(render("default").named("Deployment", "greenlane-grid"))


def redpanda() -> Manifest:
    return copy.deepcopy(render("default").named("StatefulSet", "greenlane-redpanda"))


def container(m: Manifest, init: bool = False) -> dict[str, Any]:
    spec = m["spec"]["template"]["spec"]
    found: dict[str, Any] = spec["initContainers" if init else "containers"][0]
    return found  # the manifest's own dict: changes to it break the manifest


def pod(m: Manifest) -> dict[str, Any]:
    found: dict[str, Any] = m["spec"]["template"]["spec"]
    return found


def without_memory_limit() -> list[Manifest]:
    m = grid()
    del container(m)["resources"]["limits"]["memory"]
    return [m]


def init_container_without_requests() -> list[Manifest]:
    m = redpanda()
    del container(m, init=True)["resources"]["requests"]
    return [m]


def without_readiness_probe() -> list[Manifest]:
    m = grid()
    del container(m)["readinessProbe"]
    return [m]


def statefulset_without_liveness_probe() -> list[Manifest]:
    m = redpanda()
    del container(m)["livenessProbe"]
    return [m]


def pod_may_run_as_root() -> list[Manifest]:
    m = grid()
    pod(m)["securityContext"]["runAsNonRoot"] = False
    del container(m)["securityContext"]["runAsNonRoot"]  # the pod's setting applies
    return [m]


def container_runs_as_uid_0() -> list[Manifest]:
    m = grid()
    container(m)["securityContext"]["runAsUser"] = 0
    return [m]


def writable_root_filesystem() -> list[Manifest]:
    m = grid()
    container(m)["securityContext"]["readOnlyRootFilesystem"] = False
    return [m]


def capabilities_kept() -> list[Manifest]:
    m = grid()
    container(m)["securityContext"]["capabilities"] = {"drop": ["NET_RAW"]}
    return [m]


def privilege_escalation_allowed() -> list[Manifest]:
    m = redpanda()
    del container(m)["securityContext"]["allowPrivilegeEscalation"]
    return [m]


def unconfined_seccomp() -> list[Manifest]:
    m = grid()
    pod(m)["securityContext"]["seccompProfile"] = {"type": "Unconfined"}
    return [m]


def greenlane_image_at_another_version() -> list[Manifest]:
    m = grid()
    container(m)["image"] = "greenlane-grid:0.0.9"
    return [m]


def greenlane_image_at_latest() -> list[Manifest]:
    m = grid()
    container(m)["image"] = "ghcr.io/acme/greenlane-grid:latest"
    return [m]


def third_party_image_floating() -> list[Manifest]:
    m = redpanda()
    container(m)["image"] = "docker.redpanda.com/redpandadata/redpanda:latest"
    return [m]


def third_party_image_without_tag() -> list[Manifest]:
    m = redpanda()
    container(m)["image"] = "redis"
    return [m]


def config_map_with_a_password_key() -> list[Manifest]:
    m = copy.deepcopy(render("default").named("ConfigMap", "greenlane-env"))
    m["data"]["GREENLANE_DATABASE_PASSWORD"] = "s3cr3t-s3cr3t"
    return [m]


def config_map_with_credentials_in_a_url() -> list[Manifest]:
    m = copy.deepcopy(render("default").named("ConfigMap", "greenlane-env"))
    m["data"]["GREENLANE_REDIS_URL"] = "redis://:hunter2hunter2@greenlane-redis:6379/0"
    return [m]


def config_map_with_a_secrets_value() -> list[Manifest]:
    rendered = render("default")
    secret = rendered.named("Secret", "greenlane-auth")
    token = base64.b64decode(secret["data"]["api-tokens"]).decode()
    m = copy.deepcopy(rendered.named("ConfigMap", "greenlane-env"))
    m["data"]["GREENLANE_NOTE"] = f"streams use {token}"
    return [secret, m]


def literal_token_in_env() -> list[Manifest]:
    m = copy.deepcopy(render("default").named("Deployment", "greenlane-ingestion"))
    env = container(m)["env"]
    for e in env:
        if e["name"] == "GREENLANE_API_TOKENS":
            e.pop("valueFrom")
            e["value"] = "a-token-pasted-into-values"
    return [m]


def pull_secrets_variable_holding_a_token() -> list[Manifest]:
    m = copy.deepcopy(render("ha").named("Deployment", "greenlane-operator"))
    for e in container(m)["env"]:
        if e["name"] == "GREENLANE_SIMULATOR_IMAGE_PULL_SECRETS":
            e["value"] = "ghp_AbC123+/token="
    return [m]


def literal_password_in_a_url_env() -> list[Manifest]:
    m = copy.deepcopy(render("default").named("Deployment", "greenlane-pricing-worker"))
    for e in container(m)["env"]:
        if e["name"] == "GREENLANE_DATABASE_URL":
            e["value"] = "postgresql://greenlane:pa55word@db:5432/greenlane"
    return [m]


BROKEN: list[tuple[str, Callable[[], list[Manifest]], str]] = [
    ("requests_and_limits", without_memory_limit, "container grid: no memory limit"),
    (
        "requests_and_limits",
        init_container_without_requests,
        "init container config: no cpu request",
    ),
    ("probes", without_readiness_probe, "container grid: no readinessProbe"),
    ("probes", statefulset_without_liveness_probe, "container redpanda: no livenessProbe"),
    ("non_root", pod_may_run_as_root, "container grid: runAsNonRoot is not true"),
    ("non_root", container_runs_as_uid_0, "container grid: runAsUser is 0"),
    ("read_only_root_filesystem", writable_root_filesystem, "readOnlyRootFilesystem is not true"),
    ("no_privileges", capabilities_kept, "capabilities.drop does not contain ALL"),
    ("no_privileges", privilege_escalation_allowed, "allowPrivilegeEscalation is not false"),
    ("seccomp", unconfined_seccomp, "no RuntimeDefault seccomp profile"),
    ("pinned_images", greenlane_image_at_another_version, "is not at appVersion"),
    ("pinned_images", greenlane_image_at_latest, "greenlane-grid:latest is not at appVersion"),
    ("pinned_images", third_party_image_floating, "redpanda:latest has no pinned version tag"),
    ("pinned_images", third_party_image_without_tag, "redis has no pinned version tag"),
    (
        "no_secrets_in_config_maps",
        config_map_with_a_password_key,
        "a secret-like name with a value",
    ),
    ("no_secrets_in_config_maps", config_map_with_credentials_in_a_url, "a URL with a password"),
    ("no_secrets_in_config_maps", config_map_with_a_secrets_value, "the value of a Secret"),
    ("secrets_from_secret_refs", literal_token_in_env, "a literal value, not a secretKeyRef"),
    (
        "secrets_from_secret_refs",
        pull_secrets_variable_holding_a_token,
        "GREENLANE_SIMULATOR_IMAGE_PULL_SECRETS: a literal value, not a secretKeyRef",
    ),
    ("secrets_from_secret_refs", literal_password_in_a_url_env, "a URL with a literal password"),
]


@pytest.mark.parametrize(
    ("policy", "breach", "complaint"), BROKEN, ids=[b[1].__name__ for b in BROKEN]
)
def test_the_policy_fails_a_manifest_that_breaks_it(
    policy: str, breach: Callable[[], list[Manifest]], complaint: str
) -> None:
    violations = POLICIES[policy](breach())
    assert any(complaint in v for v in violations), violations


def test_every_policy_has_a_breach_it_is_seen_failing_on() -> None:
    assert {b[0] for b in BROKEN} == set(POLICIES)

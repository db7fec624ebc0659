"""The umbrella chart lints, renders every value set, and every manifest is valid Kubernetes."""

from __future__ import annotations

import base64
import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart.helm import (
    CHART,
    KUBERNETES_VERSIONS,
    NAMESPACE,
    NEWEST_KUBERNETES,
    SUBCHARTS,
    VALUE_SETS,
    HelmError,
    Rendered,
    render,
    run_helm,
    template,
)
from chart.manifests import problems
from chart.rbac import allows, owner_reference_needs

SETS = sorted(VALUE_SETS)
COMPONENTS = ("ingestion", "grid", "pricing-worker", "hub")


def env_of(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e for e in container.get("env", [])}


# ---------------------------------------------------------------- lint and render


@pytest.mark.parametrize("value_set", SETS)
def test_the_chart_lints_strictly_with_each_value_set(value_set: str) -> None:
    values = VALUE_SETS[value_set]
    extra = ["--values", str(values)] if values else []
    out = run_helm("lint", "--strict", CHART, *extra).stdout
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("subchart", SUBCHARTS, ids=lambda p: p.name)
def test_each_sub_chart_lints_strictly_on_its_own(subchart: Path) -> None:
    assert "0 chart(s) failed" in run_helm("lint", "--strict", subchart).stdout


def test_the_value_sets_are_the_defaults_and_every_ci_file() -> None:
    assert SETS == ["default", "external", "gitops", "ha", "ingestion-only", "kind"]


@pytest.mark.parametrize("kubernetes", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("value_set", SETS)
def test_every_rendered_manifest_is_strictly_valid_kubernetes(
    value_set: str, kubernetes: str
) -> None:
    rendered = render(value_set, kubernetes)
    assert rendered.manifests
    found = [p for m in rendered.manifests for p in problems(m, kubernetes)]
    assert found == []


def test_strict_validation_refuses_an_unknown_field() -> None:
    deployment = copy.deepcopy(render("default").named("Deployment", "greenlane-grid"))
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    assert any("imagePullPolicyy" in p for p in problems(deployment, KUBERNETES_VERSIONS[0]))


def test_strict_validation_refuses_a_kind_it_has_no_schema_for() -> None:
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert problems(unknown, KUBERNETES_VERSIONS[-1]) == [
        "Widget/w: no schema for example.com/v1 in Kubernetes " + KUBERNETES_VERSIONS[-1]
    ]


def test_strict_validation_checks_service_monitors_against_their_schema() -> None:
    monitor = copy.deepcopy(render("ha").of_kind("ServiceMonitor")[0])
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    assert any("intervall" in p for p in problems(monitor, KUBERNETES_VERSIONS[-1]))


# ---------------------------------------------------------------- values.schema.json


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("colour=green", "additional properties 'colour' not allowed"),
        ("components.ingestion.replicas=3", "additional properties 'replicas' not allowed"),
        ("components.grid.resources.limits.gpu=1", "additional properties 'gpu' not allowed"),
        ("redis.presistence.enabled=true", "additional properties 'presistence' not allowed"),
        ("redpanda.console.enabled=maybe", "want boolean"),
        ("timescale.image.tag=latest", "/image/tag"),
        ("podSecurityContext.runAsNonRoot=false", "/podSecurityContext/runAsNonRoot"),
        ("config.logFormat=xml", "/config/logFormat"),
        ("auth.apiTokens={too-short}", "/auth/apiTokens/0"),
    ],
)
def test_the_schemas_refuse_a_mistyped_or_unknown_value(setting: str, complaint: str) -> None:
    with pytest.raises(HelmError, match=re.escape(complaint)):
        template("--set", setting)


def test_validate_values_reports_every_mistake_at_once() -> None:
    with pytest.raises(HelmError) as caught:
        template(
            "--set",
            "redis.enabled=false",
            "--set",
            "timescale.enabled=false",
            "--set",
            "components.grid.enabled=false",
            "--set",
            "auth.apiTokens={greenlane-secret-token,has-a-comma\\,inside}",
            "--set",
            "config.extraEnv.SMTP_PASSWORD=hunter2hunter2",
        )
    message = str(caught.value)
    assert "have 11 problem(s)" in message
    for expected in (
        "redis.enabled=false needs externalRedis.host (ingestion",
        "redis.enabled=false needs externalRedis.host (the hub",
        "redis.enabled=false needs externalRedis.host (the planner",
        "components.planner needs the grid component or config.gridUrl",
        "components.hub.connections has database",
        "timescale.enabled=false needs externalDatabase.host",
        "timescale.enabled=false needs externalDatabase.existingSecret",
        "auth.apiTokens[0] is the development token",
        "auth.apiTokens[1] contains a comma",
        "config.extraEnv.SMTP_PASSWORD looks like a secret",
        "components.pricing-worker needs the grid component or config.gridUrl",
    ):
        assert expected in message


def test_validate_values_refuses_tokens_both_given_and_referenced() -> None:
    with pytest.raises(HelmError, match="set auth.existingSecret or auth.apiTokens, not both"):
        template(
            "--set", "auth.existingSecret=mine", "--set", "auth.apiTokens={a-long-enough-token-1}"
        )


def test_validate_values_refuses_more_pricing_workers_than_partitions() -> None:
    with pytest.raises(
        HelmError, match=r"replicaCount \(8\) is above config.fleetEventsPartitions"
    ):
        template("--set", "components.pricing-worker.replicaCount=8")


def test_the_operator_block_is_reserved_exactly_as_agreed() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["operator"] == {
        "enabled": True,
        "image": {"repository": "greenlane-operator", "tag": "", "pullPolicy": "IfNotPresent"},
        "simulatorImage": {
            "repository": "greenlane-simulator",
            "tag": "",
            "pullPolicy": "IfNotPresent",
        },
        "watchNamespace": "",
        "resources": {
            "requests": {"cpu": "50m", "memory": "128Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"},
        },
    }
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]["operator"]
    assert set(schema["properties"]) == set(values["operator"])
    assert schema["additionalProperties"] is False


# ---------------------------------------------------------------- what the manifests say


def test_the_default_install_runs_every_service_and_bundled_backend() -> None:
    rendered = render("default")
    names = {m["metadata"]["name"] for m in rendered.of_kind("Deployment")}
    assert {"greenlane-ingestion", "greenlane-grid", "greenlane-pricing-worker"} <= names
    statefulsets = {m["metadata"]["name"] for m in rendered.of_kind("StatefulSet")}
    assert statefulsets == {"greenlane-redis", "greenlane-redpanda", "greenlane-timescale"}


def test_ingestion_has_native_grpc_probes_on_its_grpc_port() -> None:
    ingestion = render("default").named("Deployment", "greenlane-ingestion")
    container = ingestion["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["grpc"] == {"port": 50051}
    assert container["startupProbe"]["grpc"] == {"port": 50051}
    assert {"name": "grpc", "containerPort": 50051, "protocol": "TCP"} in container["ports"]


def test_ingestion_scales_with_an_hpa_only_when_autoscaling_is_on() -> None:
    assert render("default").of_kind("HorizontalPodAutoscaler") == []
    (hpa,) = render("ha").of_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "greenlane-ingestion"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    deployment = render("ha").named("Deployment", "greenlane-ingestion")
    assert "replicas" not in deployment["spec"]


def test_every_component_has_a_pod_disruption_budget_selecting_its_pods() -> None:
    rendered = render("default")
    for component in COMPONENTS:
        deployment = rendered.named("Deployment", f"greenlane-{component}")
        pdb = rendered.named("PodDisruptionBudget", f"greenlane-{component}")
        assert pdb["spec"]["selector"] == deployment["spec"]["selector"]


def test_shared_settings_live_in_one_config_map_every_component_reads() -> None:
    rendered = render("default")
    config = rendered.named("ConfigMap", "greenlane-env")
    assert config["data"]["GREENLANE_ENVIRONMENT"] == "production"
    assert config["data"]["GREENLANE_LOG_FORMAT"] == "json"
    assert config["data"]["GREENLANE_GRID_URL"] == "http://greenlane-grid:8081"
    for component in COMPONENTS:
        deployment = rendered.named("Deployment", f"greenlane-{component}")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert {"configMapRef": {"name": "greenlane-env"}} in container["envFrom"]


def test_passwords_reach_connection_urls_only_through_secret_references() -> None:
    rendered = render("default")
    ingestion = env_of(rendered.named("Deployment", "greenlane-ingestion"))
    assert ingestion["GREENLANE_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "greenlane-redis",
        "key": "redis-password",
    }
    assert ingestion["GREENLANE_REDIS_URL"]["value"] == (
        "redis://greenlane:$(GREENLANE_REDIS_PASSWORD)@greenlane-redis:6379/0"
    )
    worker = env_of(rendered.named("Deployment", "greenlane-pricing-worker"))
    assert worker["GREENLANE_DATABASE_URL"]["value"] == (
        "postgresql://greenlane:$(GREENLANE_DATABASE_PASSWORD)@greenlane-timescale:5432/greenlane"
        "?sslmode=disable"
    )
    # Least privilege: the worker gets no Redis password and no API tokens.
    assert not {"GREENLANE_REDIS_PASSWORD", "GREENLANE_API_TOKENS"} & set(worker)


def test_the_bundled_redis_turns_the_default_user_off_and_gives_each_user_its_acl() -> None:
    rendered = render("default")
    redis = rendered.named("StatefulSet", "greenlane-redis")["spec"]["template"]["spec"]
    container = redis["containers"][0]
    script = container["args"][0]
    assert "--user default off" in script
    assert '--user greenlane on ">$REDIS_PASSWORD" "~*" "&*" "+@all" "-@admin"' in script
    assert '--user monitor on ">$REDIS_PASSWORD" "~*" "-@all" "+ping" "+info"' in script
    assert "--requirepass" not in script
    # The probes log in as the read-only user; redis-cli takes the password from REDISCLI_AUTH.
    assert container["readinessProbe"]["exec"]["command"] == [
        "redis-cli", "-h", "127.0.0.1", "--user", "monitor", "ping"
    ]  # fmt: skip
    assert {e["name"] for e in container["env"]} == {"REDIS_PASSWORD", "REDISCLI_AUTH"}


def test_without_an_acl_user_the_bundled_redis_keeps_one_password_for_the_default_user() -> None:
    rendered = Rendered(
        "default",
        NEWEST_KUBERNETES,
        template("--set", "redis.auth.username=", values=VALUE_SETS["default"]),
    )
    script = rendered.named("StatefulSet", "greenlane-redis")["spec"]["template"]["spec"][
        "containers"
    ][0]["args"][0]
    assert '--requirepass "$REDIS_PASSWORD"' in script
    assert "--user" not in script
    ingestion = env_of(rendered.named("Deployment", "greenlane-ingestion"))
    assert ingestion["GREENLANE_REDIS_URL"]["value"] == (
        "redis://:$(GREENLANE_REDIS_PASSWORD)@greenlane-redis:6379/0"
    )


def test_without_tokens_in_values_the_chart_generates_one_random_token() -> None:
    secret = render("default").named("Secret", "greenlane-auth")
    token = base64.b64decode(secret["data"]["api-tokens"]).decode()
    assert re.fullmatch(r"[A-Za-z0-9]{32}", token)
    again = base64.b64decode(
        next(m for m in template() if m["metadata"]["name"] == "greenlane-auth")["data"][
            "api-tokens"
        ]
    ).decode()
    assert again != token  # random per render; an upgrade keeps the cluster's through lookup


def test_an_existing_token_secret_is_referenced_and_no_secret_is_rendered() -> None:
    rendered = render("external")
    assert rendered.of_kind("Secret") == []
    ingestion = env_of(rendered.named("Deployment", "greenlane-ingestion"))
    assert ingestion["GREENLANE_API_TOKENS"]["valueFrom"]["secretKeyRef"] == {
        "name": "greenlane-api-tokens",
        "key": "tokens",
    }


def test_external_backends_replace_the_sub_charts() -> None:
    rendered = render("external")
    assert rendered.of_kind("StatefulSet") == []
    ingestion = env_of(rendered.named("Deployment", "greenlane-ingestion"))
    assert ingestion["GREENLANE_REDIS_URL"]["value"] == (
        "rediss://:$(GREENLANE_REDIS_PASSWORD)@redis.data.svc.cluster.local:6380/2"
    )
    assert ingestion["GREENLANE_KAFKA_BOOTSTRAP_SERVERS"]["value"].startswith(
        "kafka-0.kafka.data.svc:9092,"
    )
    worker = env_of(rendered.named("Deployment", "greenlane-pricing-worker"))
    assert worker["GREENLANE_DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "greenlane-backends",
        "key": "database-password",
    }
    assert worker["GREENLANE_DATABASE_URL"]["value"].endswith(
        "@timescale.data.svc.cluster.local:5432/greenlane?sslmode=require"
    )


def test_the_ingestion_only_set_deploys_ingestion_and_its_two_backends() -> None:
    rendered = render("ingestion-only")
    assert [m["metadata"]["name"] for m in rendered.of_kind("Deployment")] == [
        "greenlane-ingestion"
    ]
    assert {m["metadata"]["name"] for m in rendered.of_kind("StatefulSet")} == {
        "greenlane-redis",
        "greenlane-redpanda",
    }
    assert rendered.of_kind("Job") == []


@pytest.mark.parametrize(
    ("value_set", "phase"),
    [("default", "post-install,pre-upgrade"), ("external", "pre-install,pre-upgrade")],
)
def test_migrations_run_as_a_hook_job_in_the_pricing_worker_image(
    value_set: str, phase: str
) -> None:
    job = render(value_set).named("Job", "greenlane-migrations")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == phase
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "greenlane.core.migrations"]
    assert container["image"].endswith("greenlane-pricing-worker:0.1.0")
    env = {e["name"]: e for e in container["env"]}
    assert env["GREENLANE_MIGRATIONS_DIR"]["value"] == "/app/sql"
    assert "$(GREENLANE_DATABASE_PASSWORD)" in env["GREENLANE_DATABASE_URL"]["value"]
    # A hook runs before (pre-install) the release's own objects exist: it must not
    # need the release's ServiceAccount, or its pod is never created.
    assert "serviceAccountName" not in job["spec"]["template"]["spec"]


def test_helm_test_runs_a_short_simulation_against_ingestion() -> None:
    pod = render("default").named("Pod", "greenlane-test-simulation")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    assert container["image"] == "greenlane-simulator:0.1.0"
    assert "--target=greenlane-ingestion:50051" in container["args"]
    assert {e["name"] for e in container["env"]} >= {"GREENLANE_API_TOKEN"}


def test_dashboards_ship_as_config_maps_for_the_grafana_sidecar() -> None:
    dashboards = [
        m for m in render("default").of_kind("ConfigMap") if "-dashboard-" in m["metadata"]["name"]
    ]
    sources = sorted(p.name for p in (CHART / "dashboards").glob("*.json"))
    assert sorted(k for m in dashboards for k in m["data"]) == sources
    for m in dashboards:
        assert m["metadata"]["labels"]["grafana_dashboard"] == "1"
        for text in m["data"].values():
            assert json.loads(text)["uid"]


def test_network_policies_admit_only_the_expected_peers() -> None:
    rendered = render("ha")
    grid = rendered.named("NetworkPolicy", "greenlane-grid")
    service_rule, metrics_rule = grid["spec"]["ingress"]
    # The grid's clients: the pricing worker (prices) and the planner (the forecast).
    assert service_rule["from"] == [
        {
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "greenlane",
                    "app.kubernetes.io/instance": "greenlane",
                    "app.kubernetes.io/component": client,
                }
            }
        }
        for client in ("pricing-worker", "planner")
    ]
    assert metrics_rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    ingestion = rendered.named("NetworkPolicy", "greenlane-ingestion")
    assert "from" not in ingestion["spec"]["ingress"][0]  # cars come from anywhere
    redis = rendered.named("NetworkPolicy", "greenlane-redis")
    assert redis["spec"]["ingress"][0]["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "greenlane"}}}
    ]


def test_service_monitors_scrape_each_components_metrics_port() -> None:
    monitors = {m["metadata"]["name"]: m for m in render("ha").of_kind("ServiceMonitor")}
    assert monitors["greenlane-grid"]["spec"]["endpoints"][0]["port"] == "http"
    assert monitors["greenlane-ingestion"]["spec"]["endpoints"][0]["port"] == "metrics"
    assert (
        monitors["greenlane-ingestion"]["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    )
    assert monitors["greenlane-ingestion"]["spec"]["namespaceSelector"] == {
        "matchNames": [NAMESPACE]
    }


def test_a_global_registry_prefixes_only_the_greenlane_images() -> None:
    images = {
        c["image"]
        for m in render("ha").manifests
        if m["kind"] in ("Deployment", "StatefulSet")
        for c in m["spec"]["template"]["spec"]["containers"]
    }
    assert "ghcr.io/greenlane/greenlane-ingestion:0.1.0" in images
    assert "redis:7.4.6-alpine" in images
    ingestion = render("ha").named("Deployment", "greenlane-ingestion")
    assert ingestion["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "ghcr-pull"}]
    assert (
        "imagePullSecrets"
        not in render("default").named("Deployment", "greenlane-grid")["spec"]["template"]["spec"]
    )


def test_the_install_notes_tell_how_to_reach_ingestion_and_start_a_simulation() -> None:
    out = run_helm("install", "greenlane", CHART, "--namespace", NAMESPACE, "--dry-run=client")
    notes = out.stdout.split("NOTES:", 1)[1]
    for expected in (
        "kubectl -n greenlane port-forward svc/greenlane-ingestion 50051:50051",
        "get secret greenlane-auth",
        "python -m greenlane.simulator",
        "helm test greenlane -n greenlane",
        "apply -f examples/fleetsimulation.yaml",
    ):
        assert expected in notes


# ---------------------------------------------------------------- the operator beyond kind


def test_the_operator_passes_the_registry_and_pull_secrets_to_its_simulator_jobs() -> None:
    operator = env_of(render("ha").named("Deployment", "greenlane-operator"))
    assert operator["GREENLANE_SIMULATOR_IMAGE"]["value"] == (
        "ghcr.io/greenlane/greenlane-simulator:0.1.0"
    )
    assert operator["GREENLANE_SIMULATOR_IMAGE_PULL_SECRETS"]["value"] == "ghcr-pull"
    default = env_of(render("default").named("Deployment", "greenlane-operator"))
    assert "GREENLANE_SIMULATOR_IMAGE_PULL_SECRETS" not in default


@pytest.mark.parametrize("value_set", ["default", "ha"])
def test_the_operator_role_lets_it_block_owner_deletion_of_its_fleetsimulations(
    value_set: str,
) -> None:
    # kopf.adopt() writes blockOwnerDeletion: true (tests/integration/test_operator.py
    # checks the reference it actually writes against this same rule).
    role = render(value_set).named("Role", "greenlane-operator")
    reference = {
        "apiVersion": "greenlane.io/v1alpha1",
        "kind": "FleetSimulation",
        "blockOwnerDeletion": True,
    }
    needs = owner_reference_needs(reference, CHART / "crds")
    assert needs == [("greenlane.io", "fleetsimulations/finalizers", "update")]
    assert [n for n in needs if not allows(role["rules"], *n)] == []


def test_the_rbac_check_notices_a_missing_permission() -> None:
    rules = [{"apiGroups": ["greenlane.io"], "resources": ["fleetsimulations"], "verbs": ["*"]}]
    assert not allows(rules, "greenlane.io", "fleetsimulations/finalizers", "update")
    assert allows(rules, "greenlane.io", "fleetsimulations", "update")


# On a fresh kind node the Redis, Redpanda and TimescaleDB images are pulled one after
# another before ingestion's backends answer; its gRPC port opens only then.
STARTUP_BUDGET_S = 300


@pytest.mark.parametrize("component", ["ingestion", "pricing-worker"])
def test_components_that_wait_for_the_backends_have_a_startup_budget_for_first_pulls(
    component: str,
) -> None:
    deployment = render("default").named("Deployment", f"greenlane-{component}")
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= STARTUP_BUDGET_S


def test_redis_runs_as_the_alpine_images_redis_user_and_group() -> None:
    # redis:*-alpine: `adduser -S -G redis -u 999 redis` with `addgroup -S -g 1000 redis`.
    redis = render("default").named("StatefulSet", "greenlane-redis")
    context = redis["spec"]["template"]["spec"]["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (999, 1000, 1000)


def test_the_hub_gets_an_ingress_only_when_asked_with_its_host_and_tls() -> None:
    assert render("default").of_kind("Ingress") == []
    ingress = render("ha").named("Ingress", "greenlane-hub")
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"secretName": "fleet-example-com-tls", "hosts": ["fleet.example.com"]}]
    rule = spec["rules"][0]
    assert rule["host"] == "fleet.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {
        "name": "greenlane-hub",
        "port": {"name": "http"},
    }
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"


def test_the_hub_reads_redis_kafka_the_database_and_the_tokens() -> None:
    hub = env_of(render("default").named("Deployment", "greenlane-hub"))
    for name in (
        "GREENLANE_REDIS_URL",
        "GREENLANE_KAFKA_BOOTSTRAP_SERVERS",
        "GREENLANE_DATABASE_URL",
    ):
        assert name in hub
    assert hub["GREENLANE_API_TOKENS"]["valueFrom"]["secretKeyRef"]["name"] == "greenlane-auth"
    assert hub["GREENLANE_HUB_PORT"]["value"] == "8090"

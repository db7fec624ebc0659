"""Who may reach each port of each component once NetworkPolicies are on, listed per component."""

from __future__ import annotations

import pytest
from chart.helm import render, template
from chart.netpol import reachability

RELEASE_PODS = "pods app.kubernetes.io/instance=greenlane"


def pods_of(component: str) -> str:
    return (
        "pods app.kubernetes.io/component="
        f"{component},app.kubernetes.io/instance=greenlane,app.kubernetes.io/name=greenlane"
    )


MONITORING = "namespaces kubernetes.io/metadata.name=monitoring"
NOBODY: frozenset[str] = frozenset()


def expected(
    metrics: frozenset[str], shared_metrics: frozenset[str]
) -> dict[str, dict[str, frozenset[str]]]:
    """The intended table; metrics = peers of a dedicated metrics port, shared_metrics =
    the extra peers of a port that serves an API and its metrics (the grid's http)."""
    return {
        "greenlane-ingestion": {
            "grpc": frozenset({"anyone"}),
            "http": frozenset({"anyone"}),
            "metrics": metrics,
        },
        # The grid's forecast and prices: the pricing worker and the planner ask for them.
        "greenlane-grid": {
            "http": frozenset({pods_of("pricing-worker"), pods_of("planner")}) | shared_metrics
        },
        "greenlane-pricing-worker": {"metrics": metrics},
        # The map is for people (browsers, through an Ingress): open, like ingestion's API.
        "greenlane-hub": {"http": frozenset({"anyone"}) | shared_metrics},
        # Its API is for people and fleet back ends (token required), like the booking API.
        "greenlane-planner": {"http": frozenset({"anyone"}) | shared_metrics},
        "greenlane-operator": {"metrics": metrics, "health": NOBODY},
        "greenlane-redis": {"redis": frozenset({RELEASE_PODS})},
        "greenlane-redpanda": {
            "kafka": frozenset({RELEASE_PODS}),
            "admin": frozenset({RELEASE_PODS}),
            "rpc": NOBODY,
        },
        "greenlane-timescale": {"postgres": frozenset({RELEASE_PODS})},
    }


def test_with_default_metrics_peers_the_grids_api_is_reachable_only_from_its_client() -> None:
    # metricsFrom: [] admits every namespace to a port that serves only metrics; a port
    # that also serves an API (the grid's http) is never opened by that default.
    table = reachability(template("--set", "global.networkPolicy.enabled=true"))
    assert table == expected(frozenset({"every namespace"}), NOBODY)


def test_with_metrics_from_a_namespace_every_metrics_port_admits_only_that_namespace() -> None:
    table = reachability(render("ha").manifests)
    # The Redpanda Console (a UI, on in ha) has no policy: people reach it through
    # kubectl port-forward or an Ingress of their own.
    console = {"greenlane-redpanda-console": {"http": frozenset({"anyone"})}}
    assert table == expected(frozenset({MONITORING}), frozenset({MONITORING})) | console


def test_without_network_policies_every_port_admits_anyone() -> None:
    # They are on by default; a cluster whose CNI does not enforce them may turn them off.
    table = reachability(template("--set", "global.networkPolicy.enabled=false"))
    assert {p for ports in table.values() for p in ports.values()} == {frozenset({"anyone"})}


@pytest.mark.parametrize(
    ("peer", "words"),
    [
        ({"namespaceSelector": {}}, "every namespace"),
        ({"namespaceSelector": {"matchLabels": {"team": "x"}}}, "namespaces team=x"),
        ({"podSelector": {"matchLabels": {"a": "1"}}}, "pods a=1"),
        (
            {"podSelector": {"matchLabels": {"a": "1"}}, "namespaceSelector": {}},
            "pods a=1 in namespaces *",
        ),
    ],
)
def test_the_reachability_table_describes_each_kind_of_peer(
    peer: dict[str, object], words: str
) -> None:
    from chart.netpol import describe_peer

    assert describe_peer(peer) == words

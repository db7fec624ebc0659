"""Who may reach which port of which pod, as the rendered NetworkPolicies say: pure functions.

A pod no policy selects accepts everyone; once a policy selects it, a port accepts
exactly the peers of the ingress rules that cover it (a rule without `ports` covers
every port, a rule without `from` admits everyone). Peers are described in words so
that a test can list them: "anyone", "every namespace", "namespaces k=v",
"pods k=v,...".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Manifest = dict[str, Any]
WORKLOADS = ("Deployment", "StatefulSet")


def _selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    if selector.get("matchExpressions"):
        raise NotImplementedError("matchExpressions in a chart NetworkPolicy")
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def _labels(selector: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items()))


def describe_peer(peer: Mapping[str, Any]) -> str:
    pods, namespaces = peer.get("podSelector"), peer.get("namespaceSelector")
    if "ipBlock" in peer:
        return f"ipBlock {peer['ipBlock']['cidr']}"
    if namespaces is not None and pods is None:
        return f"namespaces {_labels(namespaces)}" if _labels(namespaces) else "every namespace"
    where = "" if namespaces is None else f" in namespaces {_labels(namespaces) or '*'}"
    return f"pods {_labels(pods or {}) or '*'}{where}"


def _covers(rule: Mapping[str, Any], name: str, number: int) -> bool:
    ports = rule.get("ports")
    if not ports:
        return True
    return any(p.get("port") in (name, number) for p in ports)


def reachability(manifests: Iterable[Manifest]) -> dict[str, dict[str, frozenset[str]]]:
    """{workload name: {port name: peers}} for every Deployment and StatefulSet."""
    manifests = list(manifests)
    policies = [m for m in manifests if m["kind"] == "NetworkPolicy"]
    found: dict[str, dict[str, frozenset[str]]] = {}
    for workload in (m for m in manifests if m["kind"] in WORKLOADS):
        template = workload["spec"]["template"]
        labels = template["metadata"].get("labels") or {}
        selecting = [
            p
            for p in policies
            if "Ingress" in (p["spec"].get("policyTypes") or ["Ingress"])
            and _selects(p["spec"]["podSelector"], labels)
        ]
        ports = {
            port["name"]: port["containerPort"]
            for c in template["spec"]["containers"]
            for port in c.get("ports") or []
        }
        table: dict[str, frozenset[str]] = {}
        for name, number in ports.items():
            if not selecting:
                table[name] = frozenset({"anyone"})
                continue
            peers: set[str] = set()
            for policy in selecting:
                for rule in policy["spec"].get("ingress") or []:
                    if _covers(rule, name, number):
                        sources = rule.get("from")
                        peers |= {describe_peer(p) for p in sources} if sources else {"anyone"}
            table[name] = frozenset(peers)
        found[workload["metadata"]["name"]] = table
    return found

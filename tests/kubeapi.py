"""A Kubernetes API for the operator: kmock with what a cluster with the chart's CRD serves."""

from __future__ import annotations

import datetime
import itertools
import uuid
from pathlib import Path
from typing import Any

import kmock
import yaml

NS = "loadtest"
FSIM = "greenlane.io/v1alpha1/fleetsimulations"
JOBS = "batch/v1/jobs"
SECRET = "fleet-token"

RESOURCE_VERSIONS = itertools.count(100)


class ApiServer(kmock.KubernetesEmulator):
    """kmock plus the bookkeeping of a real API server that kopf relies on.

    Every write gets a new resourceVersion (kopf skips the echo of its own patches
    by it), a spec change bumps metadata.generation, creation fills uid and
    timestamps, and generateName gets a name (kopf's Events use it).
    """

    async def _handle(self, request: kmock.Request) -> Any:
        if request.resource is not None and isinstance(request.data, dict | list):
            self._stamp(request)
        return await super()._handle(request)

    def _stamp(self, request: kmock.Request) -> None:
        version = str(next(RESOURCE_VERSIONS))
        data = request.data
        if request.action == kmock.action.CREATE and isinstance(data, dict):
            meta = data.setdefault("metadata", {})
            if "name" not in meta and "generateName" in meta:
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("generation", 1)
            meta.setdefault("creationTimestamp", datetime.datetime.now(datetime.UTC).isoformat())
            meta["resourceVersion"] = version
        elif request.action == kmock.action.UPDATE and request.name is not None:
            assert request.resource is not None
            key = (request.resource, request.namespace, request.name)
            if key not in self.objects or self.objects[key].deleted:
                return
            generation = self.objects[key].raw.get("metadata", {}).get("generation", 1)
            if isinstance(data, dict):
                meta = data.setdefault("metadata", {})
                meta["resourceVersion"] = version
                if "spec" in data and request.subresource is None:
                    meta["generation"] = generation + 1
            else:
                data.append({"op": "add", "path": "/metadata/resourceVersion", "value": version})
                if any(str(op.get("path", "")).startswith("/spec") for op in data):
                    data.append(
                        {"op": "add", "path": "/metadata/generation", "value": generation + 1}
                    )


def serve_greenlane(api: kmock.KubernetesEmulator) -> kmock.KubernetesEmulator:
    """The resources a cluster with the chart's CRD would serve, and the token Secret."""
    info = kmock.ResourceInfo
    verbs = {"get", "list", "watch", "create", "patch", "delete"}
    api.resources[FSIM] = info(
        kind="FleetSimulation",
        singular="fleetsimulation",
        namespaced=True,
        verbs=verbs,
        shortnames={"fsim"},
        subresources={"status"},
    )
    api.resources[JOBS] = info(kind="Job", namespaced=True, verbs=verbs, subresources={"status"})
    api.resources["v1/pods"] = info(kind="Pod", namespaced=True, verbs=verbs)
    api.resources["v1/secrets"] = info(kind="Secret", namespaced=True, verbs=verbs)
    api.resources["v1/events"] = info(kind="Event", namespaced=True, verbs=verbs)
    # kopf waits for these to be served before it starts watching (never listed here).
    api.resources["v1/namespaces"] = info(kind="Namespace", namespaced=False, verbs=verbs)
    api.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = info(
        kind="CustomResourceDefinition", namespaced=False, verbs=verbs
    )
    api.objects["v1/secrets", NS, SECRET] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": NS},
        "data": {"api-token": "c2VjcmV0LXRva2VuLWZvci10ZXN0cw=="},
    }
    return api


def write_kubeconfig(path: Path, server: str, token: str = "kmock-token") -> Path:
    """A kubeconfig with one context: the server, a bearer token."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": server}}],
                "users": [{"name": "operator", "user": {"token": token}}],
                "contexts": [
                    {"name": "kmock", "context": {"cluster": "kmock", "user": "operator"}}
                ],
                "current-context": "kmock",
            }
        )
    )
    return path

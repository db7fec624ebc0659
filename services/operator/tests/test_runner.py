"""The operator's start-up check: what it lists, and the one line each failure gives."""

from __future__ import annotations

import pytest

from greenlane.operator.kube import ApiError
from greenlane.operator.runner import _explain, fleetsimulations_path

SERVER = "https://10.0.0.1:6443"
SOURCE = "KUBECONFIG=/etc/kube/config"


def test_it_lists_fleetsimulations_where_kopf_will_watch_them() -> None:
    assert fleetsimulations_path("load test") == (
        "/apis/greenlane.io/v1alpha1/namespaces/load%20test/fleetsimulations"
    )
    assert fleetsimulations_path(None) == "/apis/greenlane.io/v1alpha1/fleetsimulations"


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (ApiError(0, "ClientConnectorError", "connection refused"), "cannot reach the Kubernetes"),
        (ApiError(401, "Unauthorized", "Unauthorized"), "renew the token or certificate"),
        (ApiError(403, "Forbidden", "cannot list"), "may not list fleetsimulations.greenlane.io"),
        (ApiError(404, "NotFound", "the server could not find"), "install the CRD"),
        (ApiError(500, "InternalError", "etcd timeout"), "listing fleetsimulations.greenlane.io"),
    ],
)
def test_each_refusal_is_one_line_that_names_the_server_or_the_fix(
    error: ApiError, says: str
) -> None:
    line = _explain(error, SERVER, SOURCE, "loadtest")
    assert says in line
    assert "\n" not in line
    assert SERVER in line or SOURCE in line


def test_a_clusterwide_refusal_names_the_cluster_not_a_namespace() -> None:
    line = _explain(ApiError(403, "Forbidden", "no"), SERVER, SOURCE, None)
    assert "in the cluster" in line and "namespace" not in line

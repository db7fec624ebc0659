"""Fixtures of the end-to-end tests: a GreenLane release already running in a cluster.

They run on kind in .github/workflows/e2e.yml and by hand against any cluster:
    helm install greenlane charts/greenlane -n greenlane --create-namespace --wait
    uv run pytest tests/e2e -q
They need a cluster and fail (never skip) when there is none: `make test` leaves
this folder out.
"""

from __future__ import annotations

import pytest
from e2e.cluster import ClusterUnreachable, Release


@pytest.fixture(scope="session")
def release() -> Release:
    found = Release.from_env()
    try:
        found.kubectl("get", "deployment", f"{found.fullname}-ingestion")
    except ClusterUnreachable as exc:
        raise ClusterUnreachable(
            f"no GreenLane release {found.name!r} in namespace {found.namespace!r} "
            f"(set GREENLANE_E2E_NAMESPACE / GREENLANE_E2E_RELEASE; see docs/kubernetes.md): {exc}"
        ) from None
    return found

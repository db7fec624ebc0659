"""Run the operator: check the cluster, then kopf with our handlers, the probes, a clean stop."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Collection, Mapping
from typing import Any, Final

import kopf

from greenlane.core.telemetry import HttpServer, probes_app
from greenlane.operator.handlers import (
    ClusterUnusable,
    Credentials,
    Runtime,
    build_registry,
    find_credentials,
    kopf_settings,
)
from greenlane.operator.kube import ApiError, KubeClient, q
from greenlane.operator.settings import OperatorSettings
from greenlane.operator.spec import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)

# The start-up check waits this long for the API server; a readiness check less than
# the chart's readinessProbe timeout (3 s), so /readyz answers before the kubelet gives up.
STARTUP_CHECK_TIMEOUT_S: Final = 10.0
READINESS_CHECK_TIMEOUT_S: Final = 2.5
RESOURCE: Final = f"{PLURAL}.{GROUP}"


def fleetsimulations_path(namespace: str | None) -> str:
    """What kopf watches: the FleetSimulations of one namespace, or of the cluster."""
    where = "" if namespace is None else f"/namespaces/{q(namespace)}"
    return f"/apis/{GROUP}/{VERSION}{where}/{PLURAL}"


def _scopes(namespaces: Collection[str], clusterwide: bool) -> list[str | None]:
    return [None] if clusterwide else list(namespaces)


async def _list_once(client: KubeClient, namespace: str | None) -> None:
    await client.request("GET", fleetsimulations_path(namespace), params={"limit": "1"})


def _explain(exc: ApiError, server: str, source: str, namespace: str | None) -> str:
    """One line: what the API server said about listing FleetSimulations, and the fix."""
    where = "the cluster" if namespace is None else f"namespace {namespace!r}"
    if exc.status == 0:
        return (
            f"cannot reach the Kubernetes API server at {server} ({exc.message}); check the "
            f"server in {source}, or that this pod can reach it"
        )
    if exc.status == 401:
        return (
            f"the Kubernetes API server at {server} refused the credentials of {source} "
            f"(401 {exc.reason}); renew the token or certificate"
        )
    if exc.status == 403:
        return (
            f"the credentials of {source} may not list {RESOURCE} in {where} (403: "
            f"{exc.message}); grant it (the chart's operator Role does)"
        )
    if exc.status == 404:
        return (
            f"the Kubernetes API server at {server} does not serve {RESOURCE}/{VERSION}; "
            "install the CRD (charts/greenlane/crds/)"
        )
    return f"listing {RESOURCE} in {where} at {server} failed: {exc}"


async def check_cluster(
    client: KubeClient, credentials: Credentials, scopes: list[str | None]
) -> None:
    """List FleetSimulations once where kopf will watch them, or say what is wrong."""
    server = credentials.info.server
    for namespace in scopes:
        try:
            async with asyncio.timeout(STARTUP_CHECK_TIMEOUT_S):
                await _list_once(client, namespace)
        except TimeoutError:
            raise ClusterUnusable(
                f"the Kubernetes API server at {server} did not answer within "
                f"{STARTUP_CHECK_TIMEOUT_S:.0f} s; check the server in {credentials.source}"
            ) from None
        except ApiError as exc:
            raise ClusterUnusable(_explain(exc, server, credentials.source, namespace)) from None
        except (OSError, ssl.SSLError, ValueError) as exc:  # TLS files of the kubeconfig
            raise ClusterUnusable(
                f"cannot set up TLS to {server} from {credentials.source}: {exc}"
            ) from None


class Readiness:
    """/readyz: can the operator list the FleetSimulations it watches, right now?"""

    def __init__(self, client: KubeClient, scopes: list[str | None]) -> None:
        self._client = client
        self._scopes = scopes
        self._last: bool | None = None

    async def __call__(self) -> Mapping[str, bool]:
        problem = None
        for namespace in self._scopes:
            try:
                async with asyncio.timeout(READINESS_CHECK_TIMEOUT_S):
                    await _list_once(self._client, namespace)
            except TimeoutError:
                problem = f"no answer within {READINESS_CHECK_TIMEOUT_S} s"
            except ApiError as exc:
                problem = str(exc)
            if problem is not None:
                break
        ok = problem is None
        if ok != self._last:  # log changes, not every probe
            if ok:
                log.info("ready: FleetSimulations can be listed")
            else:
                log.warning("not ready: cannot list %s: %s", RESOURCE, problem)
            self._last = ok
        return {"fleetsimulations": ok}


async def run_operator(
    settings: OperatorSettings,
    *,
    namespaces: Collection[str] = (),
    clusterwide: bool = False,
    liveness_endpoint: str | None = None,
    stop_flag: Any = None,
    ready_flag: Any = None,
) -> int:
    """Until SIGTERM/SIGINT (main thread) or `stop_flag` (an asyncio or threading Event).

    Before kopf starts, the credentials are found and FleetSimulations listed once:
    without credentials, or with an API server that cannot be used, this raises
    ClusterUnusable (exit code 2, one line) instead of kopf's retries and tracebacks.
    kopf installs its own SIGTERM/SIGINT handlers when it runs in the main thread.
    """
    if clusterwide == bool(namespaces):
        raise ValueError("watch either some namespaces or the whole cluster")
    scopes = _scopes(namespaces, clusterwide)
    runtime = Runtime(settings=settings)
    try:
        credentials = find_credentials(kopf_settings())
        runtime.connection = credentials.info
        await check_cluster(runtime.client, credentials, scopes)
        readiness = Readiness(runtime.client, scopes)
        probes = HttpServer(probes_app(readiness), settings.metrics_host, settings.metrics_port)
        await probes.start()
        try:
            log.info(
                "operator watching %s at %s (%s); metrics on port %d",
                "all namespaces" if clusterwide else ", ".join(namespaces),
                credentials.info.server,
                credentials.source,
                probes.port,
            )
            await kopf.operator(
                registry=build_registry(),
                settings=kopf_settings(),
                memo=kopf.Memo(runtime=runtime),
                standalone=True,  # one replica (Recreate): no peering objects needed
                clusterwide=clusterwide,
                namespaces=list(namespaces),
                liveness_endpoint=liveness_endpoint,
                stop_flag=stop_flag,
                ready_flag=ready_flag,
            )
        finally:
            await probes.stop()
    finally:
        await runtime.client.close()
    log.info("operator stopped")
    return 0

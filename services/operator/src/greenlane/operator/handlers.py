"""The kopf handlers: FleetSimulation → Job, Job progress → FleetSimulation status.

Handler ids are API: kopf keys its progress annotations (greenlane.io/<id>) by
them, so renaming one makes a running operator forget what it already did.

  launch      on create: validate, check the token Secret, create the Job
  relaunch    on a spec change: replace the Job (the same steps as launch)
  resume      on operator start: create the Job if the current generation has none
  cleanup     on delete: delete the Jobs (and so their pods)
  follow-job  on every Job event: copy its progress into the parent's status
  resync      every 30 s while Pending/Running: the same, in case an event was missed
"""

from __future__ import annotations

import datetime
import functools
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import kopf

from greenlane.core.errors import ConfigurationError
from greenlane.operator import metrics
from greenlane.operator import status as st
from greenlane.operator.job import (
    LABEL_GENERATION,
    LABEL_UID,
    SimulatorDefaults,
    build_job,
    job_name,
)
from greenlane.operator.kube import (
    ApiError,
    KubeClient,
    fleetsimulation_path,
    jobs_path,
    pods_path,
    secret_path,
)
from greenlane.operator.metrics import JOBS_CREATED, RECONCILES
from greenlane.operator.settings import OperatorSettings, trace_env
from greenlane.operator.spec import API_VERSION, GROUP, KIND, PLURAL, VERSION, SpecError, parse_spec

log = logging.getLogger(__name__)

FINALIZER: Final = "greenlane.io/fleetsimulation-cleanup"
RESYNC_INTERVAL_S: Final = 30.0
# Delays before kopf retries a handler that hit a transient API problem.
RETRY_DELAY_S: Final = 10.0
FORBIDDEN_RETRY_DELAY_S: Final = 60.0  # RBAC is fixed by a chart upgrade, not in seconds

Handler = Callable[..., Awaitable[None]]


@dataclass
class Runtime:
    """What the handlers share; kopf hands it to them as memo.runtime."""

    settings: OperatorSettings
    connection: kopf.ConnectionInfo | None = None
    client: KubeClient = field(init=False)
    # The operator's own tracing settings, read once, handed to every simulator pod.
    trace_env: tuple[tuple[str, str], ...] = field(default_factory=lambda: trace_env(os.environ))

    def __post_init__(self) -> None:
        self.client = KubeClient(lambda: self.connection)

    @property
    def defaults(self) -> SimulatorDefaults:
        s = self.settings
        return SimulatorDefaults(
            image=s.simulator_image,
            pull_policy=s.simulator_pull_policy,
            target=s.ingestion_addr,
            requests={"cpu": s.simulator_cpu_request, "memory": s.simulator_memory_request},
            limits={"cpu": s.simulator_cpu_limit, "memory": s.simulator_memory_limit},
            pull_secrets=s.simulator_image_pull_secrets,
            env=self.trace_env,
        )


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _runtime(memo: kopf.Memo) -> Runtime:
    runtime = memo.get("runtime")
    if not isinstance(runtime, Runtime):
        raise RuntimeError("the operator was started without its runtime (memo.runtime)")
    return runtime


def counted(handler_id: str) -> Callable[[Handler], Handler]:
    """Count outcomes, and map API failures to kopf's errors: the one edge for them."""

    def decorate(fn: Handler) -> Handler:
        @functools.wraps(fn)
        async def wrapper(**kwargs: Any) -> None:
            outcome = "error"
            try:
                await fn(**kwargs)
                outcome = "ok"
            except kopf.PermanentError:
                outcome = "permanent_error"
                raise
            except kopf.TemporaryError:
                outcome = "temporary_error"
                raise
            except ApiError as exc:
                if not exc.retryable:
                    outcome = "permanent_error"
                    raise kopf.PermanentError(f"the API server refused: {exc}") from exc
                outcome = "temporary_error"
                delay = FORBIDDEN_RETRY_DELAY_S if exc.status == 403 else RETRY_DELAY_S
                raise kopf.TemporaryError(f"API call failed: {exc}", delay=delay) from exc
            finally:
                RECONCILES.labels(handler=handler_id, outcome=outcome).inc()

        return wrapper

    return decorate


async def _patch_status(rt: Runtime, namespace: str, name: str, new: Mapping[str, Any]) -> None:
    await rt.client.merge_patch(fleetsimulation_path(namespace, name, "status"), {"status": new})
    metrics.record_status(namespace, name, new)


async def _delete_stale_jobs(
    rt: Runtime, namespace: str, uid: str, keep_generation: int | None, logger: logging.Logger
) -> int:
    """Delete this FleetSimulation's Jobs of other generations (all when keep is None)."""
    deleted = 0
    for job in await rt.client.list(jobs_path(namespace), {LABEL_UID: uid}):
        meta = job.get("metadata") or {}
        if keep_generation is not None and (meta.get("labels") or {}).get(LABEL_GENERATION) == str(
            keep_generation
        ):
            continue
        if await rt.client.delete(jobs_path(namespace, str(meta.get("name")))):
            logger.info("deleted Job %s and, in the background, its pods", meta.get("name"))
            deleted += 1
    return deleted


async def _reject(
    rt: Runtime,
    body: kopf.Body,
    namespace: str,
    name: str,
    generation: int,
    current: Mapping[str, Any],
    reason: str,
    message: str,
) -> kopf.PermanentError:
    """Mark the spec Failed, say what to fix in an Event; the caller raises the error."""
    new = st.rejected(
        reason=reason,
        message=message,
        generation=generation,
        now=_now(),
        conditions=current.get("conditions") or (),
    )
    await _patch_status(rt, namespace, name, new)
    kopf.event(body, type="Warning", reason=reason, message=message)
    return kopf.PermanentError(message)


async def _launch(
    *,
    body: kopf.Body,
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    namespace: str,
    name: str,
    uid: str,
    memo: kopf.Memo,
    logger: logging.Logger,
    **_: Any,
) -> None:
    """Make the Job of the current generation exist, exactly once; shared by three handlers."""
    rt = _runtime(memo)
    generation = int(meta.get("generation") or 1)
    current: Mapping[str, Any] = dict(status)
    if current.get("observedGeneration") == generation and current.get("phase") in st.TERMINAL:
        logger.info("generation %d already ran (%s); nothing to do", generation, current["phase"])
        return

    # The rule: a FleetSimulation has at most one Job, that of its current generation.
    await _delete_stale_jobs(rt, namespace, uid, generation, logger)

    try:
        parsed = parse_spec(dict(spec))
    except SpecError as exc:
        raise await _reject(
            rt, body, namespace, name, generation, current, exc.reason, str(exc)
        ) from None

    ref = parsed.token_secret_ref
    secret = await rt.client.get(secret_path(namespace, ref.name))
    if secret is None:
        message = (
            f"spec.tokenSecretRef: Secret {ref.name!r} not found in namespace {namespace!r}; "
            f"create it (kubectl -n {namespace} create secret generic {ref.name} "
            f"--from-literal={ref.key}=<token>) or point spec.tokenSecretRef.name at an "
            "existing one; then change the spec, or delete and re-apply the FleetSimulation"
        )
        raise await _reject(
            rt, body, namespace, name, generation, current, "SecretNotFound", message
        )
    if ref.key not in (secret.get("data") or {}) and ref.key not in (
        secret.get("stringData") or {}
    ):
        message = (
            f"spec.tokenSecretRef: Secret {ref.name!r} has no key {ref.key!r}; add it or set "
            "spec.tokenSecretRef.key to the key that holds the API token"
        )
        raise await _reject(
            rt, body, namespace, name, generation, current, "SecretKeyMissing", message
        )

    job = job_name(name, generation)
    existing = await rt.client.get(jobs_path(namespace, job))
    if existing is not None:
        if (existing.get("metadata", {}).get("labels") or {}).get(LABEL_UID) == uid:
            logger.info("Job %s already exists", job)
            return
        # A FleetSimulation of the same name was deleted and re-created: wait for its Job.
        raise kopf.TemporaryError(
            f"Job {job} still belongs to an earlier FleetSimulation {name!r}", delay=RETRY_DELAY_S
        )

    manifest = build_job(
        name=name,
        namespace=namespace,
        uid=uid,
        generation=generation,
        spec=parsed,
        defaults=rt.defaults,
    )
    kopf.adopt(manifest, owner=body, nested="spec.template")

    # Status first: Job events that follow must find observedGeneration already moved on.
    await _patch_status(
        rt,
        namespace,
        name,
        st.launched(
            job=job,
            generation=generation,
            parallelism=parsed.parallelism,
            now=_now(),
            conditions=current.get("conditions") or (),
        ),
    )
    try:
        await rt.client.create(jobs_path(namespace), manifest)
    except ApiError as exc:
        if exc.status == 409:
            logger.info("Job %s was created concurrently", job)
            return
        if not exc.retryable:
            raise await _reject(
                rt,
                body,
                namespace,
                name,
                generation,
                current,
                "JobRejected",
                f"the API server refused the Job: {exc.message}",
            ) from exc
        raise
    JOBS_CREATED.inc()
    kopf.event(
        body,
        type="Normal",
        reason="JobCreated",
        message=f"Job {job}: {parsed.cars} cars in {parsed.parallelism} pods",
    )
    logger.info("created Job %s: %d cars in %d pods", job, parsed.cars, parsed.parallelism)


async def _sync(
    rt: Runtime, namespace: str, parent_name: str, job: Mapping[str, Any], logger: logging.Logger
) -> None:
    """Copy a Job's progress into its FleetSimulation's status (when it is the current Job)."""
    parent = await rt.client.get(fleetsimulation_path(namespace, parent_name))
    if parent is None:
        return
    labels = (job.get("metadata") or {}).get("labels") or {}
    if labels.get(LABEL_UID) != (parent.get("metadata") or {}).get("uid"):
        return  # a Job of an earlier FleetSimulation with the same name
    current: Mapping[str, Any] = parent.get("status") or {}
    generation = current.get("observedGeneration")
    if not isinstance(generation, int) or labels.get(LABEL_GENERATION) != str(generation):
        return  # a stale Job on its way out
    parallelism = int((parent.get("spec") or {}).get("parallelism") or 1)
    job_status: Mapping[str, Any] = job.get("status") or {}
    progress: Mapping[str, Any] = current.get("progress") or {}
    finished = (job_status.get("succeeded") or 0, job_status.get("failed") or 0)
    terminal = st.phase_of(job_status) in st.TERMINAL
    if terminal or finished != (progress.get("succeeded") or 0, progress.get("failed") or 0):
        # Pods finished since the last look: read their summaries (one list call).
        pods = await rt.client.list(
            pods_path(namespace), {LABEL_UID: labels[LABEL_UID], LABEL_GENERATION: str(generation)}
        )
        sent, accepted, reported = st.summaries(pods)
    else:
        sent = int(progress.get("sent") or 0)
        accepted = int(progress.get("accepted") or 0)
        reported = int(progress.get("reportedPods") or 0)
    new = st.from_job(
        current=current,
        job=job,
        parallelism=parallelism,
        generation=generation,
        sent=sent,
        accepted=accepted,
        reported=reported,
        now=_now(),
    )
    if st.differs(current, new):
        await _patch_status(rt, namespace, parent_name, new)
        if new["phase"] != current.get("phase"):
            logger.info("%s/%s is %s: %s", namespace, parent_name, new["phase"], new["message"])


def _owner_name(job: Mapping[str, Any]) -> str | None:
    for ref in (job.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("kind") == KIND and ref.get("apiVersion") == API_VERSION:
            return str(ref.get("name"))
    return None


SERVICE_ACCOUNT_TOKEN: Final = "/var/run/secrets/kubernetes.io/serviceaccount/token"
HOW_TO_LOG_IN: Final = (
    "set KUBECONFIG to a kubeconfig file, or run in a pod with its service account token "
    f"mounted ({SERVICE_ACCOUNT_TOKEN}, automountServiceAccountToken: true)"
)


class ClusterUnusable(ConfigurationError):
    """The Kubernetes API cannot be used as configured; the message says what to fix.

    A ConfigurationError, so the operator exits with code 2 and this one line.
    """


@dataclass(frozen=True)
class Credentials:
    info: kopf.ConnectionInfo
    source: str  # where they came from, for messages: never the secret itself


def find_credentials(settings: kopf.OperatorSettings) -> Credentials:
    """The documented order: $KUBECONFIG, else the pod's service account, else ~/.kube/config.

    kopf's own minimal logins (no client library needed); a file that cannot be
    used, or no credentials at all, is a ClusterUnusable saying how to log in.
    """
    kubeconfig = os.environ.get("KUBECONFIG")
    source = f"KUBECONFIG={kubeconfig}" if kubeconfig else "~/.kube/config"
    info: kopf.ConnectionInfo | None = None
    if not kubeconfig:
        info = kopf.login_with_service_account(settings=settings)
        source = "the service account token" if info is not None else source
    if info is None:
        try:
            info = kopf.login_with_kubeconfig(settings=settings)
        except Exception as exc:  # noqa: BLE001 - any flaw of the file is the user's to fix
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line
            raise ClusterUnusable(
                f"cannot use {source} to log in to Kubernetes ({reason}); {HOW_TO_LOG_IN}"
            ) from None
    if info is None:
        raise ClusterUnusable(
            "no Kubernetes credentials: KUBECONFIG is not set, no service account token is "
            f"mounted and there is no ~/.kube/config; {HOW_TO_LOG_IN}"
        )
    if not info.server:
        raise ClusterUnusable(f"{source} names no API server (clusters[].cluster.server)")
    return Credentials(info, source)


def login(memo: kopf.Memo, settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo | None:
    """kopf's login handler: the same credentials as the start-up check, shared with KubeClient."""
    try:
        info: kopf.ConnectionInfo | None = find_credentials(settings).info
    except ClusterUnusable as exc:
        log.error("%s", exc)  # kopf then reports that it ran out of credentials
        info = None
    _runtime(memo).connection = info
    return info


def build_registry() -> kopf.OperatorRegistry:
    """A fresh registry with every handler; one per operator run (tests run several)."""
    registry = kopf.OperatorRegistry()
    fsim = (GROUP, VERSION, PLURAL)

    kopf.on.login(registry=registry, id="login")(login)

    launch = counted("launch")(_launch)
    relaunch = counted("relaunch")(_launch)
    resume = counted("resume")(_launch)
    kopf.on.create(*fsim, id="launch", registry=registry)(launch)
    kopf.on.update(*fsim, id="relaunch", field="spec", registry=registry)(relaunch)
    kopf.on.resume(*fsim, id="resume", registry=registry)(resume)

    @counted("cleanup")
    async def cleanup(
        namespace: str, uid: str, memo: kopf.Memo, logger: logging.Logger, **_: Any
    ) -> None:
        await _delete_stale_jobs(_runtime(memo), namespace, uid, None, logger)

    kopf.on.delete(*fsim, id="cleanup", registry=registry)(cleanup)

    @counted("follow-job")
    async def follow_job(
        event: Mapping[str, Any],
        body: kopf.Body,
        namespace: str,
        memo: kopf.Memo,
        logger: logging.Logger,
        **_: Any,
    ) -> None:
        if event.get("type") == "DELETED":
            return
        parent = _owner_name(body)
        if parent is not None:
            await _sync(_runtime(memo), namespace, parent, body, logger)

    kopf.on.event(
        "batch", "v1", "jobs", id="follow-job", labels={LABEL_UID: kopf.PRESENT}, registry=registry
    )(follow_job)

    @counted("resync")
    async def resync(
        name: str,
        namespace: str,
        status: kopf.Status,
        meta: kopf.Meta,
        memo: kopf.Memo,
        logger: logging.Logger,
        **_: Any,
    ) -> None:
        rt = _runtime(memo)
        job_ref = status.get("jobName")
        if not job_ref or status.get("observedGeneration") != meta.get("generation"):
            return
        job = await rt.client.get(jobs_path(namespace, str(job_ref)))
        if job is not None:
            await _sync(rt, namespace, name, job, logger)

    kopf.timer(
        *fsim,
        id="resync",
        interval=RESYNC_INTERVAL_S,
        initial_delay=RESYNC_INTERVAL_S,
        when=lambda status, **_: status.get("phase") in ("Pending", "Running"),
        registry=registry,
    )(resync)
    return registry


def kopf_settings() -> kopf.OperatorSettings:
    """Our names on kopf's bookkeeping, and no cluster-wide discovery (least privilege)."""
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="greenlane.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="greenlane.io", key="last-handled-configuration"
    )
    # Handler warnings and errors (a retry, a permanent failure) become Kubernetes Events,
    # not every info line; our explicit events (JobCreated, the fixes) always are.
    settings.posting.loggers = True
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "greenlane-operator"
    # The CRD is installed with the chart, before the operator: scanning once at start-up
    # is enough, and needs no cluster-wide permission to watch CRDs.
    settings.scanning.disabled = True
    # Reconnect watches now and then, so a silently dropped connection cannot last.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    return settings

"""The real kopf operator against kmock, a Kubernetes API emulator: Jobs, status, errors, exit.

The operator runs in a thread with its own event loop, exactly as
`python -m greenlane.operator` runs it (run_operator), logged in through a
kubeconfig that points at kmock; the test drives kmock over HTTP like kubectl
would, and feeds Job status changes as the Job controller would.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import kmock
import kubernetes_validate
import pytest
from kubeapi import FSIM, JOBS, NS, SECRET, ApiServer, serve_greenlane, write_kubeconfig
from prometheus_client import REGISTRY

from greenlane.cli.embedded import free_port
from greenlane.operator.handlers import ClusterUnusable
from greenlane.operator.runner import run_operator
from greenlane.operator.settings import OperatorSettings
from greenlane.operator.spec import PLURAL, REGIONS

pytestmark = [pytest.mark.integration, pytest.mark.kmock(cls=ApiServer)]

IMAGE = "greenlane-simulator:test"
DEFAULT_TARGET = "greenlane-ingestion.loadtest.svc:50051"
T = TypeVar("T")


def fsim_url(name: str | None = None, sub: str | None = None) -> str:
    base = f"/apis/greenlane.io/v1alpha1/namespaces/{NS}/fleetsimulations"
    return base + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")


def jobs_url(name: str | None = None, sub: str | None = None) -> str:
    base = f"/apis/batch/v1/namespaces/{NS}/jobs"
    return base + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")


def fleet_simulation(name: str, **spec: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "cars": 10,
        "region": "manhattan",
        "updateIntervalSeconds": 2,
        "durationSeconds": 60,
        "parallelism": 1,
        "tokenSecretRef": {"name": SECRET, "key": "api-token"},
    }
    values.update(spec)
    return {
        "apiVersion": "greenlane.io/v1alpha1",
        "kind": "FleetSimulation",
        "metadata": {"name": name, "namespace": NS},
        "spec": values,
    }


async def eventually(check: Callable[[], T | None], what: str, within: float = 15.0) -> T:
    """Poll until check() is truthy; the operator works in its own thread meanwhile."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def stored(api: kmock.KubernetesEmulator, resource: str, name: str) -> dict[str, Any] | None:
    """The object as the API server holds it now, or None."""
    for (res, ns, obj_name), obj in api.objects.items():
        if res == resource and (ns, obj_name) == (NS, name) and not obj.deleted:
            return dict(obj.raw)
    return None


def watching(api: kmock.KubernetesEmulator, resource: str) -> bool:
    return any(r.resource == resource and r.params.get("watch") == "true" for r in api)


def posted(api: kmock.KubernetesEmulator, resource: kmock.resource) -> list[dict[str, Any]]:
    return [r.data for r in api["post", resource]]


def events(api: kmock.KubernetesEmulator) -> list[dict[str, Any]]:
    return posted(api, kmock.resource("", "v1", "events"))


class OperatorThread:
    """run_operator() in a thread of its own, stopped by a flag (signals need the main thread)."""

    def __init__(self, settings: OperatorSettings) -> None:
        self.settings = settings
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.exit_code: int | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="operator", daemon=True)

    def _main(self) -> None:
        try:
            self.exit_code = asyncio.run(
                run_operator(
                    self.settings,
                    namespaces=[NS],
                    liveness_endpoint=None,
                    stop_flag=self.stop,
                    ready_flag=self.ready,
                )
            )
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self.stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the operator did not stop within {timeout} s")


@pytest.fixture
def api(kmock: kmock.KubernetesEmulator) -> kmock.KubernetesEmulator:
    return serve_greenlane(kmock)


@pytest.fixture
def kubeconfig(api: kmock.KubernetesEmulator, tmp_path: Path) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", str(api.url).rstrip("/"))


@pytest.fixture
def settings() -> OperatorSettings:
    return OperatorSettings(  # type: ignore[call-arg]  # pydantic defaults mypy cannot see
        metrics_host="127.0.0.1",
        metrics_port=free_port(),
        simulator_image=IMAGE,
        ingestion_addr=DEFAULT_TARGET,
    )


@pytest.fixture
async def operator(
    api: kmock.KubernetesEmulator,
    kubeconfig: Path,
    settings: OperatorSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    running = await start_operator(api, settings)
    yield running
    stop_operator(running)


async def start_operator(api: kmock.KubernetesEmulator, settings: OperatorSettings) -> Any:
    running = OperatorThread(settings)
    running.start()
    await eventually(running.ready.is_set, "the operator to start")
    # kmock's watches replay every existing object (a real API server resumes from the
    # list's resourceVersion): create objects only once both watches are open.
    await eventually(lambda: watching(api, FSIM) and watching(api, JOBS), "the watches")
    return running


def stop_operator(running: OperatorThread) -> None:
    running.join(15.0)
    assert running.error is None
    assert running.exit_code == 0


async def create(api: kmock.KubernetesEmulator, url: str, obj: dict[str, Any]) -> None:
    async with api.post(url, json=obj) as resp:
        assert resp.status < 300, await resp.text()


async def patch(api: kmock.KubernetesEmulator, url: str, body: dict[str, Any]) -> None:
    async with api.patch(
        url, json=body, headers={"Content-Type": "application/merge-patch+json"}
    ) as resp:
        assert resp.status < 300, await resp.text()


async def test_created_fleetsimulation_gets_a_valid_job_that_matches_its_spec(
    api: kmock.KubernetesEmulator, operator: OperatorThread
) -> None:
    created = REGISTRY.get_sample_value("greenlane_operator_jobs_created_total") or 0.0
    sim = fleet_simulation(
        "smoke",
        cars=10,
        parallelism=3,
        seed=7,
        updateIntervalSeconds=0.5,
        durationSeconds=90,
        target="ingestion.example:50051",
    )
    await create(api, fsim_url(), sim)

    job = await eventually(lambda: stored(api, JOBS, "smoke-g1"), "the Job")
    for version in ("1.29.0", "1.35.0"):
        kubernetes_validate.validate(job, version, strict=True)
    assert len(posted(api, kmock.resource("batch", "v1", "jobs"))) == 1

    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 3
    assert spec["activeDeadlineSeconds"] > 90
    (owner,) = job["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "greenlane.io/v1alpha1",
        "kind": "FleetSimulation",
        "name": "smoke",
        "uid": stored(api, FSIM, "smoke")["metadata"]["uid"],  # type: ignore[index]
        "controller": True,
        "blockOwnerDeletion": True,
    }
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["image"] == IMAGE
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    args = container["args"]

    def arg(flag: str) -> str:
        for i, piece in enumerate(args):
            if piece == flag:
                return str(args[i + 1])
            if str(piece).startswith(flag + "="):
                return str(piece).split("=", 1)[1]
        raise KeyError(flag)

    south, west, north, east = REGIONS["manhattan"]
    assert arg("--cars") == "10"
    assert arg("--shard") == "$(JOB_COMPLETION_INDEX)/3"
    assert arg("--interval") == "0.5"
    assert arg("--duration") == "90"
    assert arg("--seed") == "7"
    assert arg("--target") == "ingestion.example:50051"
    assert [float(v) for v in arg("--bbox").split(",")] == [south, west, north, east]
    assert arg("--car-prefix") == "smoke"
    env = {e["name"]: e for e in container["env"]}
    assert env["GREENLANE_API_TOKENS"]["valueFrom"] == {
        "secretKeyRef": {"name": SECRET, "key": "api-token"}
    }
    assert env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    )

    status = await eventually(
        lambda: (stored(api, FSIM, "smoke") or {}).get("status", {}).get("phase"), "a phase"
    )
    assert status == "Pending"
    sim_now = stored(api, FSIM, "smoke")
    assert sim_now is not None
    assert sim_now["status"]["observedGeneration"] == 1
    assert sim_now["status"]["jobName"] == "smoke-g1"
    assert "greenlane.io/fleetsimulation-cleanup" in sim_now["metadata"]["finalizers"]
    await eventually(
        lambda: [e for e in events(api) if e["reason"] == "JobCreated"], "a JobCreated event"
    )
    assert REGISTRY.get_sample_value("greenlane_operator_jobs_created_total") == created + 1


def phase_of(api: kmock.KubernetesEmulator, name: str) -> str | None:
    phase = (stored(api, FSIM, name) or {}).get("status", {}).get("phase")
    return None if phase is None else str(phase)


def condition(api: kmock.KubernetesEmulator, name: str, kind: str) -> dict[str, Any]:
    conditions = (stored(api, FSIM, name) or {}).get("status", {}).get("conditions", [])
    return next(c for c in conditions if c["type"] == kind)


def summary_pod(job: str, index: int, uid: str, sent: int, accepted: int) -> dict[str, Any]:
    """A finished simulator pod as the kubelet reports it: the summary as termination message."""
    summary = {"result": "completed", "cars": 5, "sent": sent, "accepted": accepted}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{job}-{index}-abcde",
            "namespace": NS,
            "labels": {
                "greenlane.io/fleetsimulation-uid": uid,
                "greenlane.io/generation": "1",
                "batch.kubernetes.io/job-name": job,
            },
        },
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [
                {
                    "name": "simulator",
                    "state": {"terminated": {"exitCode": 0, "message": json.dumps(summary)}},
                }
            ],
        },
    }


async def test_status_follows_the_job_from_pending_to_succeeded_with_the_pods_sent_counts(
    api: kmock.KubernetesEmulator, operator: OperatorThread
) -> None:
    await create(api, fsim_url(), fleet_simulation("follow", cars=10, parallelism=2))
    await eventually(lambda: stored(api, JOBS, "follow-g1"), "the Job")
    assert await eventually(lambda: phase_of(api, "follow"), "a phase") == "Pending"

    # The Job controller starts the pods, then they become ready.
    await patch(api, jobs_url("follow-g1", "status"), {"status": {"active": 2, "ready": 0}})
    await asyncio.sleep(0.3)
    assert phase_of(api, "follow") == "Pending"
    await patch(
        api,
        jobs_url("follow-g1", "status"),
        {"status": {"active": 2, "ready": 2, "startTime": "2026-01-01T00:00:05Z"}},
    )
    await eventually(lambda: phase_of(api, "follow") == "Running", "phase Running")
    running = stored(api, FSIM, "follow")
    assert running is not None
    assert running["status"]["progress"]["ready"] == 2
    assert running["status"]["startTime"] == "2026-01-01T00:00:05Z"
    assert condition(api, "follow", "Running")["status"] == "True"

    # Both pods finish and leave their summaries; then the Job completes.
    uid = running["metadata"]["uid"]
    await create(api, f"/api/v1/namespaces/{NS}/pods", summary_pod("follow-g1", 0, uid, 150, 149))
    await create(api, f"/api/v1/namespaces/{NS}/pods", summary_pod("follow-g1", 1, uid, 120, 120))
    await patch(
        api,
        jobs_url("follow-g1", "status"),
        {
            "status": {
                "active": 0,
                "ready": 0,
                "succeeded": 2,
                "completionTime": "2026-01-01T00:01:10Z",
                "conditions": [{"type": "Complete", "status": "True"}],
            }
        },
    )
    await eventually(lambda: phase_of(api, "follow") == "Succeeded", "phase Succeeded")
    done = stored(api, FSIM, "follow")
    assert done is not None
    progress = done["status"]["progress"]
    assert (progress["succeeded"], progress["reportedPods"]) == (2, 2)
    assert (progress["sent"], progress["accepted"]) == (270, 269)
    assert done["status"]["completionTime"] == "2026-01-01T00:01:10Z"
    assert condition(api, "follow", "Complete")["status"] == "True"
    assert condition(api, "follow", "Running")["status"] == "False"
    assert condition(api, "follow", "Failed")["status"] == "False"


async def test_a_failed_job_fails_the_simulation_with_the_jobs_reason(
    api: kmock.KubernetesEmulator, operator: OperatorThread
) -> None:
    await create(api, fsim_url(), fleet_simulation("crashy"))
    await eventually(lambda: stored(api, JOBS, "crashy-g1"), "the Job")
    await patch(
        api,
        jobs_url("crashy-g1", "status"),
        {
            "status": {
                "active": 0,
                "failed": 4,
                "conditions": [
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit",
                    }
                ],
            }
        },
    )
    await eventually(lambda: phase_of(api, "crashy") == "Failed", "phase Failed")
    failed = condition(api, "crashy", "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "BackoffLimitExceeded")
    assert "backoff limit" in failed["message"]


async def test_unknown_region_is_a_permanent_error_with_an_event_naming_the_fix_and_no_job(
    api: kmock.KubernetesEmulator, operator: OperatorThread
) -> None:
    await create(api, fsim_url(), fleet_simulation("lost", region="atlantis"))
    warning = await eventually(
        lambda: [e for e in events(api) if e["reason"] == "UnknownRegion"], "an UnknownRegion event"
    )
    assert warning[0]["type"] == "Warning"
    assert warning[0]["involvedObject"]["name"] == "lost"
    message = warning[0]["message"]
    assert "spec.region" in message and "atlantis" in message
    assert all(region in message for region in REGIONS)
    await eventually(lambda: phase_of(api, "lost") == "Failed", "phase Failed")
    assert condition(api, "lost", "Accepted")["reason"] == "UnknownRegion"
    # kopf reports the permanent failure too, and does not retry it.
    await eventually(
        lambda: [e for e in events(api) if "failed permanently" in e["message"]], "kopf's event"
    )
    await asyncio.sleep(0.5)
    assert posted(api, kmock.resource("batch", "v1", "jobs")) == []
    assert len([e for e in events(api) if e["reason"] == "UnknownRegion"]) == 1


async def test_missing_token_secret_is_a_permanent_error_with_an_event_naming_the_fix(
    api: kmock.KubernetesEmulator, operator: OperatorThread
) -> None:
    sim = fleet_simulation("nosecret", tokenSecretRef={"name": "absent", "key": "api-token"})
    await create(api, fsim_url(), sim)
    warning = await eventually(
        lambda: [e for e in events(api) if e["reason"] == "SecretNotFound"],
        "a SecretNotFound event",
    )
    message = warning[0]["message"]
    assert "spec.tokenSecretRef" in message
    assert f"kubectl -n {NS} create secret generic absent" in message
    await eventually(lambda: phase_of(api, "nosecret") == "Failed", "phase Failed")
    await asyncio.sleep(0.5)
    assert posted(api, kmock.resource("batch", "v1", "jobs")) == []


async def test_a_spec_change_replaces_the_job_and_starts_over(
    api: kmock.KubernetesEmulator, operator: OperatorThread
) -> None:
    await create(api, fsim_url(), fleet_simulation("change", cars=10))
    await eventually(lambda: stored(api, JOBS, "change-g1"), "the first Job")
    await patch(api, jobs_url("change-g1", "status"), {"status": {"active": 1, "ready": 1}})
    await eventually(lambda: phase_of(api, "change") == "Running", "phase Running")

    await patch(api, fsim_url("change"), {"spec": {"cars": 40, "parallelism": 4}})
    new_job = await eventually(lambda: stored(api, JOBS, "change-g2"), "the second Job")
    args = new_job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--cars") + 1] == "40"
    assert new_job["spec"]["parallelism"] == 4
    await eventually(lambda: stored(api, JOBS, "change-g1") is None, "the old Job deleted")
    (deletion,) = list(api["delete", kmock.resource("batch", "v1", "jobs")])
    assert deletion.name == "change-g1"
    assert deletion.params["propagationPolicy"] == "Background"
    status = await eventually(
        lambda: (
            (stored(api, FSIM, "change") or {}).get("status", {}).get("observedGeneration") == 2
            and stored(api, FSIM, "change")
        ),
        "observedGeneration 2",
    )
    assert status["status"]["phase"] == "Pending"
    assert status["status"]["jobName"] == "change-g2"
    assert status["status"]["progress"]["pods"] == 4

    # The new Job drives the status from now on.
    await patch(api, jobs_url("change-g2", "status"), {"status": {"active": 4, "ready": 4}})
    await eventually(lambda: phase_of(api, "change") == "Running", "phase Running again")


async def test_deleting_the_simulation_deletes_its_job_and_releases_the_finalizer(
    api: kmock.KubernetesEmulator, operator: OperatorThread
) -> None:
    await create(api, fsim_url(), fleet_simulation("doomed"))
    await eventually(lambda: stored(api, JOBS, "doomed-g1"), "the Job")
    await eventually(
        lambda: (
            "greenlane.io/fleetsimulation-cleanup"
            in (stored(api, FSIM, "doomed") or {}).get("metadata", {}).get("finalizers", [])
        ),
        "the finalizer",
    )
    async with api.delete(fsim_url("doomed")) as resp:
        assert resp.status < 300
    await eventually(lambda: stored(api, FSIM, "doomed") is None, "the FleetSimulation gone")
    assert stored(api, JOBS, "doomed-g1") is None
    (deletion,) = list(api["delete", kmock.resource("batch", "v1", "jobs")])
    assert deletion.params["propagationPolicy"] == "Background"


async def test_metrics_count_reconciles_by_handler_and_outcome(
    api: kmock.KubernetesEmulator, operator: OperatorThread, settings: OperatorSettings
) -> None:
    def launches(outcome: str) -> float:
        value = REGISTRY.get_sample_value(
            "greenlane_operator_reconciles_total", {"handler": "launch", "outcome": outcome}
        )
        return value or 0.0

    ok, permanent = launches("ok"), launches("permanent_error")
    await create(api, fsim_url(), fleet_simulation("counted"))
    await create(api, fsim_url(), fleet_simulation("miscounted", region="nowhere"))
    await eventually(lambda: launches("ok") == ok + 1, "one successful launch")
    await eventually(lambda: launches("permanent_error") == permanent + 1, "one failed launch")

    url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    assert 'greenlane_operator_reconciles_total{handler="launch",outcome="ok"}' in body
    assert "greenlane_operator_jobs_created_total" in body


async def test_a_restarted_operator_resumes_what_has_no_job_and_leaves_finished_runs_alone(
    api: kmock.KubernetesEmulator,
    kubeconfig: Path,
    settings: OperatorSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What an earlier operator left: both handled (finalizer, last-handled configuration),
    # one finished, one whose Job was never created (the operator died in between).
    for name, status in (
        ("finished", {"phase": "Succeeded", "observedGeneration": 1}),
        ("orphan", {"phase": "Pending", "observedGeneration": 1}),
    ):
        sim = fleet_simulation(name)
        sim["metadata"]["finalizers"] = ["greenlane.io/fleetsimulation-cleanup"]
        sim["metadata"]["annotations"] = {
            "greenlane.io/last-handled-configuration": json.dumps({"spec": sim["spec"]}) + "\n"
        }
        sim["status"] = status
        await create(api, fsim_url(), sim)

    def runs(handler: str) -> float:
        labels = {"handler": handler, "outcome": "ok"}
        return REGISTRY.get_sample_value("greenlane_operator_reconciles_total", labels) or 0.0

    launches, resumes = runs("launch"), runs("resume")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    running = await start_operator(api, settings)
    try:
        await eventually(lambda: stored(api, JOBS, "orphan-g1"), "the orphan's Job")
        await eventually(lambda: runs("resume") >= resumes + 2, "both resumed")
        await asyncio.sleep(0.5)
        assert stored(api, JOBS, "finished-g1") is None
        assert phase_of(api, "finished") == "Succeeded"
        assert runs("launch") == launches  # resumed, not created anew
    finally:
        stop_operator(running)


def test_operator_help_exits_zero() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "greenlane.operator", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert "--all-namespaces" in done.stdout


async def test_operator_process_exits_cleanly_on_sigterm(
    api: kmock.KubernetesEmulator, kubeconfig: Path
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GREENLANE_")},
        "GREENLANE_LOG_LEVEL": "INFO",
        "KUBECONFIG": str(kubeconfig),
        "GREENLANE_OPERATOR_NAMESPACE": NS,
        "GREENLANE_METRICS_HOST": "127.0.0.1",
        "GREENLANE_METRICS_PORT": str(free_port()),
        "GREENLANE_LIVENESS_ENDPOINT": f"http://127.0.0.1:{free_port()}/healthz",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "greenlane.operator",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await eventually(
            lambda: watching(api, FSIM) and watching(api, JOBS), "the watches", within=60
        )
        liveness = env["GREENLANE_LIVENESS_ENDPOINT"]
        health = await asyncio.to_thread(lambda: urllib.request.urlopen(liveness, timeout=5).status)
        assert health == 200
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    code, output = proc.returncode, out.decode()
    assert code == 0, output
    assert "Signal SIGTERM is received" in output
    assert "Traceback" not in output


async def test_the_job_pulls_like_the_chart_says_and_the_charts_role_covers_its_owner_reference(
    api: kmock.KubernetesEmulator, kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The operator is configured exactly as the chart's Deployment configures it with a
    # private registry (ci/ha-values.yaml); the Job it then writes is checked against the
    # chart's Role: blockOwnerDeletion needs update on fleetsimulations/finalizers.
    from chart.helm import CHART, render
    from chart.rbac import allows, owner_reference_needs

    rendered = render("ha")
    deployment = rendered.named("Deployment", "greenlane-operator")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    for env in container["env"]:
        if env["name"].startswith("GREENLANE_SIMULATOR_") and "value" in env:
            monkeypatch.setenv(env["name"], env["value"])
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    settings = OperatorSettings(  # type: ignore[call-arg]
        metrics_host="127.0.0.1", metrics_port=free_port(), ingestion_addr=DEFAULT_TARGET
    )
    running = await start_operator(api, settings)
    try:
        await create(api, fsim_url(), fleet_simulation("private"))
        job = await eventually(lambda: stored(api, JOBS, "private-g1"), "the Job")
    finally:
        stop_operator(running)

    pod = job["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "ghcr-pull"}]
    assert pod["containers"][0]["image"] == "ghcr.io/greenlane/greenlane-simulator:0.1.0"
    kubernetes_validate.validate(job, "1.35.0", strict=True)
    role = rendered.named("Role", "greenlane-operator")
    needs = [
        n
        for ref in job["metadata"]["ownerReferences"]
        for n in owner_reference_needs(ref, CHART / "crds")
    ]
    assert needs, "kopf.adopt() no longer blocks owner deletion: revisit the Role"
    assert [n for n in needs if not allows(role["rules"], *n)] == []


# ---------------------------------------------------------------- start-up errors, readiness


def run_operator_process(env: dict[str, str], home: Path) -> subprocess.CompletedProcess[str]:
    """`python -m greenlane.operator` as a pod would run it, with only `env` set."""
    clean = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),  # no ~/.kube/config unless the test writes one
        "GREENLANE_OPERATOR_NAMESPACE": NS,
        "GREENLANE_METRICS_HOST": "127.0.0.1",
        "GREENLANE_METRICS_PORT": str(free_port()),
        "GREENLANE_LIVENESS_ENDPOINT": "none",
    }
    return subprocess.run(
        [sys.executable, "-m", "greenlane.operator"],
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_credentials_the_operator_exits_2_with_one_line_saying_how_to_log_in(
    tmp_path: Path,
) -> None:
    done = run_operator_process({}, tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: no Kubernetes credentials")
    assert "set KUBECONFIG" in line and "service account token" in line


def test_an_unusable_kubeconfig_exits_2_with_one_line_naming_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text("clusters: [\n")
    done = run_operator_process({"KUBECONFIG": str(broken)}, tmp_path)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert f"cannot use KUBECONFIG={broken}" in line and "set KUBECONFIG" in line


def test_an_unreachable_api_server_exits_2_with_one_line_naming_it(tmp_path: Path) -> None:
    server = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server, token="not-a-real-token")
    done = run_operator_process({"KUBECONFIG": str(kubeconfig)}, tmp_path)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"error: cannot reach the Kubernetes API server at {server}")
    assert f"KUBECONFIG={kubeconfig}" in line
    assert "not-a-real-token" not in done.stderr


def forbidden(verb: str) -> dict[str, Any]:
    """The Status a real API server answers when RBAC refuses a request."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": "Forbidden",
        "code": 403,
        "message": f'fleetsimulations.greenlane.io is forbidden: cannot {verb} resource "{PLURAL}"',
    }


async def test_an_api_server_that_refuses_the_list_stops_the_start_with_the_rbac_fix(
    api: kmock.KubernetesEmulator,
    kubeconfig: Path,
    settings: OperatorSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fsims = kmock.resource("greenlane.io", "v1alpha1", "fleetsimulations")
    api["list", fsims] << 403 << forbidden("list")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    running = OperatorThread(settings)
    running.start()
    # kmock answers in this test's event loop: wait without blocking it.
    await eventually(lambda: running.error or running.exit_code is not None, "the operator to stop")
    running.join(5.0)
    assert isinstance(running.error, ClusterUnusable), running.error
    assert "may not list fleetsimulations.greenlane.io in namespace 'loadtest'" in str(
        running.error
    )
    assert not watching(api, FSIM)  # kopf never started


async def readyz(settings: OperatorSettings) -> tuple[int, dict[str, Any]]:
    def get() -> tuple[int, dict[str, Any]]:
        url = f"http://127.0.0.1:{settings.metrics_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    return await asyncio.to_thread(get)


async def test_readyz_says_whether_the_operator_can_list_fleetsimulations(
    api: kmock.KubernetesEmulator, operator: OperatorThread, settings: OperatorSettings
) -> None:
    assert await readyz(settings) == (
        200,
        {"status": "ready", "checks": {"fleetsimulations": True}},
    )
    lists = kmock.resource("greenlane.io", "v1alpha1", "fleetsimulations")
    asked = len(list(api["list", lists]))
    # Now the API server refuses the list (an RBAC change, an outage behind a proxy).
    api["list", lists] << 403 << forbidden("list")
    assert await readyz(settings) == (
        503,
        {"status": "not ready", "checks": {"fleetsimulations": False}},
    )
    assert len(list(api["list", lists])) > asked  # each probe asked the API server

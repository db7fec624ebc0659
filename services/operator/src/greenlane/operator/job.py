"""The simulator Job of a FleetSimulation: names, labels and the manifest, pure functions.

One Indexed Job per FleetSimulation generation: `parallelism` pods run at once,
each the simulator with `--shard $(JOB_COMPLETION_INDEX)/<parallelism>`, so pod i
drives the i-th balanced slice of the fleet (see the simulator's `FleetConfig.shard`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from greenlane.operator.spec import FleetSimulationSpec, ResourceList

LABEL_NAME: Final = "greenlane.io/fleetsimulation"
LABEL_UID: Final = "greenlane.io/fleetsimulation-uid"
LABEL_GENERATION: Final = "greenlane.io/generation"
COMPLETION_INDEX_ANNOTATION: Final = "batch.kubernetes.io/job-completion-index"
CONTAINER: Final = "simulator"
# The simulator writes its JSON summary here; Kubernetes keeps it (up to 4 KiB) in
# the pod's status as the container's termination message, where the operator reads it.
SUMMARY_PATH: Final = "/dev/termination-log"
SIMULATOR_UID: Final = 10001
# Pods are named <job>-<index>-<random>; their hostname <job>-<index> must fit 63 characters.
MAX_JOB_NAME: Final = 52
MAX_CAR_PREFIX: Final = 40
BACKOFF_LIMIT: Final = 3
# A run with a duration is stopped by Kubernetes if it overruns it by this much.
DEADLINE_MARGIN_S: Final = 600


@dataclass(frozen=True)
class SimulatorDefaults:
    """What the operator's settings decide for every Job."""

    image: str
    pull_policy: str
    target: str
    requests: Mapping[str, str]
    limits: Mapping[str, str]
    # Secrets the kubelet pulls the image with (a private registry): the chart passes its
    # global.imagePullSecrets, the same the operator's own pod uses.
    pull_secrets: tuple[str, ...] = ()
    # More variables for every simulator pod: the operator's own tracing settings
    # (settings.TRACE_VARIABLES), so a FleetSimulation's cars trace like the platform.
    env: tuple[tuple[str, str], ...] = ()


def _digest(text: str, size: int = 6) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def _fit(text: str, limit: int) -> str:
    """text if short enough, else a prefix plus a hash of the whole, so names stay unique."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 7].rstrip('-.')}-{_digest(text)}"


def label_value(text: str) -> str:
    """A label value (at most 63 characters) that still tells objects apart."""
    return _fit(text, 63)


def job_name(name: str, generation: int) -> str:
    """`<name>-g<generation>`, shortened with a hash; a DNS label (pod hostnames need one)."""
    suffix = f"-g{generation}"
    base = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-") or "fsim"
    return _fit(base, MAX_JOB_NAME - len(suffix)).rstrip("-") + suffix


def car_prefix(name: str) -> str:
    """Car ids are `<prefix>-<n>`; a car id has at most 64 characters."""
    return _fit(name, MAX_CAR_PREFIX)


def _num(value: float) -> str:
    # repr, not :g: six significant digits would move (or invert) a narrow box.
    return repr(float(value))


def run_args(name: str, spec: FleetSimulationSpec) -> list[str]:
    """What to simulate, as simulator flags; shared with `greenlane simulate -f`."""
    args = [
        "--cars",
        str(spec.cars),
        "--interval",
        _num(spec.update_interval_seconds),
        "--car-prefix",
        car_prefix(name),
    ]
    # One piece, `--bbox=…`: a south edge like -33.9 would otherwise read as a flag.
    args.append(f"--bbox={spec.bbox().as_arg()}")
    if spec.duration_seconds is not None:
        args += ["--duration", str(spec.duration_seconds)]
    if spec.seed is not None:
        args += ["--seed", str(spec.seed)]
    return args


def simulator_args(name: str, spec: FleetSimulationSpec, default_target: str) -> list[str]:
    """The pod's command line; $(JOB_COMPLETION_INDEX) is expanded by the kubelet."""
    return [
        *run_args(name, spec),
        "--shard",
        f"$(JOB_COMPLETION_INDEX)/{spec.parallelism}",
        "--target",
        spec.target or default_target,
        "--summary-file",
        SUMMARY_PATH,
        "--json",
        "--no-progress",
    ]


def _resources(spec: FleetSimulationSpec, defaults: SimulatorDefaults) -> dict[str, Any]:
    def merged(base: Mapping[str, str], override: ResourceList | None) -> dict[str, Any]:
        out: dict[str, Any] = dict(base)
        if override is not None:
            out.update(override.model_dump(exclude_none=True))
        return out

    res = spec.resources
    return {
        "requests": merged(defaults.requests, res.requests if res else None),
        "limits": merged(defaults.limits, res.limits if res else None),
    }


def labels(name: str, uid: str, generation: int) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "greenlane-simulator",
        "app.kubernetes.io/component": "simulator",
        "app.kubernetes.io/part-of": "greenlane",
        "app.kubernetes.io/managed-by": "greenlane-operator",
        LABEL_NAME: label_value(name),
        LABEL_UID: uid,
        LABEL_GENERATION: str(generation),
    }


def build_job(
    *,
    name: str,
    namespace: str,
    uid: str,
    generation: int,
    spec: FleetSimulationSpec,
    defaults: SimulatorDefaults,
) -> dict[str, Any]:
    """The Job manifest, before kopf.adopt() adds the owner reference."""
    pod_labels = labels(name, uid, generation)
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(name, generation),
            "namespace": namespace,
            "labels": dict(pod_labels),
        },
        "spec": {
            "completionMode": "Indexed",
            "completions": spec.parallelism,
            "parallelism": spec.parallelism,
            # Counted over all pods: a few failures mean the load test itself is broken.
            "backoffLimit": BACKOFF_LIMIT,
            "template": {
                "metadata": {"labels": dict(pod_labels)},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": SIMULATOR_UID,
                        "runAsGroup": SIMULATOR_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": CONTAINER,
                            "image": defaults.image,
                            "imagePullPolicy": defaults.pull_policy,
                            "args": simulator_args(name, spec, defaults.target),
                            "env": [
                                # Declared (not only injected by the Job controller) so that
                                # the $(JOB_COMPLETION_INDEX) in args is always expanded.
                                {
                                    "name": "JOB_COMPLETION_INDEX",
                                    "valueFrom": {
                                        "fieldRef": {
                                            "fieldPath": "metadata.annotations"
                                            f"['{COMPLETION_INDEX_ANNOTATION}']"
                                        }
                                    },
                                },
                                # TOKENS, not TOKEN: the key may hold the chart's comma-separated
                                # list; the simulator uses its first token.
                                {
                                    "name": "GREENLANE_API_TOKENS",
                                    "valueFrom": {
                                        "secretKeyRef": {
                                            "name": spec.token_secret_ref.name,
                                            "key": spec.token_secret_ref.key,
                                        }
                                    },
                                },
                                {"name": "GREENLANE_LOG_FORMAT", "value": "json"},
                                *({"name": k, "value": v} for k, v in defaults.env),
                            ],
                            "resources": _resources(spec, defaults),
                            "terminationMessagePath": SUMMARY_PATH,
                            # A crash leaves no summary: keep the log's tail instead.
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "runAsNonRoot": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                        }
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}],
                },
            },
        },
    }
    if defaults.pull_secrets:
        job["spec"]["template"]["spec"]["imagePullSecrets"] = [
            {"name": name} for name in defaults.pull_secrets
        ]
    if spec.duration_seconds is not None:
        job["spec"]["activeDeadlineSeconds"] = spec.duration_seconds + DEADLINE_MARGIN_S
    return job

"""`.status` of a FleetSimulation from its Job and pods: phase, conditions, progress; pure.

Phase rules (see docs/operator.md):
  Failed     the spec cannot run (Accepted=False), or the Job has condition Failed
  Succeeded  the Job has condition Complete
  Running    some pod is ready or has finished
  Pending    otherwise: the Job exists but no pod has started yet
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

from greenlane.operator.job import CONTAINER

Phase = Literal["Pending", "Running", "Succeeded", "Failed"]
TERMINAL: Final = frozenset({"Succeeded", "Failed"})
CONDITION_TYPES: Final = ("Accepted", "Running", "Complete", "Failed")


def _true(job_status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in job_status.get("conditions") or ():
        if cond.get("type") == kind and cond.get("status") == "True":
            return cond  # type: ignore[no-any-return]
    return None


def _count(job_status: Mapping[str, Any], key: str) -> int:
    value = job_status.get(key)
    return value if isinstance(value, int) else 0


def phase_of(job_status: Mapping[str, Any]) -> Phase:
    """The phase the Job's status implies (see the module docstring)."""
    if _true(job_status, "Failed"):
        return "Failed"
    if _true(job_status, "Complete"):
        return "Succeeded"
    # `ready` (Kubernetes 1.24+) tells pods that run from pods still pulling their image;
    # without it, an active pod counts as started.
    started = _count(job_status, "ready") if "ready" in job_status else _count(job_status, "active")
    if started + _count(job_status, "succeeded") + _count(job_status, "failed") > 0:
        return "Running"
    return "Pending"


def set_condition(
    conditions: Iterable[Mapping[str, Any]],
    kind: str,
    status: bool,
    reason: str,
    message: str,
    *,
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    """conditions with `kind` replaced; lastTransitionTime moves only when the status flips."""
    value = "True" if status else "False"
    out: list[dict[str, Any]] = []
    previous = None
    for cond in conditions:
        if cond.get("type") == kind:
            previous = cond
        else:
            out.append(dict(cond))
    changed = previous is None or previous.get("status") != value
    out.append(
        {
            "type": kind,
            "status": value,
            "reason": reason,
            "message": message,
            "observedGeneration": generation,
            "lastTransitionTime": now if changed else previous.get("lastTransitionTime", now),  # type: ignore[union-attr]
        }
    )
    order = {name: i for i, name in enumerate(CONDITION_TYPES)}
    return sorted(out, key=lambda c: order.get(str(c.get("type")), len(order)))


def _progress(
    parallelism: int, job_status: Mapping[str, Any], sent: int, accepted: int, reported: int
) -> dict[str, int]:
    return {
        "pods": parallelism,
        "active": _count(job_status, "active"),
        "ready": _count(job_status, "ready"),
        "succeeded": _count(job_status, "succeeded"),
        "failed": _count(job_status, "failed"),
        "reportedPods": reported,
        "sent": sent,
        "accepted": accepted,
    }


def launched(
    *,
    job: str,
    generation: int,
    parallelism: int,
    now: str,
    conditions: Iterable[Mapping[str, Any]],
) -> dict[str, Any]:
    """Status when a Job for `generation` has just been (re)created: Pending, counts at zero."""
    conds: list[dict[str, Any]] = [dict(c) for c in conditions]
    conds = set_condition(
        conds,
        "Accepted",
        True,
        "JobCreated",
        f"Job {job} created",
        generation=generation,
        now=now,
    )
    conds = set_condition(
        conds, "Running", False, "PodsPending", "no pod started yet", generation=generation, now=now
    )
    conds = set_condition(
        conds, "Complete", False, "NotFinished", "", generation=generation, now=now
    )
    conds = set_condition(conds, "Failed", False, "NotFailed", "", generation=generation, now=now)
    return {
        "phase": "Pending",
        "observedGeneration": generation,
        "jobName": job,
        "message": f"waiting for the pods of Job {job}",
        "startTime": None,
        "completionTime": None,
        "progress": _progress(parallelism, {}, 0, 0, 0),
        "conditions": conds,
    }


def rejected(
    *,
    reason: str,
    message: str,
    generation: int,
    now: str,
    conditions: Iterable[Mapping[str, Any]],
) -> dict[str, Any]:
    """Status of a spec that cannot run: Failed, no Job, the message says what to fix."""
    conds: list[dict[str, Any]] = [dict(c) for c in conditions]
    conds = set_condition(conds, "Accepted", False, reason, message, generation=generation, now=now)
    conds = set_condition(
        conds, "Running", False, reason, "nothing runs", generation=generation, now=now
    )
    conds = set_condition(conds, "Complete", False, reason, "", generation=generation, now=now)
    conds = set_condition(conds, "Failed", True, reason, message, generation=generation, now=now)
    return {
        "phase": "Failed",
        "observedGeneration": generation,
        "jobName": None,
        "message": message,
        "progress": None,
        "conditions": conds,
    }


def from_job(
    *,
    current: Mapping[str, Any],
    job: Mapping[str, Any],
    parallelism: int,
    generation: int,
    sent: int,
    accepted: int,
    reported: int,
    now: str,
) -> dict[str, Any]:
    """Status following the Job's progress; `current` is the FleetSimulation's status."""
    job_status: Mapping[str, Any] = job.get("status") or {}
    phase = phase_of(job_status)
    progress = _progress(parallelism, job_status, sent, accepted, reported)
    conds: list[dict[str, Any]] = [dict(c) for c in current.get("conditions") or ()]
    running = f"{progress['ready'] or progress['active']} of {parallelism} pods running"
    done = f"{progress['succeeded']} succeeded, {progress['failed']} failed"
    if phase == "Failed":
        failed = _true(job_status, "Failed") or {}
        reason = str(failed.get("reason") or "JobFailed")
        message = str(failed.get("message") or "the Job failed")
        conds = set_condition(conds, "Running", False, reason, done, generation=generation, now=now)
        conds = set_condition(conds, "Complete", False, reason, "", generation=generation, now=now)
        conds = set_condition(
            conds, "Failed", True, reason, message, generation=generation, now=now
        )
        summary = f"failed: {message} ({done})"
    elif phase == "Succeeded":
        conds = set_condition(
            conds, "Running", False, "Completed", done, generation=generation, now=now
        )
        conds = set_condition(
            conds, "Complete", True, "Completed", done, generation=generation, now=now
        )
        summary = f"completed: {done}, {sent} statuses sent"
    elif phase == "Running":
        conds = set_condition(
            conds, "Running", True, "PodsRunning", running, generation=generation, now=now
        )
        summary = f"{running}, {done}"
    else:
        conds = set_condition(
            conds,
            "Running",
            False,
            "PodsPending",
            "no pod started yet",
            generation=generation,
            now=now,
        )
        summary = f"waiting for the pods of Job {job.get('metadata', {}).get('name')}"
    return {
        "phase": phase,
        "observedGeneration": generation,
        "jobName": job.get("metadata", {}).get("name"),
        "message": summary,
        "startTime": job_status.get("startTime"),
        "completionTime": job_status.get("completionTime"),
        "progress": progress,
        "conditions": conds,
    }


def summaries(pods: Iterable[Mapping[str, Any]]) -> tuple[int, int, int]:
    """(sent, accepted, pods reporting) from the simulator summaries of terminated pods.

    Each finished simulator writes its JSON summary as its termination message; a pod
    that crashed has its log's tail there instead, which is skipped.
    """
    sent = accepted = reported = 0
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or ():
            if cs.get("name") != CONTAINER:
                continue
            message = ((cs.get("state") or {}).get("terminated") or {}).get("message")
            if not message:
                continue
            try:
                summary = json.loads(message)
            except ValueError:
                continue
            if not isinstance(summary, dict):
                continue
            s, a = summary.get("sent"), summary.get("accepted")
            if isinstance(s, int) and isinstance(a, int):
                sent += s
                accepted += a
                reported += 1
    return sent, accepted, reported


def differs(current: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether patching `new` would change anything (saves a write per redundant event)."""
    return any(current.get(k) != v for k, v in new.items())

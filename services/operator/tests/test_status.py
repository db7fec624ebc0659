"""FleetSimulation status from its Job: the phase rules, conditions, the pods' summaries."""

from __future__ import annotations

import json
from typing import Any

import pytest

from greenlane.operator import status as st


@pytest.mark.parametrize(
    ("job_status", "phase"),
    [
        ({}, "Pending"),
        ({"active": 3, "ready": 0}, "Pending"),
        ({"active": 3}, "Running"),  # a cluster that does not report `ready`
        ({"active": 3, "ready": 1}, "Running"),
        ({"active": 0, "ready": 0, "succeeded": 1}, "Running"),
        ({"succeeded": 3, "conditions": [{"type": "Complete", "status": "True"}]}, "Succeeded"),
        ({"failed": 4, "conditions": [{"type": "Failed", "status": "True"}]}, "Failed"),
        ({"conditions": [{"type": "Complete", "status": "False"}]}, "Pending"),
    ],
)
def test_phase_follows_the_job(job_status: dict[str, object], phase: str) -> None:
    assert st.phase_of(job_status) == phase


def test_a_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    first = st.set_condition([], "Running", True, "PodsRunning", "1 of 2", generation=1, now="t1")
    again = st.set_condition(
        first, "Running", True, "PodsRunning", "2 of 2", generation=1, now="t2"
    )
    flipped = st.set_condition(again, "Running", False, "Completed", "", generation=1, now="t3")
    assert again[0]["lastTransitionTime"] == "t1"
    assert again[0]["message"] == "2 of 2"
    assert flipped[0]["lastTransitionTime"] == "t3"


def test_summaries_add_up_finished_simulators_and_skip_crash_logs() -> None:
    def pod(message: str, name: str = "simulator") -> dict[str, Any]:
        state = {"terminated": {"exitCode": 0, "message": message}}
        return {"status": {"containerStatuses": [{"name": name, "state": state}]}}

    pods: list[dict[str, Any]] = [
        pod(json.dumps({"sent": 100, "accepted": 99})),
        pod(json.dumps({"sent": 50, "accepted": 50})),
        pod("Traceback (most recent call last): ..."),
        pod(json.dumps({"sent": 7, "accepted": 7}), name="sidecar"),
        {"status": {"containerStatuses": [{"name": "simulator", "state": {"running": {}}}]}},
    ]
    assert st.summaries(pods) == (150, 149, 2)


def test_a_rejected_spec_is_failed_with_the_fix_in_its_conditions() -> None:
    status = st.rejected(
        reason="SecretNotFound", message="create it", generation=4, now="t", conditions=[]
    )
    assert status["phase"] == "Failed"
    assert status["observedGeneration"] == 4
    by_type = {c["type"]: c for c in status["conditions"]}
    assert by_type["Accepted"]["status"] == "False"
    assert by_type["Failed"]["reason"] == "SecretNotFound"
    assert [c["type"] for c in status["conditions"]] == list(st.CONDITION_TYPES)


def test_the_status_gauges_mirror_the_phase_pods_and_statuses_of_a_simulation() -> None:
    from prometheus_client import REGISTRY

    from greenlane.operator.metrics import record_status

    status = {
        "phase": "Running",
        "progress": {
            "pods": 3,
            "active": 2,
            "ready": 2,
            "succeeded": 1,
            "failed": 0,
            "reportedPods": 1,
            "sent": 40,
            "accepted": 39,
        },
    }
    record_status("ns", "gauges", status)

    def value(name: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"fleetsimulation": "ns/gauges", **labels})

    assert value("greenlane_operator_simulation_phase", phase="Running") == 1
    assert value("greenlane_operator_simulation_phase", phase="Pending") == 0
    assert value("greenlane_operator_simulation_pods", state="active") == 2
    assert value("greenlane_operator_simulation_statuses", outcome="accepted") == 39

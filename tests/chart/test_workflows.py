"""The GitHub workflows are valid, pin their actions and run the checks the issue asks for."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from chart.helm import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@(v\d+\.\d+\.\d+|[0-9a-f]{40})$")


def check_workflow_schema(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def steps(workflow: Path) -> list[dict[str, object]]:
    jobs = yaml.safe_load(workflow.read_text())["jobs"]
    return [step for job in jobs.values() for step in job["steps"]]


def unpinned(workflow: Path) -> list[str]:
    return [
        str(step["uses"])
        for step in steps(workflow)
        if "uses" in step and not PINNED.match(str(step["uses"]))
    ]


def test_the_workflows_are_ci_and_e2e() -> None:
    assert [w.name for w in WORKFLOWS] == ["ci.yml", "e2e.yml"]


def test_every_workflow_is_valid_against_the_github_workflow_schema() -> None:
    done = check_workflow_schema(*WORKFLOWS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_fails_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("name: broken\non: push\njobs:\n  build:\n    steps:\n      - run: make\n")
    done = check_workflow_schema(broken)
    assert done.returncode != 0
    assert "runs-on" in done.stdout


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_an_exact_version(workflow: Path) -> None:
    assert unpinned(workflow) == []


def test_the_pin_check_fails_a_floating_action(tmp_path: Path) -> None:
    floating = tmp_path / "floating.yml"
    floating.write_text(
        "jobs:\n  a:\n    steps:\n"
        "      - uses: actions/checkout@v4\n"
        "      - uses: actions/setup-python@main\n"
        "      - uses: actions/cache@v4.2.0\n"
    )
    assert unpinned(floating) == ["actions/checkout@v4", "actions/setup-python@main"]


def test_ci_runs_lint_tests_chart_checks_and_proto_freshness() -> None:
    commands = " ".join(str(s.get("run", "")) for s in steps(ROOT / ".github/workflows/ci.yml"))
    for expected in (
        "make lint",
        "pytest services tests --ignore=tests/chart --ignore=tests/e2e",
        "pytest tests/chart",
        "make proto-check",
    ):
        assert expected in commands


def test_e2e_builds_on_kind_installs_simulates_and_dumps_logs_on_failure() -> None:
    e2e = steps(ROOT / ".github/workflows/e2e.yml")
    commands = " ".join(str(s.get("run", "")) for s in e2e)
    for expected in (
        "scripts/kind-up.sh",
        "helm install greenlane charts/greenlane",
        "--values charts/greenlane/ci/kind-values.yaml",
        "--wait",
        "helm test greenlane",
        "pytest tests/e2e",
        "tests/e2e/dump_cluster.sh",
    ):
        assert expected in commands
    dump = next(s for s in e2e if "dump_cluster.sh" in str(s.get("run", "")))
    assert dump["if"] == "failure()"


def pinned_tool_version(variable: str) -> str:
    script = (ROOT / "scripts" / "tools" / "install_helm.sh").read_text()
    match = re.search(rf"^{variable}=(v[0-9.]+)$", script, re.MULTILINE)
    assert match, f"{variable} not found in install_helm.sh"
    return match.group(1)


def test_e2e_runs_the_pinned_kubectl_not_the_one_kind_action_brings() -> None:
    e2e = steps(ROOT / ".github/workflows/e2e.yml")
    names = [str(s.get("uses", "")) + str(s.get("run", "")) for s in e2e]
    kind = next(i for i, n in enumerate(names) if n.startswith("helm/kind-action@"))
    tools = next(i for i, n in enumerate(names) if "scripts/tools/install_helm.sh" in n)
    with_ = e2e[kind]["with"]
    assert isinstance(with_, dict)
    # kind-action installs a kubectl of its own and puts it first on PATH.
    assert with_["kubectl_version"] == pinned_tool_version("KUBECTL_VERSION")
    assert tools > kind, "the pinned tools must be added to PATH after kind-action"

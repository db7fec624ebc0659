"""The alert rules: promtool checks them; every alert has unit tests that fire and stay quiet."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from chart.helm import ROOT

RULES_DIR = ROOT / "observability" / "prometheus"
RULES = RULES_DIR / "rules.yml"
UNIT_TESTS = RULES_DIR / "tests.yml"


def promtool(*args: str | Path, cwd: Path = RULES_DIR) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    # Debian's prometheus package brings it; .ci/run installs it.
    assert binary, "promtool is not on PATH: apt-get install -y prometheus"
    return subprocess.run(
        [binary, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def alerts(rules: Path = RULES) -> list[str]:
    groups = yaml.safe_load(rules.read_text())["groups"]
    return [r["alert"] for g in groups for r in g["rules"] if "alert" in r]


def test_promtool_checks_the_rules() -> None:
    done = promtool("check", "rules", RULES)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    done = promtool("test", "rules", UNIT_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_test_where_it_fires_and_one_where_it_stays_quiet() -> None:
    tests = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in tests:
        for check in test.get("alert_rule_test") or []:
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    assert set(alerts()) - firing == set()
    assert set(alerts()) - quiet == set()


def test_the_issues_alerts_are_all_there() -> None:
    # ack latency SLO burn, consumer lag growing, dead letters, grid down, critical-battery
    # cars without a booking, a site over its limit (issue 14 point 4).
    assert {
        "GreenLaneAckLatencyBudgetBurnFast",
        "GreenLaneAckLatencyBudgetBurnSlow",
        "GreenLaneConsumerLagGrowing",
        "GreenLanePricingDeadLetters",
        "GreenLaneGridDown",
        "GreenLaneCarsFindNoStation",
        "GreenLaneSiteOverLimit",
    } <= set(alerts())


@pytest.mark.parametrize(
    ("original", "broken"),
    [
        ("> (14.4 * 0.01)\n", "> (90 * 0.01)\n"),  # the fast burn would never fire
        ('{outcome="no_capacity"}', '{outcome="created"}'),
    ],
)
def test_the_unit_tests_fail_when_an_alert_is_broken(
    tmp_path: Path, original: str, broken: str
) -> None:
    text = RULES.read_text()
    assert original in text
    (tmp_path / "rules.yml").write_text(text.replace(original, broken, 1))
    shutil.copy(UNIT_TESTS, tmp_path / "tests.yml")
    done = promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert done.returncode != 0
    assert "FAILED" in done.stdout + done.stderr

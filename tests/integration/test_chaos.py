"""`python -m bench chaos`, short: every kind of fault once or more, and a clean audit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.chaos import FAULTS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]


def test_a_short_chaos_run_injects_every_fault_and_its_audit_finds_nothing_lost() -> None:
    argv = [sys.executable, "-m", "bench", "chaos", "--json", "--seed", "11"]
    argv += ["--minutes", "1.25", "--cars", "40", "--min-gap", "1.5", "--max-gap", "3"]
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=840, check=False)
    assert out.stdout.strip(), f"no result; stderr:\n{out.stderr[-3000:]}"
    result = json.loads(out.stdout.strip().splitlines()[-1])
    failed = [row for row in result["audit"] if row[1] > row[2]]
    assert failed == [], f"audit failures: {failed}\n{out.stderr[-3000:]}"
    assert result["fault_errors"] == []
    assert set(result["faults_by_kind"]) == set(FAULTS), result["faults_by_kind"]
    audit = {row[0]: row[1] for row in result["audit"]}
    assert audit["acknowledged statuses"] > 1000  # the fleet streamed through it all
    assert audit["acknowledged, not in fleet-events (lost)"] == 0
    assert audit["processes left behind"] == 0
    assert result["simulator"]["resent"] > 0  # the faults were felt, and survived
    assert out.returncode == 0 and result["ok"] is True

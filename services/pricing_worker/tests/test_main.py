"""The command line: --help works without any backend."""

from __future__ import annotations

import subprocess
import sys


def test_help_describes_the_worker_and_exits_0() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "greenlane.pricing_worker", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert "pricing worker" in result.stdout
    assert "GREENLANE_" in result.stdout


def test_a_bad_setting_exits_2_naming_the_variable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "greenlane.pricing_worker"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"GREENLANE_PRICING_BATCH_SIZE": "nope", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "GREENLANE_PRICING_BATCH_SIZE" in result.stderr

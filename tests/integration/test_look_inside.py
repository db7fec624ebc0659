"""Every command of the README's "look inside" block works against `greenlane dev`.

The commands are read from README.md itself, so the README cannot drift from what works.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from greenlane.cli.devstack import Ports
from greenlane.cli.embedded import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HEADING = "### Look inside the running platform"


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(HEADING) :]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None, "no bash block under the heading"
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    assert lines[0] == "source .greenlane/dev.env"
    return lines[1:]


# What each command must show, keyed by the program it runs.
EXPECT = {
    "redis-cli": re.compile(r"^car-\d{5}$", re.M),
    ".venv/bin/greenlane": re.compile(r"^\d+@\d+ car-\d{5} \{.*\"car_id\": ?\"car-\d{5}\"", re.M),
    "scripts/kcat": re.compile(r"^\{.*\"car_id\": ?\"car-\d{5}\".*\}$", re.M),
    "psql": re.compile(r"^\s*count\s*\n-+\n\s*\d+\s*$", re.M),
    "curl": re.compile(r"\"price_per_kwh\""),
}


@pytest.fixture(scope="module")
def project() -> Iterator[Path]:
    """A checkout-like folder: .venv and scripts/ of this one, .greenlane/ of its own."""
    path = Path(tempfile.mkdtemp(prefix="greenlane-look-inside-"))
    (path / ".venv").symlink_to(ROOT / ".venv")
    (path / "scripts").symlink_to(ROOT / "scripts")
    (path / "data").symlink_to(ROOT / "data")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def running_dev(project: Path) -> Iterator[Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLANE_")}
    env.update({variable: str(free_port()) for variable in Ports.VARIABLES.values()})
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "greenlane.cli",
            "dev",
            "--cars",
            "6",
            "--interval",
            "0.5",
            "--no-feed",
        ],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    seen = b""
    try:
        deadline = time.monotonic() + 150
        while b"platform up" not in seen and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen += line
        assert b"platform up" in seen, seen.decode()[-3000:]
        yield project
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def run(project: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f"set -eo pipefail; source .greenlane/dev.env; {command}"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.timeout(400)
def test_every_look_inside_command_of_the_readme_works_against_greenlane_dev(
    running_dev: Path,
) -> None:
    commands = readme_commands()
    assert {c.split()[0] for c in commands} == set(EXPECT), "a command without a check"
    # Data has to reach every store first: cars in Redis, events, priced rows.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        rows = run(
            running_dev,
            "psql \"$GREENLANE_DATABASE_URL\" -Atc 'SELECT count(*) FROM charging_sessions'",
        )
        if rows.returncode == 0 and rows.stdout.strip().isdigit() and int(rows.stdout) > 0:
            break
        time.sleep(1)
    else:
        pytest.fail(f"no priced row in time: {rows.stdout} {rows.stderr}")

    for command in commands:
        result = run(running_dev, command)
        program = command.split()[0]
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        assert EXPECT[program].search(result.stdout), f"{command}\n{result.stdout[-2000:]}"
        if program == "curl":
            assert 0 < json.loads(result.stdout)["price_per_kwh"] < 1

"""`greenlane dev` end to end: the platform comes up, data flows, everything stops."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from greenlane.cli.devstack import Ports
from greenlane.cli.embedded import free_port, port_is_free

pytestmark = pytest.mark.integration


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="greenlane-dev-test-"))  # 0700, like a clone's parent
    yield path / ".greenlane"
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def ports() -> dict[str, int]:
    return {name: free_port() for name in Ports.VARIABLES}


def dev_env(ports: dict[str, int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLANE_")}
    env.update({Ports.VARIABLES[name]: str(port) for name, port in ports.items()})
    return env


def greenlane(*args: str) -> list[str]:
    return [sys.executable, "-m", "greenlane.cli", *args]


def test_dev_runs_for_a_duration_the_fleet_reaches_redis_kafka_postgres_and_sites_are_planned(
    workdir: Path, ports: dict[str, int]
) -> None:
    result = subprocess.run(
        greenlane("dev", "--duration", "12", "--cars", "8", "--workdir", str(workdir), "--no-feed"),
        env=dev_env(ports),
        capture_output=True,
        timeout=150,
    )
    out = result.stdout.decode()

    assert result.returncode == 0, out[-3000:] + result.stderr.decode()[-3000:]
    lines = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in out.splitlines()
        if line.count("│") == 3
    }
    assert lines["cars in fleet:locations"] == "8"
    assert int(lines["events in fleet-events"]) >= 8
    assert int(lines["rows in charging_sessions"]) >= 1
    assert int(lines["simulator accepted"]) == int(lines["simulator sent"]) > 0
    settings = (workdir / "dev.env").read_text()
    assert f"GREENLANE_REDIS_URL=redis://127.0.0.1:{ports['redis']}/0" in settings
    assert f"GREENLANE_INGESTION_ADDR=127.0.0.1:{ports['ingestion']}" in settings
    link = f"dashboard: http://127.0.0.1:{ports['hub']}/#token=greenlane-secret-token"
    assert link in out.splitlines(), "the dashboard link, the token in its fragment"
    # The planner runs, says where, and has planned every site of the dev files.
    assert f"http://127.0.0.1:{ports['planner']}/api/sites/" in out
    assert lines["sites planned"] == "12"
    assert all(port_is_free(p) for p in ports.values()), "a port is still held"


def test_sigterm_stops_every_child_and_frees_every_port(
    workdir: Path, ports: dict[str, int]
) -> None:
    proc = subprocess.Popen(
        greenlane("dev", "--cars", "3", "--workdir", str(workdir), "--no-feed"),
        env=dev_env(ports),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    try:
        deadline = time.monotonic() + 120
        seen = b""
        # Up, and the fleet's first statuses in (a status line counts them): a SIGTERM
        # before any data arrived would rightly end in "no data reached Redis".
        while not re.search(rb"cars in fleet:locations: [1-9]", seen):
            line = proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                break
            seen += line
        assert b"platform up" in seen, seen.decode()[-3000:]
        assert re.search(rb"cars in fleet:locations: [1-9]", seen), seen.decode()[-3000:]

        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:  # a failed run must not leak the platform into other tests
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()

    assert proc.returncode == 0, (seen + rest).decode()[-3000:]
    assert b"no process left running" in rest
    assert all(port_is_free(p) for p in ports.values()), "a port is still held"
    leftovers = subprocess.run(["pgrep", "-f", str(workdir)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", f"left running: {leftovers.stdout}"


def test_a_taken_port_stops_dev_before_it_starts_anything(
    workdir: Path, ports: dict[str, int]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports["kafka"]))
        taken.listen()
        result = subprocess.run(
            greenlane("dev", "--workdir", str(workdir)),
            env=dev_env(ports),
            capture_output=True,
            timeout=60,
        )
    out = result.stdout.decode()
    assert result.returncode == 2
    assert f"port {ports['kafka']}" in out and "GREENLANE_DEV_KAFKA_PORT" in out
    assert port_is_free(ports["redis"])
    assert not (workdir / "data").exists()


@pytest.mark.parametrize(
    ("flag", "value"), [("--cars", "200000"), ("--interval", "5000"), ("--cars", "-1")]
)
def test_dev_refuses_what_its_simulator_would_refuse_naming_the_flag(
    workdir: Path, ports: dict[str, int], flag: str, value: str
) -> None:
    result = subprocess.run(
        greenlane("dev", flag, value, "--workdir", str(workdir)),
        env=dev_env(ports),
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"argument {flag}" in result.stderr.decode()
    assert not (workdir / "data").exists()

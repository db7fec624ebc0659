"""The real process: python -m greenlane.planner answers the what-if API and stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

START_TIMEOUT = 30.0
TOKEN = "planner-process-token-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without GreenLane or OTLP settings that would leak in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GREENLANE_", "OTEL_EXPORTER_OTLP"))
    }
    env.update(extra)
    return env


def planner_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "greenlane.planner", *args]


def wait_until_ready(proc: subprocess.Popen[str], url: str) -> httpx.Response:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the planner exited during start-up"
        try:
            return httpx.get(url, timeout=1.0)
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"{url} did not answer within {START_TIMEOUT} s")


@pytest.mark.integration
@pytest.mark.timeout(90)
def test_the_process_solves_a_what_if_over_http_and_exits_zero_on_sigterm() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    request = {
        "slot_minutes": 15,
        "prices": [0.3, 0.1, 0.1, 0.3],
        "site_limit_kw": 11,
        "cars": [
            {"car_id": "c1", "arrive_slot": 0, "depart_slot": 4, "energy_kwh": 2.75, "max_kw": 11},
            {"car_id": "c2", "arrive_slot": 0, "depart_slot": 4, "energy_kwh": 2.75, "max_kw": 11},
        ],
    }
    with subprocess.Popen(
        planner_command("--port", str(port)),
        # The what-if API alone: no Redis, Kafka or grid here (unit tests touch no server).
        env=clean_env(
            GREENLANE_API_TOKENS=TOKEN,
            GREENLANE_PLANNER_HOST="127.0.0.1",
            GREENLANE_PLANNER_LIVE="false",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            ready = wait_until_ready(proc, f"{base}/readyz")
            answer = httpx.post(
                f"{base}/api/planner/solve",
                json=request,
                headers={"x-api-token": TOKEN},
                timeout=30,
            )
            refused = httpx.post(f"{base}/api/planner/solve", json=request, timeout=10)
            metrics = httpx.get(f"{base}/metrics", timeout=10).text
        finally:
            proc.send_signal(signal.SIGTERM)
            stdout, stderr = proc.communicate(timeout=30)
    assert ready.status_code == 200
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["feasible"] is True
    # The two cheap slots, one each, on an 11 kW site.
    assert body["site_kw"] == pytest.approx([0.0, 11.0, 11.0, 0.0])
    assert refused.status_code == 401
    assert 'greenlane_planner_solves_total{kind="whatif"} 1.0' in metrics
    assert proc.returncode == 0, stderr
    assert f"planner listening on http://127.0.0.1:{port}" in stderr
    assert "planner stopped" in stderr
    assert TOKEN not in stderr
    assert stdout == ""  # HiGHS prints nothing: its banner is suppressed


@pytest.mark.timeout(30)
def test_help_prints_usage_and_exits_zero() -> None:
    result = subprocess.run(
        planner_command("--help"), env=clean_env(), capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python -m greenlane.planner")
    assert "--port" in result.stdout


@pytest.mark.timeout(30)
def test_no_token_stops_start_up_naming_the_variable() -> None:
    result = subprocess.run(
        planner_command(), env=clean_env(), capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 2
    assert "GREENLANE_API_TOKENS" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.integration
@pytest.mark.timeout(30)
def test_a_taken_port_stops_start_up_with_a_clear_message() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            planner_command("--host", "127.0.0.1", "--port", str(port)),
            env=clean_env(GREENLANE_API_TOKENS=TOKEN),
            capture_output=True,
            text=True,
            timeout=20,
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "GREENLANE_PLANNER_PORT" in result.stderr

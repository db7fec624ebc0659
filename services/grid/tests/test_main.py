"""The real process: python -m greenlane.grid serves over HTTP and stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

START_TIMEOUT = 20.0


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


def grid_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "greenlane.grid", *args]


def wait_until_ready(proc: subprocess.Popen[str], url: str) -> httpx.Response:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the grid service exited during start-up"
        try:
            return httpx.get(url, timeout=1.0)
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"{url} did not answer within {START_TIMEOUT} s")


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_the_service_answers_over_http_and_exits_zero_on_sigterm() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with subprocess.Popen(
        grid_command("--port", str(port)),
        env=clean_env(GREENLANE_GRID_HOST="127.0.0.1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            ready = wait_until_ready(proc, f"{base}/readyz")
            pricing = httpx.get(f"{base}/api/pricing?at=2025-07-15T22:00:00Z", timeout=5.0)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=20)
    assert ready.status_code == 200
    assert pricing.status_code == 200
    assert pricing.json()["price_per_kwh"] == 0.4
    assert proc.returncode == 0, stderr
    assert "grid service stopped" in stderr


@pytest.mark.timeout(30)
def test_help_prints_usage_and_exits_zero() -> None:
    result = subprocess.run(
        grid_command("--help"), env=clean_env(), capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python -m greenlane.grid")
    assert "--port" in result.stdout and "--host" in result.stdout


@pytest.mark.timeout(30)
def test_an_unknown_tariff_time_zone_stops_start_up_naming_the_variable() -> None:
    result = subprocess.run(
        grid_command(),
        env=clean_env(GREENLANE_TARIFF_TIMEZONE="Mars/Olympus_Mons"),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2
    assert "GREENLANE_TARIFF_TIMEZONE" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.integration
@pytest.mark.timeout(30)
def test_a_taken_port_stops_start_up_with_a_clear_message() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            grid_command("--host", "127.0.0.1", "--port", str(port)),
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=20,
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "GREENLANE_GRID_PORT" in result.stderr

"""The ingestion process as it runs in production: health, reflection, metrics, SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from stack import read_topic

from greenlane.cli.embedded import EmbeddedKafka, EmbeddedRedis, free_port, port_is_free
from greenlane.v1 import fleet_pb2, fleet_pb2_grpc

pytestmark = pytest.mark.integration


@pytest.fixture
def ingestion_process(
    tmp_path: Path, redis_server: EmbeddedRedis, kafka_server: EmbeddedKafka, topic: str
) -> Iterator[tuple[subprocess.Popen[bytes], int, int, Path]]:
    port, metrics, api = free_port(), free_port(), free_port()
    log = tmp_path / "ingestion.log"
    env = {
        **os.environ,
        "GREENLANE_API_TOKENS": "greenlane-secret-token",
        "GREENLANE_REDIS_URL": redis_server.url,
        "GREENLANE_KAFKA_BOOTSTRAP_SERVERS": kafka_server.url,
        "GREENLANE_FLEET_EVENTS_TOPIC": topic,
        "GREENLANE_INGESTION_HOST": "127.0.0.1",
        "GREENLANE_INGESTION_PORT": str(port),
        "GREENLANE_METRICS_HOST": "127.0.0.1",
        "GREENLANE_METRICS_PORT": str(metrics),
        "GREENLANE_BOOKING_API_PORT": str(api),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "greenlane.ingestion"], env=env, stdout=out, stderr=out
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/readyz", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"ingestion never became ready:\n{log.read_text()[-2000:]}")
    yield proc, port, metrics, log
    if proc.poll() is None:
        proc.kill()
        proc.wait()


async def test_health_and_reflection_answer_without_a_token_and_metrics_are_exposed(
    ingestion_process: tuple[subprocess.Popen[bytes], int, int, Path],
) -> None:
    _, port, metrics, _ = ingestion_process
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        overall = await health.Check(health_pb2.HealthCheckRequest(service=""))
        fleet = await health.Check(
            health_pb2.HealthCheckRequest(service="greenlane.v1.FleetTelemetry")
        )
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = [
            a
            async for a in reflect.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
        ]
        stub = fleet_pb2_grpc.FleetTelemetryStub(channel)
        batch = await stub.SendBatch(
            fleet_pb2.CarStatusBatch(
                statuses=[
                    fleet_pb2.CarStatus(
                        car_id="m-1",
                        lat=40.7,
                        lon=-74.0,
                        battery=77,
                        velocity=3,
                        timestamp=time.time_ns() // 1_000_000,
                    )
                ]
            ),
            metadata=(("x-api-token", "greenlane-secret-token"),),
        )

    assert overall.status == fleet.status == health_pb2.HealthCheckResponse.SERVING
    services = {s.name for s in answers[0].list_services_response.service}
    assert {"greenlane.v1.FleetTelemetry", "grpc.health.v1.Health"} <= services
    assert batch.accepted == 1
    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(f"http://127.0.0.1:{metrics}/metrics")).text
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("greenlane_ingestion_")
    }
    # Values, not names: the names exist from import on, whatever happened.
    assert samples['greenlane_ingestion_statuses_received_total{path="batch"}'] == 1.0
    assert samples["greenlane_ingestion_statuses_accepted_total"] == 1.0
    assert samples["greenlane_ingestion_batch_statuses_count"] == 1.0
    assert samples["greenlane_ingestion_batch_statuses_sum"] == 1.0
    assert samples["greenlane_ingestion_flush_statuses_sum"] == 1.0
    assert samples["greenlane_ingestion_ack_latency_seconds_count"] == 1.0
    assert samples["greenlane_ingestion_open_streams"] == 0.0


async def test_sigterm_mid_stream_loses_no_acknowledged_status_and_exits_zero(
    ingestion_process: tuple[subprocess.Popen[bytes], int, int, Path],
    kafka_server: EmbeddedKafka,
    topic: str,
) -> None:
    proc, port, _, log = ingestion_process
    answers: list[fleet_pb2.BookingResponse] = []
    first_answers = asyncio.Event()

    async def statuses() -> AsyncIterator[fleet_pb2.CarStatus]:
        for i in range(100_000):
            yield fleet_pb2.CarStatus(
                car_id="drain-1",
                lat=40.7,
                lon=-74.0,
                battery=80,
                velocity=3,
                timestamp=time.time_ns() // 1_000_000 + i,
            )
            await asyncio.sleep(0.005)

    async def stream() -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = fleet_pb2_grpc.FleetTelemetryStub(channel).StreamTelemetry(
                statuses(), metadata=(("x-api-token", "greenlane-secret-token"),)
            )
            with contextlib.suppress(grpc.aio.AioRpcError):  # ends when the server goes
                async for answer in call:
                    answers.append(answer)
                    if len(answers) == 20:
                        first_answers.set()

    streaming = asyncio.create_task(stream())
    await asyncio.wait_for(first_answers.wait(), 30)
    proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(proc.wait, 30)
    await asyncio.wait_for(streaming, 30)

    assert code == 0, log.read_text()[-2000:]
    assert "stopped" in log.read_text()
    assert "greenlane-secret-token" not in log.read_text()
    acked = {a.timestamp for a in answers if a.status == fleet_pb2.ACCEPTED}
    assert len(acked) >= 20
    events = await read_topic(kafka_server.url, topic, expect=len(acked))
    assert acked <= {e["timestamp"] for e in events}


def test_a_bad_setting_stops_start_up_naming_the_variable() -> None:
    env = {**os.environ, "GREENLANE_API_TOKENS": "short", "GREENLANE_INGESTION_PORT": "99999"}
    result = subprocess.run(
        [sys.executable, "-m", "greenlane.ingestion"], env=env, capture_output=True, timeout=60
    )
    err = result.stderr.decode()
    assert result.returncode == 2
    assert "GREENLANE_API_TOKENS" in err and "GREENLANE_INGESTION_PORT" in err
    assert "short" not in err.replace("shorter", "")
    assert "Traceback" not in err


def test_a_taken_grpc_port_exits_2_with_one_line_naming_the_variable(
    redis_server: EmbeddedRedis, kafka_server: EmbeddedKafka
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        metrics, api = free_port(), free_port()
        env = {
            **os.environ,
            "GREENLANE_API_TOKENS": "greenlane-secret-token",
            "GREENLANE_REDIS_URL": redis_server.url,
            "GREENLANE_KAFKA_BOOTSTRAP_SERVERS": kafka_server.url,
            "GREENLANE_INGESTION_HOST": "127.0.0.1",
            "GREENLANE_INGESTION_PORT": str(port),
            "GREENLANE_METRICS_HOST": "127.0.0.1",
            "GREENLANE_METRICS_PORT": str(metrics),
            "GREENLANE_BOOKING_API_PORT": str(api),
        }
        result = subprocess.run(
            [sys.executable, "-m", "greenlane.ingestion"], env=env, capture_output=True, timeout=60
        )
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert (
        f"error: GREENLANE_INGESTION_HOST/GREENLANE_INGESTION_PORT: cannot listen on "
        f"127.0.0.1:{port}" in err
    )
    assert "Traceback" not in err
    assert port_is_free(metrics) and port_is_free(api)


@pytest.mark.parametrize("taken", ["ingestion_port", "metrics_port", "booking_api_port"])
async def test_a_failed_start_closes_everything_it_had_opened(
    redis_server: EmbeddedRedis, kafka_server: EmbeddedKafka, topic: str, taken: str
) -> None:
    from conftest import ingestion_settings

    from greenlane.core.errors import ConfigurationError
    from greenlane.ingestion.server import start_server

    ports = {name: free_port() for name in ("ingestion_port", "metrics_port", "booking_api_port")}
    before = asyncio.all_tasks()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports[taken]))
        squatter.listen()
        settings = ingestion_settings(redis_server.url, kafka_server.url, topic, **ports)
        with pytest.raises(
            ConfigurationError, match=rf"cannot listen on 127\.0\.0\.1:{ports[taken]}"
        ):
            await start_server(settings)  # type: ignore[arg-type]
    await asyncio.sleep(0.1)  # let closed transports finish
    leftover = {t for t in asyncio.all_tasks() - before if not t.done()}
    leftover.discard(asyncio.current_task())  # type: ignore[arg-type]
    assert not leftover, [t.get_coro() for t in leftover]
    assert all(port_is_free(p) for p in ports.values())

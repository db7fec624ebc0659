"""The images, built from the one Dockerfile and run hardened, as the chart runs them.

Every image runs with the restricted profile: read-only root filesystem (no tmpfs),
uid 10001, all capabilities dropped, no-new-privileges. The long-running ones
answer their health checks against the session's real Valkey, Tansu and
PostgreSQL, and a simulator container streams through an ingestion container and
a pricing-worker container (pricing from a grid container) into PostgreSQL rows.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import container_images as ci
import grpc
import kmock
import psycopg
import pytest
from containers.engine import Container, Containers, http_get, wait_http
from containers.packages import needed_distributions, probe_imports
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kubeapi import FSIM, NS, ApiServer, serve_greenlane, write_kubeconfig
from redis.asyncio import Redis

from greenlane.cli.embedded import EmbeddedKafka, EmbeddedPostgres, EmbeddedRedis, free_port
from greenlane.core import keys

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

# Production rules apply (GREENLANE_ENVIRONMENT=production): no dev token.
TOKEN = "container-test-token-7c1e0f"
SERVICES = ci.services()

HARDENING_PROBE = r"""
import errno, json, os, stat
status = dict(
    line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line
)
writable, world_writable = [], []
for root, dirs, files in os.walk("/"):
    if root == "/":
        dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
    for name in dirs + files:
        path = os.path.join(root, name)
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            continue
        if stat.S_ISLNK(mode):
            continue
        if os.access(path, os.W_OK):
            writable.append(path)
        if mode & 0o002 and not (stat.S_ISDIR(mode) and mode & stat.S_ISVTX):
            world_writable.append(path)
writes = {}
for target in ("/probe", "/tmp/probe", "/app/probe", "/app/.venv/probe", "/var/tmp/probe"):
    try:
        open(target, "w").close()
        writes[target] = "written"
    except OSError as exc:
        writes[target] = errno.errorcode[exc.errno]
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
    "CapEff": status["CapEff"], "CapPrm": status["CapPrm"], "CapBnd": status["CapBnd"],
    "NoNewPrivs": status["NoNewPrivs"], "Seccomp": status["Seccomp"],
    "writable": writable, "world_writable": world_writable, "writes": writes,
}))
"""


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_runs_as_10001_with_no_capability_and_nowhere_to_write(
    service: str, images: dict[str, ci.Built], containers: Containers
) -> None:
    done = containers.run(images[service].ref, "-c", HARDENING_PROBE, entrypoint="python")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert (found["uid"], found["gid"]) == (10001, 10001)
    no_caps = "0000000000000000"
    assert (found["CapEff"], found["CapPrm"], found["CapBnd"]) == (no_caps,) * 3
    assert (found["NoNewPrivs"], found["Seccomp"]) == ("1", "2")
    assert found["writable"] == []  # outside /proc, /sys and /dev
    assert found["world_writable"] == []  # e.g. uv's venv lock, 0666 before
    assert set(found["writes"].values()) == {"EROFS"}, found["writes"]


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_holds_only_the_packages_its_service_imports(
    service: str, images: dict[str, ci.Built], containers: Containers
) -> None:
    def python(*args: str) -> Any:
        return containers.run(images[service].ref, *args, entrypoint="python")

    probe = probe_imports(service, python)
    assert probe["unresolved"] == [], "imported, but no installed distribution provides it"
    needed = needed_distributions(probe)
    installed = {d for d in probe["installed"] if not d.startswith("greenlane-")}
    assert sorted(installed - set(needed)) == [], "installed, but nothing the service runs needs"
    assert sorted(set(needed) - installed) == [], needed
    assert {d for d in probe["installed"] if d.startswith("greenlane-")} == {
        "greenlane-core",
        ci.image_name(service),
    }


def test_the_dockerfiles_useradd_runs_on_the_base_without_a_warning(
    engine: ci.Engine, base_log: list[str], containers: Containers
) -> None:
    # useradd --system with uid 10001 warned on every build ("uid outside SYS_UID range").
    text = ci.DOCKERFILE.read_text().replace("\\\n", " ")
    (line,) = [ln for ln in text.splitlines() if ln.startswith("RUN groupadd")]
    base = ci.qualified(ci.base_images()[-1])
    done = containers.run(base, "-c", line.removeprefix("RUN "), entrypoint="sh", restricted=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


# ---------------------------------------------------------------- the running stack


@dataclass
class Stack:
    grid: Container
    ingestion: Container
    pricing: Container
    grid_port: int
    grpc_port: int
    ingestion_metrics_port: int
    pricing_metrics_port: int
    database_url: str


@pytest.fixture(scope="module")
async def stack(
    engine: ci.Engine,
    images: dict[str, ci.Built],
    redis_server: EmbeddedRedis,
    kafka_server: EmbeddedKafka,
    postgres_server: EmbeddedPostgres,
) -> AsyncIterator[Stack]:
    """grid, ingestion and the pricing worker as containers, on the session's servers."""
    started = Containers(engine)
    name = f"containers_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = postgres_server.url.rsplit("/", 1)[0] + f"/{name}"
    topic = f"fleet-events-{uuid.uuid4().hex[:8]}"
    shared = {"GREENLANE_ENVIRONMENT": "production", "GREENLANE_FLEET_EVENTS_TOPIC": topic}
    ports = {k: free_port() for k in ("grid", "grpc", "api", "ingestion", "pricing")}
    try:
        # The chart's migration Job: its command in the pricing-worker image.
        migrated = await asyncio.to_thread(
            started.run,
            images["pricing_worker"].ref,
            "-m",
            "greenlane.core.migrations",
            entrypoint="python",
            env={"GREENLANE_DATABASE_URL": database_url},
        )
        assert migrated.returncode == 0, migrated.stderr
        grid = started.start(
            images["grid"].ref,
            env=shared
            | {"GREENLANE_GRID_HOST": "127.0.0.1", "GREENLANE_GRID_PORT": f"{ports['grid']}"},
        )
        ingestion = started.start(
            images["ingestion"].ref,
            env=shared
            | {
                "GREENLANE_API_TOKENS": TOKEN,
                "GREENLANE_REDIS_URL": redis_server.url,
                "GREENLANE_KAFKA_BOOTSTRAP_SERVERS": kafka_server.url,
                "GREENLANE_FLEET_EVENTS_PARTITIONS": "3",
                "GREENLANE_INGESTION_HOST": "127.0.0.1",
                "GREENLANE_INGESTION_PORT": str(ports["grpc"]),
                "GREENLANE_BOOKING_API_PORT": str(ports["api"]),
                "GREENLANE_METRICS_HOST": "127.0.0.1",
                "GREENLANE_METRICS_PORT": str(ports["ingestion"]),
            },
        )
        pricing = started.start(
            images["pricing_worker"].ref,
            env=shared
            | {
                "GREENLANE_KAFKA_BOOTSTRAP_SERVERS": kafka_server.url,
                "GREENLANE_DATABASE_URL": database_url,
                "GREENLANE_GRID_URL": f"http://127.0.0.1:{ports['grid']}",
                "GREENLANE_FLEET_EVENTS_PARTITIONS": "3",
                "GREENLANE_PRICING_GROUP_ID": f"pricing-{uuid.uuid4().hex[:8]}",
                "GREENLANE_METRICS_HOST": "127.0.0.1",
                "GREENLANE_METRICS_PORT": str(ports["pricing"]),
            },
        )
        await wait_http(f"http://127.0.0.1:{ports['grid']}/readyz", grid)
        await wait_http(f"http://127.0.0.1:{ports['ingestion']}/readyz", ingestion)
        await wait_http(f"http://127.0.0.1:{ports['pricing']}/readyz", pricing)
        yield Stack(
            grid,
            ingestion,
            pricing,
            ports["grid"],
            ports["grpc"],
            ports["ingestion"],
            ports["pricing"],
            database_url,
        )
    finally:
        started.remove_all()


async def test_the_grid_container_prices_and_answers_its_probes(stack: Stack) -> None:
    base = f"http://127.0.0.1:{stack.grid_port}"
    assert (await asyncio.to_thread(http_get, f"{base}/healthz"))[0] == 200
    status, body = await asyncio.to_thread(http_get, f"{base}/api/pricing?at=2026-11-26T23:00:00Z")
    assert status == 200
    assert set(json.loads(body)) >= {"price_per_kwh", "grid_load", "energy_source"}


async def test_the_ingestion_container_serves_grpc_health_and_readiness(stack: Stack) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.grpc_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    status, body = await asyncio.to_thread(
        http_get, f"http://127.0.0.1:{stack.ingestion_metrics_port}/readyz"
    )
    assert status == 200 and json.loads(body)["status"] == "ready", body


async def test_the_pricing_worker_container_is_ready_on_its_broker_and_database(
    stack: Stack,
) -> None:
    status, body = await asyncio.to_thread(
        http_get, f"http://127.0.0.1:{stack.pricing_metrics_port}/readyz"
    )
    assert status == 200, body
    assert all(json.loads(body)["checks"].values())


async def test_a_simulator_container_streams_through_the_containers_into_postgresql(
    stack: Stack,
    images: dict[str, ci.Built],
    containers: Containers,
    redis_server: EmbeddedRedis,
) -> None:
    prefix = f"ctr{uuid.uuid4().hex[:6]}"
    done = await asyncio.to_thread(
        containers.run,
        images["simulator"].ref,
        *("--cars", "5", "--interval", "0.5", "--duration", "6", "--car-prefix", prefix),
        *("--target", f"127.0.0.1:{stack.grpc_port}", "--json", "--no-progress"),
        env={"GREENLANE_API_TOKEN": TOKEN},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["result"] == "completed" and summary["accepted"] > 0, summary
    assert summary["rejected"] == summary["unavailable"] == 0

    redis = Redis.from_url(redis_server.url)
    try:
        positions = await redis.geopos(
            keys.FLEET_LOCATIONS, *(f"{prefix}-{i:05d}" for i in range(5))
        )
    finally:
        await redis.aclose()
    assert all(p is not None for p in positions)

    def rows() -> tuple[int, int]:
        with psycopg.connect(stack.database_url) as conn:
            found = conn.execute(
                "SELECT count(*), count(DISTINCT car_id) FROM charging_sessions"
                " WHERE car_id LIKE %s",
                (f"{prefix}-%",),
            ).fetchone()
        assert found is not None
        return int(found[0]), int(found[1])

    for _ in range(120):
        count, cars = await asyncio.to_thread(rows)
        if count >= summary["accepted"]:
            break
        await asyncio.sleep(0.5)
    # One row per accepted status, every car: the worker priced them all.
    assert (count, cars) == (summary["accepted"], 5)


# ---------------------------------------------------------------- the operator image


@pytest.mark.kmock(cls=ApiServer)
async def test_the_operator_container_is_ready_and_watches_an_api_server(
    kmock: kmock.KubernetesEmulator,
    images: dict[str, ci.Built],
    containers: Containers,
    tmp_path: Path,
) -> None:
    api = serve_greenlane(kmock)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", str(api.url).rstrip("/"))
    kubeconfig.chmod(0o644)  # uid 10001 reads it
    metrics, liveness = free_port(), free_port()
    operator = await asyncio.to_thread(
        containers.start,
        images["operator"].ref,
        env={
            "KUBECONFIG": "/etc/greenlane/kubeconfig",
            "GREENLANE_OPERATOR_NAMESPACE": NS,
            "GREENLANE_METRICS_HOST": "127.0.0.1",
            "GREENLANE_METRICS_PORT": str(metrics),
            "GREENLANE_LIVENESS_ENDPOINT": f"http://127.0.0.1:{liveness}/healthz",
        },
        mounts=[(kubeconfig, "/etc/greenlane/kubeconfig")],
    )
    body = await wait_http(f"http://127.0.0.1:{metrics}/readyz", operator)
    assert json.loads(body)["checks"] == {"fleetsimulations": True}
    await wait_http(f"http://127.0.0.1:{liveness}/healthz", operator)
    for _ in range(120):  # kopf opens its watch soon after its liveness endpoint
        if any(r.resource == FSIM and r.params.get("watch") == "true" for r in api):
            break
        await asyncio.sleep(0.25)
    else:
        raise AssertionError(f"the operator never watched FleetSimulations:\n{operator.logs()}")
    await asyncio.to_thread(operator.stop, 20)
    assert await asyncio.to_thread(operator.exit_code) == 0, operator.logs()


def test_the_operator_container_without_credentials_exits_2_with_one_line(
    images: dict[str, ci.Built], containers: Containers
) -> None:
    done = containers.run(images["operator"].ref, env={"GREENLANE_OPERATOR_NAMESPACE": NS})
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: no Kubernetes credentials") and "set KUBECONFIG" in line


async def test_the_planner_container_solves_a_what_if_and_answers_its_probes(
    images: dict[str, ci.Built],
    containers: Containers,
    redis_server: EmbeddedRedis,
    kafka_server: EmbeddedKafka,
) -> None:
    port = free_port()
    planner = containers.start(
        images["planner"].ref,
        env={
            "GREENLANE_ENVIRONMENT": "production",
            "GREENLANE_API_TOKENS": TOKEN,
            "GREENLANE_PLANNER_HOST": "127.0.0.1",
            "GREENLANE_PLANNER_PORT": str(port),
            # The live planner's backends: ready once it reads fleet-events and Redis.
            "GREENLANE_REDIS_URL": redis_server.url,
            "GREENLANE_KAFKA_BOOTSTRAP_SERVERS": kafka_server.url,
            "GREENLANE_REGION": "container-test",
        },
    )
    await wait_http(f"http://127.0.0.1:{port}/readyz", planner)
    request = {
        "slot_minutes": 15,
        "prices": [0.30, 0.10, 0.20],
        "site_limit_kw": 11,
        "cars": [
            {"car_id": "c1", "arrive_slot": 0, "depart_slot": 3, "energy_kwh": 2.75, "max_kw": 11}
        ],
    }
    status, body = await asyncio.to_thread(
        http_post, f"http://127.0.0.1:{port}/api/planner/solve", request
    )
    assert status == 200, body
    plan = json.loads(body)
    # 2.75 kWh is 11 kW for one 15-minute slot: the cheapest one (0.10 $/kWh).
    assert plan["feasible"] is True and plan["cars"][0]["power_kw"] == [0.0, 11.0, 0.0]


async def test_the_hub_container_serves_the_built_map_and_a_snapshot_of_the_stations(
    images: dict[str, ci.Built],
    containers: Containers,
    redis_server: EmbeddedRedis,
    kafka_server: EmbeddedKafka,
) -> None:
    from greenlane.core.stations import Station, load_stations

    client = Redis.from_url(redis_server.url)
    try:
        await load_stations(client, [Station("hub-c1", "Container", 40.75, -73.98, 2, 50.0)])
    finally:
        await client.aclose()
    port = free_port()
    hub = containers.start(
        images["hub"].ref,
        env={
            "GREENLANE_ENVIRONMENT": "production",
            "GREENLANE_API_TOKENS": TOKEN,
            "GREENLANE_REDIS_URL": redis_server.url,
            "GREENLANE_KAFKA_BOOTSTRAP_SERVERS": kafka_server.url,
            "GREENLANE_FLEET_EVENTS_TOPIC": f"fleet-events-{uuid.uuid4().hex[:8]}",
            "GREENLANE_HUB_HOST": "127.0.0.1",
            "GREENLANE_HUB_PORT": str(port),
        },
    )
    await wait_http(f"http://127.0.0.1:{port}/readyz", hub)
    status, page = await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/")
    # The dashboard the image's Node stage built, not the "build the page first" notice.
    assert status == 200 and b"<script" in page and b'type="module"' in page, page[:500]
    # Read once ready, shown from the hub's next tick.
    stations: object = None
    for _ in range(50):
        status, body = await asyncio.to_thread(
            http_get_token, f"http://127.0.0.1:{port}/api/snapshot", TOKEN
        )
        assert status == 200, body
        stations = json.loads(body)["stations"]
        if "hub-c1" in json.dumps(stations):
            break
        await asyncio.sleep(0.2)
    assert "hub-c1" in json.dumps(stations), stations


def http_post(url: str, payload: object) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"content-type": "application/json", "x-api-token": TOKEN},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_get_token(url: str, token: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"x-api-token": token})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()

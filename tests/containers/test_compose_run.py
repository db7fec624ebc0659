"""compose.yaml run for real: its GreenLane services on stand-ins for the upstream images.

What this covers: every GreenLane service of compose.yaml runs from the image
`make images` builds (this checkout's, under its own tag), with the file's
environment, entry points, commands, user, read-only root, dropped capabilities,
no-new-privileges, tmpfs and health checks, started in depends_on order (migrate
must finish first) on a network where each is reached by its service name; the
simulator's fleet then lands rows in PostgreSQL. What it does not: the upstream
images themselves (Redis, Redpanda, TimescaleDB are stand-ins, see
compose.standins.yaml), published ports, restart policies, and `docker compose` /
`podman compose` themselves (compose_run.py is the runner).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import container_images as ci
import pytest
from chart.helm import ROOT
from containers.compose_run import ComposeRun, load
from containers.standins import COMPOSE_OVERRIDE, backends_image

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

TOKEN = "compose-test-token-5b2e91"
REDIS_PASSWORD = "composeRedisPassword7c41"
COUNT_ROWS = (
    "import json, os, psycopg; print(json.dumps(psycopg.connect(os.environ["
    "'GREENLANE_DATABASE_URL']).execute('SELECT count(*), count(DISTINCT car_id)"
    " FROM charging_sessions').fetchone()))"
)


@pytest.fixture(scope="module")
def compose(engine: ci.Engine, images: dict[str, ci.Built]) -> Iterator[ComposeRun]:
    env = {
        "GREENLANE_API_TOKENS": TOKEN,
        "GREENLANE_REDIS_PASSWORD": REDIS_PASSWORD,
        "GREENLANE_STANDIN_BACKENDS": backends_image(engine),
    }
    model = load([ROOT / "compose.yaml", COMPOSE_OVERRIDE], env)
    # compose.yaml's images, as this checkout built them (under its own tag).
    built = {b.ref.split(":")[0]: b.ref for b in images.values()}
    for service in model["services"].values():
        name, _, tag = str(service["image"]).partition(":")
        if name in built:
            assert tag == ci.app_version()
            service["image"] = built[name]
    run = ComposeRun(engine, model)
    try:
        run.up(timeout=240)
        yield run
    finally:
        run.down()


def test_every_long_running_service_of_the_compose_file_becomes_healthy(
    compose: ComposeRun,
) -> None:
    services = compose.model["services"]
    with_checks = sorted(n for n, s in services.items() if "healthcheck" in s)
    assert set(with_checks) >= {"grid", "ingestion", "pricing-worker", "redis", "timescaledb"}
    for name in with_checks:
        compose.wait_for(name, "service_healthy", timeout=120)
    assert compose.state("migrate")["ExitCode"] == 0
    assert compose.state("simulator")["Running"], compose.logs("simulator")


async def test_the_compose_fleet_lands_priced_rows_in_postgresql(compose: ComposeRun) -> None:
    rows, cars = 0, 0
    for _ in range(90):
        done = await asyncio.to_thread(compose.exec, "pricing-worker", "python", "-c", COUNT_ROWS)
        assert done.returncode == 0, done.stderr
        rows, cars = json.loads(done.stdout)
        if cars == 20:
            break
        await asyncio.sleep(1)
    assert rows > 0 and cars == 20, compose.logs("pricing-worker")


def test_the_greenlane_containers_run_as_10001_read_only_without_capabilities(
    compose: ComposeRun,
) -> None:
    for name in ("grid", "ingestion", "pricing-worker", "simulator"):
        done = compose.exec(name, "python", "-c", "import os; print(os.getuid(), os.getgid())")
        assert done.stdout.split() == ["10001", "10001"], name
        status = compose.exec(name, "grep", "-E", "^(CapEff|NoNewPrivs)", "/proc/1/status")
        assert status.stdout.split() == ["CapEff:", "0000000000000000", "NoNewPrivs:", "1"]
        denied = compose.exec(name, "python", "-c", "open('/app/x', 'w')")
        assert "Read-only file system" in denied.stderr, name

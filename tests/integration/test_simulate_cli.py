"""`greenlane simulate -f` runs a FleetSimulation YAML against a real ingestion server.

The command runs as a process, as a user runs it; ingestion runs in the test's
event loop on real Valkey and Tansu. Refusals (a bad file) are checked in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from redis.asyncio import Redis

from greenlane.cli.commands import simulate
from greenlane.core import keys

pytestmark = pytest.mark.integration

# The real `greenlane` entry point, with its real list of commands.
CLI = "import sys; import greenlane.cli.__main__ as cli; sys.exit(cli.main(sys.argv[1:]))"


def fleet_yaml(path: Path, **spec: Any) -> Path:
    values: dict[str, Any] = {
        "cars": 2,
        "updateIntervalSeconds": 0.2,
        "durationSeconds": 2,
        "region": "manhattan",
        "seed": 11,
        "tokenSecretRef": {"name": "greenlane-auth"},
    }
    values.update(spec)
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "greenlane.io/v1alpha1",
                "kind": "FleetSimulation",
                "metadata": {"name": "local-smoke"},
                "spec": values,
            }
        )
    )
    return path


def clean_env() -> dict[str, str]:
    """The environment without GREENLANE_* settings a developer's shell may carry."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GREENLANE_")}


async def greenlane(cwd: Path, *argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLI,
        *argv,
        cwd=cwd,
        env=clean_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_simulate_file_drives_ingestion_and_prints_the_simulators_summary(
    ingestion: Any, redis_client: Redis, tmp_path: Path
) -> None:
    path = fleet_yaml(tmp_path / "fleet.yaml")
    code, out, err = await greenlane(
        tmp_path,
        "simulate",
        "-f",
        str(path),
        "--target",
        f"127.0.0.1:{ingestion.port}",
        "--json",
        "--no-progress",
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["result"] == "completed"
    assert summary["cars"] == 2
    assert summary["interval_s"] == 0.2
    assert summary["target"] == f"127.0.0.1:{ingestion.port}"
    assert summary["sent"] >= 4
    assert summary["accepted"] == summary["sent"]
    assert "FleetSimulation local-smoke: 2 cars in manhattan" in err

    # The cars are named after the FleetSimulation, as its pods would name them.
    for car in ("local-smoke-00000", "local-smoke-00001"):
        stored = await redis_client.hgetall(keys.car_state(car))
        assert stored, f"{car} never reached Redis"
        (position,) = await redis_client.geopos(keys.FLEET_LOCATIONS, car)
        assert position is not None
        lon, lat = position
        assert 40.700 <= lat <= 40.880 and -74.020 <= lon <= -73.907


async def test_simulate_file_prints_the_simulators_table_without_json(
    ingestion: Any, redis_client: Redis, tmp_path: Path
) -> None:
    path = fleet_yaml(tmp_path / "fleet.yaml", cars=1, durationSeconds=1)
    code, out, err = await greenlane(
        tmp_path, "simulate", "-f", str(path), "--target", f"127.0.0.1:{ingestion.port}"
    )
    assert code == 0, err
    assert "GreenLane fleet simulation" in out
    assert "accepted" in out


async def test_simulate_without_a_file_passes_the_simulators_flags_through(
    ingestion: Any, redis_client: Redis, tmp_path: Path
) -> None:
    code, out, err = await greenlane(
        tmp_path,
        "simulate",
        "--cars",
        "3",
        "--interval",
        "0.2",
        "--duration",
        "1",
        "--car-prefix",
        "passthrough",
        "--target",
        f"127.0.0.1:{ingestion.port}",
        "--json",
        "--no-progress",
    )
    assert code == 0, err
    assert json.loads(out)["cars"] == 3
    assert await redis_client.exists(keys.car_state("passthrough-00002")) == 1


async def test_simulate_file_finds_ingestion_through_the_dev_env_file(
    ingestion: Any, redis_client: Redis, tmp_path: Path
) -> None:
    (tmp_path / ".greenlane").mkdir()
    (tmp_path / ".greenlane" / "dev.env").write_text(
        f"GREENLANE_INGESTION_ADDR=127.0.0.1:{ingestion.port}\n"
    )
    path = fleet_yaml(tmp_path / "fleet.yaml", cars=1, durationSeconds=1)
    code, out, err = await greenlane(tmp_path, "simulate", "-f", str(path), "--json")
    assert code == 0, err
    assert json.loads(out)["target"] == f"127.0.0.1:{ingestion.port}"


def run_in_process(cwd: Path, monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    monkeypatch.chdir(cwd)
    for name in list(os.environ):
        if name.startswith("GREENLANE_"):
            monkeypatch.delenv(name)
    parser = argparse.ArgumentParser(prog="greenlane")
    simulate.add_parser(parser.add_subparsers(dest="command", required=True))
    return simulate.main(parser.parse_args(["simulate", *argv]))


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"region": "atlantis"}, "spec.region"),
        ({"cars": 0}, "spec.cars"),
        ({"parallelism": 5}, "spec.parallelism"),
        ({"boundingBox": {"south": 1, "west": 1, "north": 2, "east": 2}}, "spec.boundingBox"),
    ],
    ids=["unknown_region", "no_cars", "more_pods_than_cars", "region_and_box"],
)
def test_simulate_file_refuses_a_broken_spec_naming_the_field(
    spec: dict[str, Any],
    field: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = fleet_yaml(tmp_path / "fleet.yaml", **spec)
    assert run_in_process(tmp_path, monkeypatch, "-f", str(path)) == 2
    err = capsys.readouterr().err
    assert field in err
    assert "Traceback" not in err


def test_simulate_file_refuses_flags_the_file_decides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = fleet_yaml(tmp_path / "fleet.yaml")
    assert run_in_process(tmp_path, monkeypatch, "-f", str(path), "--cars", "50") == 2
    assert "--cars: with -f the file decides (spec.cars)" in capsys.readouterr().err


def test_simulate_file_refuses_a_file_that_is_not_a_fleet_simulation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "deployment.yaml"
    path.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n")
    assert run_in_process(tmp_path, monkeypatch, "-f", str(path)) == 2
    assert "holds 0 FleetSimulations" in capsys.readouterr().err

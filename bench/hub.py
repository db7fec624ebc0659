"""`python -m bench hub`: cars -> ingestion -> Kafka -> hub -> WebSocket clients (and the map).

Cars go through StreamTelemetryBatches, as a fleet gateway sends them: one stream per car
reaches about 6-7k statuses/s on these 2 cores (docs/benchmarks.md), below 10,000/s. Each
car still sends one status per second. The load generator and the WebSocket clients run
in processes of their own; latency pairs each tracked status's acknowledgement (the
gateway's BatchResponse) with the first frame that carries it at a client, both stamped
with the wall clock of this one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

TOKEN = "greenlane-secret-token"
TRACKED = 300  # cars whose every status is timed
WARMUP_S = 8.0
BBOX = (40.70, -74.02, 40.88, -73.907)


# ---------------------------------------------------------------------- load generator


async def gateway(
    target: str, cars: int, start_at: float, report_at: float, end_at: float, out: Path
) -> None:
    """cars statuses per second over streams of batches, from start_at to end_at (epoch s);
    what was acknowledged is written to `out` at report_at (the load goes on after it)."""
    import grpc

    from greenlane.v1 import fleet_pb2, fleet_pb2_grpc

    streams, hz = 8, 20
    rng = random.Random(1)
    pos = [
        [rng.uniform(BBOX[0], BBOX[2]), rng.uniform(BBOX[1], BBOX[3]), rng.uniform(60, 100)]
        for _ in range(cars)
    ]
    acks: dict[str, float] = {}
    counts = {"sent": 0, "accepted": 0, "rejected": 0, "unavailable": 0}
    channel = grpc.aio.insecure_channel(target)
    stub = fleet_pb2_grpc.FleetTelemetryStub(channel)
    metadata = (("x-api-token", TOKEN),)

    async def one_stream(k: int) -> None:
        mine = list(range(k, cars, streams))
        per_tick = math.ceil(len(mine) / hz)
        queue: asyncio.Queue[fleet_pb2.CarStatusBatch | None] = asyncio.Queue()
        pending: list[list[str]] = []

        async def requests() -> Any:
            while (item := await queue.get()) is not None:
                yield item

        call = stub.StreamTelemetryBatches(requests(), metadata=metadata)

        async def answers() -> None:
            async for answer in call:
                now = time.time()
                keys = pending.pop(0)
                counts["accepted"] += answer.accepted
                counts["rejected"] += len(answer.rejected)
                if answer.status == fleet_pb2.UNAVAILABLE:
                    counts["unavailable"] += len(keys)
                    continue
                for key in keys:
                    acks.setdefault(key, now)

        reader = asyncio.create_task(answers())
        tick = 0
        while True:
            now = time.time()
            if now >= end_at:
                break
            if now < start_at:
                await asyncio.sleep(min(start_at - now, 0.05))
                continue
            chunk = mine[(tick % hz) * per_tick : (tick % hz + 1) * per_tick]
            tick += 1
            stamp = int(time.time() * 1000)
            batch = fleet_pb2.CarStatusBatch()
            tracked: list[str] = []
            for i in chunk:
                p = pos[i]
                p[0] = min(max(p[0] + rng.uniform(-2e-4, 2e-4), BBOX[0]), BBOX[2])
                p[1] = min(max(p[1] + rng.uniform(-2e-4, 2e-4), BBOX[1]), BBOX[3])
                car_id = f"car-{i:05d}"
                batch.statuses.append(
                    fleet_pb2.CarStatus(
                        car_id=car_id,
                        lat=p[0],
                        lon=p[1],
                        battery=p[2],
                        velocity=30.0,
                        timestamp=stamp,
                    )
                )
                if i < TRACKED:
                    tracked.append(f"{car_id}|{stamp}")
            pending.append(tracked)
            await queue.put(batch)
            counts["sent"] += len(chunk)
            next_tick = start_at + tick / hz
            await asyncio.sleep(max(next_tick - time.time(), 0))
        await queue.put(None)
        await asyncio.wait_for(reader, 30)

    async def report() -> None:
        await asyncio.sleep(max(report_at - time.time(), 0))
        text = json.dumps({"counts": dict(counts), "acks": dict(acks)})
        await asyncio.to_thread(out.write_text, text)

    await asyncio.gather(report(), *(one_stream(k) for k in range(streams)))
    await channel.close()


# ---------------------------------------------------------------------- WebSocket clients


async def clients(
    port: int, n: int, probe: bool, window: tuple[float, float], until: float, out: Path
) -> None:
    """n clients counting what they get; a probe (a process of its own, so that its
    clock is not that of a busy process) also parses every frame for the tracked cars."""
    from websockets.asyncio.client import connect

    tracked = {f"car-{i:05d}" for i in range(TRACKED)}
    seen: dict[str, float] = {}
    totals = [{"bytes": 0, "frames": 0, "snapshots": 0} for _ in range(n)]

    async def client(k: int) -> None:
        url = f"ws://127.0.0.1:{port}/ws"
        async with connect(
            url, additional_headers={"x-api-token": TOKEN}, max_size=None, max_queue=64
        ) as ws:
            while time.time() < until:
                try:
                    message = await asyncio.wait_for(
                        ws.recv(decode=False), max(until - time.time(), 0.1)
                    )
                except TimeoutError:
                    break
                now = time.time()
                if window[0] <= now < window[1]:
                    totals[k]["bytes"] += len(message)
                    totals[k]["frames"] += 1
                if probe:
                    frame = json.loads(message)
                    if frame["type"] == "snapshot":
                        totals[k]["snapshots"] += 1
                    for car_id, car in (frame.get("cars") or {}).items():
                        if car is not None and car_id in tracked:
                            seen.setdefault(f"{car_id}|{car['timestamp']}", now)

    await asyncio.gather(*(client(k) for k in range(n)), return_exceptions=True)
    await asyncio.to_thread(out.write_text, json.dumps({"totals": totals, "seen": seen}))


# ---------------------------------------------------------------------- orchestration


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:  # noqa: S310
        for line in answer.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{}"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def start_hub(
    workdir: Path, redis_url: str, kafka: str, topic: str
) -> tuple[subprocess.Popen[bytes], int]:
    from greenlane.cli.embedded import free_port, spawn

    port = free_port()
    env = {
        **os.environ,
        "GREENLANE_API_TOKENS": TOKEN,
        "GREENLANE_REDIS_URL": redis_url,
        "GREENLANE_KAFKA_BOOTSTRAP_SERVERS": kafka,
        "GREENLANE_FLEET_EVENTS_TOPIC": topic,
        "GREENLANE_HUB_HOST": "127.0.0.1",
        "GREENLANE_HUB_PORT": str(port),
        "GREENLANE_LOG_LEVEL": "WARNING",
    }
    proc = spawn([sys.executable, "-m", "greenlane.hub"], workdir / "hub.log", env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:  # noqa: S310
                if r.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the hub did not become ready; see " + str(workdir / "hub.log"))


def run_phase(
    workdir: Path,
    target: str,
    hub: subprocess.Popen[bytes],
    port: int,
    cars: int,
    n_clients: int,
    seconds: float,
    fps_seconds: float,
) -> dict[str, Any]:
    """One load: warm-up, a measured window, then (optionally) the map's frame rate."""
    from greenlane.cli.embedded import spawn, stop_process

    now = time.time()
    start_at = now + 3.0
    window = (start_at + WARMUP_S, start_at + WARMUP_S + seconds)
    until = window[1] + 1.0 + (fps_seconds + 60 if fps_seconds else 0)
    here = [sys.executable, "-m", "bench.hub"]
    cwd = Path(__file__).resolve().parent.parent
    load_out = workdir / f"gateway-{cars}.json"
    load = spawn(
        [*here, "gateway", target, str(cars), str(start_at), str(window[1] + 1.5), str(until)]
        + [str(load_out)],
        workdir / "gateway.log",
        cwd=cwd,
    )
    groups = []
    rest = n_clients - 1  # one probe, the others in two counting processes
    for g, (n, probe) in enumerate([(1, True), ((rest + 1) // 2, False), (rest // 2, False)]):
        if not n:
            continue
        out = workdir / f"clients-{cars}-{g}.json"
        times = [str(window[0]), str(window[1]), str(window[1] + 1.0)]
        proc = spawn(
            [*here, "clients", str(port), str(n), "probe" if probe else "count", *times, str(out)],
            workdir / "clients.log",
            cwd=cwd,
        )
        groups.append((proc, out))
    time.sleep(max(window[0] - time.time(), 0))
    cpu0, bytes0, frames0 = (
        cpu_seconds(hub.pid),
        metric(port, "greenlane_hub_bytes_total"),
        metric(port, "greenlane_hub_frames_total"),
    )
    changes0, coalesced0 = (
        metric(port, "greenlane_hub_changes_total"),
        metric(port, "greenlane_hub_coalesced_total"),
    )
    time.sleep(max(window[1] - time.time(), 0))
    cpu1, bytes1, frames1 = (
        cpu_seconds(hub.pid),
        metric(port, "greenlane_hub_bytes_total"),
        metric(port, "greenlane_hub_frames_total"),
    )
    changes1, coalesced1 = (
        metric(port, "greenlane_hub_changes_total"),
        metric(port, "greenlane_hub_coalesced_total"),
    )
    lag = metric(port, "greenlane_hub_lag_seconds")
    for proc, _ in groups:
        proc.wait(timeout=120)
    fps = asyncio.run(dashboard_fps(port, cars, fps_seconds)) if fps_seconds else None
    deadline = time.time() + 60
    while not load_out.exists() and load.poll() is None and time.time() < deadline:
        time.sleep(0.2)  # the gateway reports what was acknowledged after the window
    time.sleep(0.5)
    stop_process(load, signal.SIGTERM, 10)
    gateway_result = (
        json.loads(load_out.read_text()) if load_out.exists() else {"counts": {}, "acks": {}}
    )
    results = [json.loads(out.read_text()) for _, out in groups if out.exists()]
    seen: dict[str, float] = {}
    totals: list[dict[str, int]] = []
    for r in results:
        totals += r["totals"]
        for key, t in r["seen"].items():
            seen[key] = min(t, seen.get(key, t))
    acks = gateway_result["acks"]
    latencies = [
        (seen[key] - acked) * 1000
        for key, acked in acks.items()
        if key in seen and window[0] <= acked < window[1] - 1.0
    ]
    wanted = [k for k, acked in acks.items() if window[0] <= acked < window[1] - 1.0]
    elapsed = window[1] - window[0]
    connected = [t for t in totals if t["frames"]]
    return {
        "cars": cars,
        "statuses_per_s_offered": cars,
        "clients": n_clients,
        "clients_receiving": len(connected),
        "window_s": round(elapsed, 1),
        "gateway": gateway_result["counts"],
        "hub_cpu_cores": round((cpu1 - cpu0) / elapsed, 3),
        "bytes_per_client_per_s": round((bytes1 - bytes0) / max(len(connected), 1) / elapsed),
        "frames_per_client_per_s": round((frames1 - frames0) / max(len(connected), 1) / elapsed, 2),
        "client_bytes_per_s_mean": round(
            sum(t["bytes"] for t in totals) / max(len(connected), 1) / elapsed
        ),
        "changes_per_s": round((changes1 - changes0) / elapsed),
        "coalesced_share": round((coalesced1 - coalesced0) / max(changes1 - changes0, 1), 4),
        "lag_seconds_at_end": lag,
        "latency_samples": len(latencies),
        "latency_coverage": round(len(latencies) / max(len(wanted), 1), 3),
        "ack_to_frame_ms": {
            "p50": _r(percentile(latencies, 0.50)),
            "p90": _r(percentile(latencies, 0.90)),
            "p99": _r(percentile(latencies, 0.99)),
            "max": _r(max(latencies) if latencies else None),
        },
        "dashboard_fps": fps,
    }


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


async def dashboard_fps(port: int, cars: int, seconds: float) -> dict[str, Any]:
    """Frames per second of the map in headless Chromium (software WebGL) with every car."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            await page.goto(f"http://127.0.0.1:{port}/#token={TOKEN}")
            await page.wait_for_function(
                f"window.__greenlane?.counts.cars >= {int(cars * 0.98)}", timeout=60_000
            )
            shown = await page.evaluate("__greenlane.counts.cars")
            fps = await page.evaluate(f"__greenlane.measureFps({int(seconds * 1000)})")
            idle = await page.evaluate(
                """() => new Promise(r => { let n = 0; const t0 = performance.now();
                const f = () => { n++; if (performance.now() - t0 < 3000) requestAnimationFrame(f);
                else r(n * 1000 / (performance.now() - t0)); }; requestAnimationFrame(f); })"""
            )
            return {"cars_on_map": shown, "panning_fps": round(fps, 1), "raf_fps": round(idle, 1)}
        finally:
            await browser.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench hub", description=__doc__)
    parser.add_argument(
        "--cars",
        default="2000,10000",
        help="fleet sizes, one status per car per second (2000,10000)",
    )
    parser.add_argument("--clients", type=int, default=50, help="WebSocket clients (50)")
    parser.add_argument(
        "--seconds", type=float, default=15.0, help="measured seconds per fleet size (15)"
    )
    parser.add_argument(
        "--fps-seconds",
        type=float,
        default=5.0,
        help="seconds of panning to time the map (5; 0: skip)",
    )
    parser.add_argument("--quick", action="store_true", help="1000 and 5000 cars, 8 s windows")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.quick:
        args.cars, args.seconds = "1000,5000", 8.0
    sizes = [int(c) for c in args.cars.split(",")]
    from redis.asyncio import Redis

    from bench.__main__ import start_ingestion
    from greenlane.cli.embedded import EmbeddedKafka, EmbeddedRedis, free_port, stop_process
    from greenlane.core.kafka import ensure_topic
    from greenlane.core.stations import load_stations, parse_stations

    phases = []
    with tempfile.TemporaryDirectory(prefix="greenlane-bench-hub-") as tmp:
        workdir = Path(os.environ.get("GREENLANE_BENCH_KEEP") or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        redis, kafka = EmbeddedRedis(free_port(), workdir), EmbeddedKafka(free_port(), workdir)
        redis.start()
        kafka.start()
        procs: list[subprocess.Popen[bytes]] = []
        try:
            stations = parse_stations(
                (Path(__file__).resolve().parent.parent / "data/stations/manhattan.csv").read_text()
            )

            async def prepare() -> None:
                client = Redis.from_url(redis.url)
                await load_stations(client, stations)
                await client.aclose()
                await ensure_topic(kafka.url, "fleet-events", partitions=6)

            asyncio.run(prepare())
            ingestion, target = start_ingestion(workdir, redis.url, kafka.url)
            procs.append(ingestion)
            hub, port = start_hub(workdir, redis.url, kafka.url, "fleet-events")
            procs.append(hub)
            for i, cars in enumerate(sizes):
                if not args.json:
                    print(
                        f"{cars:,} cars × 1 status/s → ingestion → Kafka → hub → "
                        f"{args.clients} clients…",
                        file=sys.stderr,
                    )
                fps_seconds = args.fps_seconds if i == len(sizes) - 1 else 0.0
                phases.append(
                    run_phase(
                        workdir, target, hub, port, cars, args.clients, args.seconds, fps_seconds
                    )
                )
        finally:
            for proc in reversed(procs):
                stop_process(proc, signal.SIGTERM)
            kafka.stop()
            redis.stop()
    report = {"benchmark": "hub", "machine_cores": os.cpu_count(), "phases": phases}
    if args.json:
        print(json.dumps(report))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="GreenLane hub benchmark", title_justify="left")
    table.add_column("measure")
    for phase in phases:
        table.add_column(f"{phase['cars']:,} cars/s", justify="right")
    rows: list[tuple[str, str | tuple[str, str] | None]] = [
        ("hub CPU (cores)", "hub_cpu_cores"),
        ("bytes per client per second", "bytes_per_client_per_s"),
        ("frames per client per second", "frames_per_client_per_s"),
        ("clients receiving", "clients_receiving"),
        ("changes/s at the hub", "changes_per_s"),
        ("coalesced share", "coalesced_share"),
        ("lag at the end (s)", "lag_seconds_at_end"),
        ("ack → frame p50 (ms)", ("ack_to_frame_ms", "p50")),
        ("ack → frame p99 (ms)", ("ack_to_frame_ms", "p99")),
        ("latency samples (coverage)", None),
    ]
    for label, key in rows:
        cells = []
        for phase in phases:
            if key is None:
                cells.append(f"{phase['latency_samples']:,} ({phase['latency_coverage']:.0%})")
            elif isinstance(key, tuple):
                cells.append(str(phase[key[0]][key[1]]))
            elif isinstance(key, str):
                cells.append(
                    f"{phase[key]:,}" if isinstance(phase[key], int | float) else str(phase[key])
                )
        table.add_row(label, *cells)
    Console().print(table)
    fps = phases[-1].get("dashboard_fps")
    if fps:
        print(
            f"dashboard in headless Chromium (SwiftShader) with {fps['cars_on_map']:,} cars: "
            f"{fps['panning_fps']} FPS panning, {fps['raf_fps']} animation frames/s"
        )
    return 0


def _entry() -> int:
    command, *rest = sys.argv[1:]
    if command == "gateway":
        target, cars, start_at, report_at, end_at, out = rest
        times = float(start_at), float(report_at), float(end_at)
        asyncio.run(gateway(target, int(cars), *times, Path(out)))
    elif command == "clients":
        port, n, kind, w0, w1, until, out = rest
        window = (float(w0), float(w1))
        asyncio.run(clients(int(port), int(n), kind == "probe", window, float(until), Path(out)))
    else:
        raise SystemExit(f"unknown command {command!r}")
    return 0


if __name__ == "__main__":
    sys.exit(_entry())

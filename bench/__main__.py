"""`make bench` (`python -m bench [NAME] [ARGS]`): every benchmark, or the one named.

- `python -m bench ingestion`: ingestion throughput and latency next to the raw ceilings
  of the same run (this module);
- `python -m bench tracing`: saturated ingestion with tracing on (10 % sampling) against
  tracing off, in one run (bench/tracing.py);
- `python -m bench planner`: the charging planner against uncontrolled charging, per-car
  cheapest, acnportal and the offline optimum, and the 500-car re-plan time
  (bench/planner.py);
- `python -m bench hub`: ingestion -> Kafka -> the WebSocket hub -> 50 clients, and the
  dashboard's frame rate in headless Chromium (bench/hub.py);
- `python -m bench chaos --minutes N`: the platform while its parts fail at random, and
  the end-to-end audit (bench/chaos.py);
- `python -m bench soak --minutes N`: every service's memory while 2,000 cars stream
  (bench/soak.py);
- `python -m bench fleet [--json]`: a simulated day of 1,000 cars, the fixed 20 % threshold
  against prediction-led booking and demand prices on the same seed, and the drain
  predictor's error against the naive last rate (bench/fleet.py);
- `python -m bench` runs them all but the soak (`--quick` makes each quick).

Servers and load generator share this machine, so absolute figures are noisy:
the ratios, measured in one run on the same servers, are what to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table

from greenlane.cli.embedded import (
    EmbeddedKafka,
    EmbeddedRedis,
    free_port,
    spawn,
    stop_process,
    wait_for_port,
)
from greenlane.core import keys
from greenlane.core.events import REDIS_FIELDS, CarState
from greenlane.core.kafka import ensure_topic, make_producer
from greenlane.core.redis_state import write_car_states
from greenlane.core.settings import DEV_TOKEN

TOKEN = DEV_TOKEN
WARMUP_S = 5.0
console = Console()


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    note: str = ""


def simulate(
    target: str, *args: str, seconds: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run the simulator as its own process (its own core) and return its JSON summary.

    env: variables to add (say OTEL_*) to this environment's."""
    argv = [
        sys.executable,
        "-m",
        "greenlane.simulator",
        "--target",
        target,
        "--json",
        "--no-progress",
        "--seed",
        "1",
        "--duration",
        str(seconds + WARMUP_S),
        # Measured after stream set-up; batteries high enough that no car needs a
        # booking during the run (bookings have their own figure).
        "--warmup",
        str(WARMUP_S),
        "--initial-battery",
        "60,100",
        "--log-level",
        "WARNING",
        *args,
    ]
    full = {**os.environ, "GREENLANE_API_TOKEN": TOKEN, **(env or {})}
    out = subprocess.run(
        argv, capture_output=True, env=full, check=False, timeout=seconds + WARMUP_S + 120
    )
    if out.returncode != 0:
        raise RuntimeError(f"simulator failed ({out.returncode}): {out.stderr.decode()[-600:]}")
    result: dict[str, Any] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return result


def rate(summary: dict[str, Any]) -> float:
    """Statuses answered per second in the steady window."""
    return float(summary["steady"]["answered_per_s"])


def p(summary: dict[str, Any], q: str) -> float:
    """A steady-state latency percentile in ms."""
    return float(summary["steady"]["latency_ms"][q])


def start_ingestion(
    workdir: Path,
    redis_url: str,
    kafka: str,
    env: dict[str, str] | None = None,
    name: str = "ingestion",
) -> tuple[subprocess.Popen[bytes], str]:
    """An ingestion process on these servers; env: variables to add (say OTEL_*)."""
    port, metrics, api = free_port(), free_port(), free_port()
    full = {
        **os.environ,
        "GREENLANE_API_TOKENS": TOKEN,
        "GREENLANE_REDIS_URL": redis_url,
        "GREENLANE_KAFKA_BOOTSTRAP_SERVERS": kafka,
        "GREENLANE_INGESTION_HOST": "127.0.0.1",
        "GREENLANE_INGESTION_PORT": str(port),
        "GREENLANE_METRICS_HOST": "127.0.0.1",
        "GREENLANE_METRICS_PORT": str(metrics),
        # Not the default 8082: a running `make dev` holds that.
        "GREENLANE_BOOKING_API_PORT": str(api),
        "GREENLANE_LOG_LEVEL": "WARNING",
        **(env or {}),
    }
    log = workdir / f"{name}.log"
    proc = spawn([sys.executable, "-m", "greenlane.ingestion"], log, env=full)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    stop_process(proc)
    raise RuntimeError(f"ingestion did not become ready; see {log}")


def start_echo(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = spawn(
        [sys.executable, "-m", "bench.echo_server", str(port)],
        workdir / "echo.log",
        cwd=Path(__file__).resolve().parent.parent,
    )
    if not wait_for_port(port, 20, proc):
        raise RuntimeError("echo server did not start")
    return proc, f"127.0.0.1:{port}"


def states(n: int, offset: int = 0) -> list[CarState]:
    now = int(time.time() * 1000)
    return [
        CarState(
            car_id=f"bench-{(i + offset) % 5000}",
            lat=40.75,
            lon=-73.98,
            battery=50.0,
            velocity=30.0,
            timestamp=now + offset + i,
        )
        for i in range(n)
    ]


async def redis_ceiling(url: str, seconds: float) -> tuple[float, float]:
    """Statuses/s written by the script ingestion uses, and by a redis-py pipeline."""
    client = Redis.from_url(url)
    done, start, offset = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        # Newer timestamps each round: every status replaces its car's state.
        batch = states(1000, offset)
        offset += 1000
        await write_car_states(client, batch)
        done += len(batch)
    packed = done / (time.perf_counter() - start)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        pipe = client.pipeline(transaction=False)
        pipe.geoadd(keys.FLEET_LOCATIONS, [v for s in batch for v in (s.lon, s.lat, s.car_id)])
        for s in batch:
            pipe.hset(keys.car_state(s.car_id), mapping={f: getattr(s, f) for f in REDIS_FIELDS})
        await pipe.execute()
        done += len(batch)
    plain = done / (time.perf_counter() - start)
    await client.aclose()
    return packed, plain


async def booking_rate(url: str, seconds: float, cars: int = 500) -> tuple[float, float, int]:
    """Book-then-fulfil loops of many cars on few slots: script calls/s and bookings/s."""
    from redis.asyncio import BlockingConnectionPool

    from greenlane.core.stations import Station, load_stations
    from greenlane.ingestion.booking_store import BookingStore

    client = Redis.from_pool(BlockingConnectionPool.from_url(url, max_connections=64))
    await client.flushdb()
    stations = [
        Station(f"b-{i}", f"Bench {i}", 40.75 + i * 0.001, -73.98, 2, 150.0) for i in range(10)
    ]
    await load_stations(client, stations)
    store = BookingStore(client, max_radius_km=2.0)
    calls = booked = 0
    deadline = time.perf_counter() + seconds

    async def car(i: int) -> None:
        nonlocal calls, booked
        while time.perf_counter() < deadline:
            outcome = await store.book(f"car-{i}", -73.98, 40.755)
            calls += 1
            if outcome.booking is not None:
                booked += 1
                await store.end(
                    outcome.booking.booking_id,
                    "fulfilled",
                    station_id=outcome.booking.station_id,
                )
                calls += 1

    start = time.perf_counter()
    await asyncio.gather(*(car(i) for i in range(cars)))
    elapsed = time.perf_counter() - start
    await client.flushdb()
    await client.aclose()
    return calls / elapsed, booked / elapsed, sum(s.capacity for s in stations)


async def kafka_ceiling(bootstrap: str, messages: int) -> float:
    """Produce messages/s the way ingestion produces: record batches, one partition each."""
    producer = make_producer(bootstrap, client_id="bench")
    await producer.start()
    try:
        await ensure_topic(bootstrap, "bench-ceiling", partitions=6)
        partitions = sorted(await producer.partitions_for("bench-ceiling"))
        records = [(s.car_id.encode(), s.to_json()) for s in states(messages)]
        start = time.perf_counter()
        futures = []
        batch, turn = producer.create_batch(), 0
        for key, value in records:
            if batch.append(key=key, value=value, timestamp=None) is None:
                part = partitions[turn % len(partitions)]
                futures.append(await producer.send_batch(batch, "bench-ceiling", partition=part))
                batch, turn = producer.create_batch(), turn + 1
                batch.append(key=key, value=value, timestamp=None)
        part = partitions[turn % len(partitions)]
        futures.append(await producer.send_batch(batch, "bench-ceiling", partition=part))
        await asyncio.gather(*futures)
        return messages / (time.perf_counter() - start)
    finally:
        await producer.stop()


def ingestion(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench ingestion", description=__doc__)
    parser.add_argument("--streams", type=int, default=2000, help="concurrent streams (2000)")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds per run (15)")
    parser.add_argument("--quick", action="store_true", help="200 streams, 5 s runs")
    args = parser.parse_args(argv)
    streams, seconds = (200, 5.0) if args.quick else (args.streams, args.seconds)
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="greenlane-bench-") as tmp:
        workdir = Path(tmp)
        redis = EmbeddedRedis(free_port(), workdir)
        kafka = EmbeddedKafka(free_port(), workdir)
        redis.start()
        kafka.start()
        procs: list[subprocess.Popen[bytes]] = []
        try:
            console.print("[bold]raw ceilings[/bold] (same servers, same machine)")
            packed, plain = asyncio.run(redis_ceiling(redis.url, 3.0))
            figures.append(Figure("Redis writes, one script per flush", packed, "statuses/s"))
            figures.append(Figure("Redis writes, redis-py pipeline", plain, "statuses/s"))
            produce = asyncio.run(kafka_ceiling(kafka.url, 100_000))
            script_calls, bookings, slots = asyncio.run(booking_rate(redis.url, 5.0))
            figures.append(
                Figure(
                    "Kafka produce (aiokafka record batches, snappy, acks=all)", produce, "msgs/s"
                )
            )
            figures.append(
                Figure(
                    f"booking scripts, 500 cars on {slots} slots",
                    script_calls,
                    "script calls/s",
                    f"{bookings:,.0f} bookings/s (book+fulfil)",
                )
            )

            echo, echo_addr = start_echo(workdir)
            procs.append(echo)
            console.print(f"bare grpc.aio echo, {streams} streams, saturating…")
            echo_one = simulate(echo_addr, "--cars", str(streams), "--saturate", seconds=seconds)
            figures.append(Figure(f"bare gRPC echo, {streams} streams", rate(echo_one), "msgs/s"))
            echo_batch = simulate(
                echo_addr, "--cars", "200", "--saturate", "--batch-size", "100", seconds=seconds
            )
            figures.append(Figure("bare gRPC echo, batches of 100", rate(echo_batch), "statuses/s"))
            stop_process(echo)
            procs.remove(echo)

            ingestion, addr = start_ingestion(workdir, redis.url, kafka.url)
            procs.append(ingestion)
            console.print(f"ingestion, {streams} streams, saturating…")
            sat = simulate(addr, "--cars", str(streams), "--saturate", seconds=seconds)
            figures.append(
                Figure(
                    f"ingestion, {streams} streams, saturated",
                    rate(sat),
                    "acked events/s",
                    f"p50 {p(sat, 'p50'):.1f} ms, p99 {p(sat, 'p99'):.1f} ms",
                )
            )
            console.print(f"ingestion, {streams} cars at 1 status/s…")
            real = simulate(addr, "--cars", str(streams), "--interval", "1", seconds=seconds + 5)
            figures.append(
                Figure(
                    f"ingestion, {streams} cars × 1/s",
                    rate(real),
                    "acked events/s",
                    f"p50 {p(real, 'p50'):.1f} ms, p99 {p(real, 'p99'):.1f} ms",
                )
            )
            console.print("ingestion, batches of 100…")
            batch = simulate(
                addr, "--cars", "200", "--saturate", "--batch-size", "100", seconds=seconds
            )
            figures.append(
                Figure(
                    "ingestion, batches of 100",
                    rate(batch),
                    "acked events/s",
                    f"p99 per batch {p(batch, 'p99'):.1f} ms",
                )
            )
            for summary in (sat, real, batch):
                if summary["rejected"] or summary["unavailable"] or summary["errors"]:
                    console.print(
                        f"[yellow]note:[/yellow] {summary['cars']} cars: "
                        f"{summary['rejected']} rejected, {summary['unavailable']} unavailable, "
                        f"{summary['errors']} broken streams (reconnected)"
                    )
        finally:
            for proc in procs:
                stop_process(proc, signal.SIGTERM)
            kafka.stop()
            redis.stop()

    table = Table(title="GreenLane benchmark", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("unit")
    table.add_column("note")
    for f in figures:
        table.add_row(f.name, f"{f.value:,.0f}", f.unit, f.note)
    console.print(table)

    by = {f.name: f.value for f in figures}
    ratio = (
        by[f"ingestion, {streams} streams, saturated"] / by[f"bare gRPC echo, {streams} streams"]
    )
    packing = by["Redis writes, one script per flush"] / by["Redis writes, redis-py pipeline"]
    targets = Table(title="Targets", title_justify="left")
    for col in ("target", "measured", "met"):
        targets.add_column(col)
    checks = [
        (
            "saturated ≥ 5,000 events/s",
            f"{by[f'ingestion, {streams} streams, saturated']:,.0f}",
            by[f"ingestion, {streams} streams, saturated"] >= 5000,
        ),
        ("saturated ≥ 0.7 × bare echo", f"{ratio:.2f} ×", ratio >= 0.7),
        (
            f"p99 < 100 ms at {streams} events/s offered",
            f"{p(real, 'p99'):.1f} ms",
            p(real, "p99") < 100,
        ),
        (
            "batches of 100 ≥ 20,000 events/s",
            f"{by['ingestion, batches of 100']:,.0f}",
            by["ingestion, batches of 100"] >= 20000,
        ),
    ]
    for name, measured, met in checks:
        targets.add_row(name, measured, "[green]yes[/green]" if met else "[red]no[/red]")
    console.print(targets)
    console.print(
        f"ratios: ingestion/echo {ratio:.2f}; batch ingestion/echo batch "
        f"{by['ingestion, batches of 100'] / by['bare gRPC echo, batches of 100']:.2f}; "
        f"Redis script/redis-py pipeline {packing:.1f}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Dispatch `python -m bench NAME ...`; without a name, every benchmark in turn."""
    from bench import chaos, fleet, hub, planner, soak, tracing

    argv = sys.argv[1:] if argv is None else argv
    benches = {
        "ingestion": ingestion,
        "tracing": tracing.main,
        "planner": planner.main,
        "hub": hub.main,
        "chaos": chaos.main,
        "soak": soak.main,
        "fleet": fleet.main,
    }
    if argv and argv[0] in benches:
        return benches[argv[0]](argv[1:])
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    quick = ["--quick"] if "--quick" in argv else []
    return (
        ingestion(argv)
        or tracing.main(quick)
        or planner.main(quick)
        or hub.main(quick)
        or chaos.main(quick)
        or fleet.main(quick)
    )


if __name__ == "__main__":
    sys.exit(main())

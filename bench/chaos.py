"""`python -m bench chaos --minutes N`: the whole platform while its parts fail at random,
then an end-to-end audit of what was acknowledged.

A simulated fleet streams through greenlane.client (every status kept until
acknowledged, each acknowledgement logged). At random moments one fault at a time:
SIGKILL and restart of ingestion, the pricing worker or the grid; a restart of Valkey
(append-only, `everysec`) or PostgreSQL; a cut of every broker connection through a TCP
proxy for a few seconds (the embedded broker keeps its data in memory, so it is not
restarted). Then the faults stop, the fleet stops, the pricing worker catches up, and:

- every acknowledged status is in `fleet-events`;
- every telemetry event of `fleet-events` is exactly one row of `charging_sessions`
  (or a dead letter with its reason);
- each car's `{fleet}:locations` entry and hash hold its newest status, not older
  than its last acknowledged one;
- no station held more live bookings than its capacity: sampled during the run, and
  replayed from every booking record (created .. ended or expired) at the end;
- no process of the run is left once it is stopped.

Prints the faults (kind, count) and the audit as tables (`--json`: one JSON object);
exits 1 on any loss, duplicate, overbooking or leftover, 2 when the run could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Console
from rich.table import Table

from bench.platform import STATIONS, Platform, leftovers, mark_run
from greenlane.core import keys

FAULTS = (
    "kill ingestion",
    "kill pricing worker",
    "kill grid",
    "restart valkey",
    "restart postgres",
    "cut broker connections",
)
SETTLE_S = 10.0
console = Console(stderr=True)


@dataclass
class Fault:
    kind: str
    at_s: float
    took_s: float
    error: str = ""


@dataclass
class Samples:
    """Live bookings per station, sampled from Redis during the run."""

    taken: int = 0
    failed: int = 0  # Redis away (a restart): no sample
    worst: dict[str, int] = field(default_factory=dict)  # station -> most live bookings seen


async def inject(platform: Platform, kind: str, rng: random.Random) -> None:
    if kind == "kill ingestion":
        await asyncio.to_thread(platform.restart_service, "ingestion")
    elif kind == "kill pricing worker":
        await asyncio.to_thread(platform.restart_service, "pricing_worker")
    elif kind == "kill grid":
        await asyncio.to_thread(platform.restart_service, "grid")
    elif kind == "restart valkey":
        await asyncio.to_thread(platform.restart_server, platform.redis)
    elif kind == "restart postgres":
        await asyncio.to_thread(platform.restart_server, platform.postgres)
    elif kind == "cut broker connections":
        await platform.proxy.stop()
        await asyncio.sleep(rng.uniform(2.0, 5.0))
        await platform.proxy.start()
    else:
        raise ValueError(f"unknown fault {kind!r}")


async def faults_loop(
    platform: Platform, until: float, rng: random.Random, gap: tuple[float, float]
) -> list[Fault]:
    """One fault at a time, each kind in turn in a shuffled order, random gaps between."""
    done: list[Fault] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    order: list[str] = []
    while True:
        await asyncio.sleep(rng.uniform(*gap))
        if loop.time() >= until:
            return done
        if not order:
            order = list(FAULTS)
            rng.shuffle(order)
        kind = order.pop()
        began = loop.time()
        error = ""
        try:
            await inject(platform, kind, rng)
        except Exception as exc:  # a fault that could not be undone ends the run
            error = f"{type(exc).__name__}: {exc}"
        done.append(Fault(kind, began - start, loop.time() - began, error))
        console.log(
            f"fault {len(done)}: {kind} ({loop.time() - began:.1f} s){' ' + error if error else ''}"
        )
        if error:
            return done


async def sample_bookings(redis_url: str, stop: asyncio.Event, samples: Samples) -> None:
    from greenlane.core.redis_state import connect

    region = keys.Region()
    client = connect(redis_url, timeout=1)
    try:
        while not stop.is_set():
            try:
                secs, micros = await client.time()
                now_ms = int(secs) * 1000 + int(micros) // 1000
                pipe = client.pipeline(transaction=False)
                for st in STATIONS:
                    pipe.zcount(region.station_bookings(st.station_id), f"({now_ms}", "+inf")
                counts = await pipe.execute()
                samples.taken += 1
                for st, n in zip(STATIONS, counts, strict=True):
                    samples.worst[st.station_id] = max(samples.worst.get(st.station_id, 0), int(n))
            except Exception:  # Valkey restarting: no sample this time
                samples.failed += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
    finally:
        await client.aclose()


async def read_all(
    bootstrap: str, topic: str
) -> list[tuple[bytes | None, dict[str, Any], dict[str, bytes]]]:
    """Every record of a topic to its end offsets: (key, JSON value, headers)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        await consumer.topics()
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[tuple[bytes | None, dict[str, Any], dict[str, bytes]]] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            positions = {tp: await consumer.position(tp) for tp in tps}
            if all(positions[tp] >= ends[tp] for tp in tps):
                break
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for records in batch.values():
                for r in records:
                    if r.value is None:
                        continue
                    try:
                        value = json.loads(r.value)
                    except ValueError:
                        value = {"_unparsable": True}
                    out.append((r.key, value, dict(r.headers or ())))
        return out
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()


def read_acks(path: Path) -> list[tuple[str, int]]:
    acked: list[tuple[str, int]] = []
    if path.exists():
        for line in path.read_text().splitlines():
            car, _, ts = line.partition(" ")
            if ts.isdigit():
                acked.append((car, int(ts)))
    return acked


async def db_keys(database_url: str) -> Counter[str]:
    import psycopg

    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT event_key, count(*) FROM charging_sessions GROUP BY event_key"
        )
        return Counter({str(k): int(n) for k, n in await cur.fetchall()})


async def wait_for_rows(database_url: str, expected: set[str], limit: float) -> Counter[str]:
    """Until every expected key has its row, or the count stops moving for a while."""
    deadline = time.monotonic() + limit
    last, still_since = -1, time.monotonic()
    rows: Counter[str] = Counter()
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            rows = await db_keys(database_url)
        if expected <= rows.keys():
            return rows
        if len(rows) != last:
            last, still_since = len(rows), time.monotonic()
        elif time.monotonic() - still_since > 30:
            return rows
        await asyncio.sleep(1.0)
    return rows


async def car_states(redis_url: str, cars: list[str]) -> dict[str, tuple[int, float, float] | None]:
    """Each car's hash timestamp and its position in {fleet}:locations."""
    from greenlane.core.redis_state import connect

    client = connect(redis_url)
    out: dict[str, tuple[int, float, float] | None] = {}
    try:
        for car in cars:
            ts = await client.hget(keys.car_state(car), "timestamp")
            pos = await client.geopos(keys.FLEET_LOCATIONS, car)
            if ts is None or not pos or pos[0] is None:
                out[car] = None
            else:
                out[car] = (int(float(ts)), float(pos[0][1]), float(pos[0][0]))
    finally:
        await client.aclose()
    return out


async def booking_records(redis_url: str) -> list[dict[str, Any]]:
    from greenlane.core.redis_state import connect

    client = connect(redis_url)
    try:
        raw = await client.hgetall(keys.Region().bookings)
    finally:
        await client.aclose()
    return [json.loads(v) for v in raw.values()]


def most_live(records: list[dict[str, Any]]) -> dict[str, int]:
    """Per station, the most bookings live at once: each lives from created to ended
    (fulfilled or cancelled) or to its expiry."""
    edges: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r in records:
        start = int(r["created"])
        end = int(r.get("ended") or r["expires"])
        edges[r["station_id"]] += [(start, 1), (end, -1)]
    worst: dict[str, int] = {}
    for station, points in edges.items():
        live = peak = 0
        for _, step in sorted(points, key=lambda p: (p[0], p[1])):  # ends before starts
            live += step
            peak = max(peak, live)
        worst[station] = peak
    return worst


def audit(
    acked: list[tuple[str, int]],
    events: list[tuple[bytes | None, dict[str, Any], dict[str, bytes]]],
    dead: list[tuple[bytes | None, dict[str, Any], dict[str, bytes]]],
    rows: Counter[str],
    states: dict[str, tuple[int, float, float] | None],
    records: list[dict[str, Any]],
    samples: Samples,
) -> list[tuple[str, int, int, str]]:
    """(check, found, allowed, note) rows; found > allowed is a failure."""
    telemetry: dict[tuple[str, int], dict[str, Any]] = {}
    copies: Counter[tuple[str, int]] = Counter()
    booking_events: Counter[str] = Counter()
    for _, e, _ in events:
        kind = e.get("event_type", "telemetry")
        if kind == "telemetry" and "car_id" in e:
            k = (str(e["car_id"]), int(e["timestamp"]))
            telemetry[k] = e
            copies[k] += 1
        elif isinstance(kind, str) and kind.startswith("booking_"):
            booking_events[kind] += 1
    acked_set = set(acked)
    lost = acked_set - telemetry.keys()
    dead_keys: set[str] = set()
    dead_without_reason = 0
    for _key, e, headers in dead:
        if "car_id" in e and "timestamp" in e:
            dead_keys.add(f"{e['car_id']}:{int(e['timestamp'])}:{e.get('event_type', 'telemetry')}")
        if not headers.get("x-dlq-reason"):
            dead_without_reason += 1
    expected_keys = {f"{c}:{t}:telemetry" for c, t in telemetry}
    missing_rows = [k for k in expected_keys if k not in rows and k not in dead_keys]
    duplicated_rows = sum(n - 1 for n in rows.values() if n > 1)
    stray_rows = [k for k in rows if k.endswith(":telemetry") and k not in expected_keys]
    newest: dict[str, tuple[int, dict[str, Any]]] = {}
    for (car, ts), e in telemetry.items():
        if car not in newest or ts > newest[car][0]:
            newest[car] = (ts, e)
    last_acked: dict[str, int] = {}
    for car, ts in acked:
        last_acked[car] = max(ts, last_acked.get(car, 0))
    wrong_state = 0
    for car, (ts, e) in newest.items():
        got = states.get(car)
        if (
            got is None
            or got[0] != ts
            or got[0] < last_acked.get(car, 0)
            or abs(got[1] - float(e["lat"])) > 1e-4
            or abs(got[2] - float(e["lon"])) > 1e-4
        ):
            wrong_state += 1
    capacity = {s.station_id: s.capacity for s in STATIONS}
    over_sampled = sum(1 for st, n in samples.worst.items() if n > capacity.get(st, 0))
    over_replayed = sum(1 for st, n in most_live(records).items() if n > capacity.get(st, 0))
    created = booking_events["booking_created"]
    resent_copies = sum(n - 1 for n in copies.values() if n > 1)
    return [
        ("acknowledged statuses", len(acked_set), len(acked_set), "from the simulator's ack log"),
        ("acknowledged, not in fleet-events (lost)", len(lost), 0, ""),
        (
            "telemetry events in fleet-events",
            len(telemetry),
            len(telemetry),
            f"{resent_copies} extra copies of resent statuses (deduplicated downstream)",
        ),
        (
            "events without their row (rows lost)",
            len(missing_rows),
            0,
            f"{len(dead_keys)} dead letters",
        ),
        ("rows duplicated", duplicated_rows, 0, f"{sum(rows.values())} rows"),
        ("rows of no event", len(stray_rows), 0, ""),
        ("dead letters without a reason", dead_without_reason, 0, ""),
        (
            "cars whose Redis state is not their newest status",
            wrong_state,
            0,
            f"{len(newest)} cars",
        ),
        (
            "stations over capacity (sampled)",
            over_sampled,
            0,
            f"{samples.taken} samples, {samples.failed} while Valkey was away",
        ),
        (
            "stations over capacity (booking records replayed)",
            over_replayed,
            0,
            f"{len(records)} bookings, {created} booking_created events",
        ),
    ]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="greenlane-chaos-"))
    mark_run(workdir)
    rng = random.Random(args.seed)
    platform = Platform(workdir)
    faults: list[Fault] = []
    samples = Samples()
    result: dict[str, Any] = {"workdir": str(workdir), "minutes": args.minutes, "cars": args.cars}
    stop_sampling = asyncio.Event()
    ack_log = workdir / "acks.txt"
    try:
        console.log(f"starting the platform in {workdir}")
        await platform.start()
        platform.start_simulator(args.cars, args.interval, ack_log)
        sampler = asyncio.create_task(sample_bookings(platform.redis_url, stop_sampling, samples))
        loop = asyncio.get_running_loop()
        await asyncio.sleep(5.0)  # the fleet connects before anything fails
        until = loop.time() + args.minutes * 60
        console.log(f"injecting faults for {args.minutes:g} min")
        faults = await faults_loop(platform, until, rng, (args.min_gap, args.max_gap))
        console.log(f"faults over; {SETTLE_S:.0f} s to settle, then the fleet stops")
        await asyncio.sleep(SETTLE_S)
        code = await asyncio.to_thread(platform.stop_simulator)
        stop_sampling.set()
        await sampler
        summary_path = workdir / "simulator-summary.json"
        with contextlib.suppress(OSError, ValueError, IndexError):
            result["simulator"] = json.loads(summary_path.read_text().strip().splitlines()[-1])
        result["simulator_exit"] = code
        acked = read_acks(ack_log)
        events = await read_all(platform.kafka_url, platform.topic)
        expected = {
            f"{e['car_id']}:{int(e['timestamp'])}:telemetry"
            for _, e, _ in events
            if e.get("event_type", "telemetry") == "telemetry" and "car_id" in e
        }
        console.log(f"{len(acked)} acknowledged, {len(events)} events; waiting for the rows")
        rows = await wait_for_rows(platform.database_url, expected, 240.0)
        dead = await read_all(platform.kafka_url, f"{platform.topic}.dlq")
        cars = sorted(
            {c for c, _ in acked} | {str(e["car_id"]) for _, e, _ in events if "car_id" in e}
        )
        states = await car_states(platform.redis_url, cars)
        records = await booking_records(platform.redis_url)
        result["audit"] = audit(acked, events, dead, rows, states, records, samples)
    finally:
        stop_sampling.set()
        await platform.stop()
    await asyncio.sleep(0.5)
    left = leftovers(workdir)
    result["audit"] = result.get("audit", []) + [
        ("processes left behind", len(left), 0, "; ".join(left)[:200])
    ]
    result["faults"] = [vars(f) for f in faults]
    result["faults_by_kind"] = dict(Counter(f.kind for f in faults))
    result["fault_errors"] = [f.error for f in faults if f.error]
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def report(result: dict[str, Any], to_stderr: bool = False) -> bool:
    out = Console(stderr=to_stderr, width=130)
    faults = Table(title=f"Faults injected ({len(result['faults'])})", title_justify="left")
    faults.add_column("kind")
    faults.add_column("count", justify="right")
    faults.add_column("mean recovery", justify="right")
    for kind in FAULTS:
        took = [f["took_s"] for f in result["faults"] if f["kind"] == kind]
        faults.add_row(kind, str(len(took)), f"{sum(took) / len(took):.1f} s" if took else "-")
    out.print(faults)
    table = Table(title="End-to-end audit", title_justify="left")
    for col in ("check", "found", "allowed", "ok", "note"):
        table.add_column(col, justify="right" if col in ("found", "allowed") else "left")
    ok = not result["fault_errors"]
    for check, found, allowed, note in result["audit"]:
        good = found <= allowed
        ok = ok and good
        mark = "[green]yes[/green]" if good else "[red]NO[/red]"
        table.add_row(check, f"{found:,}", f"{allowed:,}", mark, note)
    out.print(table)
    sim = result.get("simulator") or {}
    if sim:
        out.print(
            f"simulator: {sim.get('sent', 0):,} sent, {sim.get('accepted', 0):,} acknowledged, "
            f"{sim.get('resent', 0):,} resent, {sim.get('errors', 0):,} broken streams, "
            f"{sim.get('unsent', 0):,} unacknowledged at exit, {sim.get('dropped', 0):,} dropped"
        )
    for error in result["fault_errors"]:
        out.print(f"[red]a fault could not be recovered:[/red] {error}")
    return ok


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=3.0, help="minutes of faults (3)")
    parser.add_argument("--cars", type=int, default=200, help="simulated cars (200)")
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between a car's statuses (1)"
    )
    parser.add_argument(
        "--min-gap", type=float, default=3.0, help="least seconds between faults (3)"
    )
    parser.add_argument(
        "--max-gap", type=float, default=9.0, help="most seconds between faults (9)"
    )
    parser.add_argument("--seed", type=int, default=None, help="the faults' random order and gaps")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory (logs)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--quick", action="store_true", help="one minute, 50 cars")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes, args.cars = 1.0, 50
    for name in ("minutes", "interval", "min_gap"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')}: must be above 0")
    if args.cars < 1:
        parser.error("--cars: must be at least 1")
    if args.max_gap < args.min_gap:
        parser.error("--max-gap: must be at least --min-gap")
    try:
        result = asyncio.run(run(args))
    except Exception as exc:
        console.print(f"[red]the chaos run could not run:[/red] {type(exc).__name__}: {exc}")
        return 2
    ok = report(result, to_stderr=args.json)
    if args.json:
        print(json.dumps({**result, "ok": ok}))  # noqa: T201 - the CLI's output
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

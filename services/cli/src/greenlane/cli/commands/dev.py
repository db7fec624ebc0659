"""`greenlane dev`: the whole platform on this machine, with a simulated fleet."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from greenlane.cli.commands.stations import FileRefused
from greenlane.cli.devstack import (
    DEV_DEPOT_STATION,
    Child,
    DevStack,
    Ports,
    available,
    simulator_summary,
)
from greenlane.cli.embedded import PortInUse, ServerFailed, stop_process
from greenlane.core import cliargs
from greenlane.core.kafka import fetch_high_watermarks
from greenlane.core.logs import setup_logging
from greenlane.core.stations import Station
from greenlane.simulator.config import FleetConfig

log = logging.getLogger(__name__)


# The simulator's own limits, read from its config model: dev refuses what it would.
_MOST_CARS = int(cliargs.field_bounds(FleetConfig, "cars").high or 0)
_MOST_INTERVAL = float(cliargs.field_bounds(FleetConfig, "interval").high or 0)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "dev",
        help="run the whole platform locally (embedded servers, services, simulated fleet)",
        description="Start Valkey, PostgreSQL and a Kafka-API broker as child processes "
        "(unless GREENLANE_REDIS_URL, GREENLANE_DATABASE_URL or "
        "GREENLANE_KAFKA_BOOTSTRAP_SERVERS point at running ones), apply migrations, "
        "start every service and a simulated fleet. Ctrl+C stops everything.",
    )
    p.add_argument(
        "--cars",
        type=cliargs.integer(0, _MOST_CARS),
        default=50,
        help="simulated cars (0: no simulator; default 50)",
    )
    p.add_argument(
        "--interval",
        type=cliargs.seconds(most=_MOST_INTERVAL),
        default=2.0,
        help="seconds between two updates of a car (default 2)",
    )
    p.add_argument(
        "--duration",
        type=cliargs.seconds(),
        default=None,
        help="stop after this many seconds and print a summary",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path(".greenlane"),
        help="data, logs and dev.env (default .greenlane/)",
    )
    p.add_argument(
        "--observability",
        action="store_true",
        help="also run Prometheus (a prometheus binary on PATH, e.g. Debian's) scraping every "
        "service, with the alert rules, and the Redis and PostgreSQL exporters when on PATH",
    )
    p.add_argument(
        "--tls",
        action="store_true",
        help="make a local CA and certificates (in WORKDIR/tls) and use them everywhere: "
        "TLS on every API, mutual TLS on gRPC; the simulator presents the dev fleet's "
        "client certificate",
    )
    p.add_argument("--quiet", action="store_true", help="no live feed and no status line")
    p.add_argument(
        "--no-feed",
        action="store_true",
        help="no live ops feed; a count of cars, events and rows every 5 s instead",
    )


def _services() -> list[str]:
    wanted = ["grid", "ingestion", "pricing_worker", "planner", "hub"]
    return [s for s in wanted if available(f"greenlane.{s}.__main__")]


def _endpoints(
    stack: DevStack, services: list[str], more: list[tuple[str, str]] | None = None
) -> Table:
    p = stack.ports
    s = stack.scheme
    table = Table(title="GreenLane dev platform", title_justify="left")
    table.add_column("what")
    table.add_column("where")
    rows = [
        ("Redis (Valkey)", stack.settings["GREENLANE_REDIS_URL"]),
        ("Kafka API (Tansu)", stack.settings["GREENLANE_KAFKA_BOOTSTRAP_SERVERS"]),
        ("PostgreSQL", stack.settings["GREENLANE_DATABASE_URL"]),
    ]
    if "ingestion" in services:
        rows += [
            (
                "ingestion gRPC",
                f"127.0.0.1:{p.ingestion}  "
                + ("(mutual TLS: the dev fleet's client certificate) " if stack.tls else "")
                + "(x-api-token: the dev token)",
            ),
            ("ingestion metrics", f"http://127.0.0.1:{p.ingestion_metrics}/metrics"),
            (
                "booking API",
                f"{s}://127.0.0.1:{p.booking_api}/api/stations?lat=40.758&lon=-73.9855",
            ),
        ]
    if "grid" in services:
        rows.append(("grid pricing", f"{s}://127.0.0.1:{p.grid}/api/pricing"))
    if "pricing_worker" in services:
        rows.append(("pricing worker metrics", f"http://127.0.0.1:{p.pricing_metrics}/metrics"))
    if "planner" in services:
        rows += [
            ("planner API", f"{s}://127.0.0.1:{p.planner}/api/sites/midtown/schedule"),
            ("planner CLI", "greenlane plan site midtown  |  greenlane plan car CAR_ID"),
        ]
    if "hub" in services:
        rows.append(("hub (live map, WebSocket)", f"{s}://127.0.0.1:{p.hub}  (metrics /metrics)"))
    if stack.tls is not None:
        rows.append(("TLS (local CA)", str(stack.tls.ca_file)))
    rows += more or []
    rows += [
        ("settings", f"source {stack.workdir / 'dev.env'}"),
        ("logs", str(stack.logs)),
    ]
    for what, where in rows:
        table.add_row(what, where)
    return table


async def _feed(stack: DevStack, stop: asyncio.Event, console: Console) -> None:
    """The live ops feed (greenlane liveops) in this terminal, until stop."""
    from greenlane.liveops.feed import run_feed
    from greenlane.liveops.format import session_statistics
    from greenlane.liveops.options import Options

    console.print(
        "[dim]live ops feed (greenlane liveops --plans: ⚡ lines are the planner's); "
        "Ctrl+C stops the platform[/dim]"
    )
    result = await run_feed(
        Options(
            bootstrap_servers=stack.settings["GREENLANE_KAFKA_BOOTSTRAP_SERVERS"],
            topic=stack.topic,
            plans=True,
        ),
        stop,
    )
    console.print("\n".join(session_statistics(result.snapshot)), highlight=False)


async def _rows(stack: DevStack) -> int | None:
    """Rows in charging_sessions (None when the table is not there)."""
    import psycopg

    try:
        async with await psycopg.AsyncConnection.connect(
            stack.settings["GREENLANE_DATABASE_URL"], connect_timeout=3
        ) as conn:
            cur = await conn.execute("SELECT count(*) FROM charging_sessions")
            row = await cur.fetchone()
            return int(row[0]) if row else 0
    except psycopg.Error:
        return None


async def _plans(stack: DevStack) -> dict[str, float] | None:
    """The planner's plans in Redis, summed over the sites: cars on plans, and what the
    plans cost against the same cars at full power on arrival (None: no planner)."""
    from greenlane.core.keys import DEFAULT_REGION, Region
    from greenlane.core.plans import read_schedules
    from greenlane.core.redis_state import connect

    redis = connect(stack.settings["GREENLANE_REDIS_URL"], timeout=2)
    try:
        schedules = await read_schedules(
            redis, Region(stack.env.get("GREENLANE_REGION", DEFAULT_REGION))
        )
    finally:
        await redis.aclose()
    if not schedules:
        return None
    totals: dict[str, float] = {"sites": float(len(schedules))}
    for schedule in schedules:
        for key, value in schedule.totals().items():
            if key != "feasible":
                totals[key] = totals.get(key, 0.0) + float(value)
    totals["short"] = float(sum(1 for s in schedules for c in s.cars if not c.feasible))
    return totals


async def _counts(stack: DevStack) -> tuple[int, int]:
    """Cars in the fleet's GEO index and events in fleet-events: proof the data flows."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from greenlane.core.redis_state import connect, count_cars

    redis = connect(stack.settings["GREENLANE_REDIS_URL"], timeout=2)
    try:
        cars = await count_cars(redis)
    finally:
        await redis.aclose()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.settings["GREENLANE_KAFKA_BOOTSTRAP_SERVERS"],
        request_timeout_ms=5000,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        await consumer.topics()
        topic = stack.topic
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        events = 0
        if tps:
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            events = sum((await fetch_high_watermarks(consumer, tps, 2.0)).values())
    finally:
        await consumer.stop()
    return cars, events


async def _watch(
    stack: DevStack, args: argparse.Namespace, console: Console, simulator: Child | None
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if _TERMINATED.is_set():
        stop.set()
    env_file = stack.workdir / "dev.env"
    console.print(f"[green]platform up[/green]; settings in {env_file}. Ctrl+C stops it.")
    started = time.monotonic()
    last_line = 0.0
    feed_stop = asyncio.Event()
    feed: asyncio.Task[Any] | None = None
    if not args.quiet and not args.no_feed:
        feed = asyncio.create_task(_feed(stack, feed_stop, console))
    while not stop.is_set():
        if args.duration is not None and time.monotonic() - started >= args.duration:
            break
        dead = stack.dead_children()
        if simulator is not None and simulator.proc.poll() not in (None, 0):
            dead.append(simulator)  # a fleet that failed is worth stopping for
        if dead:
            child = dead[0]
            console.print(
                f"[red]{child.name} exited with code {child.proc.returncode}; "
                f"see {child.log_path}[/red]"
            )
            return 1
        if feed is None and not args.quiet and time.monotonic() - last_line >= 5:
            last_line = time.monotonic()
            try:
                cars, events = await _counts(stack)
                rows = await _rows(stack)
                plans = await _plans(stack)
                planned = "-" if plans is None else f"{plans.get('cars', 0):.0f}"
                console.print(
                    f"[dim]{time.strftime('%H:%M:%S')}[/dim]  cars in fleet:locations: "
                    f"[bold]{cars}[/bold]  events in fleet-events: [bold]{events}[/bold]  "
                    f"priced rows: [bold]{'-' if rows is None else rows}[/bold]  "
                    f"cars on plans: [bold]{planned}[/bold]"
                )
            except Exception as exc:  # a status line must never stop the platform
                console.print(f"[yellow]status unavailable: {exc}[/yellow]")
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except TimeoutError:
            pass
    feed_stop.set()
    if feed is not None:
        try:
            await asyncio.wait_for(feed, 10)
        except Exception as exc:  # the feed is a view: its failure must not fail dev
            log.warning("live ops feed ended: %s", exc)
    if simulator is not None:
        # SIGINT lets the simulator print its summary before the services go.
        await asyncio.to_thread(stop_process, simulator.proc, signal.SIGINT, 20.0)
        stack.children.remove(simulator)
        await asyncio.sleep(1.0)  # the worker's last batch lingers a moment
    cars, events = await _counts(stack)
    rows = await _rows(stack)
    try:
        plans = await _plans(stack)
    except Exception as exc:  # a figure of the summary: never worth failing dev
        log.warning("plans unreadable: %s", exc)
        plans = None
    summary = simulator_summary(stack.workdir) or {}
    table = Table(title="Summary", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("ran for", f"{time.monotonic() - started:.1f} s")
    for key in ("sent", "accepted", "rejected", "unavailable", "errors"):
        if key in summary:
            table.add_row(f"simulator {key}", str(summary[key]))
    latency = summary.get("latency_ms")
    if isinstance(latency, dict):
        for key in ("p50", "p99"):
            if latency.get(key) is not None:
                table.add_row(f"acknowledgement latency {key}", f"{latency[key]:.1f} ms")
    table.add_row("cars in fleet:locations", str(cars))
    table.add_row("events in fleet-events", str(events))
    if rows is not None:
        table.add_row("rows in charging_sessions", str(rows))
    for key, what in (
        ("setpoints", "answers with a setpoint"),
        ("planned_updates", "charging updates at a plan's setpoint"),
        ("waiting_updates", "of which waiting (0 kW)"),
        ("departures", "cars that left at their departure"),
    ):
        if key in summary:
            table.add_row(f"simulator {what}", str(summary[key]))
    if plans is not None:
        table.add_row("sites planned", f"{plans['sites']:.0f}")
        table.add_row("cars on plans", f"{plans.get('cars', 0):.0f}")
        table.add_row(
            "plans: expected energy, cost",
            f"{plans.get('expected_kwh', 0):.3f} kWh, ${plans.get('expected_cost', 0):.4f}",
        )
        table.add_row(
            "full power on arrival: energy, cost",
            f"{plans.get('full_power_kwh', 0):.3f} kWh, ${plans.get('full_power_cost', 0):.4f}",
        )
        table.add_row("cars short of their goal", f"{plans.get('short', 0):.0f}")
    console.print(table)
    if args.cars and (cars == 0 or events == 0):
        console.print("[red]no data reached Redis and Kafka: see the logs above[/red]")
        return 1
    return 0


def main(args: argparse.Namespace) -> int:
    setup_logging("dev", os.environ.get("GREENLANE_LOG_LEVEL", "INFO"), "human")
    # The feed's consumer would narrate every group change between the event lines.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    console = Console(stderr=False)
    try:
        ports = Ports.from_env(dict(os.environ))
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    # Until the event loop takes over, SIGTERM stops like Ctrl+C: through the finally below.
    signal.signal(signal.SIGTERM, _interrupt)
    stack = DevStack(args.workdir.resolve(), ports, dict(os.environ))
    services = _services()
    try:
        stack.check_ports(services, observability=args.observability)
        if args.tls:
            from greenlane.core.tls import make_local_pki

            stack.tls = make_local_pki(stack.workdir / "tls")
        stack.start_servers()
        stack.write_env_file()
        _migrate(stack, console)
        stations = _load_stations(stack, console)
        # A car silent for five updates has left its site.
        presence = f"{max(30.0, 5 * args.interval):g}"
        stack.start_services(
            services, {"planner": {"GREENLANE_PLANNER_PRESENCE_TIMEOUT_SECONDS": presence}}
        )
        observed: list[tuple[str, str]] = []
        if args.observability:
            from greenlane.cli.observability import start_observability

            observed = start_observability(stack, services)
        console.print(_endpoints(stack, services, observed))
        if "hub" in services:
            # One unbroken line, so a terminal can open it: the token rides in the fragment.
            console.print(f"dashboard: {stack.dashboard_url()}", soft_wrap=True, highlight=False)
        # Started before the event loop exists: from a single-threaded parent the kernel
        # can stop it if this process is killed (see embedded.spawn).
        simulator = None
        if args.cars:
            depot_id = os.environ.get("GREENLANE_DEV_DEPOT_STATION", DEV_DEPOT_STATION)
            depot = next((s for s in stations if s.station_id == depot_id), None)
            simulator = stack.start_simulator(
                args.cars,
                args.interval,
                args.duration,
                None if depot is None else (depot.station_id, depot.lat, depot.lon, depot.power_kw),
            )
        return asyncio.run(_watch(stack, args, console, simulator))
    except (PortInUse, FileRefused) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    except ServerFailed as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        with console.status("stopping every process…"):
            stack.stop()
        console.print("stopped; no process left running.")


# Set by SIGTERM before the event loop runs. A KeyboardInterrupt raised from a signal
# handler can land where Python ignores exceptions (a finalizer, a logging lock release);
# the flag makes sure the request is not lost then.
_TERMINATED = threading.Event()


def _interrupt(signum: int, frame: object) -> None:
    _TERMINATED.set()
    raise KeyboardInterrupt


def _load_stations(stack: DevStack, console: Console) -> list[Station]:
    """The dev station and site files into Redis, validated like `greenlane stations load`."""
    from greenlane.cli.commands.stations import read_files
    from greenlane.core.keys import DEFAULT_REGION, Region
    from greenlane.core.redis_state import connect
    from greenlane.core.stations import load_stations

    path = Path(os.environ.get("GREENLANE_DEV_STATIONS_FILE", "data/stations/manhattan.csv"))
    site_path = os.environ.get("GREENLANE_DEV_SITES_FILE")
    stations, sites = read_files(path, Path(site_path) if site_path else None)
    region = Region(os.environ.get("GREENLANE_REGION", DEFAULT_REGION))

    async def load() -> int:
        client = connect(stack.settings["GREENLANE_REDIS_URL"])
        try:
            return await load_stations(client, stations, region, sites)
        finally:
            await client.aclose()

    count = asyncio.run(load())
    console.print(f"stations: {count} in {len(sites)} sites loaded from {path}")
    return stations


def _migrate(stack: DevStack, console: Console) -> None:
    from greenlane.core.migrations import apply_migrations

    applied = apply_migrations(stack.settings["GREENLANE_DATABASE_URL"])
    console.print(f"migrations: {', '.join(applied) if applied else 'schema up to date'}")

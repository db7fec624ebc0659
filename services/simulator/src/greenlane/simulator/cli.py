"""`python -m greenlane.simulator`: flags, the run, the summary and the exit code."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError
from rich.console import Console

from greenlane.core import cliargs
from greenlane.core.errors import ConfigurationError
from greenlane.core.lifecycle import shutdown_event
from greenlane.core.logs import setup_logging
from greenlane.core.settings import load_settings
from greenlane.core.tracing import check_tracing_env, exporting, setup_tracing
from greenlane.simulator.config import (
    DEFAULT_BBOX,
    DEFAULT_CHARGE_BELOW,
    DEFAULT_TIMEZONE,
    MAX_CARS,
    MAX_STOP_MINUTES,
    FleetConfig,
    parse_target,
)
from greenlane.simulator.display import live_progress, summary_table
from greenlane.simulator.fleet import FleetError, run_fleet, tune_gc
from greenlane.simulator.physics import DEFAULT_MAX_CHARGE_KW, DEFAULT_PACK_KWH, BoundingBox
from greenlane.simulator.settings import SimulatorSettings
from greenlane.simulator.stats import Stats
from greenlane.simulator.tracing import traced_channels

log = logging.getLogger(__name__)

PROG = "python -m greenlane.simulator"
# Bad flags exit 2, through argparse.
EXIT_OK, EXIT_FAILED = 0, 1
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


@dataclass(frozen=True)
class Options:
    """Everything a run needs, parsed and validated."""

    config: FleetConfig
    json: bool = False
    summary_file: Path | None = None
    progress: bool = True
    log_level: LogLevel = "INFO"
    log_format: Literal["human", "json"] = "human"
    warmup: float = 0.0
    # Spans are exported (OTEL_EXPORTER_OTLP_ENDPOINT): trace statuses and calls.
    tracing: bool = False
    # --trace-ratio was given, but spans go nowhere: say so at start.
    trace_ignored: bool = False


def _battery_range(text: str) -> tuple[float, float]:
    # Also "(5.0, 25.0)": what a wrapper writing a parsed value back with str() gives.
    try:
        low, high = (float(part) for part in text.strip().strip("()").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not LOW,HIGH, e.g. 5,25") from None
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high <= 100):
        raise argparse.ArgumentTypeError(f"{text!r} needs 0 <= LOW <= HIGH <= 100")
    return low, high


_target = cliargs.checked(parse_target)


def _field(name: str, kind: str = "number") -> Callable[[str], Any]:
    """The flag of a FleetConfig field: its bounds are the model's, written once there."""
    return cliargs.for_field(FleetConfig, name, kind=kind)


def _range(what: str, high: float) -> Callable[[str], tuple[float, float]]:
    def parse(text: str) -> tuple[float, float]:
        try:
            low, top = (float(part) for part in text.strip().strip("()").split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not LOW,HIGH {what}") from None
        if not (math.isfinite(low) and math.isfinite(top) and 0 < low <= top <= high):
            raise argparse.ArgumentTypeError(f"{text!r} needs 0 < LOW <= HIGH <= {high:g}")
        return low, top

    return parse


def _depot(text: str) -> tuple[str, float, float, float]:
    parts = text.split(",")
    try:
        station_id, lat, lon, power = parts[0], *(float(p) for p in parts[1:])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not STATION_ID,LAT,LON,KW (numbers after the id)"
        ) from None
    value = (station_id, lat, lon, power)
    try:
        FleetConfig(depot=value)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc.errors()[0]['msg']}") from None
    return value


def _shard(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    if not sep or not index.isdigit() or not count.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not INDEX/COUNT, e.g. 0/4")
    if not 0 <= int(index) < int(count) <= MAX_CARS:
        raise argparse.ArgumentTypeError(f"{text!r} needs 0 <= INDEX < COUNT <= {MAX_CARS}")
    return int(index), int(count)


def _bbox(text: str) -> tuple[float, float, float, float]:
    try:
        south, west, north, east = (float(part) for part in text.split(","))
        BoundingBox(south, west, north, east)
    except ValueError as exc:
        why = str(exc) if "box" in str(exc) else "four numbers are needed"
        raise argparse.ArgumentTypeError(f"{text!r} is not SOUTH,WEST,NORTH,EAST: {why}") from None
    return south, west, north, east


def _summary_file(text: str) -> Path:
    path = Path(text)
    if path.is_dir() or not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a file in an existing directory")
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Drive a simulated fleet against ingestion: one gRPC stream per car.",
    )
    add = parser.add_argument
    add("--cars", type=_field("cars", "integer"), default=10, metavar="N", help="cars (default 10)")
    add(
        "--interval",
        type=_field("interval", "seconds"),
        metavar="S",
        help="seconds between two updates of a car (default 2.0; 0 means --saturate)",
    )
    add(
        "--saturate",
        action="store_true",
        help="send each car's next update as soon as the previous one is answered (benchmarks)",
    )
    add("--duration", type=_field("duration", "seconds"), metavar="S", help="stop after S seconds")
    add(
        "--seed",
        type=cliargs.integer(0, 2**63 - 1),
        metavar="N",
        help="seed for a reproducible fleet",
    )
    add(
        "--target",
        type=_target,
        metavar="HOST:PORT",
        help="ingestion address (default $GREENLANE_INGESTION_ADDR, else 127.0.0.1:50051)",
    )
    add(
        "--token",
        type=cliargs.validated_by(FleetConfig, "token"),
        metavar="TOKEN",
        help="x-api-token (default $GREENLANE_API_TOKEN, else the first of "
        "$GREENLANE_API_TOKENS, else the dev token); prefer the environment: "
        "flags are visible to other users in `ps`",
    )
    add(
        "--batch-size",
        type=_field("batch_size", "integer"),
        default=1,
        metavar="N",
        help="> 1: send CarStatusBatch messages of N statuses on StreamTelemetryBatches",
    )
    add(
        "--channels",
        type=_field("channels", "integer"),
        metavar="N",
        help="gRPC connections to share the streams (default one per 500 cars)",
    )
    add(
        "--max-in-flight",
        type=_field("max_in_flight", "integer"),
        default=1,
        metavar="N",
        help="unanswered messages a stream may have (default 1)",
    )
    add(
        "--buffer",
        type=_field("buffer", "integer"),
        default=3600,
        metavar="N",
        help="statuses a car keeps until acknowledged while ingestion is away (3600)",
    )
    add(
        "--ack-log",
        default="",
        metavar="PATH",
        help="append `car_id timestamp` for every acknowledged status to PATH (audits)",
    )
    add(
        "--car-prefix",
        type=cliargs.validated_by(FleetConfig, "car_prefix"),
        default="car",
        metavar="P",
        help="car ids are P-00000, P-00001, ... (default car)",
    )
    add(
        "--shard",
        type=_shard,
        metavar="I/N",
        help="drive only slice I of N balanced slices of the --cars fleet (one pod of many)",
    )
    add(
        "--bbox",
        type=_bbox,
        metavar="S,W,N,E",
        help="where cars drive, in degrees (default Manhattan: "
        + ",".join(f"{v:g}" for v in DEFAULT_BBOX)
        + ")",
    )
    add(
        "--initial-battery",
        type=_battery_range,
        metavar="LOW,HIGH",
        help="each car starts with a battery drawn in [LOW, HIGH] %% (default 20,100)",
    )
    add(
        "--charge-below",
        type=_field("charge_below"),
        default=DEFAULT_CHARGE_BELOW,
        metavar="PCT",
        help="a driving car below PCT %% (or at 0 %%) asks for a booking with request_booking "
        f"(default {DEFAULT_CHARGE_BELOW:g}); a booked car drives to the station, charges "
        "there and drives on",
    )
    add(
        "--charge-speedup",
        type=_field("charge_speedup"),
        default=1.0,
        metavar="X",
        help="charge X times faster than real time (default 1: 150 kW on a 75 kWh pack adds "
        "0.22 %% per 2 s update; demos want e.g. 50)",
    )
    add(
        "--pack-kwh",
        type=_field("pack_kwh"),
        default=DEFAULT_PACK_KWH,
        metavar="KWH",
        help=f"battery pack capacity, for the charging rate (default {DEFAULT_PACK_KWH:g})",
    )
    add(
        "--max-charge-kw",
        type=_field("max_charge_kw"),
        default=DEFAULT_MAX_CHARGE_KW,
        metavar="KW",
        help="the most a car draws, whatever the connector (default "
        f"{DEFAULT_MAX_CHARGE_KW:g}, the planner's fleet default)",
    )
    add(
        "--stop-minutes",
        type=_range("minutes", MAX_STOP_MINUTES),
        metavar="LOW,HIGH",
        help="a car that plugs in on the road leaves after LOW to HIGH minutes (default "
        "20,60); it sends this departure and its target as its charging goal",
    )
    add(
        "--charge-target",
        type=_range("percent", 100.0),
        metavar="LOW,HIGH",
        help="the battery a car on the road wants when it plugs in, %% (default 70,85)",
    )
    add(
        "--depot",
        type=_depot,
        metavar="ID,LAT,LON,KW",
        help="the fleet's depot station: --depot-share of the cars drive there at night "
        "and leave in the morning (local time of --timezone)",
    )
    add(
        "--depot-share",
        type=_field("depot_share"),
        default=0.2,
        metavar="F",
        help="share of the cars that are depot cars, with --depot (default 0.2)",
    )
    add(
        "--timezone",
        type=cliargs.validated_by(FleetConfig, "timezone"),
        default=DEFAULT_TIMEZONE,
        metavar="ZONE",
        help=f"where night and morning are (default {DEFAULT_TIMEZONE}, the tariff's)",
    )
    add(
        "--summary-file",
        type=_summary_file,
        metavar="PATH",
        help="also write the JSON summary to PATH (e.g. /dev/termination-log)",
    )
    add(
        "--drain-timeout",
        type=_field("drain_timeout", "seconds"),
        default=5.0,
        metavar="S",
        help="at the end, wait this long for outstanding answers (default 5)",
    )
    add(
        "--warmup",
        type=cliargs.seconds(zero=True),
        default=0.0,
        metavar="S",
        help="benchmarks: also report a 'steady' rate and latency of the messages sent "
        "after the first S seconds (stream set-up excluded)",
    )
    add(
        "--tls-ca",
        metavar="FILE",
        help="speak TLS to ingestion, trusting this CA (default $GREENLANE_TLS_CA_FILE)",
    )
    add(
        "--tls-cert",
        metavar="FILE",
        help="mutual TLS: the client certificate (default $GREENLANE_TLS_CLIENT_CERT_FILE)",
    )
    add(
        "--tls-key",
        metavar="FILE",
        help="mutual TLS: the client key (default $GREENLANE_TLS_CLIENT_KEY_FILE)",
    )
    add(
        "--trace-ratio",
        type=_field("trace_ratio"),
        metavar="R",
        help="share of car statuses that start a trace, 0 to 1 (default $GREENLANE_TRACE_RATIO, "
        "else 0.01); only when spans are exported: OTEL_EXPORTER_OTLP_ENDPOINT set",
    )
    add("--json", action="store_true", help="print the summary as one JSON object on stdout")
    add("--no-progress", action="store_true", help="no live progress line on stderr")
    add(
        "--log-level",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default $GREENLANE_LOG_LEVEL, else INFO",
    )
    return parser


def parse_options(
    argv: Sequence[str] | None = None, settings: SimulatorSettings | None = None
) -> Options:
    """Parse and validate the flags; a bad one exits 2 with a message naming it."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.saturate and args.interval not in (None, 0):
        parser.error("argument --saturate: not allowed with --interval > 0")
    shard_index, shard_count = args.shard or (0, 1)
    if shard_count > args.cars:
        parser.error(f"argument --shard: {shard_count} slices of {args.cars} cars leave some empty")
    try:
        # Read after the flags, so --help works whatever the environment holds.
        env = settings if settings is not None else load_settings(SimulatorSettings)
        check_tracing_env()
    except ConfigurationError as exc:
        parser.error(str(exc))
    tracing = exporting()
    ratio = args.trace_ratio if args.trace_ratio is not None else env.trace_ratio
    interval = 0.0 if args.saturate else (2.0 if args.interval is None else args.interval)
    try:
        config = FleetConfig(
            cars=args.cars,
            interval=interval,
            saturate=args.saturate or interval == 0,
            duration=args.duration,
            seed=args.seed,
            target=args.target or env.target,
            token=args.token or env.token,
            batch_size=args.batch_size,
            channels=args.channels,
            max_in_flight=args.max_in_flight,
            buffer=args.buffer,
            ack_log=args.ack_log,
            car_prefix=args.car_prefix,
            drain_timeout=args.drain_timeout,
            shard_index=shard_index,
            shard_count=shard_count,
            bbox=args.bbox or DEFAULT_BBOX,
            initial_battery=args.initial_battery or FleetConfig().initial_battery,
            charge_below=args.charge_below,
            charge_speedup=args.charge_speedup,
            pack_kwh=args.pack_kwh,
            max_charge_kw=args.max_charge_kw,
            stop_minutes=args.stop_minutes or FleetConfig().stop_minutes,
            charge_target=args.charge_target or FleetConfig().charge_target,
            depot=args.depot,
            depot_share=args.depot_share,
            timezone=args.timezone,
            tls_ca_file=args.tls_ca or env.tls_ca_file,
            tls_cert_file=args.tls_cert or env.tls_client_cert_file,
            tls_key_file=args.tls_key or env.tls_client_key_file,
            # Traces that go nowhere would cost the cars for nothing.
            trace_ratio=ratio if tracing else 0.0,
        )
    except ValidationError as exc:
        # Every flag is checked by its own type above, so what is left came from the
        # environment (a token with characters gRPC metadata cannot carry).
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        parser.error(f"invalid value from the environment: {problems}")
    return Options(
        config=config,
        json=args.json,
        summary_file=args.summary_file,
        progress=not args.no_progress and sys.stderr.isatty(),
        log_level=args.log_level or env.log_level,
        log_format=env.log_format,
        warmup=args.warmup,
        tracing=tracing,
        trace_ignored=not tracing and bool(args.trace_ratio),
    )


def summary(config: FleetConfig, stats: Stats, result: str, error: str | None) -> dict[str, Any]:
    """The end-of-run report: what was asked, what happened. Never the token."""
    return {
        "result": result,
        "error": error,
        "target": config.target,
        "cars": len(config.shard),
        "shard": f"{config.shard_index}/{config.shard_count}" if config.shard_count > 1 else None,
        "interval_s": None if config.saturating else config.interval,
        "saturate": config.saturating,
        "batch_size": config.batch_size,
        "charge_speedup": config.charge_speedup,
        "trace_ratio": config.trace_ratio,
        **stats.to_dict(),
    }


async def main(options: Options) -> int:
    """Run the fleet until its duration, SIGINT or SIGTERM; print the summary; exit code."""
    setup_logging("simulator", options.log_level, options.log_format)
    tune_gc()
    config = options.config
    stop = shutdown_event()
    stats = Stats(warmup_s=options.warmup)
    error: str | None = None
    provider = setup_tracing("simulator") if options.tracing else None
    interceptors = traced_channels() if provider is not None else []
    if provider is not None:
        log.info(
            "tracing %g of the car statuses%s",
            config.trace_ratio,
            "" if interceptors else " (no spans of the streams themselves)",
        )
    elif options.trace_ignored:
        log.warning(
            "--trace-ratio: no status is traced, spans go nowhere without "
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
    try:
        if options.progress:
            async with live_progress(stats, len(config.shard), Console(stderr=True)):
                await run_fleet(config, stats, stop, interceptors=interceptors)
        else:
            await run_fleet(config, stats, stop, interceptors=interceptors)
    except FleetError as exc:
        error = str(exc)
    except Exception as exc:
        # A bug, not a refusal: keep the traceback, and still report what the run did.
        log.exception("the run failed")
        error = f"unexpected error: {exc!r}"
    if provider is not None:
        await asyncio.to_thread(provider.shutdown)  # exports the spans still queued
    result = "failed" if error else ("stopped" if stop.is_set() else "completed")
    report = summary(config, stats, result, error)
    line = json.dumps(report) + "\n"
    if options.json:
        sys.stdout.write(line)
    else:
        Console().print(summary_table(report))
    if options.summary_file is not None:
        try:
            await asyncio.to_thread(options.summary_file.write_text, line)
        except OSError as exc:
            # The run itself is done; losing its report is not a reason to run it again.
            log.error("cannot write the summary to %s: %s", options.summary_file, exc)
    if error:
        log.error("%s", error)
        return EXIT_FAILED
    if stats.accepted == 0:
        log.error("ingestion accepted none of the %d statuses sent", stats.sent)
        return EXIT_FAILED
    return EXIT_OK

"""`greenlane stations load FILE`: put charging stations into Redis."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError
from rich.console import Console

from greenlane.core.devenv import lookup
from greenlane.core.keys import DEFAULT_REGION, Region, check_region
from greenlane.core.redis_state import connect
from greenlane.core.stations import Station, StationFileError, load_stations, parse_stations

DEFAULT_FILE = Path("data/stations/manhattan.csv")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("stations", help="manage charging stations")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    load = actions.add_parser(
        "load",
        help="load a station file (CSV: id,name,lat,lon,capacity,power_kw) into Redis",
        description="Upsert stations into a region's stations:locations (GEO) and station "
        "hashes (see docs/booking.md). Live bookings are kept. An invalid file is refused "
        "whole, naming the line and field.",
    )
    load.add_argument(
        "file",
        type=Path,
        nargs="?",
        default=DEFAULT_FILE,
        help=f"station file (default {DEFAULT_FILE})",
    )
    load.add_argument(
        "--redis-url", default=None, help="default $GREENLANE_REDIS_URL, else .greenlane/dev.env"
    )
    load.add_argument(
        "--redis-cluster",
        action="store_true",
        default=None,
        help="the URL names a Redis Cluster node (default $GREENLANE_REDIS_CLUSTER)",
    )
    load.add_argument(
        "--region",
        type=_region,
        default=None,
        help=f"booking region (default $GREENLANE_REGION, else {DEFAULT_REGION})",
    )


def _region(value: str) -> str:
    try:
        return check_region(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


async def _load(url: str, cluster: bool, region: Region, stations: list[Station]) -> int:
    client = connect(url, cluster=cluster)
    try:
        return await load_stations(client, stations, region)
    finally:
        await client.aclose()


def main(args: argparse.Namespace) -> int:
    console = Console()
    url = args.redis_url or lookup("GREENLANE_REDIS_URL", "redis://127.0.0.1:6379/0")
    cluster = args.redis_cluster
    if cluster is None:
        cluster = lookup("GREENLANE_REDIS_CLUSTER", "false").lower() in ("1", "true", "yes")
    try:
        region = Region(args.region or lookup("GREENLANE_REGION", DEFAULT_REGION))
    except ValueError as exc:
        console.print(f"[red]error:[/red] GREENLANE_REGION: {exc}")
        return 2
    try:
        count = asyncio.run(_load(url, cluster, region, parse_stations(args.file.read_text())))
    except FileNotFoundError:
        console.print(f"[red]error:[/red] {args.file}: no such file")
        return 2
    except StationFileError as exc:
        console.print(f"[red]error:[/red] {args.file}: {exc}")
        return 2
    except (RedisError, OSError) as exc:
        console.print(f"[red]error:[/red] cannot reach Redis: {type(exc).__name__}: {exc}")
        return 1
    console.print(f"loaded {count} stations from {args.file} into region {region.name}")
    return 0

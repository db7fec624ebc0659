"""`greenlane stations load FILE`: put charging stations into Redis."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from rich.console import Console

from greenlane.core.devenv import lookup
from greenlane.core.stations import Station, StationFileError, load_stations, parse_stations

DEFAULT_FILE = Path("data/stations/manhattan.csv")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("stations", help="manage charging stations")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    load = actions.add_parser(
        "load",
        help="load a station file (CSV: id,name,lat,lon,capacity,power_kw) into Redis",
        description="Upsert stations into stations:locations (GEO) and station:{id} hashes. "
        "Live bookings are kept. An invalid file is refused whole, naming the line and field.",
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


async def _load(url: str, stations: list[Station]) -> int:
    client = Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5)
    try:
        return await load_stations(client, stations)
    finally:
        await client.aclose()


def main(args: argparse.Namespace) -> int:
    console = Console()
    url = args.redis_url or lookup("GREENLANE_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        count = asyncio.run(_load(url, parse_stations(args.file.read_text())))
    except FileNotFoundError:
        console.print(f"[red]error:[/red] {args.file}: no such file")
        return 2
    except StationFileError as exc:
        console.print(f"[red]error:[/red] {args.file}: {exc}")
        return 2
    except (RedisError, OSError) as exc:
        console.print(f"[red]error:[/red] cannot reach Redis: {type(exc).__name__}: {exc}")
        return 1
    console.print(f"loaded {count} stations from {args.file}")
    return 0

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
from greenlane.core.stations import (
    Site,
    SiteFileError,
    Station,
    StationFileError,
    load_stations,
    read_station_files,
)

DEFAULT_FILE = Path("data/stations/manhattan.csv")
DEFAULT_SITES = Path("data/sites/manhattan.csv")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("stations", help="manage charging stations")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    load = actions.add_parser(
        "load",
        help="load a station file (CSV: id,name,lat,lon,capacity,power_kw,site_id) and its "
        "site file into Redis",
        description="Upsert stations into a region's stations:locations (GEO) and station "
        "hashes, and their sites (CSV: site_id,name,limit_kw; the grid limit of each) into "
        "the site hashes and sets (see docs/booking.md, docs/planner.md). Live bookings are "
        "kept. An invalid file is refused whole, naming the file, the line and the field.",
    )
    load.add_argument(
        "file",
        type=Path,
        nargs="?",
        default=DEFAULT_FILE,
        help=f"station file (default {DEFAULT_FILE})",
    )
    load.add_argument(
        "--sites",
        type=Path,
        default=None,
        help=f"site file (default {DEFAULT_SITES} when the stations name sites)",
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


async def _load(
    url: str, cluster: bool, region: Region, stations: list[Station], sites: list[Site]
) -> int:
    client = connect(url, cluster=cluster)
    try:
        return await load_stations(client, stations, region, sites)
    finally:
        await client.aclose()


class FileRefused(ValueError):
    """A station or site file that cannot be loaded: `FILE: line N: FIELD: why`."""


def read_files(station_file: Path, site_file: Path | None) -> tuple[list[Station], list[Site]]:
    """The station file and its site file, validated together. Without --sites, the
    default site file is used when the stations have a site_id column."""
    text = station_file.read_text()
    if site_file is None and text.split("\n", 1)[0].rstrip("\r").endswith(",site_id"):
        site_file = DEFAULT_SITES
    site_text = site_file.read_text() if site_file is not None else None
    try:
        return read_station_files(text, site_text)
    except SiteFileError as exc:
        raise FileRefused(f"{site_file}: {exc}") from None
    except StationFileError as exc:
        raise FileRefused(f"{station_file}: {exc}") from None


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
        stations, sites = read_files(args.file, args.sites)
        count = asyncio.run(_load(url, cluster, region, stations, sites))
    except FileNotFoundError as exc:
        console.print(f"[red]error:[/red] {exc.filename}: no such file")
        return 2
    except FileRefused as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        return 2
    except (RedisError, OSError) as exc:
        console.print(f"[red]error:[/red] cannot reach Redis: {type(exc).__name__}: {exc}")
        return 1
    where = f" and {len(sites)} sites" if sites else ""
    # One line, however narrow the terminal: scripts grep it.
    console.print(
        f"loaded {count} stations{where} from {args.file} into region {region.name}",
        soft_wrap=True,
    )
    return 0

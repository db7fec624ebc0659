"""Charging stations and sites: the station and site files, their validation, loading into Redis.

A site is a group of stations behind one grid connection with a power limit (kW); the
planner keeps every site under its limit. A station file may name each station's site
(`site_id` column); the sites themselves are in a site file (`site_id,name,limit_kw`).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Final

from greenlane.core.events import CAR_ID_PATTERN, GEO_MAX_LAT
from greenlane.core.keys import Region
from greenlane.core.redis_state import RedisClient, is_cluster

# A file without the site_id column is still read: its stations belong to no site (the
# planner does not plan them).
BASE_COLUMNS: Final = ("id", "name", "lat", "lon", "capacity", "power_kw")
COLUMNS: Final = (*BASE_COLUMNS, "site_id")
SITE_COLUMNS: Final = ("site_id", "name", "limit_kw")
MAX_LIMIT_KW: Final = 100_000.0


class StationFileError(ValueError):
    """A station file that cannot be used; names the line and the field."""

    def __init__(self, line: int, field: str, message: str) -> None:
        super().__init__(f"line {line}: {field}: {message}")
        self.line = line
        self.field = field


class SiteFileError(StationFileError):
    """A site file that cannot be used (or that does not fit its station file)."""


@dataclass(frozen=True, slots=True)
class Station:
    station_id: str
    name: str
    lat: float
    lon: float
    capacity: int
    power_kw: float
    site_id: str = ""  # "" = in no site


@dataclass(frozen=True, slots=True)
class Site:
    """Stations behind one grid connection: the most they may draw together, kW."""

    site_id: str
    name: str
    limit_kw: float


def _number(line: int, field: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise StationFileError(line, field, f"{raw!r} is not a number") from None
    if not math.isfinite(value):
        raise StationFileError(line, field, f"{raw!r} is not a finite number")
    return value


def parse_stations(text: str, site_ids: Collection[str] | None = None) -> list[Station]:
    """Parse CSV with the header id,name,lat,lon,capacity,power_kw,site_id (or without
    site_id: stations in no site); refuse any bad line. With site_ids, every station's
    site must be one of them."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise StationFileError(1, "header", "the file is empty") from None
    if tuple(header) not in (COLUMNS, BASE_COLUMNS):
        raise StationFileError(
            1,
            "header",
            f"must be {','.join(COLUMNS)} (site_id may be left out), got {','.join(header)}",
        )
    columns = len(header)
    stations: list[Station] = []
    seen: set[str] = set()
    for row in reader:
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != columns:
            raise StationFileError(line, "row", f"has {len(row)} fields, expected {columns}")
        cells = [cell.strip() for cell in row]
        sid, name, lat_s, lon_s, cap_s, power_s = cells[:6]
        site_id = cells[6] if columns == len(COLUMNS) else ""
        if not CAR_ID_PATTERN.fullmatch(sid):
            raise StationFileError(line, "id", "must be 1 to 64 letters, digits and _ . : -")
        if sid in seen:
            raise StationFileError(line, "id", f"{sid!r} appears twice")
        if not name or len(name) > 200:
            raise StationFileError(line, "name", "must be 1 to 200 characters")
        lat, lon = _number(line, "lat", lat_s), _number(line, "lon", lon_s)
        if not -GEO_MAX_LAT <= lat <= GEO_MAX_LAT:
            raise StationFileError(line, "lat", f"must be within [-85.05, 85.05], got {lat}")
        if not -180 <= lon <= 180:
            raise StationFileError(line, "lon", f"must be within [-180, 180], got {lon}")
        if not cap_s.isdigit() or not 1 <= int(cap_s) <= 1000:
            raise StationFileError(line, "capacity", f"must be an integer 1..1000, got {cap_s!r}")
        power = _number(line, "power_kw", power_s)
        if not 0 < power <= 1000:
            raise StationFileError(line, "power_kw", f"must be within (0, 1000] kW, got {power}")
        if columns == len(COLUMNS):
            if not CAR_ID_PATTERN.fullmatch(site_id):
                raise StationFileError(
                    line, "site_id", "must be 1 to 64 letters, digits and _ . : -"
                )
            if site_ids is not None and site_id not in site_ids:
                raise StationFileError(line, "site_id", f"{site_id!r} is not in the site file")
        seen.add(sid)
        stations.append(Station(sid, name, lat, lon, int(cap_s), power, site_id))
    if not stations:
        raise StationFileError(reader.line_num or 1, "rows", "no station in the file")
    return stations


def parse_sites(text: str) -> list[Site]:
    """Parse CSV with the header site_id,name,limit_kw; refuse any bad line."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise SiteFileError(1, "header", "the file is empty") from None
    if tuple(header) != SITE_COLUMNS:
        raise SiteFileError(
            1, "header", f"must be {','.join(SITE_COLUMNS)}, got {','.join(header)}"
        )
    sites: list[Site] = []
    seen: set[str] = set()
    for row in reader:
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(SITE_COLUMNS):
            raise SiteFileError(line, "row", f"has {len(row)} fields, expected {len(SITE_COLUMNS)}")
        site_id, name, limit_s = (cell.strip() for cell in row)
        if not CAR_ID_PATTERN.fullmatch(site_id):
            raise SiteFileError(line, "site_id", "must be 1 to 64 letters, digits and _ . : -")
        if site_id in seen:
            raise SiteFileError(line, "site_id", f"{site_id!r} appears twice")
        if not name or len(name) > 200:
            raise SiteFileError(line, "name", "must be 1 to 200 characters")
        try:
            limit = _number(line, "limit_kw", limit_s)
        except StationFileError as exc:
            raise SiteFileError(line, "limit_kw", str(exc).split(": ", 2)[-1]) from None
        if not 0 < limit <= MAX_LIMIT_KW:
            raise SiteFileError(
                line, "limit_kw", f"must be within (0, {MAX_LIMIT_KW:g}] kW, got {limit}"
            )
        seen.add(site_id)
        sites.append(Site(site_id, name, limit))
    if not sites:
        raise SiteFileError(reader.line_num or 1, "rows", "no site in the file")
    return sites


def check_sites(sites: Sequence[Site], stations: Sequence[Station]) -> None:
    """Every site must have a station: a site nothing plugs into is a typo in one file."""
    used = {s.site_id for s in stations}
    for line, site in enumerate(sites, start=2):
        if site.site_id not in used:
            raise SiteFileError(line, "site_id", f"{site.site_id!r} has no station")


def read_station_files(
    station_text: str, site_text: str | None
) -> tuple[list[Station], list[Site]]:
    """A station file and its site file, validated together (each error names its file's
    line: StationFileError for the stations, SiteFileError for the sites)."""
    sites = parse_sites(site_text) if site_text is not None else []
    stations = parse_stations(station_text, {s.site_id for s in sites} if sites else None)
    if any(s.site_id for s in stations) and not sites:
        raise StationFileError(1, "site_id", "the stations name sites: give the site file too")
    check_sites(sites, stations)
    return stations, sites


async def load_stations(
    client: RedisClient,
    stations: list[Station],
    region: Region | None = None,
    sites: Sequence[Site] = (),
) -> int:
    """Upsert stations (and sites) into a region: the GEO index, station and site hashes,
    each site's station set and the set of sites; live bookings are kept. A station that
    moved to another site (or to none) leaves its former site's set.

    One transaction on a standalone server. On Redis Cluster (every key of a region is in
    the region's slot) one pipeline to that node, not a transaction: redis-py 8's cluster
    transaction leaves a connection that closing the client then trips over.
    """
    region = region or Region()
    before = client.pipeline(transaction=False)
    for s in stations:
        before.hget(region.station(s.station_id), "site_id")
    former = await before.execute()
    pipe = client.pipeline(transaction=not is_cluster(client))
    for s, old in zip(stations, former, strict=True):
        old_site = old.decode() if isinstance(old, bytes) else old
        if old_site and old_site != s.site_id:
            pipe.srem(region.site_stations(old_site), s.station_id)
    for site in sites:
        pipe.sadd(region.sites, site.site_id)
        pipe.hset(
            region.site(site.site_id), mapping={"name": site.name, "limit_kw": repr(site.limit_kw)}
        )
    for s in stations:
        if s.site_id:
            pipe.sadd(region.site_stations(s.site_id), s.station_id)
    pipe.geoadd(
        region.stations_locations, [v for s in stations for v in (s.lon, s.lat, s.station_id)]
    )
    for s in stations:
        pipe.hset(
            region.station(s.station_id),
            mapping={
                "name": s.name,
                "lat": repr(s.lat),
                "lon": repr(s.lon),
                "capacity": s.capacity,
                "power_kw": repr(s.power_kw),
                "site_id": s.site_id,
            },
        )
    await pipe.execute()
    return len(stations)

"""Charging stations: the station file format, its validation, and loading into Redis."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Final

from greenlane.core.events import CAR_ID_PATTERN, GEO_MAX_LAT
from greenlane.core.keys import Region
from greenlane.core.redis_state import RedisClient, is_cluster

COLUMNS: Final = ("id", "name", "lat", "lon", "capacity", "power_kw")


class StationFileError(ValueError):
    """A station file that cannot be used; names the line and the field."""

    def __init__(self, line: int, field: str, message: str) -> None:
        super().__init__(f"line {line}: {field}: {message}")
        self.line = line
        self.field = field


@dataclass(frozen=True, slots=True)
class Station:
    station_id: str
    name: str
    lat: float
    lon: float
    capacity: int
    power_kw: float


def _number(line: int, field: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise StationFileError(line, field, f"{raw!r} is not a number") from None
    if not math.isfinite(value):
        raise StationFileError(line, field, f"{raw!r} is not a finite number")
    return value


def parse_stations(text: str) -> list[Station]:
    """Parse CSV with the header id,name,lat,lon,capacity,power_kw; refuse any bad line."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise StationFileError(1, "header", "the file is empty") from None
    if tuple(header) != COLUMNS:
        raise StationFileError(1, "header", f"must be {','.join(COLUMNS)}, got {','.join(header)}")
    stations: list[Station] = []
    seen: set[str] = set()
    for row in reader:
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(COLUMNS):
            raise StationFileError(line, "row", f"has {len(row)} fields, expected {len(COLUMNS)}")
        sid, name, lat_s, lon_s, cap_s, power_s = (cell.strip() for cell in row)
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
        seen.add(sid)
        stations.append(Station(sid, name, lat, lon, int(cap_s), power))
    if not stations:
        raise StationFileError(reader.line_num or 1, "rows", "no station in the file")
    return stations


async def load_stations(
    client: RedisClient, stations: list[Station], region: Region | None = None
) -> int:
    """Upsert stations into a region's GEO index and their hashes; live bookings are kept.

    One transaction on a standalone server. On Redis Cluster (every key of a region is in
    the region's slot) one pipeline to that node, not a transaction: redis-py 8's cluster
    transaction leaves a connection that closing the client then trips over.
    """
    region = region or Region()
    pipe = client.pipeline(transaction=not is_cluster(client))
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
            },
        )
    await pipe.execute()
    return len(stations)

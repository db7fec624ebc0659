"""Stations as the station store holds them: the one place the hub reads their keys."""

from __future__ import annotations

import logging
import math

from greenlane.core.events import CAR_ID_PATTERN
from greenlane.core.keys import Region
from greenlane.core.redis_state import RedisClient
from greenlane.core.stations import Station as StationInfo

log = logging.getLogger(__name__)


def _text(raw: dict[bytes, bytes], name: str) -> str:
    return raw.get(name.encode(), b"").decode(errors="replace")


def parse_station(station_id: str, raw: dict[bytes, bytes]) -> StationInfo | None:
    """A station hash (name, lat, lon, capacity, power_kw, site_id?), or None if unusable."""
    if not CAR_ID_PATTERN.fullmatch(station_id):
        return None
    try:
        lat, lon = float(_text(raw, "lat")), float(_text(raw, "lon"))
        capacity = int(_text(raw, "capacity"))
        power = float(_text(raw, "power_kw") or "0")
    except ValueError:
        return None
    if not (math.isfinite(lat) and math.isfinite(lon) and math.isfinite(power)) or capacity < 0:
        return None
    site_id = _text(raw, "site_id")
    if site_id and not CAR_ID_PATTERN.fullmatch(site_id):
        site_id = ""
    name = _text(raw, "name")[:200] or station_id
    return StationInfo(station_id, name, lat, lon, capacity, power, site_id)


async def read_stations(client: RedisClient, region: Region) -> list[StationInfo]:
    """Every station of the region's GEO index with its hash; unusable ones are left out."""
    members = await client.zrange(region.stations_locations, 0, -1)
    ids = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
    if not ids:
        return []
    pipe = client.pipeline(transaction=False)
    for station_id in ids:
        pipe.hgetall(region.station(station_id))
    hashes = await pipe.execute()
    stations = []
    for station_id, raw in zip(ids, hashes, strict=True):
        station = parse_station(station_id, raw)
        if station is None:
            log.warning("station %r in the store is incomplete or invalid; not shown", station_id)
        else:
            stations.append(station)
    return stations

"""The demand factor of each charging row: its station's site snapshot in force at the
row's instant (greenlane.core.demand), read from Redis a batch at a time."""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable
from typing import Final

from greenlane.core.demand import KEEP_MS, SiteLoad, demand_factor
from greenlane.core.keys import Region
from greenlane.core.redis_state import RedisClient

# A station's site is reused this long (stations change only when a file is loaded).
SITE_CACHE_SECONDS: Final = 60.0


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class DemandFactors:
    """Factors of (station, instant) pairs: two Redis reads per site and batch at most."""

    def __init__(self, redis: RedisClient, region: Region) -> None:
        self._redis = redis
        self._region = region
        self._sites: dict[str, tuple[float, str]] = {}

    async def _site_of(self, stations: list[str]) -> dict[str, str]:
        now = time.monotonic()
        out: dict[str, str] = {}
        missing = []
        for sid in stations:
            cached = self._sites.get(sid)
            if cached is not None and cached[0] > now:
                out[sid] = cached[1]
            else:
                missing.append(sid)
        if missing:
            pipe = self._redis.pipeline(transaction=False)
            for sid in missing:
                pipe.hget(self._region.station(sid), "site_id")
            for sid, site in zip(missing, await pipe.execute(), strict=True):
                out[sid] = _text(site) if site else ""
                self._sites[sid] = (now + SITE_CACHE_SECONDS, out[sid])
        if len(self._sites) > 10_000:
            self._sites.clear()
        return out

    async def factors(self, pairs: Iterable[tuple[str, int]]) -> dict[tuple[str, int], float]:
        """The factor of each (station_id, instant ms): 1 for a station in no site or a
        site without a snapshot at that instant."""
        wanted = set(pairs)
        if not wanted:
            return {}
        site_of = await self._site_of(sorted({s for s, _ in wanted}))
        spans: dict[str, tuple[int, int]] = {}
        for sid, at in wanted:
            site = site_of[sid]
            if site:
                low, high = spans.get(site, (at, at))
                spans[site] = (min(low, at), max(high, at))
        versions: dict[str, tuple[list[int], list[SiteLoad]]] = {}
        if spans:
            pipe = self._redis.pipeline(transaction=False)
            order = sorted(spans)
            for site in order:
                low, high = spans[site]
                key = self._region.site_load(site)
                # The version in force at the earliest instant, then every later one.
                pipe.zrevrangebyscore(key, low, low - KEEP_MS, 0, 1)
                pipe.zrangebyscore(key, f"({low}", high)
            replies = await pipe.execute()
            for n, site in enumerate(order):
                loads = [SiteLoad.loads(r) for r in [*replies[2 * n], *replies[2 * n + 1]]]
                versions[site] = ([load.at_ms for load in loads], loads)
        out: dict[tuple[str, int], float] = {}
        for sid, at in wanted:
            found = versions.get(site_of[sid])
            load = None
            if found:
                k = bisect.bisect_right(found[0], at) - 1
                load = found[1][k] if k >= 0 else None
            out[(sid, at)] = demand_factor(load)
        return out

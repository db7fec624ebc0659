"""Prices that follow demand: a station's price is the grid tariff times its site's demand
factor (docs/prediction.md#the-price-rule). Defined once, here.

A site's **load snapshot** (`SiteLoad`) is the power its plugged-in and booked cars ask
for (each at its connector's power) against the site's grid limit, as the planner sees it
when it plans the site. Snapshots are versioned by their instant in
`{REGION}:site-load:{site}` (a ZSET scored by the instant): the version in force at t is
the last one at or before t. The factor is a pure function of the snapshot, so the
pricing worker (pricing an event at its instant), the booking desk (choosing a station
now) and the planner (costing its plan when it records the snapshot) see the same number
for the same instant and state.

    demand = (plugged_kw + booked_kw) / limit_kw
    factor = clamp(FACTOR_MIN + FACTOR_SLOPE × demand, FACTOR_MIN, FACTOR_MAX)
    price  = tariff × factor

An empty site is 20 % cheaper than the tariff, a site asked for half its limit pays the
tariff, one asked for its whole limit pays 20 % more, never more than twice the tariff.
No snapshot (a site never planned, a station in no site) is factor 1.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from greenlane.core.keys import Region
    from greenlane.core.redis_state import RedisClient

FACTOR_MIN: Final = 0.8
FACTOR_SLOPE: Final = 0.4
FACTOR_MAX: Final = 2.0
# A car charging at a site asked for more than its limit gets its share of the limit: its
# session lasts demand times as long. The expected wait is that extra time for a session
# of this length, at most WAIT_MAX_MINUTES.
SESSION_MINUTES: Final = 30.0
WAIT_MAX_MINUTES: Final = 120.0
# Snapshots are kept this long (the pricing worker prices events up to a day late).
KEEP_MS: Final = 24 * 3_600_000


@dataclass(frozen=True, slots=True)
class SiteLoad:
    """A site's load at an instant: what its cars ask for against its limit (kW)."""

    site_id: str
    at_ms: int
    plugged_kw: float
    booked_kw: float
    limit_kw: float

    def __post_init__(self) -> None:
        for name in ("plugged_kw", "booked_kw"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
        if not (math.isfinite(self.limit_kw) and self.limit_kw > 0):
            raise ValueError(f"limit_kw must be a finite number above 0, not {self.limit_kw!r}")
        if self.at_ms < 0:
            raise ValueError(f"at_ms must be >= 0, not {self.at_ms!r}")

    @property
    def demand(self) -> float:
        return (self.plugged_kw + self.booked_kw) / self.limit_kw

    def dumps(self) -> str:
        return json.dumps(
            {
                "site_id": self.site_id,
                "at_ms": self.at_ms,
                "plugged_kw": round(self.plugged_kw, 3),
                "booked_kw": round(self.booked_kw, 3),
                "limit_kw": self.limit_kw,
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def loads(cls, raw: str | bytes) -> SiteLoad:
        data: dict[str, Any] = json.loads(raw)
        return cls(
            site_id=str(data["site_id"]),
            at_ms=int(data["at_ms"]),
            plugged_kw=float(data["plugged_kw"]),
            booked_kw=float(data["booked_kw"]),
            limit_kw=float(data["limit_kw"]),
        )


def demand_factor(load: SiteLoad | None) -> float:
    """The factor a site's price is the tariff times (1 without a snapshot); 4 decimals."""
    if load is None:
        return 1.0
    raw = FACTOR_MIN + FACTOR_SLOPE * load.demand
    return round(min(max(raw, FACTOR_MIN), FACTOR_MAX), 4)


@dataclass(frozen=True, slots=True)
class DemandPrice:
    tariff: float  # USD/kWh, the grid's
    factor: float
    price: float  # USD/kWh, tariff × factor, 5 decimals (the priced row's precision)


def station_price(tariff: float, load: SiteLoad | None) -> DemandPrice:
    """The price at a station of a site whose snapshot is `load`, for a grid tariff."""
    if not (math.isfinite(tariff) and tariff >= 0):
        raise ValueError(f"tariff must be a finite number >= 0, not {tariff!r}")
    factor = demand_factor(load)
    return DemandPrice(tariff, factor, round(tariff * factor, 5))


def expected_wait_minutes(load: SiteLoad | None) -> float:
    """Extra minutes a session of SESSION_MINUTES takes at a site asked for more than its
    limit (its share of the limit is 1/demand of what it asks for)."""
    if load is None or load.demand <= 1.0:
        return 0.0
    return round(min(SESSION_MINUTES * (load.demand - 1.0), WAIT_MAX_MINUTES), 2)


@dataclass(frozen=True, slots=True)
class BookingWeights:
    """How the booking script weighs a candidate station (book.lua does the same sum):

    cost = (distance_km / speed_kmh × 60 + wait_minutes) × value_per_minute
           + price × energy_kwh
    """

    speed_kmh: float = 25.0  # how fast a car gets to a station in town
    value_per_minute: float = 0.5  # USD a minute of a car's time is worth
    energy_kwh: float = 30.0  # what a booked car charges, on average

    def __post_init__(self) -> None:
        for name in ("speed_kmh", "value_per_minute", "energy_kwh"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
        if self.speed_kmh == 0:
            raise ValueError("speed_kmh must be above 0")


def booking_cost(
    distance_km: float, price: float, wait_minutes: float, weights: BookingWeights
) -> float:
    """What booking a station costs a car, in USD: its time there and its energy."""
    minutes = distance_km / weights.speed_kmh * 60.0 + wait_minutes
    return minutes * weights.value_per_minute + price * weights.energy_kwh


async def record_site_load(client: RedisClient, region: Region, load: SiteLoad) -> None:
    """Add a version of a site's snapshot and drop the versions older than KEEP_MS."""
    key = region.site_load(load.site_id)
    pipe = client.pipeline(transaction=False)
    pipe.zadd(key, {load.dumps(): load.at_ms})
    pipe.zremrangebyscore(key, "-inf", f"({load.at_ms - KEEP_MS}")
    pipe.pexpire(key, KEEP_MS)
    await pipe.execute()


async def site_load_at(
    client: RedisClient, region: Region, site_id: str, at_ms: int
) -> SiteLoad | None:
    """The snapshot of a site in force at at_ms: the last version at or before it."""
    found = await client.zrevrangebyscore(region.site_load(site_id), at_ms, "-inf", 0, 1)
    if not found:
        return None
    raw = found[0]
    return SiteLoad.loads(raw if isinstance(raw, str | bytes) else str(raw))

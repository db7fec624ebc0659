"""Every Redis key GreenLane uses, in one place: a namespace per kind, hash tags for Cluster.

A key is `{TAG}:KIND` or `{TAG}:KIND:ID`. The hash tag (in braces) says which slot of a
Redis Cluster the key lives in; KIND names what the key holds and never contains `:`;
ID (a car, station, site or booking id, at most 64 of `[A-Za-z0-9_.:-]`) always comes
last. Ids cannot contain braces, so an id can neither change a key's slot nor its kind:
`{fleet.07}:car:X:booking` is the state of the car `X:booking`, nothing else, and no id
can name another kind's key.

Tags group what one script touches into one slot:

- `{fleet}`: the fleet's GEO index and the timestamp of each position in it;
- `{fleet.NN}` (NN = one of FLEET_SHARDS buckets of the car id): car states, and the
  planner's plans of the same cars, so car-state writes need one script call per shard;
- `{REGION}` (`GREENLANE_REGION`, `manhattan` by default): stations, their bookings, the
  booking records, the expiry index and the car -> booking pointers of one booking region,
  so every booking script runs in one slot.

Lua scripts get every key they touch in KEYS (built here); none holds a key literal.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

# Fixed: changing it moves every car state to another key.
FLEET_SHARDS: Final = 16
REGION_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
DEFAULT_REGION: Final = "manhattan"

FLEET_TAG: Final = "{fleet}"
# GEO, member = car id: every car's latest position.
FLEET_LOCATIONS: Final = FLEET_TAG + ":locations"
# HASH car id -> timestamp (Unix ms) of its position in FLEET_LOCATIONS: the newest wins.
FLEET_TIMESTAMPS: Final = FLEET_TAG + ":timestamps"


def fleet_shard(car_id: str) -> int:
    """The shard of a car (0 .. FLEET_SHARDS-1): CRC-32 of its id."""
    return zlib.crc32(car_id.encode()) % FLEET_SHARDS


def shard_tag(shard: int) -> str:
    return "{fleet.%02d}" % shard  # noqa: UP031 - braces are the point


# The field of a car's state hash that names the fleet owning the car (the first fleet
# that wrote it); only that fleet (or an operator) may write the car, see its bookings.
OWNER_FIELD: Final = "fleet"


@lru_cache(maxsize=200_000)
def car_state(car_id: str) -> str:
    """HASH of a car's latest state (the fields of greenlane.core.events.CAR_STATE_FIELDS
    that are stored in Redis)."""
    return f"{shard_tag(fleet_shard(car_id))}:car:{car_id}"


def plan(car_id: str) -> str:
    """HASH of a car's current charging plan (greenlane.core.plans.PLAN_FIELDS), written
    by the planner, read by ingestion for the car's setpoint; in its car's slot."""
    return f"{shard_tag(fleet_shard(car_id))}:plan:{car_id}"


def goal(car_id: str) -> str:
    """HASH of a car's charging goal set through the planner's API (target_battery,
    depart_at, set_at); it expires a day after its departure."""
    return f"{shard_tag(fleet_shard(car_id))}:goal:{car_id}"


def car_spec(car_id: str) -> str:
    """HASH of a car's own pack size and charge power (pack_kwh, max_kw) where they
    differ from the fleet's defaults; set through the planner's API, kept until changed."""
    return f"{shard_tag(fleet_shard(car_id))}:car-spec:{car_id}"


def drain(car_id: str) -> str:
    """HASH of a car's latest drain prediction (greenlane.core.drain.PREDICTION_FIELDS),
    written by ingestion's booking desk; in its car's slot."""
    return f"{shard_tag(fleet_shard(car_id))}:drain:{car_id}"


def check_region(name: str) -> str:
    if not REGION_PATTERN.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a region name: 1 to 32 of a-z, 0-9 and -, starting with a "
            "letter or digit"
        )
    return name


@dataclass(frozen=True, slots=True)
class Region:
    """The keys of one booking region; all of them share the region's slot."""

    name: str = DEFAULT_REGION

    def __post_init__(self) -> None:
        check_region(self.name)

    @property
    def tag(self) -> str:
        return "{" + self.name + "}"

    @property
    def stations_locations(self) -> str:
        """GEO, member = station id."""
        return self.tag + ":stations:locations"

    def station(self, station_id: str) -> str:
        """HASH name, lat, lon, capacity, power_kw."""
        return f"{self.tag}:station:{station_id}"

    def station_bookings(self, station_id: str) -> str:
        """ZSET booking id -> expiry (ms): the station's bookings; live while unexpired."""
        return f"{self.tag}:station-bookings:{station_id}"

    @property
    def bookings(self) -> str:
        """HASH booking id -> the booking's record (JSON)."""
        return self.tag + ":bookings"

    @property
    def booking_expiry(self) -> str:
        """ZSET booking id -> expiry (ms) of every active booking, for the sweep."""
        return self.tag + ":booking-expiry"

    @property
    def booking_ended(self) -> str:
        """ZSET booking id -> when it ended (ms); records are dropped a day later."""
        return self.tag + ":booking-ended"

    @property
    def car_booking(self) -> str:
        """HASH car id -> its active booking id."""
        return self.tag + ":car-booking"

    def fleet_bookings(self, fleet: str) -> str:
        """ZSET booking id -> expiry (ms): a fleet's bookings; live while unexpired (the
        per-fleet cap counts them)."""
        return f"{self.tag}:fleet-bookings:{fleet}"

    def car_bookings(self, car_id: str) -> str:
        """ZSET booking id -> creation (ms): a car's latest bookings in this region."""
        return f"{self.tag}:car-bookings:{car_id}"

    @property
    def sites(self) -> str:
        """SET of the region's site ids."""
        return self.tag + ":sites"

    def site(self, site_id: str) -> str:
        """HASH of a site: name, limit_kw (its grid connection)."""
        return f"{self.tag}:site:{site_id}"

    def site_stations(self, site_id: str) -> str:
        """SET of the station ids of a site."""
        return f"{self.tag}:site-stations:{site_id}"

    def site_schedule(self, site_id: str) -> str:
        """STRING (JSON): the site's current joint plan, slot by slot (the planner's)."""
        return f"{self.tag}:site-schedule:{site_id}"

    def site_load(self, site_id: str) -> str:
        """ZSET of a site's load snapshots (greenlane.core.demand.SiteLoad JSON), score =
        the snapshot's instant (ms): the version in force at t is the last one at or
        before t. Written by the planner; read for prices and bookings."""
        return f"{self.tag}:site-load:{site_id}"

    @property
    def planner_replicas(self) -> str:
        """ZSET planner replica id -> its last heartbeat (ms): who shares the sites."""
        return self.tag + ":planner-replicas"

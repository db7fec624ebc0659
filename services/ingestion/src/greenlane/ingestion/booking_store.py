"""Station booking in Redis: the Lua scripts that book, end and sweep bookings, and reads.

Every change of a station's bookings happens inside one script, so a station never
holds more live bookings than its capacity, whatever the concurrency. Expired
bookings are reclaimed inside the same scripts and by a periodic sweep, so free
capacity is always capacity minus live bookings. Every key a script touches is passed
in KEYS (greenlane.core.keys.Region), all in the region's slot: the scripts run on
Redis Cluster too. The rules around the scripts live in greenlane.ingestion.desk.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final, Literal

from greenlane.core.demand import BookingWeights
from greenlane.core.keys import Region
from greenlane.core.redis_state import RedisClient, is_cluster

EndStatus = Literal["fulfilled", "cancelled"]
# How long the record of an ended booking is kept (for the car's history).
KEEP_ENDED_MS: Final = 24 * 3600 * 1000
# How long a station's name, position and power are reused for BOOKED answers.
STATION_CACHE_SECONDS: Final = 30.0


def _script(name: str) -> str:
    folder = resources.files("greenlane.ingestion").joinpath("lua")
    return folder.joinpath("common.lua").read_text() + folder.joinpath(name).read_text()


# One read, given the client (or the pipeline) to issue it on.
_Call = Callable[[Any], Any]


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True, slots=True)
class Expired:
    booking_id: str
    car_id: str
    station_id: str


@dataclass(frozen=True, slots=True)
class Booking:
    booking_id: str
    station_id: str
    distance_km: float
    expires_at: int
    existing: bool


@dataclass(frozen=True, slots=True)
class BookOutcome:
    booking: Booking | None  # None: no free station nearby, not needed, or the fleet cap
    expired: list[Expired]
    # Not booked because a free station is closer than the car's reach (its distance).
    not_needed_km: float | None = None
    fleet_limit: int = 0  # > 0: the fleet holds this many live bookings, its cap


@dataclass(frozen=True, slots=True)
class Offer:
    """What a candidate station costs at the moment: its price and expected wait."""

    price: float = 0.0  # USD/kWh
    wait_minutes: float = 0.0


# Offers of candidate stations (by id), given the ids; stations left out cost 0.
Quote = Callable[[list[str]], Awaitable[dict[str, Offer]]]


@dataclass(frozen=True, slots=True)
class Need:
    """How much a car needs a booking (book.lua's need_km and range_km; < 0: not given)."""

    need_km: float = -1.0  # book only if no free station is closer than this
    range_km: float = -1.0  # choose among free stations within this distance
    weights: BookingWeights = field(default_factory=BookingWeights)
    radius_km: float = 0.0  # search this far (0: the store's max_radius_km)


ALWAYS: Final = Need()


@dataclass(frozen=True, slots=True)
class EndOutcome:
    result: Literal["ENDED", "NOT_FOUND", "NOT_ACTIVE", "NOT_OWNER"]
    car_id: str = ""
    station_id: str = ""
    detail: str = ""


def _expired(items: list[Any]) -> list[Expired]:
    out = []
    for raw in items:
        bid, car, station = _s(raw).split("|", 2)
        out.append(Expired(bid, car, station))
    return out


def _record(booking_id: str, raw: Any) -> dict[str, str] | None:
    """A booking's record as the API shows it; None if there is none (or it is unreadable)."""
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return {"booking_id": booking_id, **{str(k): str(v) for k, v in data.items()}}


class BookingStore:
    """Thin async wrapper around the scripts; `now_ms=0` means the server's clock."""

    def __init__(
        self,
        redis: RedisClient,
        *,
        region: Region | None = None,
        ttl_ms: int = 20 * 60 * 1000,
        max_radius_km: float = 5.0,
        max_candidates: int = 10,
    ) -> None:
        self._redis = redis
        self.region = region or Region()
        self.ttl_ms = ttl_ms
        self._max_radius = max_radius_km
        self._max_candidates = max_candidates
        self._book = redis.register_script(_script("book.lua"))
        self._end = redis.register_script(_script("end.lua"))
        self._sweep = redis.register_script(_script("sweep.lua"))
        self._stations: dict[str, tuple[float, dict[str, str]]] = {}
        # Cars this store booked -> until when: a hint that they hold a booking, checked
        # by the script (another replica may have ended it).
        self._holding: dict[str, int] = {}
        r = self.region
        # The keys every script of the region shares, in the order the scripts expect.
        self._ledger = [r.bookings, r.booking_expiry, r.booking_ended, r.car_booking]

    @property
    def max_radius_km(self) -> float:
        return self._max_radius

    async def book(
        self,
        car_id: str,
        lon: float,
        lat: float,
        now_ms: int = 0,
        *,
        fleet: str = "",
        cap: int = 0,
        need: Need = ALWAYS,
        quote: Quote | None = None,
    ) -> BookOutcome:
        """The car's active booking, or a new one at the free station that costs it least
        (the nearest without a quote); with need.need_km >= 0, none while a free station
        is closer than that (BookOutcome.not_needed_km).

        The candidates are found first (one GEOSEARCH, with whether the car holds a
        booking, in one round trip), so that the script is given the keys of every
        station it may book; no candidate and no booking is NO_CAPACITY without the
        script. A car this store booked asks again with every status while its battery is
        low: then the script is first asked for the car's booking alone (one round trip);
        only if it is gone are the candidates searched. A booking is the fleet's: `cap`
        (> 0) bounds the live bookings one fleet holds in the region.
        """
        expired: list[Expired] = []
        book = (fleet, cap)
        if self._holding.get(car_id, 0) > time.time() * 1000:
            outcome = await self._call_book(car_id, lon, lat, now_ms, [], book, need, {})
            if outcome.booking is not None:
                return outcome
            expired = outcome.expired  # cancelled, fulfilled or expired meanwhile
        r = self.region
        found, has_booking = await self._both(
            lambda c: c.geosearch(
                r.stations_locations,
                longitude=lon,
                latitude=lat,
                radius=need.radius_km or self._max_radius,
                unit="km",
                sort="ASC",
                count=self._max_candidates,
                withdist=True,
            ),
            [lambda c: c.hexists(r.car_booking, car_id)],
        )
        if not found and not has_booking:
            return BookOutcome(None, expired)  # no station in range, nothing to look at
        offers = await quote([_s(m) for m, _ in found]) if quote and found else {}
        outcome = await self._call_book(car_id, lon, lat, now_ms, list(found), book, need, offers)
        return BookOutcome(
            outcome.booking, expired + outcome.expired, outcome.not_needed_km, outcome.fleet_limit
        )

    async def _call_book(
        self,
        car_id: str,
        lon: float,
        lat: float,
        now_ms: int,
        found: list[Any],
        book: tuple[str, int],
        need: Need,
        offers: dict[str, Offer],
    ) -> BookOutcome:
        r = self.region
        fleet, cap = book
        w = need.weights
        keys = [r.stations_locations, *self._ledger, r.car_bookings(car_id)]
        keys.append(r.fleet_bookings(fleet))
        args: list[Any] = [car_id, repr(lon), repr(lat), now_ms, self.ttl_ms, uuid.uuid4().hex]
        args += [fleet, cap]
        args += [repr(need.need_km), repr(need.range_km)]
        args += [repr(w.speed_kmh), repr(w.value_per_minute), repr(w.energy_kwh)]
        for member, dist in found:
            sid = _s(member)
            offer = offers.get(sid, Offer())
            keys += [r.station(sid), r.station_bookings(sid)]
            args += [sid, repr(float(dist)), repr(offer.price), repr(offer.wait_minutes)]
        reply = await self._book(keys=keys, args=args)
        status = _s(reply[0])
        expired = _expired(reply[6:])
        if status == "NOT_NEEDED":
            return BookOutcome(None, expired, float(_s(reply[3])))
        if status != "BOOKED":
            self._holding.pop(car_id, None)
            live = int(reply[5]) if status == "FLEET_LIMIT" else 0
            return BookOutcome(None, expired, fleet_limit=live)
        distance = _s(reply[3])
        booking = Booking(
            booking_id=_s(reply[1]),
            station_id=_s(reply[2]),
            distance_km=float(distance) if distance else 0.0,
            expires_at=int(_s(reply[4])),
            existing=bool(int(reply[5])),
        )
        if len(self._holding) >= 100_000:
            self._holding.clear()
        self._holding[car_id] = booking.expires_at
        return BookOutcome(booking, expired)

    async def end(
        self,
        booking_id: str,
        status: EndStatus,
        *,
        car_id: str = "",
        now_ms: int = 0,
        station_id: str = "",
        fleet: str | None = None,
        only_fleet: str = "",
    ) -> EndOutcome:
        """Fulfil or cancel an active booking; its slot is free again at once.

        station_id and fleet (the booking's, from its record) save reading the record
        first; only_fleet ("" any) refuses (NOT_OWNER) a booking of another fleet.
        """
        if not station_id or fleet is None:
            record = await self.booking(booking_id)
            if record is None or "station_id" not in record:
                return EndOutcome("NOT_FOUND")
            station_id, fleet = record["station_id"], record.get("fleet", "")
        keys = [
            *self._ledger,
            self.region.station_bookings(station_id),
            self.region.fleet_bookings(fleet),
        ]
        args: list[Any] = [booking_id, status, now_ms, car_id, station_id, only_fleet]
        reply = await self._end(keys=keys, args=args)
        result = _s(reply[0])
        if result == "ENDED":
            self._holding.pop(_s(reply[1]), None)
            return EndOutcome("ENDED", _s(reply[1]), _s(reply[2]))
        if result == "NOT_ACTIVE":
            return EndOutcome("NOT_ACTIVE", detail=_s(reply[1]))
        return EndOutcome(result)  # type: ignore[arg-type]

    async def sweep(self, now_ms: int = 0, limit: int = 500) -> list[Expired]:
        """Reclaim bookings past their expiry; returns what expired."""
        return _expired(await self._sweep(keys=self._ledger, args=[now_ms, limit, KEEP_ENDED_MS]))

    async def active_booking(self, car_id: str) -> dict[str, str] | None:
        bid = await self._redis.hget(self.region.car_booking, car_id)
        if bid is None:
            return None
        data = await self.booking(_s(bid))
        if data is None or data.get("status") != "active":
            return None
        return data

    async def booking(self, booking_id: str) -> dict[str, str] | None:
        return _record(booking_id, await self._redis.hget(self.region.bookings, booking_id))

    async def car_bookings(self, car_id: str, limit: int = 50) -> list[dict[str, str]]:
        """The car's bookings in this region, newest first."""
        key = self.region.car_bookings(car_id)
        ids = [_s(b) for b in await self._redis.zrevrange(key, 0, limit - 1)]
        if not ids:
            return []
        raw = await self._redis.hmget(self.region.bookings, ids)
        found = [_record(bid, value) for bid, value in zip(ids, raw, strict=True)]
        return [b for b in found if b is not None]

    async def _both(self, first: _Call, rest: list[_Call]) -> list[Any]:
        """Several reads in one round trip: a pipeline on one server; on a cluster the same
        commands at once (redis-py's cluster pipelines break under concurrent use)."""
        calls = [first, *rest]
        if is_cluster(self._redis):
            return list(await asyncio.gather(*(call(self._redis) for call in calls)))
        pipe = self._redis.pipeline(transaction=False)
        for call in calls:
            call(pipe)
        return list(await pipe.execute())

    async def now_ms(self) -> int:
        seconds, micros = await self._redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def station_details(self, station_id: str) -> dict[str, str]:
        """The station's record (name, lat, lon, capacity, power_kw); empty if unknown.

        Kept for STATION_CACHE_SECONDS: every BOOKED answer carries it, and stations
        change only when a station file is loaded.
        """
        now = time.monotonic()
        cached = self._stations.get(station_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        raw = await self._redis.hgetall(self.region.station(station_id))
        record = {_s(k): _s(v) for k, v in raw.items()}
        if len(self._stations) > 10_000:
            self._stations.clear()
        self._stations[station_id] = (now + STATION_CACHE_SECONDS, record)
        return record

    async def station(self, station_id: str, now_ms: int = 0) -> dict[str, Any] | None:
        """A station with its free capacity (capacity minus bookings not yet expired)."""
        found = await self._with_capacity([station_id], now_ms)
        return found[0] if found else None

    async def nearby(
        self,
        lon: float,
        lat: float,
        radius_km: float,
        limit: int = 20,
        *,
        free_only: bool = True,
        now_ms: int = 0,
    ) -> list[dict[str, Any]]:
        """Stations nearest first within radius_km; with free_only, only those with a free
        slot (filtered before the limit, so full stations never hide free ones)."""
        rows: list[Any] = list(
            await self._redis.geosearch(
                self.region.stations_locations,
                longitude=lon,
                latitude=lat,
                radius=radius_km,
                unit="km",
                sort="ASC",
                withdist=True,
            )
        )
        distance = {_s(member): round(float(dist), 4) for member, dist in rows}
        out = []
        for info in await self._with_capacity(list(distance), now_ms):
            if free_only and info["free"] == 0:
                continue
            info["distance_km"] = distance[info["station_id"]]
            out.append(info)
            if len(out) == limit:
                break
        return out

    async def _with_capacity(self, ids: list[str], now_ms: int) -> list[dict[str, Any]]:
        """Records and live bookings of stations in one round trip, in the order given."""
        if not ids:
            return []
        now = now_ms or await self.now_ms()
        region = self.region

        def reads(sid: str) -> list[_Call]:
            return [
                lambda c: c.hgetall(region.station(sid)),
                lambda c: c.zcount(region.station_bookings(sid), f"({now}", "+inf"),
            ]

        calls = [call for sid in ids for call in reads(sid)]
        replies = await self._both(calls[0], calls[1:])
        out = []
        for n, sid in enumerate(ids):
            raw, live = replies[2 * n], int(replies[2 * n + 1])
            if not raw:
                continue
            data = {_s(k): _s(v) for k, v in raw.items()}
            capacity = int(data["capacity"])
            out.append(
                {
                    "station_id": sid,
                    "name": data["name"],
                    "lat": float(data["lat"]),
                    "lon": float(data["lon"]),
                    "capacity": capacity,
                    "power_kw": float(data["power_kw"]),
                    "live_bookings": live,
                    "free": max(capacity - live, 0),
                }
            )
        return out

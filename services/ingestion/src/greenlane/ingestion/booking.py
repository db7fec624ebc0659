"""Station booking: the Lua scripts that book, end and sweep bookings, run on the server.

Every change of a station's bookings happens inside one script, so a station never
holds more live bookings than its capacity, whatever the concurrency. Expired
bookings are reclaimed inside the same scripts and by a periodic sweep, so free
capacity is always capacity minus live bookings.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from redis.asyncio import Redis

from greenlane.core.redis_state import STATIONS_LOCATIONS_KEY
from greenlane.core.stations import station_bookings_key, station_key

EndStatus = Literal["fulfilled", "cancelled"]


def _script(name: str) -> str:
    return resources.files("greenlane.ingestion").joinpath("lua", name).read_text()


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
    booking: Booking | None  # None: no station nearby has free capacity
    expired: list[Expired]


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


class BookingStore:
    """Thin async wrapper around the scripts; `now_ms=0` means the server's clock."""

    def __init__(
        self,
        redis: Redis,
        *,
        ttl_ms: int = 20 * 60 * 1000,
        max_radius_km: float = 5.0,
        max_candidates: int = 10,
    ) -> None:
        self._redis = redis
        self.ttl_ms = ttl_ms
        self._max_radius = repr(max_radius_km)
        self._max_candidates = max_candidates
        self._book = redis.register_script(_script("book.lua"))
        self._end = redis.register_script(_script("end.lua"))
        self._sweep = redis.register_script(_script("sweep.lua"))

    async def book(self, car_id: str, lon: float, lat: float, now_ms: int = 0) -> BookOutcome:
        """The car's active booking, or a new one at the nearest station with a free slot."""
        reply = await self._book(
            args=[
                car_id,
                repr(lon),
                repr(lat),
                now_ms,
                self.ttl_ms,
                uuid.uuid4().hex,
                self._max_candidates,
                self._max_radius,
            ]
        )
        status = _s(reply[0])
        expired = _expired(reply[6:])
        if status != "BOOKED":
            return BookOutcome(None, expired)
        distance = _s(reply[3])
        return BookOutcome(
            Booking(
                booking_id=_s(reply[1]),
                station_id=_s(reply[2]),
                distance_km=float(distance) if distance else 0.0,
                expires_at=int(_s(reply[4])),
                existing=bool(int(reply[5])),
            ),
            expired,
        )

    async def end(
        self, booking_id: str, status: EndStatus, *, car_id: str = "", now_ms: int = 0
    ) -> EndOutcome:
        """Fulfil or cancel an active booking; its slot is free again at once."""
        reply = await self._end(args=[booking_id, status, now_ms, car_id])
        result = _s(reply[0])
        if result == "ENDED":
            return EndOutcome("ENDED", _s(reply[1]), _s(reply[2]))
        if result == "NOT_ACTIVE":
            return EndOutcome("NOT_ACTIVE", detail=_s(reply[1]))
        return EndOutcome(result)  # type: ignore[arg-type]

    async def sweep(self, now_ms: int = 0, limit: int = 500) -> list[Expired]:
        """Reclaim bookings past their expiry; returns what expired."""
        return _expired(await self._sweep(args=[now_ms, limit]))

    async def active_booking(self, car_id: str) -> dict[str, str] | None:
        bid = await self._redis.get(car_booking_key(car_id))
        if bid is None:
            return None
        data = await self.booking(_s(bid))
        if data is None or data.get("status") != "active":
            return None
        return data

    async def booking(self, booking_id: str) -> dict[str, str] | None:
        return _booking(booking_id, await self._redis.hgetall(booking_key(booking_id)))

    async def car_bookings(self, car_id: str, limit: int = 50) -> list[dict[str, str]]:
        ids = [_s(b) for b in await self._redis.zrevrange(car_bookings_key(car_id), 0, limit - 1)]
        pipe = self._redis.pipeline(transaction=False)
        for bid in ids:
            pipe.hgetall(booking_key(bid))
        found = [_booking(bid, raw) for bid, raw in zip(ids, await pipe.execute(), strict=True)]
        return [b for b in found if b is not None]

    async def now_ms(self) -> int:
        seconds, micros = await self._redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def station_details(self, station_id: str) -> dict[str, str]:
        """The station's record (name, lat, lon, capacity, power_kw); empty if unknown."""
        raw = await self._redis.hgetall(station_key(station_id))
        return {_s(k): _s(v) for k, v in raw.items()}

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
                STATIONS_LOCATIONS_KEY,
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
        now = now_ms or await self.now_ms()
        pipe = self._redis.pipeline(transaction=False)
        for sid in ids:
            pipe.hgetall(station_key(sid))
            pipe.zcount(station_bookings_key(sid), f"({now}", "+inf")
        replies = await pipe.execute()
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


def car_booking_key(car_id: str) -> str:
    return f"car:{car_id}:booking"


def car_bookings_key(car_id: str) -> str:
    return f"car:{car_id}:bookings"


def booking_key(booking_id: str) -> str:
    return f"booking:{booking_id}"


def _booking(booking_id: str, raw: dict[Any, Any]) -> dict[str, str] | None:
    if not raw:
        return None
    return {"booking_id": booking_id, **{_s(k): _s(v) for k, v in raw.items()}}

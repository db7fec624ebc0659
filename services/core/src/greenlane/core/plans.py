"""Charging plans as the platform passes them on: the `charging_plan` event, the car's plan
hash in Redis (`plan:{car_id}`), the setpoint a plugged-in car is told, and a site's
schedule. The planner writes them; ingestion, the hub, the CLI and `greenlane dev` read
them. Defined once, here; docs/planner.md describes each shape.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from greenlane.core import keys
from greenlane.core.events import encode_event

if TYPE_CHECKING:
    from greenlane.core.redis_state import RedisClient

CHARGING_PLAN: Final = "charging_plan"
CHARGING_GOAL: Final = "charging_goal"
# Where the car is in its site's plan.
PLUGGED_IN: Final = "plugged_in"
BOOKED: Final = "booked"
CAR_STATES: Final = (PLUGGED_IN, BOOKED)

# The fields of a car's plan hash, in this order (ingestion reads the first six).
PLAN_FIELDS: Final = (
    "station_id",
    "start",
    "slot_minutes",
    "power_kw",
    "site_id",
    "state",
    "timestamp",
    "expected_kwh",
    "expected_cost",
    "feasible",
    "shortfall_kwh",
    "reason",
    "full_power_kwh",
    "full_power_cost",
)
SETPOINT_FIELDS: Final = PLAN_FIELDS[:6]
_DECIMALS: Final = 6  # kW, kWh and $ in plans and events: a milliwatt, a micro-dollar


def _round(value: float) -> float:
    return round(float(value), _DECIMALS) + 0.0  # + 0.0: never "-0.0"


@dataclass(frozen=True, slots=True)
class Setpoint:
    """What a plugged-in car should draw now, and until when (Unix ms)."""

    power_kw: float
    until: int
    site_id: str


def setpoint_at(
    start: int, slot_minutes: int, power_kw: Sequence[float], now_ms: int
) -> tuple[float, int] | None:
    """(kW, until) of the plan slot holding now_ms; None once the plan has run out.

    A plan is made at `start`, slot 0 begins then: before it (clocks a little apart) the
    first slot applies.
    """
    slot_ms = slot_minutes * 60_000
    if slot_ms <= 0 or not power_kw:
        return None
    k = max(0, (now_ms - start) // slot_ms)
    if k >= len(power_kw):
        return None
    return float(power_kw[k]), start + (k + 1) * slot_ms


@dataclass(frozen=True, slots=True)
class CarPlan:
    """One car's part of its site's plan, as published."""

    car_id: str
    site_id: str
    station_id: str
    timestamp: int  # Unix ms when the plan was made
    slot_minutes: int
    start: int  # Unix ms of slot 0
    power_kw: tuple[float, ...]
    expected_kwh: float
    expected_cost: float  # $ at the forecast's prices
    feasible: bool
    shortfall_kwh: float
    reason: str  # "" when the goal is met; else greenlane.planner.model's reason
    state: str = PLUGGED_IN  # PLUGGED_IN or BOOKED
    # The same car charging at full power from its arrival (the site limit taken first
    # come, first served): what the plan is measured against.
    full_power_kwh: float = 0.0
    full_power_cost: float = 0.0

    @property
    def end(self) -> int:
        """Unix ms at which the plan's last slot ends."""
        return self.start + len(self.power_kw) * self.slot_minutes * 60_000

    def setpoint(self, now_ms: int) -> tuple[float, int] | None:
        return setpoint_at(self.start, self.slot_minutes, self.power_kw, now_ms)

    def event(self, now_ms: int | None = None) -> bytes:
        """The `charging_plan` event (JSON), its setpoint at now_ms (default: when made)."""
        now = self.timestamp if now_ms is None else now_ms
        kw, until = self.setpoint(now) or (0.0, now)
        return encode_event(
            CHARGING_PLAN,
            car_id=self.car_id,
            site_id=self.site_id,
            station_id=self.station_id,
            timestamp=self.timestamp,
            slot_minutes=self.slot_minutes,
            start=self.start,
            power_kw=[_round(p) for p in self.power_kw],
            expected_kwh=_round(self.expected_kwh),
            expected_cost=_round(self.expected_cost),
            feasible=self.feasible,
            shortfall_kwh=_round(self.shortfall_kwh),
            reason=self.reason,
            setpoint_kw=_round(kw),
            setpoint_until=until,
        )

    def to_hash(self) -> dict[str, str]:
        values: dict[str, object] = {
            "station_id": self.station_id,
            "start": self.start,
            "slot_minutes": self.slot_minutes,
            "power_kw": json.dumps([_round(p) for p in self.power_kw], separators=(",", ":")),
            "site_id": self.site_id,
            "timestamp": self.timestamp,
            "expected_kwh": repr(_round(self.expected_kwh)),
            "expected_cost": repr(_round(self.expected_cost)),
            "feasible": "1" if self.feasible else "0",
            "shortfall_kwh": repr(_round(self.shortfall_kwh)),
            "reason": self.reason,
            "state": self.state,
            "full_power_kwh": repr(_round(self.full_power_kwh)),
            "full_power_cost": repr(_round(self.full_power_cost)),
        }
        return {name: str(values[name]) for name in PLAN_FIELDS}

    @classmethod
    def from_hash(cls, car_id: str, raw: Mapping[Any, Any]) -> CarPlan | None:
        """The plan of a car's hash; None when a field is missing or unreadable."""
        data = {_text(k): _text(v) for k, v in raw.items()}
        try:
            power = json.loads(data["power_kw"])
            if not isinstance(power, list):
                return None
            return cls(
                car_id=car_id,
                site_id=data["site_id"],
                station_id=data["station_id"],
                timestamp=int(data["timestamp"]),
                slot_minutes=int(data["slot_minutes"]),
                start=int(data["start"]),
                power_kw=tuple(float(p) for p in power),
                expected_kwh=float(data["expected_kwh"]),
                expected_cost=float(data["expected_cost"]),
                feasible=data["feasible"] == "1",
                shortfall_kwh=float(data["shortfall_kwh"]),
                reason=data["reason"],
                state=data.get("state", PLUGGED_IN),
                full_power_kwh=float(data.get("full_power_kwh", 0.0)),
                full_power_cost=float(data.get("full_power_cost", 0.0)),
            )
        except (KeyError, ValueError, TypeError):
            return None

    def to_json(self, now_ms: int | None = None) -> dict[str, Any]:
        """The plan as the planner's API answers it (GET /api/plans/{car_id}); with now_ms,
        also the setpoint at that instant (`setpoint_kw` None once the plan ran out)."""
        extra: dict[str, Any] = {}
        if now_ms is not None:
            found = self.setpoint(now_ms)
            extra = {
                "setpoint_kw": None if found is None else _round(found[0]),
                "setpoint_until": None if found is None else found[1],
            }
        return {
            "car_id": self.car_id,
            "site_id": self.site_id,
            "station_id": self.station_id,
            "state": self.state,
            "timestamp": self.timestamp,
            "slot_minutes": self.slot_minutes,
            "start": self.start,
            "power_kw": [_round(p) for p in self.power_kw],
            "expected_kwh": _round(self.expected_kwh),
            "expected_cost": _round(self.expected_cost),
            "feasible": self.feasible,
            "shortfall_kwh": _round(self.shortfall_kwh),
            "reason": self.reason,
            "full_power_kwh": _round(self.full_power_kwh),
            "full_power_cost": _round(self.full_power_cost),
            **extra,
        }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _ints(values: Sequence[Any]) -> list[int]:
    return [int(v) for v in values]


async def read_setpoint(
    client: RedisClient, car_id: str, station_id: str, now_ms: int
) -> Setpoint | None:
    """The setpoint of a car plugged in at station_id, from its plan hash (one HMGET).

    None without a plan, with a plan made for another station (the car moved on), with
    the plan of a car still booked (made for its expected arrival: it is early, and its
    plugged-in plan follows within a second), or once its last slot is over.
    """
    raw = await client.hmget(keys.plan(car_id), list(SETPOINT_FIELDS))
    if raw[0] is None or _text(raw[0]) != station_id or _text(raw[5] or "") != PLUGGED_IN:
        return None
    try:
        start, slot_minutes = _ints([_text(raw[1] or ""), _text(raw[2] or "")])
        power = json.loads(_text(raw[3] or ""))
        site_id = _text(raw[4] or "")
        found = setpoint_at(start, slot_minutes, [float(p) for p in power], now_ms)
    except (TypeError, ValueError, AttributeError):
        return None
    if found is None or not math.isfinite(found[0]):
        return None
    return Setpoint(max(0.0, found[0]), found[1], site_id)


async def read_plan(client: RedisClient, car_id: str) -> CarPlan | None:
    """A car's current plan, or None."""
    raw = await client.hgetall(keys.plan(car_id))
    return CarPlan.from_hash(car_id, raw) if raw else None


@dataclass(frozen=True, slots=True)
class SiteSchedule:
    """A site's joint plan, slot by slot: what `GET /api/sites/{id}/schedule` shows."""

    site_id: str
    name: str
    timestamp: int  # Unix ms when planned
    slot_minutes: int
    start: int  # Unix ms of slot 0
    limit_kw: tuple[float, ...]  # per slot
    price: tuple[float, ...]  # $/kWh per slot (the forecast's)
    cars: tuple[CarPlan, ...] = field(default=())

    @property
    def horizon(self) -> int:
        return len(self.price)

    def site_kw(self) -> list[float]:
        return [
            math.fsum(car.power_kw[t] for car in self.cars if t < len(car.power_kw))
            for t in range(self.horizon)
        ]

    def totals(self) -> dict[str, float | int | bool]:
        """Cars, energy and cost of the plan against full power on arrival."""
        return {
            "cars": len(self.cars),
            "expected_kwh": _round(math.fsum(c.expected_kwh for c in self.cars)),
            "expected_cost": _round(math.fsum(c.expected_cost for c in self.cars)),
            "shortfall_kwh": _round(math.fsum(c.shortfall_kwh for c in self.cars)),
            "full_power_kwh": _round(math.fsum(c.full_power_kwh for c in self.cars)),
            "full_power_cost": _round(math.fsum(c.full_power_cost for c in self.cars)),
            "feasible": all(c.feasible for c in self.cars),
        }

    def to_json(self) -> dict[str, Any]:
        """The API's shape: per slot its start, price, limit, total kW and kW per car."""
        slot_ms = self.slot_minutes * 60_000
        site_kw = self.site_kw()
        return {
            "site_id": self.site_id,
            "name": self.name,
            "timestamp": self.timestamp,
            "slot_minutes": self.slot_minutes,
            "start": self.start,
            **self.totals(),
            "slots": [
                {
                    "start": self.start + t * slot_ms,
                    "price": _round(self.price[t]),
                    "limit_kw": _round(self.limit_kw[t]),
                    "site_kw": _round(site_kw[t]),
                    "cars": {
                        c.car_id: _round(c.power_kw[t])
                        for c in self.cars
                        if t < len(c.power_kw) and c.power_kw[t] > 0
                    },
                }
                for t in range(self.horizon)
            ],
            "car_plans": [
                {k: v for k, v in c.to_json().items() if k not in ("site_id", "power_kw")}
                for c in self.cars
            ],
        }

    def dumps(self) -> str:
        """Compact JSON for the site's schedule key."""
        return json.dumps(
            {
                "site_id": self.site_id,
                "name": self.name,
                "timestamp": self.timestamp,
                "slot_minutes": self.slot_minutes,
                "start": self.start,
                "limit_kw": [_round(v) for v in self.limit_kw],
                "price": [_round(v) for v in self.price],
                "cars": [c.to_hash() | {"car_id": c.car_id} for c in self.cars],
            },
            separators=(",", ":"),
        )

    @classmethod
    def loads(cls, text: str | bytes) -> SiteSchedule | None:
        """The schedule of a site's key; None when it is unreadable."""
        try:
            data = json.loads(text)
            cars = []
            for raw in data["cars"]:
                plan = CarPlan.from_hash(str(raw["car_id"]), raw)
                if plan is None:
                    return None
                cars.append(plan)
            return cls(
                site_id=str(data["site_id"]),
                name=str(data["name"]),
                timestamp=int(data["timestamp"]),
                slot_minutes=int(data["slot_minutes"]),
                start=int(data["start"]),
                limit_kw=tuple(float(v) for v in data["limit_kw"]),
                price=tuple(float(v) for v in data["price"]),
                cars=tuple(cars),
            )
        except (KeyError, ValueError, TypeError):
            return None


async def read_schedule(
    client: RedisClient, region: keys.Region, site_id: str
) -> SiteSchedule | None:
    raw = await client.get(region.site_schedule(site_id))
    return SiteSchedule.loads(raw) if raw else None


async def read_schedules(client: RedisClient, region: keys.Region) -> list[SiteSchedule]:
    """Every planned site's schedule in the region (one GET per site)."""
    site_ids = sorted(_text(s) for s in await client.smembers(region.sites))
    found = []
    for site_id in site_ids:
        schedule = await read_schedule(client, region, site_id)
        if schedule is not None:
            found.append(schedule)
    return found

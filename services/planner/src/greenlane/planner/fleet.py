"""The live planner's picture of the sites, pure (no I/O): which cars are plugged in or
booked at each site, their batteries and goals, and which sites an event re-plans.

Fed with fleet-events in order (telemetry, booking events, goals from the API); every
method that changes a site's cars returns the sites to re-plan.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from greenlane.core.events import CarState
from greenlane.core.plans import BOOKED, PLUGGED_IN

# A goal that changes less than this (percent, ms) is the same goal: a car resending its
# goal with each status does not re-plan its site.
GOAL_EPSILON_PERCENT: Final = 0.05
GOAL_EPSILON_MS: Final = 1000


@dataclass(frozen=True, slots=True)
class StationInfo:
    station_id: str
    site_id: str
    power_kw: float  # each connector's maximum
    capacity: int  # connectors
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class SiteInfo:
    site_id: str
    name: str
    limit_kw: float
    stations: Mapping[str, StationInfo]

    @property
    def connectors_kw(self) -> float:
        return sum(s.power_kw * s.capacity for s in self.stations.values())


@dataclass(frozen=True, slots=True)
class Goal:
    """A charging goal: the battery wanted (percent) by a departure (Unix ms); 0 = unset."""

    target_battery: float = 0.0
    depart_at: int = 0

    def same_as(self, other: Goal) -> bool:
        return (
            abs(self.target_battery - other.target_battery) < GOAL_EPSILON_PERCENT
            and abs(self.depart_at - other.depart_at) < GOAL_EPSILON_MS
        )


@dataclass(frozen=True, slots=True)
class CarSpec:
    """A car's own pack size and maximum charge power; 0 = the fleet's default."""

    pack_kwh: float = 0.0
    max_kw: float = 0.0


@dataclass(slots=True)
class SiteCar:
    """A car plugged in or booked at a site."""

    car_id: str
    site_id: str
    station_id: str
    state: str  # PLUGGED_IN or BOOKED
    battery: float
    since_ms: int  # when it plugged in (or was booked)
    last_seen_ms: int
    eta_ms: int = 0  # booked: when it is expected at the station
    car_goal: Goal = field(default_factory=Goal)  # from its statuses
    api_goal: Goal | None = None  # from PUT /api/cars/{car_id}/goal (wins)
    spec: CarSpec = field(default_factory=CarSpec)
    booking_id: str = ""


class FleetPicture:
    """Sites and their cars, as the events tell."""

    def __init__(self, presence_timeout_ms: int, booked_speed_kmh: float = 25.0) -> None:
        self.presence_timeout_ms = presence_timeout_ms
        self.booked_speed_kmh = booked_speed_kmh
        self.sites: dict[str, SiteInfo] = {}
        self.station_site: dict[str, str] = {}
        self.cars: dict[str, SiteCar] = {}  # car id -> where it is in a site
        # Goals and specs of cars not (yet) at a site: the API may set them before.
        self.api_goals: dict[str, Goal] = {}
        self.specs: dict[str, CarSpec] = {}

    # ------------------------------------------------------------------ sites

    def set_sites(self, sites: Iterable[SiteInfo]) -> set[str]:
        """Replace the sites; returns the sites whose limit or stations changed (and
        those removed, so their last plans are withdrawn)."""
        new = {s.site_id: s for s in sites}
        changed = {sid for sid, s in new.items() if self.sites.get(sid) != s}
        removed = set(self.sites) - set(new)
        self.sites = new
        self.station_site = {st: sid for sid, s in new.items() for st in s.stations}
        # Cars at a station that left its site are gone from it.
        for car in list(self.cars.values()):
            if self.station_site.get(car.station_id) != car.site_id:
                del self.cars[car.car_id]
                changed.add(car.site_id)
        return changed | removed

    def cars_at(self, site_id: str) -> list[SiteCar]:
        """The site's cars, in order of arrival (then id)."""
        return sorted(
            (c for c in self.cars.values() if c.site_id == site_id),
            key=lambda c: (c.eta_ms if c.state == BOOKED else c.since_ms, c.car_id),
        )

    def station(self, station_id: str) -> StationInfo | None:
        site_id = self.station_site.get(station_id)
        if site_id is None:
            return None
        return self.sites[site_id].stations.get(station_id)

    # ------------------------------------------------------------------ events

    def telemetry(self, state: CarState, now_ms: int) -> set[str]:
        """A car's status: it plugs in, stays, moves to another station, or leaves."""
        car = self.cars.get(state.car_id)
        goal = Goal(state.target_battery, state.depart_at)
        station = self.station(state.station_id) if state.station_id else None
        if station is None:
            if car is None:
                return set()
            if car.state == BOOKED:  # on its way: only the battery changes
                car.battery = state.battery
                car.last_seen_ms = now_ms
                return set()
            del self.cars[state.car_id]  # unplugged (or at a station of no site)
            return {car.site_id}
        if car is not None and car.state == PLUGGED_IN and car.station_id == station.station_id:
            car.battery = state.battery
            car.last_seen_ms = now_ms
            if car.car_goal.same_as(goal):
                return set()
            car.car_goal = goal
            return {car.site_id}
        touched = {car.site_id} if car is not None else set()
        self.cars[state.car_id] = SiteCar(
            car_id=state.car_id,
            site_id=station.site_id,
            station_id=station.station_id,
            state=PLUGGED_IN,
            battery=state.battery,
            since_ms=now_ms,
            last_seen_ms=now_ms,
            car_goal=goal,
            api_goal=self.api_goals.get(state.car_id),
            spec=self.specs.get(state.car_id, CarSpec()),
        )
        return touched | {station.site_id}

    def booked(self, state: CarState, station_id: str, booking_id: str, now_ms: int) -> set[str]:
        """A booking: the car is expected at the station's site (unless plugged in)."""
        station = self.station(station_id)
        car = self.cars.get(state.car_id)
        if station is None or (car is not None and car.state == PLUGGED_IN):
            return set()
        touched = {car.site_id} if car is not None else set()
        km = _distance_km(state.lat, state.lon, station.lat, station.lon)
        eta = now_ms + int(km / self.booked_speed_kmh * 3_600_000)
        self.cars[state.car_id] = SiteCar(
            car_id=state.car_id,
            site_id=station.site_id,
            station_id=station_id,
            state=BOOKED,
            battery=state.battery,
            since_ms=now_ms,
            last_seen_ms=now_ms,
            eta_ms=eta,
            api_goal=self.api_goals.get(state.car_id),
            spec=self.specs.get(state.car_id, CarSpec()),
            booking_id=booking_id,
        )
        return touched | {station.site_id}

    def booking_ended(self, car_id: str, booking_id: str) -> set[str]:
        """An expired or cancelled booking: a car still only booked is not coming."""
        car = self.cars.get(car_id)
        if car is None or car.state != BOOKED or (booking_id and car.booking_id != booking_id):
            return set()
        del self.cars[car_id]
        return {car.site_id}

    def api_goal(self, car_id: str, goal: Goal | None, spec: CarSpec | None) -> set[str]:
        """A goal (and the car's pack and power) from the API; None leaves it as it was."""
        if goal is not None:
            self.api_goals[car_id] = goal
        if spec is not None:
            self.specs[car_id] = spec
        car = self.cars.get(car_id)
        if car is None:
            return set()
        before = (car.api_goal, car.spec)
        car.api_goal = self.api_goals.get(car_id)
        car.spec = self.specs.get(car_id, CarSpec())
        return set() if (car.api_goal, car.spec) == before else {car.site_id}

    def expire(self, now_ms: int, booking_ttl_ms: int) -> set[str]:
        """Plugged-in cars silent too long have left; booked cars long overdue too."""
        touched: set[str] = set()
        for car in list(self.cars.values()):
            if car.state == PLUGGED_IN:
                gone = now_ms - car.last_seen_ms > self.presence_timeout_ms
            else:
                gone = now_ms - car.since_ms > booking_ttl_ms
            if gone:
                del self.cars[car.car_id]
                touched.add(car.site_id)
        return touched


def _distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Equirectangular distance: exact enough over the few km of a city."""
    dlat = (lat2 - lat1) * 111.32
    dlon = (lon2 - lon1) * 111.32 * math.cos(math.radians((lat1 + lat2) / 2))
    return math.hypot(dlat, dlon)

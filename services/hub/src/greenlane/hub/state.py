"""The hub's picture of the fleet: every car, station, booking and plan, each change numbered.

Pure: no I/O, no clock of its own (callers pass the time), so every rule is unit-tested.
The sequence number counts changes: each change of one object takes the next number, and
every object remembers the number of its latest change. A client at position `since` is
brought up to date by the objects whose latest change is newer than `since`, each once,
with its current value (changes to one object are coalesced). Removed objects stay as
tombstones, up to a bound; a position older than the oldest tombstone forgotten (the
floor) can no longer be resumed and gets a snapshot.
"""

from __future__ import annotations

import json
import math
from array import array
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from greenlane.core.stations import Station as StationInfo  # as stored: the file's columns
from greenlane.hub.events import BOOKING_ENDS, CarEvent, Decoded, PlanEvent

Kind = Literal["cars", "stations", "bookings", "plans"]
KINDS: Final[tuple[Kind, ...]] = ("cars", "stations", "bookings", "plans")

# The seed's battery bands (green > 50 %, yellow 20-50 %, red < 20 %, critical < 15 %).
LOW_BATTERY: Final = 20.0
CRITICAL_BATTERY: Final = 15.0
NO_CAPACITY_WINDOW_MS: Final = 10 * 60 * 1000
# A booking event follows the status that caused it within one flush; after this long
# without one, a low car's status was answered NO_CAPACITY.
ASK_GRACE_MS: Final = 2000
# Bookings are ended by their booking_expired event; this is the hub's own safety net.
EXPIRY_GRACE_MS: Final = 30_000
MOVED_DEGREES: Final = 1e-5  # about a metre: closer positions keep the last heading


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


@dataclass(slots=True)
class Entry:
    """One object as clients see it; value None is a tombstone (the object was removed)."""

    kind: Kind
    key: str
    value: dict[str, Any] | None
    seq: int
    born: int = 0  # the change that made it exist (again): absent for positions before
    _text: str | None = None
    # The fleet whose clients see it (None: every client, e.g. a station).
    fleet: str | None = None

    def visible_to(self, fleet: str | None) -> bool:
        """Whether a client of `fleet` sees it (None: an operator, who sees everything)."""
        return fleet is None or self.fleet is None or self.fleet == fleet

    def json(self) -> str:
        """The value as compact JSON, encoded once per change and shared by every frame."""
        if self._text is None:
            self._text = "null" if self.value is None else _dumps(self.value)
        return self._text


@dataclass(slots=True)
class CarRecord:
    lat: float
    lon: float
    battery: float
    velocity: float
    timestamp: int
    station_id: str
    heading: float | None
    history: array[float] = field(default_factory=lambda: array("d"))


def heading_degrees(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial bearing from the first point to the second, 0-360 degrees clockwise from north."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    x = math.sin(dl) * math.cos(p2)
    y = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return (math.degrees(math.atan2(x, y)) + 360.0) % 360.0


@dataclass(frozen=True, slots=True)
class Stats:
    """The dashboard's panel figures, derived from the state at one instant."""

    cars_online: int
    low_battery: int
    critical_battery: int
    active_bookings: int
    no_capacity_10min: int
    stations: int
    free_connectors: int

    def as_dict(self) -> dict[str, int]:
        return {
            "cars_online": self.cars_online,
            "low_battery": self.low_battery,
            "critical_battery": self.critical_battery,
            "active_bookings": self.active_bookings,
            "no_capacity_10min": self.no_capacity_10min,
            "stations": self.stations,
            "free_connectors": self.free_connectors,
        }


class FleetState:
    """Cars, stations, bookings and plans, with numbered, coalescable changes."""

    def __init__(
        self,
        *,
        seq_base: int = 0,
        max_tombstones: int = 100_000,
        online_ms: int = 300_000,
        forget_ms: int = 3_600_000,
        booking_threshold: float = 20.0,
        history_ms: int = 600_000,
        history_step_ms: int = 10_000,
    ) -> None:
        self.seq_base = seq_base
        self.seq = seq_base
        self.floor = seq_base
        self.max_tombstones = max_tombstones
        self.online_ms = online_ms
        self.forget_ms = forget_ms
        self.booking_threshold = booking_threshold
        self.history_ms = history_ms
        self.history_step_ms = history_step_ms
        self.event_time = 0  # the newest event timestamp applied (ms)
        self._forget_scan_at = 0
        self._order: OrderedDict[tuple[Kind, str], Entry] = OrderedDict()
        self._tombstones: deque[tuple[int, tuple[Kind, str]]] = deque()
        self.cars: dict[str, CarRecord] = {}
        self.stations: dict[str, StationInfo] = {}
        self.bookings: dict[str, dict[str, Any]] = {}
        self.car_booking: dict[str, str] = {}
        self.plans: dict[str, dict[str, Any]] = {}
        # Car id -> the fleet that sent its telemetry (what fleet clients are shown).
        self.car_fleet: dict[str, str] = {}
        self._booked: Counter[str] = Counter()
        self._plugged: Counter[str] = Counter()
        self._asks: dict[str, int] = {}
        self._no_capacity: deque[int] = deque()

    # ------------------------------------------------------------------ changes

    def _change(self, kind: Kind, key: str, value: dict[str, Any] | None) -> bool:
        """Record one change; a value equal to the current one is no change at all."""
        k = (kind, key)
        entry = self._order.get(k)
        if entry is None:
            if value is None:
                return False
            self.seq += 1
            self._order[k] = Entry(
                kind, key, value, self.seq, self.seq, fleet=self._fleet(kind, key, value)
            )
            return True
        if entry.value == value:
            return False
        self.seq += 1
        if value is not None:  # a tombstone stays its fleet's
            entry.fleet = self._fleet(kind, key, value)
        if entry.value is None:
            entry.born = self.seq
        entry.value, entry.seq, entry._text = value, self.seq, None
        self._order.move_to_end(k)
        if value is None:
            self._tombstones.append((self.seq, k))
            while len(self._tombstones) > self.max_tombstones:
                seq, old = self._tombstones.popleft()
                gone = self._order.get(old)
                if gone is not None and gone.value is None and gone.seq == seq:
                    del self._order[old]
                # A client behind this point would miss the removal: it must reset.
                self.floor = max(self.floor, seq)
        return True

    def _fleet(self, kind: Kind, key: str, value: dict[str, Any]) -> str | None:
        if kind == "stations":
            return None
        car_id = key if kind != "bookings" else str(value.get("car_id", ""))
        return self.car_fleet.get(car_id, "")

    def fleet_of_car(self, car_id: str) -> str:
        return self.car_fleet.get(car_id, "")

    def resume_problem(self, since: int) -> str | None:
        """Why a client at `since` cannot be brought up to date by changes, or None."""
        if since > self.seq or since < self.seq_base:
            return "epoch"  # a position of another hub instance (or of none)
        if since < self.floor:
            return "too_old"
        return None

    def changes_since(self, since: int) -> tuple[list[Entry], int]:
        """Objects changed after `since` (oldest first), and how many changes they fold.

        An object that came and went after `since` is left out: the client never had it.
        """
        found: list[Entry] = []
        for entry in reversed(self._order.values()):
            if entry.seq <= since:
                break
            if entry.value is not None or entry.born <= since:
                found.append(entry)
        found.reverse()
        return found, (self.seq - since) - len(found)

    def entries(self) -> Iterator[Entry]:
        """Every live object (no tombstones), for a snapshot."""
        return (e for e in self._order.values() if e.value is not None)

    # ------------------------------------------------------------------ events

    def apply(self, event: Decoded, event_time: int) -> None:
        """Apply one decoded fleet event; event_time is its record's timestamp (ms)."""
        self.event_time = max(self.event_time, event_time)
        if isinstance(event, PlanEvent):
            self.plans[event.car_id] = event.plan
            self._change("plans", event.car_id, event.plan)
        elif isinstance(event, CarEvent):
            self._apply_car(event)

    def _apply_car(self, event: CarEvent) -> None:
        if event.fleet:
            if len(self.car_fleet) > 1_000_000:
                self.car_fleet.clear()
            self.car_fleet[event.car.car_id] = event.fleet
        if event.event_type == "booking_created":
            self._asks.pop(event.car.car_id, None)
            self._add_booking(event)
            return
        if event.event_type in BOOKING_ENDS:
            # Booking events carry the booking's station, not a plug, and a state stamped
            # when the booking ended: the car itself is moved by its telemetry only.
            self._end_booking(event.booking_id)
            return
        car = event.car
        record = self.cars.get(car.car_id)
        old_station = record.station_id if record else ""
        if record is None:
            record = CarRecord(
                car.lat, car.lon, car.battery, car.velocity, car.timestamp, car.station_id, None
            )
            self.cars[car.car_id] = record
        else:
            if (
                abs(car.lat - record.lat) > MOVED_DEGREES
                or abs(car.lon - record.lon) > MOVED_DEGREES
            ):
                record.heading = heading_degrees(record.lat, record.lon, car.lat, car.lon)
            record.lat, record.lon, record.battery = car.lat, car.lon, car.battery
            record.velocity, record.timestamp = car.velocity, car.timestamp
            record.station_id = car.station_id
        self._sample(record)
        self._change("cars", car.car_id, self._car_value(record))
        if old_station != car.station_id:
            if old_station:
                self._plugged[old_station] -= 1
                self._refresh_station(old_station)
            if car.station_id:
                self._plugged[car.station_id] += 1
                self._refresh_station(car.station_id)
        self._note_ask(car.car_id, car.battery, car.station_id)

    def _sample(self, record: CarRecord) -> None:
        history = record.history
        if history and record.timestamp - history[-2] < self.history_step_ms:
            return
        history.extend((float(record.timestamp), record.battery))
        cut = record.timestamp - self.history_ms
        drop = 0
        while drop < len(history) and history[drop] < cut:
            drop += 2
        if drop:
            del history[:drop]

    @staticmethod
    def _car_value(record: CarRecord) -> dict[str, Any]:
        value: dict[str, Any] = {
            "lat": round(record.lat, 6),
            "lon": round(record.lon, 6),
            "battery": round(record.battery, 2),
            "velocity": round(record.velocity, 1),
            "timestamp": record.timestamp,
        }
        if record.heading is not None:
            value["heading"] = round(record.heading)
        if record.station_id:
            value["station_id"] = record.station_id
        return value

    def _note_ask(self, car_id: str, battery: float, station_id: str) -> None:
        # Ingestion books every stream status below its threshold unless the car is
        # plugged in or already booked: no booking event after it means NO_CAPACITY.
        if battery < self.booking_threshold and not station_id and car_id not in self.car_booking:
            self._asks.setdefault(car_id, self.event_time)
        else:
            self._asks.pop(car_id, None)

    def _add_booking(self, event: CarEvent) -> None:
        car_id = event.car.car_id
        previous = self.car_booking.get(car_id)
        if previous and previous != event.booking_id:
            self._end_booking(previous)  # a car has one active booking at most
        station_id = event.car.station_id
        if not station_id:
            return
        value = {
            "car_id": car_id,
            "station_id": station_id,
            "expires_at": event.expires_at,
            "created": event.car.timestamp,
        }
        if event.booking_id not in self.bookings:
            self._booked[station_id] += 1
        self.bookings[event.booking_id] = value
        self.car_booking[car_id] = event.booking_id
        self._change("bookings", event.booking_id, value)
        self._refresh_station(station_id)

    def _end_booking(self, booking_id: str) -> None:
        booking = self.bookings.pop(booking_id, None)
        if booking is None:
            return
        if self.car_booking.get(booking["car_id"]) == booking_id:
            del self.car_booking[booking["car_id"]]
        self._booked[booking["station_id"]] -= 1
        self._change("bookings", booking_id, None)
        self._refresh_station(booking["station_id"])

    # ------------------------------------------------------------------ stations

    def set_stations(self, stations: Iterable[StationInfo]) -> None:
        """Replace the station list (read from the station store); unchanged ones stay."""
        fresh = {s.station_id: s for s in stations}
        gone = set(self.stations) - set(fresh)
        self.stations = fresh
        for station_id in sorted(gone):
            self._change("stations", station_id, None)
        for station_id in fresh:
            self._refresh_station(station_id)

    def _refresh_station(self, station_id: str) -> None:
        info = self.stations.get(station_id)
        if info is None:
            return  # a station the store does not know (yet): nothing to draw
        booked = max(self._booked[station_id], 0)
        plugged = max(self._plugged[station_id], 0)
        value: dict[str, Any] = {
            "name": info.name,
            "lat": info.lat,
            "lon": info.lon,
            "capacity": info.capacity,
            "power_kw": info.power_kw,
            "booked": booked,
            "plugged": plugged,
            "free": max(info.capacity - booked - plugged, 0),
        }
        if info.site_id:
            value["site_id"] = info.site_id
        self._change("stations", station_id, value)

    # ------------------------------------------------------------------ time

    def expire(self, now_ms: int, *, caught_up: bool) -> None:
        """Time-driven changes: overdue bookings end, silent cars leave, asks resolve."""
        for booking_id, booking in list(self.bookings.items()):
            if booking["expires_at"] and booking["expires_at"] + EXPIRY_GRACE_MS < now_ms:
                self._end_booking(booking_id)
        if now_ms - self._forget_scan_at >= 1000:  # a walk over every car: once a second
            self._forget_scan_at = now_ms
            forget_before = now_ms - self.forget_ms
            for car_id in [c for c, r in self.cars.items() if r.timestamp < forget_before]:
                record = self.cars.pop(car_id)
                if record.station_id:
                    self._plugged[record.station_id] -= 1
                    self._refresh_station(record.station_id)
                self._asks.pop(car_id, None)
                self._change("cars", car_id, None)
        for car_id, asked in list(self._asks.items()):
            if self.event_time - asked > ASK_GRACE_MS or (
                caught_up and now_ms - asked > ASK_GRACE_MS
            ):
                del self._asks[car_id]
                self._no_capacity.append(asked)
        while self._no_capacity and self._no_capacity[0] < now_ms - NO_CAPACITY_WINDOW_MS:
            self._no_capacity.popleft()

    def stats(self, now_ms: int, fleet: str | None = None) -> Stats:
        """The panel's figures; for `fleet`, of its cars and bookings only."""
        online_after = now_ms - self.online_ms
        online = low = critical = 0
        car_fleet = self.car_fleet
        for car_id, record in self.cars.items():
            if fleet is not None and car_fleet.get(car_id, "") != fleet:
                continue
            if record.timestamp >= online_after:
                online += 1
                if record.battery < LOW_BATTERY:
                    low += 1
                    if record.battery < CRITICAL_BATTERY:
                        critical += 1
        free = 0
        for entry_key in self.stations:
            entry = self._order.get(("stations", entry_key))
            if entry is not None and entry.value is not None:
                free += int(entry.value["free"])
        recent = sum(1 for t in self._no_capacity if t >= now_ms - NO_CAPACITY_WINDOW_MS)
        bookings = len(self.bookings)
        if fleet is not None:
            bookings = sum(
                1 for b in self.bookings.values() if car_fleet.get(b["car_id"], "") == fleet
            )
            recent = 0  # not kept per fleet
        return Stats(online, low, critical, bookings, recent, len(self.stations), free)

    # ------------------------------------------------------------------ one car

    def car_detail(self, car_id: str) -> dict[str, Any] | None:
        record = self.cars.get(car_id)
        if record is None:
            return None
        history = record.history
        booking_id = self.car_booking.get(car_id)
        booking = None
        if booking_id is not None:
            booking = {"id": booking_id, **self.bookings[booking_id]}
        return {
            "car_id": car_id,
            "car": self._car_value(record),
            "history": [[int(history[i]), history[i + 1]] for i in range(0, len(history), 2)],
            "booking": booking,
            "plan": self.plans.get(car_id),
        }

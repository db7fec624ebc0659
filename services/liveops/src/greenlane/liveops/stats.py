"""Session statistics of the feed: event rate over a sliding window and the fleet picture."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Final

from greenlane.liveops.format import CRITICAL_BELOW, RED_BELOW

RATE_WINDOW_S: Final = 5.0
RATE_BUCKET_S: Final = 0.1  # events of the same tenth of a second share one deque entry


class SlidingRate:
    """Events per second over the last window_s seconds, in bounded memory."""

    def __init__(self, started: float, window_s: float = RATE_WINDOW_S) -> None:
        self.started = started
        self.window_s = window_s
        self._buckets: deque[tuple[int, int]] = deque()
        self._count = 0

    def add(self, now: float, n: int = 1) -> None:
        if n <= 0:
            return
        bucket = math.floor(now / RATE_BUCKET_S)  # an index: float modulo misplaces 1.0
        if self._buckets and self._buckets[-1][0] == bucket:
            self._buckets[-1] = (bucket, self._buckets[-1][1] + n)
        else:
            self._buckets.append((bucket, n))
        self._count += n

    def rate(self, now: float) -> float:
        horizon = now - self.window_s
        while self._buckets and (self._buckets[0][0] + 1) * RATE_BUCKET_S <= horizon:
            self._count -= self._buckets.popleft()[1]
        # Before a full window has passed, divide by the time actually observed (at least
        # a second, so the first burst does not read as millions of events a second).
        span = min(self.window_s, max(now - self.started, 1.0))
        return self._count / span


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the status line and the final summary show."""

    elapsed_s: float
    rate: float
    events: int
    shown: int
    invalid: int
    cars: int
    below_20: int
    critical: int
    charging: int
    average_battery: float | None
    lag: int | None = None


@dataclass(slots=True)
class _Car:
    battery: float
    charging: bool


@dataclass
class SessionStats:
    """Counters and the latest battery of each car, updated in O(1) per event.

    The fleet figures (cars below 20 %, critical, charging, average battery) describe every
    car's latest valid event, whatever the filters hide: a filter narrows what is printed,
    not what the operator learns about the fleet.
    """

    started: float
    events: int = 0
    shown: int = 0
    invalid: int = 0
    _cars: dict[str, _Car] = field(default_factory=dict)
    _battery_sum: float = 0.0
    _below_20: int = 0
    _critical: int = 0
    _charging: int = 0
    _rate: SlidingRate = field(init=False)

    def __post_init__(self) -> None:
        self._rate = SlidingRate(self.started)

    def record(self, now: float, car_id: str, battery: float, station_id: str = "") -> None:
        """One valid event received (shown or filtered out)."""
        self.events += 1
        self._rate.add(now)
        charging = bool(station_id)
        old = self._cars.get(car_id)
        if old is None:
            self._cars[car_id] = _Car(battery, charging)
        else:
            self._count(old.battery, old.charging, -1)
            old.battery, old.charging = battery, charging
        self._count(battery, charging, +1)

    def _count(self, battery: float, charging: bool, sign: int) -> None:
        self._battery_sum += sign * battery
        self._below_20 += sign * (battery < RED_BELOW)
        self._critical += sign * (battery < CRITICAL_BELOW)
        self._charging += sign * charging

    def record_invalid(self) -> None:
        # Not in the rate: events/s counts what the feed can show.
        self.invalid += 1

    def battery_of(self, car_id: str) -> float | None:
        car = self._cars.get(car_id)
        return None if car is None else car.battery

    def snapshot(self, now: float, lag: int | None = None) -> Snapshot:
        cars = len(self._cars)
        return Snapshot(
            elapsed_s=max(now - self.started, 0.0),
            rate=self._rate.rate(now),
            events=self.events,
            shown=self.shown,
            invalid=self.invalid,
            cars=cars,
            below_20=self._below_20,
            critical=self._critical,
            charging=self._charging,
            # The running sum drifts by float rounding over millions of updates; one
            # decimal on screen hides it.
            average_battery=self._battery_sum / cars if cars else None,
            lag=lag,
        )

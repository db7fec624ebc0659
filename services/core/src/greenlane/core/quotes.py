"""Grid quotes without I/O: a quote's JSON, and the curve through a forecast's hourly quotes.

The pricing worker prices rows from the curve while the grid is down; the planner prices
its slots from it. Both read the grid over HTTP only (GET /api/pricing, /forecast).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
MAX_PRICE: Final = 99_999.0  # what price_rate numeric(10, 5) can hold
PRICE_DECIMALS: Final = 4  # the grid's precision; prices from the curve are rounded alike


class QuoteError(ValueError):
    """A grid answer that cannot be used to price a row."""


@dataclass(frozen=True, slots=True)
class Quote:
    """The grid's tariff at one instant, as a row needs it."""

    price_per_kwh: float
    grid_load: float
    energy_source: str
    from_cache: bool = False  # True: interpolated from the last known curve


def instant_of(timestamp_ms: int) -> datetime:
    """The UTC instant of a Unix-ms timestamp, exactly (no float rounding)."""
    return EPOCH + timedelta(milliseconds=timestamp_ms)


def to_ms(instant: datetime) -> int:
    """Unix ms of an aware datetime, exactly."""
    return (instant - EPOCH) // timedelta(milliseconds=1)


def iso_at(timestamp_ms: int) -> str:
    """The `at` parameter for an instant: ISO-8601 UTC with Z, milliseconds when not 0.

    Raises OverflowError or ValueError beyond year 9999, which the grid cannot price.
    """
    instant = instant_of(timestamp_ms)
    spec = "milliseconds" if timestamp_ms % 1000 else "seconds"
    return instant.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def _number(data: dict[str, Any], name: str) -> float:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise QuoteError(f"{name}: not a finite number")
    return float(value)


def parse_quote(data: object) -> tuple[int, Quote]:
    """One quote of the grid's JSON: (instant in Unix ms, quote); QuoteError if unusable."""
    if not isinstance(data, dict):
        raise QuoteError("a quote must be a JSON object")
    at = data.get("at")
    if not isinstance(at, str):
        raise QuoteError("at: missing")
    try:
        instant = datetime.fromisoformat(at)
    except ValueError:
        raise QuoteError(f"at: not an ISO-8601 instant: {at[:64]!r}") from None
    if instant.tzinfo is None:
        raise QuoteError("at: no UTC offset")
    price = _number(data, "price_per_kwh")
    if not 0.0 <= price <= MAX_PRICE:
        raise QuoteError(f"price_per_kwh: {price} is outside [0, {MAX_PRICE:g}]")
    load = _number(data, "grid_load")
    source = data.get("energy_source")
    if not isinstance(source, str) or not 0 < len(source) <= 32:
        raise QuoteError("energy_source: missing")
    currency = data.get("currency", "USD")
    if currency != "USD":
        raise QuoteError(f"currency: prices are stored in USD, got {str(currency)[:16]!r}")
    return to_ms(instant), Quote(price, load, source)


def _lagrange(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """The polynomial through (xs, ys), evaluated at x."""
    total = 0.0
    for i, (xi, yi) in enumerate(zip(xs, ys, strict=True)):
        term = yi
        for j, xj in enumerate(xs):
            if j != i:
                term *= (x - xj) / (xi - xj)
        total += term
    return total


class Curve:
    """The last forecast fetched from the grid: hourly quotes, for pricing while it is down.

    Between two hourly points:

    - the grid load follows the cubic through the four nearest points (the load is
      continuous: the grid's README says it follows the un-discounted curve);
    - the price is read off that load with the straight line through the two nearest
      points of the instant's energy source that differ in load. The grid's price is
      an affine function of its load within one source (the solar discount is a
      factor), so this stays exact across the jumps where a discount starts or ends.
      With no such pair, the price is linear in time between points of one source,
      or held at the earlier point's;
    - the energy source is that of the hour the instant is in (the earlier point).

    Outside the first..last point there is no price.
    """

    # Points closer in load than this do not define a price-per-load slope reliably
    # (both are rounded to 4 decimals).
    MIN_LOAD_SPREAD: Final = 0.02

    def __init__(self, points: Sequence[tuple[int, Quote]], fetched_at: float) -> None:
        ordered = sorted(points, key=lambda p: p[0])
        self._times = [t for t, _ in ordered]
        self._quotes = [q for _, q in ordered]
        self.fetched_at = fetched_at  # monotonic seconds

    def __len__(self) -> int:
        return len(self._times)

    @property
    def points(self) -> list[tuple[int, Quote]]:
        """The hourly quotes (Unix ms, quote), oldest first."""
        return list(zip(self._times, self._quotes, strict=True))

    def age(self, now: float) -> float:
        return now - self.fetched_at

    def covers(self, instant_ms: int) -> bool:
        return bool(self._times) and self._times[0] <= instant_ms <= self._times[-1]

    def _hours(self, j: int, origin: int) -> float:
        return (self._times[j] - origin) / 3_600_000

    def price_at(self, instant_ms: int) -> Quote | None:
        if not self.covers(instant_ms):
            return None
        n = len(self._times)
        i = bisect.bisect_right(self._times, instant_ms) - 1
        q0 = self._quotes[i]
        if self._times[i] == instant_ms:
            return replace(q0, from_cache=True)
        origin = self._times[i]
        x = (instant_ms - origin) / 3_600_000
        window = [j for j in range(i - 1, i + 3) if 0 <= j < n]
        load = _lagrange(
            [self._hours(j, origin) for j in window], [self._quotes[j].grid_load for j in window], x
        )
        same = [
            j
            for j in (i, i + 1, i - 1, i + 2, i - 2)
            if 0 <= j < n and self._quotes[j].energy_source == q0.energy_source
        ]
        pair = next(
            (
                j
                for j in same[1:]
                if abs(self._quotes[j].grid_load - q0.grid_load) >= self.MIN_LOAD_SPREAD
            ),
            None,
        )
        q1 = self._quotes[i + 1]
        if pair is not None:
            qp = self._quotes[pair]
            slope = (qp.price_per_kwh - q0.price_per_kwh) / (qp.grid_load - q0.grid_load)
            price = q0.price_per_kwh + slope * (load - q0.grid_load)
        elif q1.energy_source == q0.energy_source:
            price = q0.price_per_kwh + x * (q1.price_per_kwh - q0.price_per_kwh) / self._hours(
                i + 1, origin
            )
        else:
            price = q0.price_per_kwh
        return Quote(
            price_per_kwh=round(min(max(price, 0.0), MAX_PRICE), PRICE_DECIMALS),
            grid_load=round(min(max(load, 0.0), 1.0), PRICE_DECIMALS),
            energy_source=q0.energy_source,
            from_cache=True,
        )

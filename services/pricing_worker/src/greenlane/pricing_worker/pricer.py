"""Prices instants: the instant cache, the grid, and the last known curve while it is down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from greenlane.core.errors import GreenLaneError
from greenlane.pricing_worker import metrics
from greenlane.pricing_worker.grid import GridClient, GridUnavailable, QuoteRejected
from greenlane.pricing_worker.prices import Curve, Quote, QuoteCache, priced_instant

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000


class GridDown(GreenLaneError):
    """The grid is unreachable and the last known curve is too old, or does not cover
    an instant: nothing may be written until it answers again."""


@dataclass(frozen=True, slots=True)
class Priced:
    """The outcome of pricing a set of instants."""

    quotes: dict[int, Quote]  # instant (ms) -> quote; quote.from_cache marks curve prices
    failed: dict[int, str]  # instant (ms) -> why the grid would not price it


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Pricer:
    """The grid's price at an instant, with a short cache and an outage fallback.

    While the grid answers, every instant is quoted by GET /api/pricing?at= (and
    cached for `cache_ttl` seconds). When it does not answer, instants are priced
    from the last fetched forecast if that curve is at most `cache_max_age`
    seconds old; otherwise price() raises GridDown.
    """

    def __init__(
        self,
        client: GridClient,
        *,
        resolution_ms: int = 1000,
        cache_ttl: float = 60.0,
        cache_max_age: float = 900.0,
        max_attempts: int = 3,
        attempt_delay: float = 0.2,
        concurrency: int = 16,
        curve_past_hours: int = 24,
        curve_future_hours: int = 24,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = _wall_ms,
    ) -> None:
        self._client = client
        self.resolution_ms = resolution_ms
        self._cache = QuoteCache(cache_ttl)
        self._cache_max_age = cache_max_age
        self._max_attempts = max_attempts
        self._attempt_delay = attempt_delay
        self._semaphore = asyncio.Semaphore(concurrency)
        self._past_hours = curve_past_hours
        self._future_hours = curve_future_hours
        self._clock = clock
        self._wall_ms = wall_ms
        self._curve: Curve | None = None
        self._grid_ok = True
        metrics.CURVE_AGE.set_function(self._curve_age)

    def _curve_age(self) -> float:
        return self._curve.age(self._clock()) if self._curve is not None else math.nan

    @property
    def grid_ok(self) -> bool:
        """False since the grid last failed to answer, until it answers again."""
        return self._grid_ok

    @property
    def curve(self) -> Curve | None:
        return self._curve

    def curve_fresh(self) -> bool:
        """Whether rows may be priced from the last known curve now."""
        curve = self._curve
        return curve is not None and curve.age(self._clock()) <= self._cache_max_age

    def instant_for(self, timestamp_ms: int) -> int:
        return priced_instant(timestamp_ms, self.resolution_ms)

    def _mark(self, ok: bool) -> None:
        if ok and not self._grid_ok:
            log.info("the grid service answers again")
        elif not ok and self._grid_ok:
            log.warning(
                "the grid service does not answer; pricing from the last known curve "
                "(%s old, allowed up to %.0fs)",
                f"{self._curve_age():.0f}s" if self._curve else "none",
                self._cache_max_age,
            )
        self._grid_ok = ok

    async def refresh_curve(self) -> None:
        """Fetch the forecast around now: `past` hours back to `future` hours ahead."""
        start = self._wall_ms() - (self._past_hours + 1) * HOUR_MS
        points = await self._client.forecast(start, self._past_hours + self._future_hours + 2)
        self._curve = Curve(points, self._clock())
        self._mark(True)

    async def run_refresher(
        self, stop: asyncio.Event, interval: float, retry_initial: float, retry_max: float
    ) -> None:
        """Keep the curve fresh; while the grid is down this is also what notices it is back."""
        delay = retry_initial
        while not stop.is_set():
            try:
                await self.refresh_curve()
                wait, delay = interval, retry_initial
            except GridUnavailable as exc:
                log.debug("forecast refresh failed: %s", exc)
                self._mark(False)
                wait, delay = delay, min(delay * 2, retry_max)
            except QuoteRejected as exc:
                log.warning("the grid's forecast is unusable: %s", exc)
                wait = interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)

    async def _fetch(self, instant: int, down: asyncio.Event) -> Quote | GreenLaneError:
        last: GreenLaneError = QuoteRejected("not attempted")
        for attempt in range(self._max_attempts):
            async with self._semaphore:
                if down.is_set():
                    # One failure in this call is enough: the others would only wait
                    # for the same timeout.
                    return GridUnavailable("the grid did not answer another request")
                try:
                    return await self._client.quote(instant)
                except GridUnavailable as exc:
                    down.set()
                    return exc
                except QuoteRejected as exc:
                    last = exc
            if attempt + 1 < self._max_attempts:
                await asyncio.sleep(self._attempt_delay * (attempt + 1))
        return last

    async def price(self, instants: Iterable[int]) -> Priced:
        """Quotes for instants (already floored by instant_for); GridDown if impossible."""
        now = self._clock()
        quotes: dict[int, Quote] = {}
        failed: dict[int, str] = {}
        missing: list[int] = []
        for instant in set(instants):
            cached = self._cache.get(instant, now)
            if cached is not None:
                quotes[instant] = cached
            else:
                missing.append(instant)
        unavailable: list[int] = []
        # While the grid is known to be down, a fresh curve prices without waiting
        # for timeouts; once the curve is too old, every call probes the grid again.
        if missing and (self._grid_ok or not self.curve_fresh()):
            down = asyncio.Event()
            results = await asyncio.gather(*(self._fetch(i, down) for i in missing))
            stored_at = self._clock()
            for instant, result in zip(missing, results, strict=True):
                if isinstance(result, Quote):
                    quotes[instant] = result
                    self._cache.put(instant, result, stored_at)
                elif isinstance(result, GridUnavailable):
                    unavailable.append(instant)
                else:
                    failed[instant] = str(result)
            self._mark(not down.is_set())
        elif missing:
            unavailable = missing
        if unavailable:
            curve = self._curve
            if curve is None or not self.curve_fresh():
                age = f"{curve.age(self._clock()):.0f}s old" if curve else "never fetched"
                raise GridDown(
                    f"the grid service does not answer and the last known curve is {age} "
                    f"(allowed up to {self._cache_max_age:.0f}s)"
                )
            for instant in unavailable:
                quote = curve.price_at(instant)
                if quote is None:
                    raise GridDown(
                        f"the grid service does not answer and the last known curve does "
                        f"not cover {instant} ms"
                    )
                quotes[instant] = quote
        return Priced(quotes, failed)

"""The grid's price forecast as slot prices: fetched over HTTP, priced without I/O.

The planner asks `GET /api/pricing/forecast` of the grid service (hourly quotes) and
reads slot prices off the curve through them (greenlane.core.quotes.Curve, the one the
pricing worker prices rows from while the grid is down): a slot's price is the mean of
the curve over the slot, which is what a car drawing steadily through the slot pays,
since the pricing worker prices energy at the instant it is drawn.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Final

import httpx
from opentelemetry import propagate

from greenlane.core.errors import GreenLaneError
from greenlane.core.quotes import Curve, Quote, QuoteError, iso_at, parse_quote

HOUR_MS: Final = 3_600_000
# Points of the curve averaged per slot (at most: a 1-minute slot takes one).
SAMPLES_PER_SLOT: Final = 15
PRICE_DECIMALS: Final = 6


class ForecastUnavailable(GreenLaneError):
    """The grid did not answer with a usable forecast."""


def slot_prices(curve: Curve, start_ms: int, slot_minutes: int, horizon: int) -> list[float]:
    """The mean price of each slot from start_ms, off the curve (midpoint rule).

    Beyond the curve's last point (or before its first), its nearest point's price
    holds: a forecast shorter than the horizon still plans, at the last known price.
    """
    points = curve.points
    if not points:
        raise ForecastUnavailable("the forecast holds no price")
    first, last = points[0], points[-1]
    slot_ms = slot_minutes * 60_000
    samples = max(1, min(slot_minutes, SAMPLES_PER_SLOT))
    prices: list[float] = []
    for t in range(horizon):
        total = 0.0
        for j in range(samples):
            at = start_ms + t * slot_ms + int((j + 0.5) * slot_ms / samples)
            quote = curve.price_at(at)
            if quote is None:
                quote = first[1] if at < first[0] else last[1]
            total += quote.price_per_kwh
        prices.append(round(total / samples, PRICE_DECIMALS))
    return prices


def curve_changed(old: Curve | None, new: Curve) -> bool:
    """Whether a newly fetched curve re-plans: a price or source of any hour both hold
    differs (new hours appended at the end are not a change: plans reach them as they
    roll forward)."""
    if old is None:
        return True
    before = {t: (q.price_per_kwh, q.energy_source) for t, q in old.points}
    return any(
        t in before and before[t] != (q.price_per_kwh, q.energy_source) for t, q in new.points
    )


class GridForecast:
    """GET /api/pricing/forecast of the grid service, over one keep-alive client."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout),
            transport=transport,
            headers={"user-agent": "greenlane-planner"},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch(self, now_ms: int, hours: int) -> Curve:
        """Hourly quotes from the full hour before now_ms over `hours` more hours."""
        headers: dict[str, str] = {}
        propagate.inject(headers)
        params = {"at": iso_at(now_ms - HOUR_MS), "hours": str(min(168, hours + 2))}
        try:
            response = await self._client.get(
                "/api/pricing/forecast", params=params, headers=headers
            )
        except httpx.HTTPError as exc:
            raise ForecastUnavailable(f"{type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise ForecastUnavailable(f"HTTP {response.status_code}: {response.text[:200]}")
        try:
            body = response.json()
            raw = body.get("prices") if isinstance(body, dict) else None
            if not isinstance(raw, list) or not raw:
                raise ForecastUnavailable("no prices in the answer")
            points: Sequence[tuple[int, Quote]] = [parse_quote(p) for p in raw]
        except (ValueError, QuoteError) as exc:
            raise ForecastUnavailable(f"unusable answer: {exc}") from None
        return Curve(points, time.monotonic())

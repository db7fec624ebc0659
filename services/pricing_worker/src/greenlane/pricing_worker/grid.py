"""HTTP client of the grid service: a quote at an instant, and the forecast curve."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
from opentelemetry import trace

from greenlane.core.errors import GreenLaneError
from greenlane.pricing_worker import metrics
from greenlane.pricing_worker.prices import Quote, QuoteError, iso_at, parse_quote

log = logging.getLogger(__name__)


class GridUnavailable(GreenLaneError):
    """The grid service did not answer: connection refused, timeout, 5xx or 429."""


class QuoteRejected(GreenLaneError):
    """The grid answered, but not with a usable quote for this request (4xx, bad body)."""


def _refuses_parameter(response: httpx.Response) -> bool:
    """The grid's own problem answer naming one of our query parameters."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("parameter") in ("at", "hours")


class GridClient:
    """GET /api/pricing?at= and GET /api/pricing/forecast over one keep-alive client."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 5.0,
        max_connections: int = 16,
        transport: httpx.AsyncBaseTransport | None = None,
        traced: bool = False,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        """traced: each request gets a CLIENT span (opentelemetry-instrumentation-httpx),
        whose trace context the grid continues."""
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            transport=transport,
            headers={"user-agent": "greenlane-pricing-worker"},
        )
        if traced:
            from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

            HTTPXClientInstrumentor.instrument_client(self._client, tracer_provider=tracer_provider)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _get(self, endpoint: str, params: dict[str, str]) -> Any:
        started = time.perf_counter()
        outcome = "unavailable"
        try:
            try:
                response = await self._client.get(endpoint, params=params)
            except httpx.HTTPError as exc:
                raise GridUnavailable(f"{endpoint}: {type(exc).__name__}: {exc}") from None
            if response.status_code == 400 and _refuses_parameter(response):
                # Only the grid saying "this instant is wrong" condemns the events; any
                # other answer (a wrong URL, an ingress 404, a maintenance page) is an
                # outage: the batch waits on the curve instead of going to the DLQ.
                outcome = "rejected"
                raise QuoteRejected(f"{endpoint}: HTTP 400: {response.text[:200]}")
            if response.status_code != 200:
                raise GridUnavailable(f"{endpoint}: HTTP {response.status_code}")
            try:
                body = response.json()
            except ValueError:
                raise GridUnavailable(f"{endpoint}: the answer is not JSON") from None
            outcome = "ok"
            return body
        finally:
            metrics.GRID_REQUEST_SECONDS.labels(endpoint, outcome).observe(
                time.perf_counter() - started
            )

    async def quote(self, instant_ms: int) -> Quote:
        """The grid's quote at one instant (Unix ms)."""
        body = await self._get("/api/pricing", {"at": iso_at(instant_ms)})
        try:
            at, quote = parse_quote(body)
        except QuoteError as exc:
            raise QuoteRejected(f"/api/pricing: {exc}") from None
        if at != instant_ms:
            raise QuoteRejected(f"/api/pricing: asked for {instant_ms} ms, quoted {at} ms")
        return quote

    async def forecast(self, start_ms: int, hours: int) -> list[tuple[int, Quote]]:
        """Hourly quotes from the first full hour after start_ms."""
        body = await self._get(
            "/api/pricing/forecast", {"at": iso_at(start_ms), "hours": str(hours)}
        )
        prices = body.get("prices") if isinstance(body, dict) else None
        if not isinstance(prices, list) or not prices:
            raise QuoteRejected("/api/pricing/forecast: no prices in the answer")
        try:
            return [parse_quote(p) for p in prices]
        except QuoteError as exc:
            raise QuoteRejected(f"/api/pricing/forecast: {exc}") from None

"""The grid service's HTTP edge: pricing routes, probes, metrics, problem responses."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from greenlane.core.demand import site_load_at, station_price
from greenlane.core.errors import InvalidField
from greenlane.core.events import CAR_ID_PATTERN
from greenlane.core.http import problem
from greenlane.core.keys import Region
from greenlane.core.redis_state import RedisClient
from greenlane.core.telemetry import probes_app
from greenlane.grid.settings import GridSettings
from greenlane.grid.tariff import MAX_FORECAST_HOURS, Quote, forecast, price_at

DEFAULT_FORECAST_HOURS = 24
_ECHO_LIMIT = 64  # characters of a bad value repeated back in an error
_DIGITS = re.compile(r"[0-9]{1,6}")

Clock = Callable[[], datetime]


class ParameterError(Exception):
    """A query parameter the API refuses; becomes a 400 problem naming it."""

    def __init__(self, parameter: str, detail: str) -> None:
        super().__init__(detail)
        self.parameter = parameter
        self.detail = detail


def iso_utc(instant: datetime) -> str:
    """ISO-8601 in UTC with a Z suffix; sub-second digits only when present."""
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def quote_json(quote: Quote) -> dict[str, Any]:
    """The JSON shape of one quote, shared by /api/pricing and the forecast."""
    return {
        "at": iso_utc(quote.at),
        "local_time": quote.local_time.isoformat(),
        "timezone": quote.timezone,
        "price_per_kwh": quote.price_per_kwh,
        "grid_load": quote.grid_load,
        "energy_source": quote.energy_source,
        "currency": quote.currency,
        "tariff_version": quote.tariff_version,
    }


def _echo(value: str) -> str:
    return repr(value if len(value) <= _ECHO_LIMIT else value[:_ECHO_LIMIT] + "...")


def _single_params(request: Request, allowed: Iterable[str]) -> dict[str, str]:
    """Query parameters as a dict; unknown or repeated parameters are refused."""
    allowed = sorted(allowed)
    params = request.query_params
    # Names are cut like values: whatever a client sends is echoed only in part.
    unknown = sorted({name[:_ECHO_LIMIT] for name in params} - set(allowed))
    if unknown:
        names = ", ".join(unknown[:10]) + (", ..." if len(unknown) > 10 else "")
        plural = "s" if len(unknown) > 1 else ""
        raise ParameterError(
            unknown[0],
            f"unknown query parameter{plural}: {names} (allowed: {', '.join(allowed)})",
        )
    values: dict[str, str] = {}
    for name in allowed:
        given = params.getlist(name)
        if len(given) > 1:
            raise ParameterError(name, f"{name}: given more than once")
        if given:
            values[name] = given[0]
    return values


def parse_instant(value: str) -> datetime:
    """An ISO-8601 instant with a UTC offset, from the `at` parameter."""
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        hint = ""
        if " " in value.strip():
            hint = " (a '+' in a query string must be sent as %2B)"
        raise ParameterError("at", f"at: not an ISO-8601 instant: {_echo(value)}{hint}") from None
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ParameterError("at", f"at: must include a UTC offset (Z or +HH:MM): {_echo(value)}")
    return instant


def parse_hours(value: str) -> int:
    """The forecast length from the `hours` parameter, 1..MAX_FORECAST_HOURS."""
    if not _DIGITS.fullmatch(value):
        raise ParameterError("hours", f"hours: not a whole number: {_echo(value)}")
    hours = int(value)
    if not 1 <= hours <= MAX_FORECAST_HOURS:
        raise ParameterError("hours", f"hours: must be from 1 to {MAX_FORECAST_HOURS}, got {hours}")
    return hours


def _now() -> datetime:
    # Whole seconds, so the `at` we answer can be sent back as ?at= for the same price.
    return datetime.now(UTC).replace(microsecond=0)


class _Instrumentation:
    """One span, one counter increment and one duration sample per HTTP request."""

    def __init__(
        self, app: ASGIApp, tracer: trace.Tracer, requests: Counter, duration: Histogram
    ) -> None:
        self.app = app
        self.tracer = tracer
        self.requests = requests
        self.duration = duration

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        status = HTTPStatus.INTERNAL_SERVER_ERROR.value
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with self.tracer.start_as_current_span(
            f"{method} unmatched", context=propagate.extract(carrier), kind=SpanKind.SERVER
        ) as span:
            try:
                await self.app(scope, receive, send_status)
            finally:
                route: BaseRoute | None = scope.get("route")
                label = getattr(route, "path", None) or "unmatched"
                span.update_name(f"{method} {label}")
                span.set_attribute("greenlane.http.method", method)
                span.set_attribute("greenlane.http.route", label)
                span.set_attribute("greenlane.http.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                self.requests.labels(route=label, status=str(status)).inc()
                self.duration.labels(route=label).observe(time.perf_counter() - started)


def _fresh_registry() -> CollectorRegistry:
    # The process, platform and GC metrics the default registry would have,
    # without sharing it: every app (and every test) gets its own counters.
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def create_app(
    settings: GridSettings,
    *,
    registry: CollectorRegistry | None = None,
    clock: Clock = _now,
    tracer_provider: trace.TracerProvider | None = None,
    redis: RedisClient | None = None,
) -> Starlette:
    """The grid service as an ASGI app; each app has its own metrics registry.

    Spans go to the global tracer provider unless one is given (tests do). With a Redis
    client (GREENLANE_DEMAND_PRICES), `station_id` prices a station: the tariff times
    its site's demand factor at the instant (greenlane.core.demand).
    """
    region = Region(settings.region)
    zone = settings.tariff_zone
    tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
    registry = registry if registry is not None else _fresh_registry()
    requests = Counter(
        "greenlane_grid_requests_total",
        "HTTP requests answered by the grid service.",
        ["route", "status"],
        registry=registry,
    )
    duration = Histogram(
        "greenlane_grid_request_duration_seconds",
        "Time to answer an HTTP request of the grid service.",
        ["route"],
        registry=registry,
    )

    async def pricing(request: Request) -> Response:
        params = _single_params(request, ["at", "station_id"])
        instant = parse_instant(params["at"]) if "at" in params else clock()
        quote = price_at(instant, zone)
        span = trace.get_current_span()
        span.set_attribute("greenlane.pricing.at", iso_utc(quote.at))
        span.set_attribute("greenlane.pricing.price_per_kwh", quote.price_per_kwh)
        span.set_attribute("greenlane.pricing.energy_source", quote.energy_source)
        if "station_id" not in params:
            return JSONResponse(quote_json(quote))
        return JSONResponse(await station_quote(params["station_id"], instant, quote))

    async def station_quote(station_id: str, instant: datetime, quote: Quote) -> dict[str, Any]:
        """The quote at a station: its price is the tariff times its site's factor."""
        if not CAR_ID_PATTERN.fullmatch(station_id):
            raise ParameterError(
                "station_id", f"station_id: 1 to 64 of A-Z a-z 0-9 _ . : -, got {_echo(station_id)}"
            )
        site_id, load = "", None
        if redis is not None:
            raw = await redis.hget(region.station(station_id), "site_id")
            exists = raw is not None or await redis.exists(region.station(station_id))
            if not exists:
                raise HTTPException(404, f"no station {_echo(station_id)} in {region.name}")
            site_id = raw.decode() if isinstance(raw, bytes) else str(raw or "")
            if site_id:
                at_ms = int(instant.timestamp() * 1000)
                load = await site_load_at(redis, region, site_id, at_ms)
        priced = station_price(quote.price_per_kwh, load)
        body = quote_json(quote)
        body.update(
            price_per_kwh=priced.price,
            tariff_per_kwh=quote.price_per_kwh,
            demand_factor=priced.factor,
            station_id=station_id,
            site_id=site_id or None,
            site_demand=round(load.demand, 4) if load is not None else None,
        )
        return body

    async def pricing_forecast(request: Request) -> Response:
        params = _single_params(request, ["at", "hours"])
        start = parse_instant(params["at"]) if "at" in params else clock()
        hours = parse_hours(params["hours"]) if "hours" in params else DEFAULT_FORECAST_HOURS
        quotes = forecast(start, hours, zone)
        span = trace.get_current_span()
        span.set_attribute("greenlane.pricing.at", iso_utc(start))
        span.set_attribute("greenlane.pricing.hours", hours)
        return JSONResponse({"prices": [quote_json(q) for q in quotes]})

    async def parameter_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ParameterError)
        return problem(400, exc.detail, parameter=exc.parameter)

    async def invalid_field(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, InvalidField)
        return problem(400, str(exc), parameter=exc.field)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        detail: str | None = None
        if exc.status_code == 404:
            detail = f"no resource at {_echo(request.url.path)}"
        elif exc.status_code == 405:
            allow = (exc.headers or {}).get("Allow", "")
            detail = f"method {request.method} not allowed (allowed: {allow})"
        elif exc.detail != HTTPStatus(exc.status_code).phrase:
            detail = exc.detail
        return problem(exc.status_code, detail, headers=exc.headers)

    async def server_error(_: Request, __: Exception) -> Response:
        return problem(500, "the grid service failed to answer; the error is logged")

    probes = probes_app(registry=registry)
    return Starlette(
        routes=[
            Route("/api/pricing", pricing, methods=["GET"]),
            Route("/api/pricing/forecast", pricing_forecast, methods=["GET"]),
            *probes.routes,
        ],
        middleware=[
            Middleware(_Instrumentation, tracer=tracer, requests=requests, duration=duration)
        ],
        exception_handlers={
            ParameterError: parameter_error,
            InvalidField: invalid_field,
            HTTPException: http_error,
            Exception: server_error,
        },
    )

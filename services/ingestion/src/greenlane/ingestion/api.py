"""Booking HTTP API (starlette): stations with free capacity, a car's bookings, cancellation."""

from __future__ import annotations

import logging
import math

from pydantic import SecretStr
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from greenlane.core.auth import presented_token, token_is_valid
from greenlane.core.events import CAR_ID_PATTERN, GEO_MAX_LAT
from greenlane.core.http import problem
from greenlane.ingestion.desk import BookingDesk

log = logging.getLogger(__name__)


class Problem(Exception):
    """An RFC 9457 problem answer."""

    def __init__(self, status: int, detail: str, parameter: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.parameter = parameter


def _float(request: Request, name: str, low: float, high: float, default: float | None) -> float:
    raw = request.query_params.get(name)
    if raw is None:
        if default is None:
            raise Problem(400, f"{name}: is required", name)
        return default
    try:
        value = float(raw)
    except ValueError:
        raise Problem(400, f"{name}: {raw!r} is not a number", name) from None
    if not math.isfinite(value) or not low <= value <= high:
        raise Problem(400, f"{name}: must be within [{low:g}, {high:g}], got {raw}", name)
    return value


def _id(value: str, name: str) -> str:
    if not CAR_ID_PATTERN.fullmatch(value):
        raise Problem(400, f"{name}: must be 1 to 64 letters, digits and _ . : -", name)
    return value


def create_api(desk: BookingDesk, tokens: list[SecretStr]) -> Starlette:
    """The API needs the same x-api-token as the gRPC service (or `Authorization: Bearer`)."""

    def authorize(request: Request) -> None:
        if not token_is_valid(presented_token(request.headers), tokens):
            raise Problem(401, "missing or invalid x-api-token")

    async def stations(request: Request) -> Response:
        authorize(request)
        known = {"lat", "lon", "radius_km", "limit", "all"}
        unknown = sorted(set(request.query_params) - known)
        if unknown:
            raise Problem(400, f"unknown query parameters: {', '.join(unknown)}", unknown[0])
        lat = _float(request, "lat", -GEO_MAX_LAT, GEO_MAX_LAT, None)
        lon = _float(request, "lon", -180, 180, None)
        radius = _float(request, "radius_km", 0.01, 100, 2.0)
        limit = int(_float(request, "limit", 1, 200, 20))
        show_all = request.query_params.get("all", "false")
        if show_all not in ("true", "false"):
            raise Problem(400, "all: must be true or false", "all")
        found = await desk.store.nearby(lon, lat, radius, limit, free_only=show_all == "false")
        return JSONResponse({"stations": found})

    async def car_bookings(request: Request) -> Response:
        authorize(request)
        car_id = _id(request.path_params["car_id"], "car_id")
        bookings = await desk.store.car_bookings(car_id)
        return JSONResponse({"car_id": car_id, "bookings": bookings})

    async def cancel(request: Request) -> Response:
        authorize(request)
        booking_id = _id(request.path_params["booking_id"], "booking_id")
        outcome = await desk.cancel(booking_id)
        if outcome.result == "NOT_FOUND":
            raise Problem(404, f"booking {booking_id} does not exist")
        if outcome.result == "NOT_ACTIVE":
            raise Problem(409, f"booking {booking_id} is {outcome.detail or 'not active'}")
        return JSONResponse({"booking_id": booking_id, "status": "cancelled"})

    async def on_problem(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        if exc.parameter:
            return problem(exc.status, exc.detail, parameter=exc.parameter)
        return problem(exc.status, exc.detail)

    async def on_http(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return problem(exc.status_code, str(exc.detail), headers=exc.headers)

    async def on_error(request: Request, exc: Exception) -> Response:
        # Whatever goes wrong, the answer is problem+json, never a bare 500 text.
        if isinstance(exc, RedisError | OSError):
            log.warning("%s %s: Redis failed: %s", request.method, request.url.path, exc)
            return problem(503, "the booking store is unavailable; try again later")
        log.exception("%s %s failed", request.method, request.url.path)
        return problem(500, "internal error")

    return Starlette(
        routes=[
            Route("/api/stations", stations, methods=["GET"]),
            Route("/api/cars/{car_id}/bookings", car_bookings, methods=["GET"]),
            Route("/api/bookings/{booking_id}", cancel, methods=["DELETE"]),
        ],
        exception_handlers={Problem: on_problem, HTTPException: on_http, Exception: on_error},
    )

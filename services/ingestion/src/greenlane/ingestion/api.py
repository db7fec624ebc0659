"""Booking HTTP API (starlette): stations with free capacity, a car's bookings, cancellation,
and the operator's release or reassignment of a car's fleet.

Every request is authenticated by greenlane.core.auth's Authenticator (the same
credentials as the gRPC service); a fleet sees and cancels only its own cars' bookings,
the operator scope every fleet's. Errors are problem+json naming the parameter.
"""

from __future__ import annotations

import json
import logging

from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from greenlane.core import keys
from greenlane.core.auth import (
    BOOKINGS_READ,
    BOOKINGS_WRITE,
    OPERATOR,
    Authenticator,
    Principal,
    check_fleet,
)
from greenlane.core.events import CAR_ID_PATTERN, GEO_MAX_LAT
from greenlane.core.http import (
    ProblemError,
    authenticate,
    echo,
    problem,
    problem_handler,
    single_params,
    strict_float,
    strict_int,
)
from greenlane.ingestion.desk import BookingDesk

log = logging.getLogger(__name__)

# The former name of ProblemError here.
Problem = ProblemError
MAX_BODY_BYTES = 4096


def _id(value: str, name: str) -> str:
    if not CAR_ID_PATTERN.fullmatch(value):
        raise ProblemError(
            400, f"{name}: must be 1 to 64 letters, digits and _ . : -", parameter=name
        )
    return value


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


async def _json_body(request: Request) -> dict[str, object]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ProblemError(413, f"body: larger than {MAX_BODY_BYTES} bytes", field="body")
    try:
        data = json.loads(body)
    except ValueError:
        raise ProblemError(400, "body: not valid JSON", field="body") from None
    if not isinstance(data, dict):
        raise ProblemError(400, "body: must be a JSON object", field="body")
    return data


def create_api(desk: BookingDesk, authenticator: Authenticator) -> Starlette:
    """The API takes the gRPC service's credentials (x-api-token, Bearer, mTLS)."""
    redis = desk.store._redis

    async def owner(car_id: str) -> str | None:
        return _text(await redis.hget(keys.car_state(car_id), keys.OWNER_FIELD))

    async def own_car(principal: Principal, car_id: str) -> None:
        fleet = await owner(car_id)
        if fleet is not None and not principal.sees(fleet):
            raise ProblemError(
                403, f"car {car_id} is not a car of fleet {principal.fleet}", parameter="car_id"
            )

    async def stations(request: Request) -> Response:
        await authenticate(request, authenticator, BOOKINGS_READ)
        params = single_params(request, ["lat", "lon", "radius_km", "limit", "all"])
        for name in ("lat", "lon"):
            if name not in params:
                raise ProblemError(400, f"{name}: is required", parameter=name)
        lat = strict_float(params["lat"], "lat", -GEO_MAX_LAT, GEO_MAX_LAT)
        lon = strict_float(params["lon"], "lon", -180, 180)
        radius = strict_float(params.get("radius_km", "2"), "radius_km", 0.01, 100)
        limit = strict_int(params.get("limit", "20"), "limit", 1, 200)
        show_all = params.get("all", "false")
        if show_all not in ("true", "false"):
            raise ProblemError(400, "all: must be true or false", parameter="all")
        found = await desk.store.nearby(lon, lat, radius, limit, free_only=show_all == "false")
        return JSONResponse({"stations": found})

    async def car_bookings(request: Request) -> Response:
        principal = await authenticate(request, authenticator, BOOKINGS_READ)
        single_params(request, [])
        car_id = _id(request.path_params["car_id"], "car_id")
        await own_car(principal, car_id)
        bookings = await desk.store.car_bookings(car_id)
        # A car reassigned to this fleet keeps its earlier fleet's bookings to itself.
        shown = [b for b in bookings if principal.sees(b.get("fleet") or principal.fleet)]
        return JSONResponse({"car_id": car_id, "bookings": shown})

    async def cancel(request: Request) -> Response:
        principal = await authenticate(request, authenticator, BOOKINGS_WRITE)
        single_params(request, [])
        booking_id = _id(request.path_params["booking_id"], "booking_id")
        only = "" if principal.operator else principal.fleet
        outcome = await desk.cancel(booking_id, only_fleet=only)
        if outcome.result == "NOT_FOUND":
            raise ProblemError(404, f"booking {booking_id} does not exist")
        if outcome.result == "NOT_OWNER":
            raise ProblemError(
                403, f"booking {booking_id} is not a booking of fleet {principal.fleet}"
            )
        if outcome.result == "NOT_ACTIVE":
            raise ProblemError(409, f"booking {booking_id} is {outcome.detail or 'not active'}")
        return JSONResponse({"booking_id": booking_id, "status": "cancelled"})

    async def car_fleet(request: Request) -> Response:
        """GET the car's fleet; the operator PUTs {"fleet": ...} to reassign it, DELETEs to
        release it (the next fleet to write it claims it)."""
        scope = BOOKINGS_READ if request.method == "GET" else OPERATOR
        principal = await authenticate(request, authenticator, scope)
        single_params(request, [])
        car_id = _id(request.path_params["car_id"], "car_id")
        key = keys.car_state(car_id)
        if request.method == "GET":
            fleet = await owner(car_id)
            if fleet is not None and not principal.sees(fleet):
                raise ProblemError(403, f"car {car_id} is not a car of fleet {principal.fleet}")
            return JSONResponse({"car_id": car_id, "fleet": fleet})
        if request.method == "DELETE":
            await redis.hdel(key, keys.OWNER_FIELD)
            log.info("%s released car %s", principal.subject, car_id)
            return JSONResponse({"car_id": car_id, "fleet": None})
        data = await _json_body(request)
        unknown = sorted(str(k)[:64] for k in data if k != "fleet")
        if unknown:
            why = f"{unknown[0]}: unknown field (allowed: fleet)"
            raise ProblemError(400, why, field=unknown[0])
        try:
            fleet = check_fleet(data.get("fleet"))  # type: ignore[arg-type]
        except ValueError as exc:
            raise ProblemError(400, str(exc), field="fleet") from None
        await redis.hset(key, keys.OWNER_FIELD, fleet)
        log.info("%s assigned car %s to fleet %s", principal.subject, car_id, fleet)
        return JSONResponse({"car_id": car_id, "fleet": fleet})

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        detail = str(exc.detail)
        if exc.status_code == 404:
            detail = f"no resource at {echo(request.url.path)}"
        elif exc.status_code == 405:
            allow = (exc.headers or {}).get("Allow", "")
            detail = f"method {request.method} not allowed (allowed: {allow})"
        return problem(exc.status_code, detail, headers=exc.headers)

    async def on_error(request: Request, exc: Exception) -> Response:
        # Whatever goes wrong, the answer is problem+json, never a bare 500 text.
        if isinstance(exc, RedisError | OSError):
            log.warning("%s %s: Redis failed: %s", request.method, echo(request.url.path), exc)
            return problem(503, "the booking store is unavailable; try again later")
        log.exception("%s %s failed", request.method, echo(request.url.path))
        return problem(500, "internal error")

    return Starlette(
        routes=[
            Route("/api/stations", stations, methods=["GET"]),
            Route("/api/cars/{car_id}/bookings", car_bookings, methods=["GET"]),
            Route("/api/cars/{car_id}/fleet", car_fleet, methods=["GET", "PUT", "DELETE"]),
            Route("/api/bookings/{booking_id}", cancel, methods=["DELETE"]),
        ],
        exception_handlers={
            ProblemError: problem_handler,
            HTTPException: on_http,
            Exception: on_error,
        },
    )

"""The planner's HTTP edge: the stateless what-if solve, probes and metrics.

``POST /api/planner/solve`` takes a site problem as JSON and answers its plan; the
shapes are in docs/planner.md. A token is required as for the booking API. Bad input
is a 422 problem naming the field (``field``: ``cars[2].energy_kwh``); the rules
themselves live in model.validate, this module only maps JSON onto the model.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, Final

from opentelemetry import trace
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from greenlane.core.auth import PLANS_READ
from greenlane.core.authenticator import build_authenticator
from greenlane.core.errors import InvalidField
from greenlane.core.http import ProblemError, authenticate, problem_handler
from greenlane.core.http import problem as problem_response
from greenlane.core.telemetry import probes_app
from greenlane.planner import metrics
from greenlane.planner.model import CarRequest, SitePlan, SiteProblem, SolverError, solve, validate
from greenlane.planner.settings import PlannerSettings

SOLVE_PATH: Final = "/api/planner/solve"
DEFAULT_SLOT_MINUTES: Final = 15
# Far above the largest valid problem's JSON (2,000 cars and 2,016 prices: ~0.3 MB).
MAX_BODY_BYTES: Final = 4 * 1024 * 1024
_PROBLEM_FIELDS: Final = ("slot_minutes", "prices", "site_limit_kw", "cars")
_REQUIRED_FIELDS: Final = ("prices", "site_limit_kw", "cars")
_CAR_FIELDS: Final = ("car_id", "arrive_slot", "depart_slot", "energy_kwh", "max_kw")
_ECHO_LIMIT: Final = 64  # characters of a client's field name repeated in an error


class ApiProblem(Exception):
    """An answer other than 2xx, as an RFC 9457 problem."""

    def __init__(self, status: int, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        kind = "null" if value is None else type(value).__name__
        raise InvalidField(where, f"must be a JSON object, got {kind}")
    return value


def _keys(obj: Mapping[str, Any], allowed: Sequence[str], required: Sequence[str], at: str) -> None:
    unknown = sorted(str(k)[:_ECHO_LIMIT] for k in obj if k not in allowed)
    if unknown:
        raise InvalidField(f"{at}{unknown[0]}", f"unknown field (allowed: {', '.join(allowed)})")
    for name in required:
        if name not in obj:
            raise InvalidField(f"{at}{name}", "is required")


def problem_from_json(body: object) -> SiteProblem:
    """The SiteProblem a what-if request describes; InvalidField names what is wrong."""
    obj = _object(body, "body")
    _keys(obj, _PROBLEM_FIELDS, _REQUIRED_FIELDS, "")
    raw_cars = obj["cars"]
    if not isinstance(raw_cars, list):
        raise InvalidField("cars", f"must be a list of cars, got {type(raw_cars).__name__}")
    cars = []
    for i, raw in enumerate(raw_cars):
        car = _object(raw, f"cars[{i}]")
        _keys(car, _CAR_FIELDS, _CAR_FIELDS, f"cars[{i}].")
        # Types and ranges are checked by validate(), with the same field names.
        cars.append(CarRequest(*(car[name] for name in _CAR_FIELDS)))
    problem = SiteProblem(
        slot_minutes=obj.get("slot_minutes", DEFAULT_SLOT_MINUTES),
        prices=obj["prices"],
        site_limit_kw=obj["site_limit_kw"],
        cars=cars,
    )
    validate(problem)
    return problem


def plan_to_json(plan: SitePlan) -> dict[str, Any]:
    """The documented response shape of a plan."""
    return {
        "feasible": plan.feasible,
        "cost": plan.cost,
        "site_kw": plan.site_kw,
        "cars": [
            {
                "car_id": car.car_id,
                "power_kw": car.power_kw,
                "delivered_kwh": car.delivered_kwh,
                "shortfall_kwh": car.shortfall_kwh,
                "reason": car.reason,
            }
            for car in plan.cars
        ],
    }


async def _body(request: Request) -> bytes:
    """The request body, refused (413) as soon as it grows past MAX_BODY_BYTES."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiProblem(413, f"body: larger than {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiProblem(413, f"body: larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def create_app(
    settings: PlannerSettings, *, tracer_provider: trace.TracerProvider | None = None
) -> Starlette:
    """The planner's API as an ASGI app (metrics go to the default registry)."""
    authenticator = build_authenticator(settings)
    tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
    solving = asyncio.Semaphore(settings.planner_max_concurrent_solves)
    time_limit = settings.planner_solve_time_limit_seconds

    async def whatif(request: Request) -> Response:
        # A what-if reads and stores nothing of any fleet: any caller that may read plans.
        await authenticate(request, authenticator, PLANS_READ)
        if request.query_params:
            name = next(iter(request.query_params))[:_ECHO_LIMIT]
            raise ApiProblem(400, f"unknown query parameter {name!r} (allowed: none)")
        if not _is_json(request.headers.get("content-type", "")):
            raise ApiProblem(415, "body: send JSON with Content-Type: application/json")
        raw = await _body(request)
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ApiProblem(400, f"body: not valid JSON ({str(exc)[:_ECHO_LIMIT]})") from None
        problem = problem_from_json(body)
        if solving.locked():
            raise ApiProblem(
                503, "the planner is busy with other solves; retry shortly", {"Retry-After": "1"}
            )
        async with solving:
            with tracer.start_as_current_span("planner.solve") as span:
                span.set_attribute("greenlane.planner.kind", "whatif")
                span.set_attribute("greenlane.planner.cars", len(problem.cars))
                span.set_attribute("greenlane.planner.slots", problem.horizon)
                try:
                    plan = await asyncio.to_thread(solve, problem, time_limit_seconds=time_limit)
                except SolverError as exc:
                    metrics.SOLVE_FAILURES.labels(kind="whatif").inc()
                    span.set_attribute("greenlane.planner.error", str(exc))
                    raise ApiProblem(503, f"the solver stopped without a plan: {exc}") from None
                span.set_attribute("greenlane.planner.feasible", plan.feasible)
        metrics.SOLVES.labels(kind="whatif").inc()
        metrics.SOLVE_SECONDS.observe(plan.solve_seconds)
        return JSONResponse(plan_to_json(plan))

    async def on_problem(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiProblem)
        return problem_response(exc.status, exc.detail, headers=exc.headers)

    async def on_invalid(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, InvalidField)
        return problem_response(422, str(exc), field=exc.field)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        detail = None if exc.detail == HTTPStatus(exc.status_code).phrase else exc.detail
        if exc.status_code == 404:
            detail = f"no resource at {request.url.path[:_ECHO_LIMIT]!r}"
        elif exc.status_code == 405:
            allow = (exc.headers or {}).get("Allow", "")
            detail = f"method {request.method} not allowed (allowed: {allow})"
        return problem_response(exc.status_code, detail, headers=exc.headers)

    async def on_error(_: Request, __: Exception) -> Response:
        return problem_response(500, "the planner failed to answer; the error is logged")

    return Starlette(
        routes=[Route(SOLVE_PATH, whatif, methods=["POST"]), *probes_app().routes],
        exception_handlers={
            ApiProblem: on_problem,
            ProblemError: problem_handler,
            InvalidField: on_invalid,
            HTTPException: on_http,
            Exception: on_error,
        },
    )

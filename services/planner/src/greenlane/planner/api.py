"""The planner's HTTP edge: the stateless what-if solve, the live plans, probes, metrics.

``POST /api/planner/solve`` takes a site problem as JSON and answers its plan; the
what-if rules themselves live in model.validate, this module only maps JSON onto the
model. ``GET /api/plans/{car_id}``, ``GET /api/sites/{site_id}/schedule`` and
``PUT /api/cars/{car_id}/goal`` read and feed the live planner through Redis, so any
replica answers for any site. The shapes are in docs/planner.md. A token is required
as for the booking API. Bad input is a 422 problem naming the field.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final

from aiokafka.errors import KafkaError
from opentelemetry import trace
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from greenlane.core.auth import PLANS_READ, PLANS_WRITE
from greenlane.core.authenticator import build_authenticator
from greenlane.core.errors import InvalidField
from greenlane.core.events import CAR_ID_PATTERN, MAX_GOAL_AHEAD_MS
from greenlane.core.http import ProblemError, authenticate, problem_handler
from greenlane.core.http import problem as problem_response
from greenlane.core.plans import read_schedule
from greenlane.core.telemetry import probes_app
from greenlane.planner import metrics, store
from greenlane.planner.fleet import CarSpec, Goal
from greenlane.planner.model import CarRequest, SitePlan, SiteProblem, SolverError, solve, validate
from greenlane.planner.settings import PlannerSettings

if TYPE_CHECKING:
    from greenlane.planner.live import LivePlanner

SOLVE_PATH: Final = "/api/planner/solve"
PLAN_PATH: Final = "/api/plans/{car_id}"
SCHEDULE_PATH: Final = "/api/sites/{site_id}/schedule"
GOAL_PATH: Final = "/api/cars/{car_id}/goal"
_GOAL_FIELDS: Final = ("target_battery", "depart_at", "pack_kwh", "max_kw")
_GOAL_REQUIRED: Final = ("target_battery", "depart_at")
MAX_SPEC: Final = 1000.0  # kWh of a pack, kW of a car
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


def _path_id(request: Request, name: str) -> str:
    value = str(request.path_params[name])
    if not CAR_ID_PATTERN.fullmatch(value):
        raise InvalidField(name, "must be 1 to 64 letters, digits and _ . : -")
    return value


def _goal_number(obj: Mapping[str, Any], name: str, low: float, high: float) -> float:
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidField(name, f"must be a number, got {type(value).__name__}")
    if not (low <= value <= high):  # NaN fails too (json.loads accepts NaN)
        raise InvalidField(name, f"must be within [{low:g}, {high:g}], got {value}")
    return float(value)


def goal_from_json(body: object, now_ms: int) -> tuple[Goal, CarSpec | None]:
    """The goal (and the car's own pack and power, when given) of a PUT goal body."""
    obj = _object(body, "body")
    _keys(obj, _GOAL_FIELDS, _GOAL_REQUIRED, "")
    target = _goal_number(obj, "target_battery", 1.0, 100.0)
    depart = obj["depart_at"]
    if isinstance(depart, bool) or not isinstance(depart, int):
        raise InvalidField("depart_at", "must be a whole number of Unix milliseconds")
    if depart <= now_ms:
        raise InvalidField("depart_at", f"must be in the future (now is {now_ms}), got {depart}")
    if depart > now_ms + MAX_GOAL_AHEAD_MS:
        raise InvalidField("depart_at", "must be at most 7 days ahead")
    spec = None
    if "pack_kwh" in obj or "max_kw" in obj:
        pack = _goal_number(obj, "pack_kwh", 1.0, MAX_SPEC) if "pack_kwh" in obj else 0.0
        max_kw = _goal_number(obj, "max_kw", 1.0, MAX_SPEC) if "max_kw" in obj else 0.0
        spec = CarSpec(pack, max_kw)
    return Goal(target, depart), spec


def only_fleet(schedule: Mapping[str, Any], cars: set[str]) -> dict[str, Any]:
    """A site schedule's JSON with only the given cars' powers and plans; the site's totals
    per slot stay (they are the site's, not a car's)."""
    out = dict(schedule)
    out["slots"] = [
        {**slot, "cars": {c: kw for c, kw in slot["cars"].items() if c in cars}}
        for slot in schedule["slots"]
    ]
    out["car_plans"] = [p for p in schedule["car_plans"] if p["car_id"] in cars]
    return out


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
    settings: PlannerSettings,
    *,
    live: LivePlanner | None = None,
    tracer_provider: trace.TracerProvider | None = None,
) -> Starlette:
    """The planner's API as an ASGI app (metrics go to the default registry); without a
    live planner only the what-if solve and the probes answer (the rest: 503)."""
    authenticator = build_authenticator(settings)
    tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
    solving = asyncio.Semaphore(settings.planner_max_concurrent_solves)
    time_limit = settings.planner_solve_time_limit_seconds

    def no_query(request: Request) -> None:
        if request.query_params:
            name = next(iter(request.query_params))[:_ECHO_LIMIT]
            raise ApiProblem(400, f"unknown query parameter {name!r} (allowed: none)")

    async def json_body(request: Request) -> object:
        if not _is_json(request.headers.get("content-type", "")):
            raise ApiProblem(415, "body: send JSON with Content-Type: application/json")
        raw = await _body(request)
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ApiProblem(400, f"body: not valid JSON ({str(exc)[:_ECHO_LIMIT]})") from None

    def running() -> LivePlanner:
        if live is None or live.redis is None:
            raise ApiProblem(503, "the live planner is off (GREENLANE_PLANNER_LIVE=false)")
        return live

    async def car_plan(request: Request) -> Response:
        principal = await authenticate(request, authenticator, PLANS_READ)
        no_query(request)
        car_id = _path_id(request, "car_id")
        planner = running()
        assert planner.redis is not None
        try:
            owner = await store.car_owner(planner.redis, car_id)
            plan = await store.read_car_plan(planner.redis, car_id)
        except (RedisError, OSError):
            raise ApiProblem(503, "Redis is unavailable; retry shortly") from None
        # Another fleet's car answers as an unknown one: its id tells nothing.
        if plan is None or not principal.sees(owner):
            raise ApiProblem(
                404, f"car_id: no plan for {car_id!r} (it is not plugged in or booked at a site)"
            )
        return JSONResponse(plan.to_json(planner.now_ms()))

    async def site_schedule(request: Request) -> Response:
        principal = await authenticate(request, authenticator, PLANS_READ)
        no_query(request)
        site_id = _path_id(request, "site_id")
        planner = running()
        assert planner.redis is not None
        try:
            schedule = await read_schedule(planner.redis, planner.region, site_id)
            known = schedule is not None or bool(
                await planner.redis.sismember(planner.region.sites, site_id)
            )
        except (RedisError, OSError):
            raise ApiProblem(503, "Redis is unavailable; retry shortly") from None
        if schedule is None:
            if known:
                raise ApiProblem(404, f"site_id: {site_id!r} has no plan yet; retry shortly")
            raise ApiProblem(404, f"site_id: no site {site_id!r} (see greenlane stations load)")
        answer = schedule.to_json()
        if not principal.operator:
            # A fleet sees the site's totals and its own cars, not other fleets' cars.
            try:
                owners = await store.car_owners(planner.redis, [c.car_id for c in schedule.cars])
            except (RedisError, OSError):
                raise ApiProblem(503, "Redis is unavailable; retry shortly") from None
            answer = only_fleet(answer, {c for c, f in owners.items() if principal.sees(f)})
        return JSONResponse(answer)

    async def put_goal(request: Request) -> Response:
        principal = await authenticate(request, authenticator, PLANS_WRITE)
        no_query(request)
        car_id = _path_id(request, "car_id")
        planner = running()
        assert planner.redis is not None
        goal, spec = goal_from_json(await json_body(request), planner.now_ms())
        try:
            owner = await store.car_owner(planner.redis, car_id)
            if owner is not None and not principal.sees(owner):
                raise ApiProblem(
                    403, f"car_id: {car_id!r} belongs to another fleet; its goal is not set"
                )
            set_at = await planner.set_goal(car_id, goal, spec)
        except (RedisError, OSError):
            raise ApiProblem(503, "Redis is unavailable: the goal is not stored; retry") from None
        except (KafkaError, TimeoutError):
            raise ApiProblem(
                503, "the goal is stored but the planner was not told (Kafka); retry"
            ) from None
        answer: dict[str, Any] = {
            "car_id": car_id,
            "target_battery": goal.target_battery,
            "depart_at": goal.depart_at,
            "set_at": set_at,
        }
        if spec is not None:
            answer.update(
                {k: v for k, v in (("pack_kwh", spec.pack_kwh), ("max_kw", spec.max_kw)) if v}
            )
        return JSONResponse(answer)

    async def whatif(request: Request) -> Response:
        # A what-if reads and stores nothing of any fleet: any caller that may read plans.
        await authenticate(request, authenticator, PLANS_READ)
        no_query(request)
        problem = problem_from_json(await json_body(request))
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
        routes=[
            Route(SOLVE_PATH, whatif, methods=["POST"]),
            Route(PLAN_PATH, car_plan, methods=["GET"]),
            Route(SCHEDULE_PATH, site_schedule, methods=["GET"]),
            Route(GOAL_PATH, put_goal, methods=["PUT"]),
            *probes_app(live.readiness if live is not None else None).routes,
        ],
        exception_handlers={
            ApiProblem: on_problem,
            ProblemError: problem_handler,
            InvalidField: on_invalid,
            HTTPException: on_http,
            Exception: on_error,
        },
    )

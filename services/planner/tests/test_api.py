"""The what-if API, driven in-process through ASGI: shapes, auth, errors, metrics."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from starlette.applications import Starlette

from greenlane.planner import api
from greenlane.planner.api import MAX_BODY_BYTES, SOLVE_PATH, create_app
from greenlane.planner.model import MAX_SLOTS, SitePlan, SiteProblem, solve
from greenlane.planner.settings import PlannerSettings

TOKEN = "planner-test-token-0123456789"
HEADERS = {"x-api-token": TOKEN}
# The request of issue 9, point 5.
EXAMPLE: dict[str, Any] = {
    "slot_minutes": 15,
    "prices": [0.30] * 8 + [0.12] * 16 + [0.30] * 8,
    "site_limit_kw": 300,
    "cars": [{"car_id": "c1", "arrive_slot": 0, "depart_slot": 32, "energy_kwh": 40, "max_kw": 11}],
}
CAR_KEYS = {"car_id", "power_kw", "delivered_kwh", "shortfall_kwh", "reason"}


def settings(**overrides: object) -> PlannerSettings:
    return PlannerSettings.model_validate(
        {"api_tokens": TOKEN, "environment": "production", **overrides}
    )


def client_for(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://planner")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_app(settings())) as c:
        yield c


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"] == "about:blank" and body["title"]
    return body


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def with_car(**changes: object) -> dict[str, Any]:
    return {**EXAMPLE, "cars": [{**EXAMPLE["cars"][0], **changes}]}


async def test_the_issue_example_gets_the_documented_shape(client: httpx.AsyncClient) -> None:
    response = await client.post(SOLVE_PATH, json=EXAMPLE, headers=HEADERS)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"feasible", "cost", "site_kw", "cars"}
    assert body["feasible"] is True
    assert len(body["site_kw"]) == 32
    [car] = body["cars"]
    assert set(car) == CAR_KEYS
    assert car["car_id"] == "c1" and car["reason"] == ""
    assert car["delivered_kwh"] == pytest.approx(40.0)
    assert car["shortfall_kwh"] == 0.0
    assert len(car["power_kw"]) == 32 and max(car["power_kw"]) <= 11
    # 40 kWh at 11 kW fits into the 16 cheap slots (44 kWh), so it all costs $0.12.
    assert sum(car["power_kw"][:8] + car["power_kw"][24:]) == 0.0
    assert body["cost"] == pytest.approx(40 * 0.12)


async def test_the_answer_is_the_models_plan(client: httpx.AsyncClient) -> None:
    request = {
        "slot_minutes": 60,
        "prices": [0.1, 0.2, 0.3, 0.4],
        "site_limit_kw": [11, 11, 11, 11],
        "cars": [
            {"car_id": "A", "arrive_slot": 0, "depart_slot": 2, "energy_kwh": 11, "max_kw": 11},
            {"car_id": "B", "arrive_slot": 0, "depart_slot": 3, "energy_kwh": 30, "max_kw": 11},
        ],
    }
    response = await client.post(SOLVE_PATH, json=request, headers=HEADERS)
    body = response.json()
    expected = api.plan_to_json(solve(api.problem_from_json(request)))
    assert body == json.loads(json.dumps(expected))
    assert body["feasible"] is False
    assert [c["reason"] for c in body["cars"]] == ["", "site_limit"]
    assert body["cars"][1]["shortfall_kwh"] == pytest.approx(8.0)


async def test_slot_minutes_defaults_to_15(client: httpx.AsyncClient) -> None:
    request = {k: v for k, v in EXAMPLE.items() if k != "slot_minutes"}
    response = await client.post(SOLVE_PATH, json=request, headers=HEADERS)
    assert response.status_code == 200
    power = response.json()["cars"][0]["power_kw"]
    assert sum(power) * 0.25 == pytest.approx(40.0)


async def test_a_bearer_token_is_accepted_like_x_api_token(client: httpx.AsyncClient) -> None:
    bearer = {"authorization": f"Bearer {TOKEN}"}
    response = await client.post(SOLVE_PATH, json=EXAMPLE, headers=bearer)
    assert response.status_code == 200


@pytest.mark.parametrize(
    "headers", [{}, {"x-api-token": "wrong-token-0123456789"}, {"authorization": "Basic x"}]
)
async def test_a_call_without_a_valid_token_is_refused(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    body = assert_problem(await client.post(SOLVE_PATH, json=EXAMPLE, headers=headers), 401)
    assert "x-api-token" in body["detail"]
    assert TOKEN not in json.dumps(body)


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        (with_car(energy_kwh=-5), "cars[0].energy_kwh"),
        (with_car(arrive_slot=10, depart_slot=4), "cars[0].depart_slot"),
        (with_car(depart_slot=33), "cars[0].depart_slot"),
        ({**EXAMPLE, "prices": []}, "prices"),
        ({**EXAMPLE, "prices": [0.2] * (MAX_SLOTS + 1)}, "prices"),
        ({**EXAMPLE, "colour": "green"}, "colour"),
        (with_car(colour="green"), "cars[0].colour"),
        (with_car(energy_kwh="40"), "cars[0].energy_kwh"),
        (with_car(energy_kwh=True), "cars[0].energy_kwh"),
        (with_car(arrive_slot=0.5), "cars[0].arrive_slot"),
        (with_car(car_id=7), "cars[0].car_id"),
        ({**EXAMPLE, "prices": {"0": 0.2}}, "prices"),
        ({**EXAMPLE, "prices": [0.2, None] + [0.2] * 30}, "prices[1]"),
        ({**EXAMPLE, "site_limit_kw": "300"}, "site_limit_kw"),
        ({**EXAMPLE, "site_limit_kw": [300] * 31}, "site_limit_kw"),
        ({**EXAMPLE, "slot_minutes": 0}, "slot_minutes"),
        ({**EXAMPLE, "cars": {"car_id": "c1"}}, "cars"),
        ({**EXAMPLE, "cars": ["c1"]}, "cars[0]"),
        ({k: v for k, v in EXAMPLE.items() if k != "prices"}, "prices"),
        ({**EXAMPLE, "cars": [{"car_id": "c1"}]}, "cars[0].arrive_slot"),
        ([EXAMPLE], "body"),
    ],
)
async def test_bad_input_is_a_422_naming_the_field(
    client: httpx.AsyncClient, request_body: object, field: str
) -> None:
    response = await client.post(SOLVE_PATH, json=request_body, headers=HEADERS)
    body = assert_problem(response, 422)
    assert body["field"] == field
    assert body["detail"].startswith(f"{field}: ")


async def test_a_non_finite_number_is_a_422_naming_its_field(client: httpx.AsyncClient) -> None:
    text = json.dumps(with_car(max_kw=11)).replace('"max_kw": 11', '"max_kw": NaN')
    response = await client.post(
        SOLVE_PATH, content=text, headers={**HEADERS, "content-type": "application/json"}
    )
    assert assert_problem(response, 422)["field"] == "cars[0].max_kw"


async def test_a_body_that_is_not_json_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        SOLVE_PATH, content=b"{prices: [", headers={**HEADERS, "content-type": "application/json"}
    )
    assert "not valid JSON" in assert_problem(response, 400)["detail"]


async def test_a_body_that_is_not_declared_json_is_a_415(client: httpx.AsyncClient) -> None:
    response = await client.post(SOLVE_PATH, content=json.dumps(EXAMPLE), headers=HEADERS)
    assert_problem(response, 415)


async def test_a_body_past_the_size_limit_is_a_413(client: httpx.AsyncClient) -> None:
    huge = b'{"prices": [' + b"0.2," * (MAX_BODY_BYTES // 4) + b"0.2]}"
    response = await client.post(
        SOLVE_PATH, content=huge, headers={**HEADERS, "content-type": "application/json"}
    )
    assert_problem(response, 413)


async def test_other_methods_and_paths_are_problems(client: httpx.AsyncClient) -> None:
    wrong_method = assert_problem(await client.get(SOLVE_PATH, headers=HEADERS), 405)
    assert "POST" in wrong_method["detail"]
    assert_problem(await client.post("/api/planner/nothing", json={}, headers=HEADERS), 404)


async def test_probes_and_metrics_need_no_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 200
    metrics = (await client.get("/metrics")).text
    for name in (
        "greenlane_planner_solves_total",
        "greenlane_planner_solve_seconds",
        "greenlane_planner_shortfall_kwh",
        "greenlane_planner_site_kw",
        "greenlane_planner_site_limit_kw",
        "greenlane_planner_cars",
        "greenlane_planner_plans_total",
    ):
        assert f"# TYPE {name} " in metrics


async def test_a_solve_is_counted_and_timed(client: httpx.AsyncClient) -> None:
    solves = sample("greenlane_planner_solves_total", {"kind": "whatif"})
    timed = sample("greenlane_planner_solve_seconds_count")
    await client.post(SOLVE_PATH, json=EXAMPLE, headers=HEADERS)
    await client.post(SOLVE_PATH, json=with_car(energy_kwh=-1), headers=HEADERS)  # not solved
    assert sample("greenlane_planner_solves_total", {"kind": "whatif"}) == solves + 1
    assert sample("greenlane_planner_solve_seconds_count") == timed + 1
    metrics = (await client.get("/metrics")).text
    assert 'greenlane_planner_solves_total{kind="whatif"}' in metrics


async def test_a_solver_that_runs_out_of_time_is_a_503_and_counted() -> None:
    cars = [
        {
            "car_id": f"c{i}",
            "arrive_slot": i % 40,
            "depart_slot": 40 + i % 50,
            "energy_kwh": 30,
            "max_kw": 11,
        }
        for i in range(400)
    ]
    request = {
        "prices": [0.1 + (t % 7) / 50 for t in range(96)],
        "site_limit_kw": 600,
        "cars": cars,
    }
    failures = sample("greenlane_planner_solve_failures_total", {"kind": "whatif"})
    async with client_for(create_app(settings(planner_solve_time_limit_seconds=1e-6))) as c:
        response = await c.post(SOLVE_PATH, json=request, headers=HEADERS)
    assert "time limit" in assert_problem(response, 503)["detail"].lower()
    assert sample("greenlane_planner_solve_failures_total", {"kind": "whatif"}) == failures + 1


async def test_a_solve_beyond_the_concurrency_limit_is_a_503_with_retry_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The solver is held until the second request has its answer, so the first is
    # certainly still solving when the second arrives.
    release = threading.Event()
    started = threading.Event()

    def held(problem: SiteProblem, **kwargs: Any) -> SitePlan:
        started.set()
        release.wait(timeout=30)
        return solve(problem, **kwargs)

    monkeypatch.setattr(api, "solve", held)
    async with client_for(create_app(settings(planner_max_concurrent_solves=1))) as c:
        first = asyncio.create_task(c.post(SOLVE_PATH, json=EXAMPLE, headers=HEADERS))
        assert await asyncio.to_thread(started.wait, 30)
        second = await c.post(SOLVE_PATH, json=EXAMPLE, headers=HEADERS)
        release.set()
        answered = await first
    assert answered.status_code == 200
    assert_problem(second, 503)
    assert second.headers["retry-after"] == "1"

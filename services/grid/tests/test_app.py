"""The HTTP edge of the grid service, driven in-process through ASGI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette

from greenlane.grid.app import create_app
from greenlane.grid.settings import GridSettings
from greenlane.grid.tariff import price_at

FIXED_NOW = datetime(2025, 7, 15, 21, 30, 0, tzinfo=UTC)  # 17:30 EDT, solar
QUOTE_KEYS = {
    "at",
    "local_time",
    "timezone",
    "price_per_kwh",
    "grid_load",
    "energy_source",
    "currency",
    "tariff_version",
}


def settings() -> GridSettings:
    return GridSettings.model_validate({"tariff_timezone": "America/New_York"})


def client_for(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://grid")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_app(settings(), clock=lambda: FIXED_NOW)) as c:
        yield c


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert body["type"] == "about:blank"
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    return body


async def test_pricing_without_at_quotes_the_current_instant() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    async with client_for(create_app(settings())) as c:
        response = await c.get("/api/pricing")
    after = datetime.now(UTC)
    assert response.status_code == 200
    at = datetime.fromisoformat(response.json()["at"])
    assert before <= at <= after


async def test_pricing_without_at_uses_the_apps_clock(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/pricing")).json()
    assert body["at"] == "2025-07-15T21:30:00Z"
    assert body["local_time"] == "2025-07-15T17:30:00-04:00"
    assert body["energy_source"] == "solar"


async def test_pricing_answers_the_documented_json_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/pricing", params={"at": "2025-07-15T22:00:00Z"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "at": "2025-07-15T22:00:00Z",
        "local_time": "2025-07-15T18:00:00-04:00",
        "timezone": "America/New_York",
        "price_per_kwh": 0.4,
        "grid_load": 1.0,
        "energy_source": "wind",
        "currency": "USD",
        "tariff_version": price_at(FIXED_NOW).tariff_version,
    }


async def test_pricing_at_an_instant_is_reproducible_whatever_the_offset(
    client: httpx.AsyncClient,
) -> None:
    first = await client.get("/api/pricing", params={"at": "2025-01-15T07:45:30.5Z"})
    again = await client.get("/api/pricing", params={"at": "2025-01-15T07:45:30.5Z"})
    shifted = await client.get("/api/pricing", params={"at": "2025-01-15T09:45:30.5+02:00"})
    assert first.status_code == 200
    assert first.json() == again.json() == shifted.json()
    assert first.json()["at"] == "2025-01-15T07:45:30.500000Z"


async def test_the_at_of_a_default_quote_gives_the_same_price_when_sent_back() -> None:
    async with client_for(create_app(settings())) as c:
        now = (await c.get("/api/pricing")).json()
        replay = (await c.get("/api/pricing", params={"at": now["at"]})).json()
    assert replay == now


async def test_the_forecast_lists_24_hourly_prices_by_default(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/pricing/forecast")
    assert response.status_code == 200
    prices = response.json()["prices"]
    assert len(prices) == 24
    assert prices[0]["at"] == "2025-07-15T22:00:00Z"  # the next full hour after FIXED_NOW
    assert all(set(p) == QUOTE_KEYS for p in prices)


@pytest.mark.parametrize("hours", [1, 7, 168])
async def test_the_forecast_lists_n_prices_one_hour_apart(
    client: httpx.AsyncClient, hours: int
) -> None:
    response = await client.get(
        "/api/pricing/forecast", params={"hours": str(hours), "at": "2025-11-01T12:34:56Z"}
    )
    assert response.status_code == 200
    instants = [datetime.fromisoformat(p["at"]) for p in response.json()["prices"]]
    assert len(instants) == hours
    assert instants[0] == datetime(2025, 11, 1, 13, 0, tzinfo=UTC)
    steps = {b - a for a, b in zip(instants, instants[1:], strict=False)}
    assert steps <= {timedelta(hours=1)}


BAD_REQUESTS = [
    ("/api/pricing", "at=yesterday", "at", "at: not an ISO-8601 instant: 'yesterday'"),
    ("/api/pricing", "at=", "at", "at: not an ISO-8601 instant: ''"),
    ("/api/pricing", "at=2025-07-15T18:00:00", "at", "at: must include a UTC offset"),
    ("/api/pricing", "at=2025-07-15", "at", "at: must include a UTC offset"),
    ("/api/pricing", "at=2025-07-15T18:00:00+00:00", "at", "must be sent as %2B"),
    ("/api/pricing", "at=9999-12-31T23:00:00-05:00", "at", "at: out of the supported range"),
    ("/api/pricing", "at=2025-07-15T18:00Z&at=2025-07-16T18:00Z", "at", "given more than once"),
    ("/api/pricing", "when=now", "when", "unknown query parameter: when (allowed: at, station_id)"),
    (
        "/api/pricing",
        "hours=3",
        "hours",
        "unknown query parameter: hours (allowed: at, station_id)",
    ),
    ("/api/pricing", "z=1&y=2", "y", "unknown query parameters: y, z (allowed: at, station_id)"),
    ("/api/pricing/forecast", "hours=0", "hours", "hours: must be from 1 to 168, got 0"),
    ("/api/pricing/forecast", "hours=169", "hours", "hours: must be from 1 to 168, got 169"),
    ("/api/pricing/forecast", "hours=abc", "hours", "hours: not a whole number: 'abc'"),
    ("/api/pricing/forecast", "hours=1.5", "hours", "hours: not a whole number: '1.5'"),
    ("/api/pricing/forecast", "hours=-3", "hours", "hours: not a whole number: '-3'"),
    ("/api/pricing/forecast", "hours=", "hours", "hours: not a whole number: ''"),
    ("/api/pricing/forecast", "at=soon", "at", "at: not an ISO-8601 instant: 'soon'"),
    ("/api/pricing/forecast", "at=9999-12-31T20:30:00Z&hours=10", "at", "out of the supported"),
    ("/api/pricing/forecast", "days=2", "days", "(allowed: at, hours)"),
]


@pytest.mark.parametrize(("path", "query", "parameter", "detail"), BAD_REQUESTS)
async def test_each_bad_parameter_gets_a_400_problem_naming_it(
    client: httpx.AsyncClient, path: str, query: str, parameter: str, detail: str
) -> None:
    response = await client.get(f"{path}?{query}")
    body = assert_problem(response, 400)
    assert body["title"] == "Bad Request"
    assert body["parameter"] == parameter
    assert isinstance(body["detail"], str)
    assert detail in body["detail"]


async def test_a_very_long_bad_value_is_not_echoed_in_full(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/pricing", params={"at": "x" * 10_000})
    body = assert_problem(response, 400)
    assert isinstance(body["detail"], str) and len(body["detail"]) < 200


async def test_an_unknown_route_gets_a_404_problem(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/api/prices"), 404)
    assert body["title"] == "Not Found"
    assert body["detail"] == "no resource at '/api/prices'"


async def test_a_wrong_method_gets_a_405_problem_with_an_allow_header(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/api/pricing")
    body = assert_problem(response, 405)
    assert "GET" in response.headers["allow"]
    assert body["detail"] == f"method POST not allowed (allowed: {response.headers['allow']})"


async def test_liveness_and_readiness_answer_ok(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    ready = await client.get("/readyz")
    assert (health.status_code, health.json()["status"]) == (200, "ok")
    assert (ready.status_code, ready.json()["status"]) == (200, "ready")


async def test_metrics_count_requests_by_route_and_status(client: httpx.AsyncClient) -> None:
    await client.get("/api/pricing")
    await client.get("/api/pricing")
    await client.get("/api/pricing?at=never")
    await client.get("/nowhere/else")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'greenlane_grid_requests_total{route="/api/pricing",status="200"} 2.0' in text
    assert 'greenlane_grid_requests_total{route="/api/pricing",status="400"} 1.0' in text
    assert 'greenlane_grid_requests_total{route="unmatched",status="404"} 1.0' in text
    assert 'greenlane_grid_request_duration_seconds_count{route="/api/pricing"} 3.0' in text
    assert "process_cpu_seconds_total" in text or "python_info" in text


async def test_every_request_gets_a_server_span_with_greenlane_attributes() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(settings(), clock=lambda: FIXED_NOW, tracer_provider=provider)
    parent_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with client_for(app) as c:
        await c.get(
            "/api/pricing",
            params={"at": "2025-07-15T22:00:00Z"},
            headers={"traceparent": f"00-{parent_trace}-00f067aa0ba902b7-01"},
        )
        await c.get("/api/pricing/forecast?hours=x")
    provider.shutdown()
    pricing, forecast = exporter.get_finished_spans()
    assert pricing.name == "GET /api/pricing"
    assert format(pricing.context.trace_id, "032x") == parent_trace
    assert pricing.attributes is not None
    assert pricing.attributes["greenlane.http.status_code"] == 200
    assert pricing.attributes["greenlane.pricing.price_per_kwh"] == 0.4
    assert pricing.attributes["greenlane.pricing.energy_source"] == "wind"
    assert forecast.name == "GET /api/pricing/forecast"
    assert forecast.attributes is not None
    assert forecast.attributes["greenlane.http.status_code"] == 400
    assert all(key.startswith("greenlane.") for key in pricing.attributes)


async def test_two_apps_in_one_process_keep_separate_metrics() -> None:
    first, second = create_app(settings()), create_app(settings())
    async with client_for(first) as a, client_for(second) as b:
        await a.get("/api/pricing")
        metrics = (await b.get("/metrics")).text
    assert 'route="/api/pricing"' not in metrics


async def test_an_unexpected_failure_gets_a_500_problem_and_is_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("tariff table missing")

    monkeypatch.setattr("greenlane.grid.app.price_at", broken)
    app = create_app(settings())
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://grid") as c:
        response = await c.get("/api/pricing")
        metrics = (await c.get("/metrics")).text
    body = assert_problem(response, 500)
    assert "tariff table missing" not in str(body)
    assert 'greenlane_grid_requests_total{route="/api/pricing",status="500"} 1.0' in metrics


async def test_a_station_is_priced_at_the_tariff_without_demand_data(
    client: httpx.AsyncClient,
) -> None:
    plain = (await client.get("/api/pricing")).json()
    response = await client.get("/api/pricing", params={"station_id": "st-1"})
    assert response.status_code == 200
    body = response.json()
    assert body["demand_factor"] == 1.0 and body["site_id"] is None
    assert body["price_per_kwh"] == body["tariff_per_kwh"] == plain["price_per_kwh"]


async def test_a_bad_station_id_gets_a_400_problem_naming_it(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/pricing", params={"station_id": "no spaces"})
    body = assert_problem(response, 400)
    assert body["parameter"] == "station_id"

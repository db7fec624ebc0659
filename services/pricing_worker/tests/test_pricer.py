"""The pricer against the grid app in-process: cache, refusals, the outage rule."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from greenlane.grid.app import create_app
from greenlane.grid.settings import GridSettings
from greenlane.grid.tariff import price_at
from greenlane.pricing_worker.grid import GridClient
from greenlane.pricing_worker.pricer import GridDown, Pricer
from greenlane.pricing_worker.prices import instant_of, to_ms

NOW = datetime(2026, 7, 15, 16, 0, tzinfo=UTC)
NOW_MS = to_ms(NOW)
HOUR = 3_600_000


class Grid(httpx.AsyncBaseTransport):
    """The real grid app over ASGI, which can be switched off or made to refuse."""

    def __init__(self) -> None:
        app = create_app(GridSettings.model_validate({}), clock=lambda: NOW)
        self._app = httpx.ASGITransport(app=app)
        self.mode = "up"
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if self.mode == "down":
            raise httpx.ConnectError("connection refused", request=request)
        if self.mode == "busy":
            return httpx.Response(503, request=request)
        if self.mode == "refuse":  # the grid's own problem answer for a bad instant
            return httpx.Response(
                400, json={"status": 400, "detail": "at: no", "parameter": "at"}, request=request
            )
        if self.mode == "misrouted":  # a wrong URL or an ingress page, not the grid
            return httpx.Response(404, text="<html>not found</html>", request=request)
        return await self._app.handle_async_request(request)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def grid() -> AsyncIterator[Grid]:
    yield Grid()


@pytest.fixture
async def client(grid: Grid) -> AsyncIterator[GridClient]:
    c = GridClient("http://grid", transport=grid)
    yield c
    await c.aclose()


def pricer(client: GridClient, clock: Clock, **options: float) -> Pricer:
    values: dict[str, float] = {
        "cache_ttl": 60.0,
        "cache_max_age": 900.0,
        "attempt_delay": 0.0,
        "curve_past_hours": 2,
        "curve_future_hours": 2,
    }
    values.update(options)
    return Pricer(
        client,
        clock=clock,
        wall_ms=lambda: NOW_MS,
        resolution_ms=1000,
        max_attempts=3,
        **values,  # type: ignore[arg-type]
    )


async def test_instants_are_priced_by_the_grid_then_served_from_the_cache(
    grid: Grid, client: GridClient
) -> None:
    p = pricer(client, Clock())
    instants = [NOW_MS - 600_000, NOW_MS - 1000]
    priced = await p.price(instants)
    assert priced.failed == {}
    for i in instants:
        assert priced.quotes[i].price_per_kwh == price_at(instant_of(i)).price_per_kwh
        assert priced.quotes[i].energy_source == price_at(instant_of(i)).energy_source
        assert not priced.quotes[i].from_cache
    asked = len(grid.paths)
    again = await p.price(instants)
    assert again.quotes == priced.quotes
    assert len(grid.paths) == asked


async def test_an_instant_the_grid_refuses_fails_after_the_bounded_attempts(
    grid: Grid, client: GridClient
) -> None:
    p = pricer(client, Clock())
    grid.mode = "refuse"
    priced = await p.price([NOW_MS])
    assert priced.quotes == {}
    assert "HTTP 400" in priced.failed[NOW_MS]
    assert grid.paths == ["/api/pricing"] * 3
    assert p.grid_ok  # it answered: refusing one instant is not an outage


@pytest.mark.parametrize("outage", ["down", "busy", "misrouted"])
async def test_while_the_grid_is_down_a_fresh_curve_prices_and_marks_the_rows(
    grid: Grid, client: GridClient, outage: str
) -> None:
    clock = Clock()
    p = pricer(client, clock)
    await p.refresh_curve()
    grid.mode = outage
    instant = NOW_MS - 1_234_000
    priced = await p.price([instant])
    quote = priced.quotes[instant]
    assert quote.from_cache
    assert quote.price_per_kwh == pytest.approx(
        price_at(instant_of(instant)).price_per_kwh, abs=1e-3
    )
    assert not p.grid_ok
    # Known down, curve fresh: no request is made (no timeouts to wait for).
    asked = len(grid.paths)
    clock.now += 899
    assert (await p.price([instant + 1000])).quotes[instant + 1000].from_cache
    assert len(grid.paths) == asked


async def test_past_the_maximum_age_of_the_curve_nothing_is_priced(
    grid: Grid, client: GridClient
) -> None:
    clock = Clock()
    p = pricer(client, clock)
    await p.refresh_curve()
    grid.mode = "down"
    clock.now += 900.5
    with pytest.raises(GridDown, match="too old|is 900s old"):
        await p.price([NOW_MS])
    # It probes the grid each time, so it notices the grid is back.
    grid.mode = "up"
    priced = await p.price([NOW_MS])
    assert not priced.quotes[NOW_MS].from_cache
    assert p.grid_ok


async def test_without_any_curve_a_down_grid_blocks_pricing(grid: Grid, client: GridClient) -> None:
    p = pricer(client, Clock())
    grid.mode = "down"
    with pytest.raises(GridDown, match="never fetched"):
        await p.price([NOW_MS])


async def test_an_instant_outside_the_curve_blocks_pricing(grid: Grid, client: GridClient) -> None:
    p = pricer(client, Clock())
    await p.refresh_curve()
    grid.mode = "down"
    with pytest.raises(GridDown, match="does not cover"):
        await p.price([NOW_MS - 10 * HOUR])


async def test_the_curve_covers_the_configured_hours_around_now(client: GridClient) -> None:
    p = pricer(client, Clock())
    await p.refresh_curve()
    curve = p.curve
    assert curve is not None
    assert curve.covers(NOW_MS - 2 * HOUR)
    assert curve.covers(NOW_MS + 2 * HOUR)

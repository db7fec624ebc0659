"""The live planner on the real servers: Valkey, Tansu, PostgreSQL, ingestion, the grid
service, the pricing worker and the simulator, each in the test's loop.

A car that plugs in gets a plan in Redis, a charging_plan event and a setpoint on its
stream; a second car and a forecast change re-plan the site; the API reads and sets
plans and goals; the simulator follows its plan and the priced rows follow it too.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaProducer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis.asyncio import Redis
from stack import read_topic

from greenlane.cli.embedded import EmbeddedKafka, EmbeddedPostgres, EmbeddedRedis, free_port
from greenlane.core import keys
from greenlane.core.events import encode_event, validate_car_status
from greenlane.core.keys import Region
from greenlane.core.migrations import apply_migrations
from greenlane.core.plans import read_plan, read_schedule
from greenlane.core.stations import Site, Station, load_stations
from greenlane.core.telemetry import HttpServer
from greenlane.grid.app import create_app as grid_app
from greenlane.grid.settings import GridSettings
from greenlane.planner.api import create_app as planner_app
from greenlane.planner.live import LivePlanner
from greenlane.planner.settings import PlannerSettings
from greenlane.pricing_worker.service import start_worker
from greenlane.pricing_worker.settings import PricingWorkerSettings
from greenlane.simulator.config import FleetConfig
from greenlane.simulator.fleet import run_fleet
from greenlane.simulator.stats import Stats
from greenlane.v1 import fleet_pb2, fleet_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

TOKEN = "greenlane-secret-token"
METADATA = [("x-api-token", TOKEN)]
MIN = 60_000
LAT, LON = 40.7580, -73.9855
# A small pack, so that a charge takes a minute at real power (as in greenlane dev).
PACK_KWH = 0.5


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Grid:
    """The real grid app on a fixed port; restarted in another time zone, its forecast
    changes under the planner's feet."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: HttpServer | None = None

    async def start(self, timezone: str = "America/New_York") -> None:
        app = grid_app(GridSettings.model_validate({"tariff_timezone": timezone}))
        self._server = HttpServer(app, "127.0.0.1", self.port)
        await self._server.start()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None


@pytest.fixture
async def grid() -> AsyncIterator[Grid]:
    g = Grid()
    await g.start()
    yield g
    await g.stop()


def planner_settings(
    redis: EmbeddedRedis, kafka: EmbeddedKafka, topic: str, grid: Grid, **overrides: object
) -> PlannerSettings:
    values: dict[str, object] = {
        "api_tokens": TOKEN,
        "redis_url": redis.url,
        "kafka_bootstrap_servers": kafka.url,
        "fleet_events_topic": topic,
        "grid_url": grid.url,
        # A region of its own: the replica set and the sites are the test's alone.
        "region": f"t{uuid.uuid4().hex[:10]}",
        "planner_slot_minutes": 1,
        "planner_horizon_hours": 2,
        "planner_coalesce_seconds": 0.05,
        "planner_forecast_refresh_seconds": 0.5,
        "planner_sites_refresh_seconds": 0.5,
        "planner_replay_seconds": 60,
        # Only events re-plan here (and the forecast): the periodic re-plan is far away.
        "planner_replan_seconds": 600,
        "planner_presence_timeout_seconds": 60,
        "planner_pack_kwh": PACK_KWH,
        "planner_car_max_kw": 50,
    }
    values.update(overrides)
    return PlannerSettings.model_validate(values)


class Running:
    """A live planner and its API, served on a free port."""

    def __init__(self, live: LivePlanner, api: HttpServer) -> None:
        self.live = live
        self.api = api

    @property
    def region(self) -> Region:
        return self.live.region

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api.port}"


@pytest.fixture
async def planner_factory(
    redis_server: EmbeddedRedis, kafka_server: EmbeddedKafka, topic: str, grid: Grid
) -> AsyncIterator[Callable[..., Any]]:
    started: list[Running] = []

    async def start(tracer_provider: TracerProvider | None = None, **overrides: object) -> Running:
        settings = planner_settings(redis_server, kafka_server, topic, grid, **overrides)
        live = LivePlanner(settings, tracer_provider=tracer_provider)
        await live.start()
        api = HttpServer(planner_app(settings, live=live), "127.0.0.1", 0)
        await api.start()
        running = Running(live, api)
        started.append(running)
        return running

    yield start
    for running in started:
        await running.api.stop()
        await running.live.stop()


async def eventually(check: Callable[[], Any], within: float = 20.0, what: str = "") -> Any:
    """Await check() until it returns something truthy; its last value otherwise fails."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.1)


async def ready(planner: Running) -> None:
    live = planner.live
    await eventually(
        lambda: (
            live.caught_up and live.curve is not None and live.sites_loaded and live.picture.sites
        ),
        what="the planner caught up, with a forecast and its sites",
    )


class CarStream:
    """One car's open telemetry stream: send a status, read its answer."""

    def __init__(self, stub: fleet_pb2_grpc.FleetTelemetryStub, car_id: str) -> None:
        self.car_id = car_id
        self._queue: asyncio.Queue[fleet_pb2.CarStatus | None] = asyncio.Queue()
        self._call = stub.StreamTelemetry(self._requests(), metadata=METADATA)

    async def _requests(self) -> AsyncIterator[fleet_pb2.CarStatus]:
        while (status := await self._queue.get()) is not None:
            yield status

    async def send(
        self, battery: float, station_id: str, **goal: float
    ) -> fleet_pb2.BookingResponse:
        await self._queue.put(
            fleet_pb2.CarStatus(
                car_id=self.car_id,
                lat=LAT,
                lon=LON,
                battery=battery,
                velocity=0.0,
                timestamp=now_ms(),
                station_id=station_id,
                **goal,  # type: ignore[arg-type]
            )
        )
        answer = await self._call.read()
        assert isinstance(answer, fleet_pb2.BookingResponse)
        return answer

    async def close(self) -> None:
        await self._queue.put(None)
        self._call.cancel()


@pytest.fixture
async def stub(ingestion: object) -> AsyncIterator[fleet_pb2_grpc.FleetTelemetryStub]:
    import grpc

    channel = grpc.aio.insecure_channel(f"127.0.0.1:{ingestion.port}")  # type: ignore[attr-defined]
    yield fleet_pb2_grpc.FleetTelemetryStub(channel)
    await channel.close()


async def load_site(
    redis: Redis, region: Region, site_id: str, limit_kw: float, power_kw: float
) -> str:
    station_id = f"{site_id}-st"
    await load_stations(
        redis,
        [Station(station_id, "Test", LAT, LON, 4, power_kw, site_id)],
        region,
        [Site(site_id, "Test site", limit_kw)],
    )
    return station_id


# --------------------------------------------------------------------------- the tests


async def test_a_car_that_plugs_in_gets_a_plan_in_redis_a_charging_plan_event_and_a_setpoint(
    planner_factory: Callable[..., Any],
    stub: fleet_pb2_grpc.FleetTelemetryStub,
    redis_client: Redis,
    kafka_server: EmbeddedKafka,
    topic: str,
) -> None:
    planner = await planner_factory()
    # Ingestion reads stations of the default region: the site lives there too.
    station = await load_site(redis_client, Region(), "site-a", 22.0, 22.0)
    await load_site(redis_client, planner.region, "site-a", 22.0, 22.0)
    await ready(planner)
    car = CarStream(stub, "car-plug")
    depart = now_ms() + 30 * MIN
    try:
        first = await car.send(40.0, station, target_battery=80.0, depart_at=depart)
        assert first.status == fleet_pb2.ACCEPTED
        plan = await eventually(
            lambda: read_plan(redis_client, "car-plug"), what="a plan in plan:{car_id}"
        )
        answer = await car.send(40.4, station, target_battery=80.0, depart_at=depart)
    finally:
        await car.close()

    # The plan: its site and station, per-slot kW, energy to the goal, cost, feasible.
    assert (plan.site_id, plan.station_id, plan.state) == ("site-a", station, "plugged_in")
    assert plan.slot_minutes == 1 and len(plan.power_kw) == 120
    assert plan.expected_kwh == pytest.approx(0.4 * PACK_KWH, rel=1e-6)
    assert plan.feasible and plan.shortfall_kwh == 0.0 and plan.reason == ""
    assert max(plan.power_kw) <= 22.0 + 1e-9 and plan.expected_cost > 0
    assert await redis_client.pttl(keys.plan("car-plug")) > 0  # it expires with its plan
    # The setpoint on the stream is the plan's slot at that status, until the slot ends.
    assert answer.HasField("setpoint")
    assert answer.setpoint.site_id == "site-a"
    expected = plan.setpoint(answer.timestamp)
    assert expected is not None
    assert answer.setpoint.power_kw == pytest.approx(expected[0])
    assert answer.setpoint.until == expected[1]
    assert first.status == fleet_pb2.ACCEPTED and not first.HasField("booking")
    # The charging_plan event, keyed by the car, in the shape the hub reads.
    events = [
        e for e in await read_topic(kafka_server.url, topic) if e["event_type"] == "charging_plan"
    ]
    assert events, "no charging_plan event"
    event = events[-1]
    assert event["_key"] == "car-plug" and event["site_id"] == "site-a"
    assert event["station_id"] == station and len(event["power_kw"]) == 120  # type: ignore[arg-type]
    assert event["setpoint_until"] > event["start"]  # type: ignore[operator]
    for name in ("expected_kwh", "expected_cost", "feasible", "shortfall_kwh", "reason"):
        assert name in event


async def test_a_second_car_and_then_a_forecast_change_re_plan_the_site(
    planner_factory: Callable[..., Any],
    stub: fleet_pb2_grpc.FleetTelemetryStub,
    redis_client: Redis,
    grid: Grid,
) -> None:
    planner = await planner_factory()
    await load_site(redis_client, Region(), "site-b", 30.0, 30.0)
    station = await load_site(redis_client, planner.region, "site-b", 30.0, 30.0)
    await ready(planner)
    a, b = CarStream(stub, "car-a"), CarStream(stub, "car-b")
    depart = now_ms() + 20 * MIN
    try:
        await a.send(10.0, station, target_battery=90.0, depart_at=depart)
        alone = await eventually(
            lambda: read_schedule(redis_client, planner.region, "site-b"),
            what="the site planned with car-a",
        )
        await eventually(
            lambda: _cars(redis_client, planner.region, "site-b", {"car-a"}), what="car-a planned"
        )
        alone = await read_schedule(redis_client, planner.region, "site-b")
        await b.send(10.0, station, target_battery=90.0, depart_at=depart)
        both = await eventually(
            lambda: _cars(redis_client, planner.region, "site-b", {"car-a", "car-b"}),
            what="the site re-planned with both cars",
        )
    finally:
        await a.close()
        await b.close()
    assert alone is not None
    assert both.timestamp > alone.timestamp
    # Together under the limit in every slot: car-a's plan was made again for two.
    assert max(both.site_kw()) <= 30.0 + 1e-6
    plan_a = await read_plan(redis_client, "car-a")
    assert plan_a is not None and plan_a.timestamp == both.timestamp

    # The grid's tariff moves (another time zone): the next forecast re-plans the site.
    await grid.stop()
    await grid.start("Asia/Tokyo")
    moved = await eventually(
        lambda: _newer(redis_client, planner.region, "site-b", both.timestamp),
        within=30,
        what="a re-plan after the forecast changed",
    )
    assert moved.price != both.price  # priced off the new curve
    assert {c.car_id for c in moved.cars} == {"car-a", "car-b"}


async def _cars(redis: Redis, region: Region, site_id: str, cars: set[str]) -> Any:
    schedule = await read_schedule(redis, region, site_id)
    return schedule if schedule and {c.car_id for c in schedule.cars} == cars else None


async def _newer(redis: Redis, region: Region, site_id: str, than: int) -> Any:
    schedule = await read_schedule(redis, region, site_id)
    return schedule if schedule and schedule.timestamp > than else None


async def test_the_api_reads_plans_and_schedules_and_a_goal_put_there_re_plans_the_car(
    planner_factory: Callable[..., Any],
    stub: fleet_pb2_grpc.FleetTelemetryStub,
    redis_client: Redis,
) -> None:
    planner = await planner_factory()
    await load_site(redis_client, Region(), "site-c", 50.0, 50.0)
    station = await load_site(redis_client, planner.region, "site-c", 50.0, 50.0)
    await ready(planner)
    car = CarStream(stub, "car-api")
    headers = {"x-api-token": TOKEN}
    try:
        await car.send(20.0, station)  # no goal of its own: the fleet's default
        before = await eventually(lambda: read_plan(redis_client, "car-api"), what="a plan")
        async with httpx.AsyncClient(base_url=planner.url, headers=headers, timeout=10) as api:
            got = await api.get("/api/plans/car-api")
            schedule = await api.get("/api/sites/site-c/schedule")
            depart = now_ms() + 45 * MIN
            put = await api.put(
                "/api/cars/car-api/goal",
                json={"target_battery": 60, "depart_at": depart, "pack_kwh": 1.0},
            )
            after = await eventually(
                lambda: _plan_newer(redis_client, "car-api", before.timestamp),
                what="a re-plan for the new goal",
            )
            bad = await api.put(
                "/api/cars/car-api/goal", json={"target_battery": 120, "depart_at": depart}
            )
            missing = await api.put("/api/cars/car-api/goal", json={"target_battery": 60})
            late = await api.put(
                "/api/cars/car-api/goal", json={"target_battery": 60, "depart_at": 5}
            )
            unknown = await api.get("/api/sites/nowhere/schedule")
            no_plan = await api.get("/api/plans/car-nobody")
            no_token = await api.get(
                "/api/plans/car-api", headers={"x-api-token": "wrong-token-123456"}
            )
    finally:
        await car.close()

    assert got.status_code == 200
    body = got.json()
    assert body["site_id"] == "site-c" and body["station_id"] == station
    assert body["expected_kwh"] == pytest.approx(0.6 * PACK_KWH)  # the fleet's 80 %
    assert body["setpoint_kw"] is not None and body["setpoint_until"] > body["start"]
    assert schedule.status_code == 200
    slots = schedule.json()["slots"]
    assert len(slots) == 120 and slots[0]["limit_kw"] == 50.0
    assert set(slots[0]) == {"start", "price", "limit_kw", "site_kw", "cars"}
    assert put.status_code == 200, put.text
    assert put.json()["depart_at"] == depart and put.json()["pack_kwh"] == 1.0
    # The API's goal and pack: 40 % of 1 kWh by the new departure.
    assert after.expected_kwh == pytest.approx(0.4)
    assert await redis_client.hget(keys.goal("car-api"), "target_battery") == b"60.0"
    for answer, field in ((bad, "target_battery"), (late, "depart_at"), (missing, "depart_at")):
        assert answer.status_code == 422
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["field"] == field
    assert unknown.status_code == 404 and "nowhere" in unknown.json()["detail"]
    assert no_plan.status_code == 404 and no_plan.json()["detail"].startswith("car_id:")
    assert no_token.status_code == 401


async def test_a_fleet_reads_and_steers_only_its_own_cars_plans(
    planner_factory: Callable[..., Any],
    stub: fleet_pb2_grpc.FleetTelemetryStub,
    redis_client: Redis,
) -> None:
    # The car is written with TOKEN, the dev token: it belongs to the fleet `dev`.
    reader, other = "dev-fleet-reader-token-123456", "acme-fleet-planner-token-123456"
    credentials = [
        {"token": reader, "fleet": "dev", "scopes": ["plans:read"], "name": "reader"},
        {"token": other, "fleet": "acme", "scopes": ["plans:read", "plans:write"]},
    ]
    planner = await planner_factory(credentials=json.dumps(credentials))
    await load_site(redis_client, Region(), "site-f", 50.0, 50.0)
    station = await load_site(redis_client, planner.region, "site-f", 50.0, 50.0)
    await ready(planner)
    car = CarStream(stub, "car-fleet")
    goal = {"target_battery": 60, "depart_at": now_ms() + 45 * MIN}
    try:
        await car.send(20.0, station)
        await eventually(lambda: read_plan(redis_client, "car-fleet"), what="a plan")
        async with httpx.AsyncClient(base_url=planner.url, timeout=10) as api:
            as_reader = {"x-api-token": reader}
            as_acme = {"x-api-token": other}
            own_plan = await api.get("/api/plans/car-fleet", headers=as_reader)
            own_schedule = await api.get("/api/sites/site-f/schedule", headers=as_reader)
            no_scope = await api.put("/api/cars/car-fleet/goal", json=goal, headers=as_reader)
            acme_plan = await api.get("/api/plans/car-fleet", headers=as_acme)
            acme_schedule = await api.get("/api/sites/site-f/schedule", headers=as_acme)
            acme_goal = await api.put("/api/cars/car-fleet/goal", json=goal, headers=as_acme)
    finally:
        await car.close()

    assert own_plan.status_code == 200 and own_plan.json()["car_id"] == "car-fleet"
    mine = own_schedule.json()
    assert [p["car_id"] for p in mine["car_plans"]] == ["car-fleet"]
    assert any("car-fleet" in slot["cars"] for slot in mine["slots"])
    assert no_scope.status_code == 403 and "plans:write" in no_scope.json()["detail"]
    # Another fleet: the car's plan is as unknown as a car that does not exist, the
    # site's schedule keeps its totals but names none of the other fleet's cars, and
    # its goal is refused.
    assert acme_plan.status_code == 404
    theirs = acme_schedule.json()
    assert acme_schedule.status_code == 200 and theirs["car_plans"] == []
    assert all(slot["cars"] == {} for slot in theirs["slots"])
    assert [s["site_kw"] for s in theirs["slots"]] == [s["site_kw"] for s in mine["slots"]]
    assert acme_goal.status_code == 403 and "another fleet" in acme_goal.json()["detail"]
    assert await redis_client.exists(keys.goal("car-fleet")) == 0


def traceparent(n: int) -> list[tuple[str, bytes]]:
    """Kafka headers of a sampled trace numbered n, as ingestion writes them."""
    return [("traceparent", f"00-{n:032x}-{n:016x}-01".encode())]


async def test_a_re_plan_continues_the_trace_of_the_event_that_caused_it_and_links_the_others(
    planner_factory: Callable[..., Any],
    stub: fleet_pb2_grpc.FleetTelemetryStub,  # ingestion: it makes the topic
    redis_client: Redis,
    kafka_server: EmbeddedKafka,
    topic: str,
) -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    planner = await planner_factory(tracer_provider=provider, planner_coalesce_seconds=0.5)
    station = await load_site(redis_client, planner.region, "site-t", 50.0, 50.0)
    await ready(planner)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_server.url)
    await producer.start()
    try:
        # Two cars plug in within one coalescing window, each status traced by its car.
        for n, car_id in ((0xA1, "car-trace-1"), (0xB2, "car-trace-2")):
            state = validate_car_status(
                now_ms=now_ms(),
                car_id=car_id,
                lat=LAT,
                lon=LON,
                battery=30.0,
                velocity=0.0,
                timestamp=now_ms(),
                station_id=station,
            )
            await producer.send_and_wait(
                topic,
                encode_event("telemetry", state),
                key=car_id.encode(),
                headers=traceparent(n),
            )
    finally:
        await producer.stop()

    def replan() -> Any:
        for span in spans.get_finished_spans():
            if span.name == "planner.replan" and span.attributes.get("greenlane.planner.traced"):
                return span
        return None

    span = await eventually(replan, what="a re-plan span of the traced events")
    await eventually(lambda: read_plan(redis_client, "car-trace-2"), what="a plan")
    events = await read_topic(kafka_server.url, topic)

    assert span.parent is not None and span.context is not None
    # The cars are on two partitions, read in either order: one trace is continued, the
    # other linked.
    assert span.context.trace_id == span.parent.span_id
    linked = [link.context.trace_id for link in span.links]
    assert sorted([span.context.trace_id, *linked]) == [0xA1, 0xB2]
    assert span.attributes["greenlane.planner.site_id"] == "site-t"
    assert span.attributes["greenlane.planner.traced"] == 2
    # The plan events carry the re-plan's trace, so their consumers join it.
    plan_events = [e for e in events if e["event_type"] == "charging_plan"]
    assert plan_events
    carried = {e["_headers"].get("traceparent", "")[3:35] for e in plan_events}
    assert f"{span.context.trace_id:032x}" in carried


async def greenlane_cli(*args: str) -> tuple[int, str, str]:
    """`greenlane ARGS` in a child process; the test's loop keeps serving the planner."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENLANE_")}
    env.update({"GREENLANE_API_TOKEN": TOKEN, "COLUMNS": "200"})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "greenlane.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_greenlane_plan_site_and_car_print_the_live_plans_as_tables_and_as_json(
    planner_factory: Callable[..., Any],
    stub: fleet_pb2_grpc.FleetTelemetryStub,
    redis_client: Redis,
) -> None:
    planner = await planner_factory()
    await load_site(redis_client, Region(), "site-e", 20.0, 50.0)
    station = await load_site(redis_client, planner.region, "site-e", 20.0, 50.0)
    await ready(planner)
    car = CarStream(stub, "car-cli")
    try:
        await car.send(30.0, station, target_battery=70.0, depart_at=now_ms() + 40 * MIN)
        await eventually(lambda: read_plan(redis_client, "car-cli"), what="a plan")
        url = ("--planner-url", planner.url)
        site_code, site_out, _ = await greenlane_cli("plan", "site", "site-e", "--slots", "3", *url)
        site_json = await greenlane_cli("plan", "site", "site-e", "--json", *url)
        car_code, car_out, _ = await greenlane_cli("plan", "car", "car-cli", *url)
        car_json = await greenlane_cli("plan", "car", "car-cli", "--json", *url)
        unknown = await greenlane_cli("plan", "site", "nowhere", *url)
        bad_id = await greenlane_cli("plan", "car", "not an id", *url)
    finally:
        await car.close()

    assert site_code == 0, site_out
    # The table: a title with the site, a row per slot (3 asked), a column per car.
    assert "site site-e (Test site): 1 cars" in site_out
    header = next(line for line in site_out.splitlines() if "limit kW" in line)
    assert "$/kWh" in header and "site kW" in header and "car-cli" in header
    rows = [line for line in site_out.splitlines() if " 20.0 " in line]
    assert len(rows) == 3, site_out  # the 20 kW limit in each slot shown
    assert "117 more slots: --slots 120" in site_out
    assert site_json[0] == 0
    schedule = json.loads(site_json[1])
    assert schedule["site_id"] == "site-e" and len(schedule["slots"]) == 120
    assert [c["car_id"] for c in schedule["car_plans"]] == ["car-cli"]
    assert car_code == 0, car_out
    assert f"car car-cli at site-e ({station}, plugged_in)" in car_out
    assert "goal met" in car_out
    plan = json.loads(car_json[1])
    assert plan["car_id"] == "car-cli" and plan["expected_kwh"] == pytest.approx(0.4 * PACK_KWH)
    assert max(plan["power_kw"]) <= 20.0 + 1e-9  # the site's limit, below the connector
    # An unknown site: exit 1 with the planner's reason; a bad id: exit 2, naming it.
    assert unknown[0] == 1 and "the planner answered 404" in unknown[1]
    assert "nowhere" in unknown[1]
    assert bad_id[0] == 2 and "'not an id' is not an id" in bad_id[2]


async def _plan_newer(redis: Redis, car_id: str, than: int) -> Any:
    plan = await read_plan(redis, car_id)
    return plan if plan and plan.timestamp > than else None


@pytest.fixture
async def database(postgres_server: EmbeddedPostgres) -> AsyncIterator[str]:
    name = f"planner_{uuid.uuid4().hex[:10]}"
    admin = postgres_server.url.rsplit("/", 1)[0] + "/postgres"
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    url = postgres_server.url.rsplit("/", 1)[0] + "/" + name
    await asyncio.to_thread(apply_migrations, url)
    yield url
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
        await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


async def test_the_simulator_follows_its_plan_and_the_priced_rows_follow_the_plan(
    planner_factory: Callable[..., Any],
    ingestion: object,
    redis_client: Redis,
    kafka_server: EmbeddedKafka,
    topic: str,
    grid: Grid,
    database: str,
) -> None:
    # Two cars behind one 50 kW connection, each able to draw 50 kW: at full power on
    # arrival they would draw 100 kW together.
    planner = await planner_factory()
    await load_site(redis_client, Region(), "site-d", 50.0, 50.0)
    station = await load_site(redis_client, planner.region, "site-d", 50.0, 50.0)
    await ready(planner)
    worker = await start_worker(
        PricingWorkerSettings.model_validate(
            {
                "kafka_bootstrap_servers": kafka_server.url,
                "database_url": database,
                "grid_url": grid.url,
                "fleet_events_topic": topic,
                "pricing_group_id": f"pricing-{uuid.uuid4().hex[:8]}",
                "metrics_host": "127.0.0.1",
                "metrics_port": 0,
                "pricing_batch_linger_ms": 50,
                "pricing_pack_capacity_kwh": PACK_KWH,
            }
        )
    )
    try:
        config = FleetConfig(
            cars=2,
            interval=1.0,
            duration=80.0,
            seed=5,
            target=f"127.0.0.1:{ingestion.port}",  # type: ignore[attr-defined]
            # A box of ~100 m around the station: both book it and arrive in seconds.
            bbox=(LAT - 0.0005, LON - 0.0006, LAT + 0.0005, LON + 0.0006),
            initial_battery=(8.0, 12.0),
            pack_kwh=PACK_KWH,
            max_charge_kw=50.0,
            stop_minutes=(3.0, 3.0),
            charge_target=(80.0, 80.0),
        )
        stats = await asyncio.wait_for(run_fleet(config, Stats()), 150)
        await asyncio.sleep(2.0)  # the last rows are written
    finally:
        await worker.stop()

    # The cars followed setpoints: their answers carried them, their updates used them.
    assert stats.rejected == 0 and stats.charging_sessions_started == 2
    assert stats.setpoints > 0 and stats.planned_updates > stats.unplanned_updates
    events = await read_topic(kafka_server.url, topic)
    plans = [e for e in events if e["event_type"] == "charging_plan" and e["station_id"] == station]
    assert {e["car_id"] for e in plans} == {"car-00000", "car-00001"}
    async with await psycopg.AsyncConnection.connect(database) as conn:
        cur = await conn.execute(
            "SELECT car_id, time, kwh_usage, cost, battery FROM charging_sessions "
            "WHERE station_id = %s AND session_kind = 'charging' ORDER BY car_id, time",
            (station,),
        )
        rows = await cur.fetchall()
    assert rows, "no priced charging row"
    by_car: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        by_car[row[0]].append(row)
    # Each car's priced energy is its plan's: from its battery at plug-in to its goal.
    for car_id, car_rows in by_car.items():
        first_plan = next(
            e for e in plans if e["car_id"] == car_id and e["setpoint_kw"] is not None
        )
        delivered = sum(r[2] for r in car_rows)
        start_battery = float(car_rows[0][4])
        assert delivered == pytest.approx((80.0 - start_battery) / 100 * PACK_KWH, rel=0.05)
        assert float(sum(r[3] for r in car_rows)) == pytest.approx(
            float(first_plan["expected_cost"]) * delivered / float(first_plan["expected_kwh"]),  # type: ignore[arg-type]
            rel=0.1,
        )
    # The priced rows keep the site under its 50 kW at every second, as planned
    # (each car's first two updates come before its first plan: full power, not counted).
    draw: dict[int, float] = defaultdict(float)
    for car_rows in by_car.values():
        for before, row in zip(car_rows[2:], car_rows[3:], strict=False):
            seconds = (row[1] - before[1]).total_seconds()
            draw[int(row[1].timestamp())] += row[2] / (seconds / 3600.0)
    assert draw and max(draw.values()) <= 50.0 * 1.15, max(draw.values())
    assert (await redis_client.exists(keys.plan("car-00000"))) == 1

"""The dashboard in real headless Chromium, against the hub fed by the real platform.

Valkey and Tansu (session servers), ingestion, the hub and the simulator as processes,
the page driven by Playwright on Debian's chromium. Saves a screenshot (and, with
GREENLANE_SCREENSHOT=PATH, e.g. `make screenshot`, writes it there too).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hubtools import DEV_TOKEN, ROOT, build_dashboard, wait_http
from playwright.async_api import Page, async_playwright
from redis.asyncio import Redis

from greenlane.cli.embedded import EmbeddedKafka, EmbeddedRedis, free_port, spawn, stop_process
from greenlane.core import keys
from greenlane.core.kafka import ensure_topic
from greenlane.core.redis_state import read_car_state
from greenlane.core.stations import load_stations, parse_stations

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
CARS = 50  # the dev fleet's size (greenlane dev)
STATION_FILE = ROOT / "data" / "stations" / "manhattan.csv"
POSITIONS = "Object.fromEntries([...__greenlane.model.cars].map(([id, c]) => [id, [c.lat, c.lon]]))"


class Platform:
    def __init__(self, tmp: Path, redis: EmbeddedRedis, kafka: EmbeddedKafka, topic: str):
        self.tmp, self.topic = tmp, topic
        self.hub_port = free_port()
        self.ingestion_port, self.metrics_port, self.api_port = (
            free_port(),
            free_port(),
            free_port(),
        )
        self.env = {
            **os.environ,
            "GREENLANE_ENVIRONMENT": "development",
            "GREENLANE_API_TOKENS": DEV_TOKEN,
            "GREENLANE_API_TOKEN": DEV_TOKEN,
            "GREENLANE_REDIS_URL": redis.url,
            "GREENLANE_KAFKA_BOOTSTRAP_SERVERS": kafka.url,
            "GREENLANE_FLEET_EVENTS_TOPIC": topic,
            "GREENLANE_LOG_LEVEL": "WARNING",
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start_ingestion(self) -> None:
        env = self.env | {
            "GREENLANE_INGESTION_HOST": "127.0.0.1",
            "GREENLANE_INGESTION_PORT": str(self.ingestion_port),
            "GREENLANE_METRICS_HOST": "127.0.0.1",
            "GREENLANE_METRICS_PORT": str(self.metrics_port),
            "GREENLANE_BOOKING_API_PORT": str(self.api_port),
        }
        proc = spawn(
            [sys.executable, "-m", "greenlane.ingestion"], self.tmp / "ingestion.log", env=env
        )
        self.procs["ingestion"] = proc
        wait_http(f"http://127.0.0.1:{self.metrics_port}/readyz", 60, proc)

    def start_hub(self) -> None:
        env = self.env | {
            "GREENLANE_HUB_HOST": "127.0.0.1",
            "GREENLANE_HUB_PORT": str(self.hub_port),
        }
        proc = spawn([sys.executable, "-m", "greenlane.hub"], self.tmp / "hub.log", env=env)
        self.procs["hub"] = proc
        wait_http(f"http://127.0.0.1:{self.hub_port}/readyz", 60, proc)

    def stop_hub(self) -> None:
        stop_process(self.procs.pop("hub"), signal.SIGTERM, 15.0)

    def start_simulator(self, seconds: float) -> None:
        argv = [
            sys.executable,
            "-m",
            "greenlane.simulator",
            "--target",
            f"127.0.0.1:{self.ingestion_port}",
            "--cars",
            str(CARS),
            "--interval",
            "1",
            "--duration",
            str(seconds),
            "--seed",
            "7",
            "--initial-battery",
            "8,100",
            "--charge-speedup",
            "30",
            "--no-progress",
            "--json",
        ]
        self.procs["simulator"] = spawn(argv, self.tmp / "simulator.log", env=self.env)

    def simulator_done(self) -> bool:
        return self.procs["simulator"].poll() is not None

    def stop(self) -> None:
        for name in ("simulator", "hub", "ingestion"):
            if name in self.procs:
                stop_process(self.procs.pop(name), signal.SIGTERM, 15.0)


@pytest.fixture
async def platform(
    tmp_path: Path,
    redis_server: EmbeddedRedis,
    kafka_server: EmbeddedKafka,
    topic: str,
    redis_client: Redis,
) -> AsyncIterator[Platform]:
    await asyncio.to_thread(build_dashboard)
    stations = parse_stations(STATION_FILE.read_text())
    await load_stations(redis_client, stations)
    await ensure_topic(kafka_server.url, topic, partitions=3)
    running = Platform(tmp_path, redis_server, kafka_server, topic)
    try:
        await asyncio.to_thread(running.start_ingestion)
        await asyncio.to_thread(running.start_hub)
        yield running
    finally:
        await asyncio.to_thread(running.stop)


async def until(page: Page, expression: str, seconds: float = 30.0) -> Any:
    await page.wait_for_function(expression, timeout=seconds * 1000, polling=200)
    return await page.evaluate(expression)


async def panel(page: Page) -> dict[str, str]:
    names = ["cars_online", "low_battery", "critical_battery", "active_bookings"]
    return {n: (await page.text_content(f"#f-{n}") or "").strip() for n in names}


def active_bookings(api_port: int, cars: list[str]) -> int:
    """Active bookings as the booking store tells them (its HTTP API, whatever its keys)."""
    import json
    import urllib.request

    active = 0
    for car in cars:
        request = urllib.request.Request(f"http://127.0.0.1:{api_port}/api/cars/{car}/bookings")
        request.add_header("x-api-token", DEV_TOKEN)
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            bookings = json.loads(answer.read())["bookings"]
        active += sum(1 for b in bookings if b.get("status") == "active")
    return active


async def redis_figures(client: Redis, api_port: int) -> dict[str, str]:
    cars = [m.decode() for m in await client.zrange(keys.FLEET_LOCATIONS, 0, -1)]
    batteries = [float((await read_car_state(client, c))["battery"]) for c in cars]
    live = await asyncio.to_thread(active_bookings, api_port, cars)
    return {
        "cars_online": str(len(cars)),
        "low_battery": str(sum(b < 20 for b in batteries)),
        "critical_battery": str(sum(b < 15 for b in batteries)),
        "active_bookings": str(live),
    }


async def test_the_dashboard_shows_the_live_fleet_and_recovers_from_a_hub_restart(
    platform: Platform, redis_client: Redis, tmp_path: Path
) -> None:
    platform.start_simulator(seconds=25)
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"http://127.0.0.1:{platform.hub_port}/#token={DEV_TOKEN}")
            # The token leaves the address bar at once: it is kept for the tab only.
            await until(page, "location.hash === ''", seconds=10)
            assert "token" not in page.url

            # The simulated cars and the stations are on the map.
            await until(page, f"window.__greenlane?.counts.cars >= {CARS}")
            stations = len(parse_stations(STATION_FILE.read_text()))
            await until(page, f"window.__greenlane.counts.stations === {stations}")
            before = await page.evaluate(POSITIONS)
            # Drawn, not only held: picking the canvas at a car's pixel finds that car.
            picked = await page.evaluate(
                """() => { const g = __greenlane, [id, c] = [...g.model.cars][0];
                const p = g.map.project([c.lon, c.lat]);
                const hit = g.overlay.pickObject({x: p.x, y: p.y, radius: 4, layerIds: ['cars']});
                return hit && hit.object[0]; }"""
            )
            assert picked is not None

            # Positions change.
            await page.wait_for_timeout(3000)
            after = await page.evaluate(POSITIONS)
            moved = [car for car in before if car in after and before[car] != after[car]]
            assert len(moved) >= CARS // 2, f"only {len(moved)} cars moved"

            # A booking appears as a line from the car to its station, drawn on the canvas.
            await until(page, "window.__greenlane.counts.bookingLines >= 1", seconds=40)
            line_hit = await page.evaluate(
                """() => { const g = __greenlane;
                for (const [id, b] of g.model.bookings) {
                  const c = g.model.cars.get(b.car_id), s = g.model.stations.get(b.station_id);
                  if (!c || !s) continue;
                  const p = g.map.project([(c.lon + s.lon) / 2, (c.lat + s.lat) / 2]);
                  const hit = g.overlay.pickObject(
                    {x: p.x, y: p.y, radius: 3, layerIds: ['bookings']});
                  if (hit) return hit.object.id;
                } return null; }"""
            )
            assert line_hit is not None

            # Once the fleet stops, the panel's counts are Redis's counts.
            deadline = time.monotonic() + 60
            while not platform.simulator_done():
                assert time.monotonic() < deadline, "the simulator did not finish"
                await asyncio.sleep(0.5)
            await page.wait_for_timeout(2500)  # the last frames and a stats update
            assert await panel(page) == await redis_figures(redis_client, platform.api_port)
            shot = tmp_path / "dashboard.png"
            await page.screenshot(path=str(shot))
            print(f"screenshot: {shot}")
            if target := os.environ.get("GREENLANE_SCREENSHOT"):
                shutil.copyfile(shot, ROOT / target)
            # The search box finds a car and the panel shows its state.
            await page.fill("#search-input", "car-0000")
            await page.press("#search-input", "Enter")
            await until(page, "!document.getElementById('car').hidden")
            assert "battery" in (await page.text_content("#car") or "")
            await page.screenshot(path=str(tmp_path / "dashboard-car.png"))

            # The hub restarts; the page recovers by itself, without a reload.
            await page.evaluate("window.__still_the_same_page = true")
            epoch = await page.evaluate("__greenlane.model.epoch")
            cars_shown = await page.evaluate("__greenlane.counts.cars")
            await asyncio.to_thread(platform.stop_hub)
            await until(page, "window.__greenlane.statusText() !== 'live'", seconds=15)
            await asyncio.to_thread(platform.start_hub)
            await until(page, f"__greenlane.model.epoch !== {epoch!r}", seconds=30)
            await until(page, "window.__greenlane.statusText() === 'live'", seconds=30)
            await until(page, f"__greenlane.counts.cars === {cars_shown}", seconds=30)
            assert await page.evaluate("window.__still_the_same_page") is True
            assert errors == []
        finally:
            await browser.close()

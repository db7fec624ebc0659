"""The hub's moving parts in one event loop: follower, ticks, stations, energy figures."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry
from redis.exceptions import RedisError

from greenlane.core.keys import Region
from greenlane.core.lifecycle import restarting
from greenlane.core.redis_state import RedisClient, connect
from greenlane.core.stations import Station as StationInfo
from greenlane.hub.energy import energy_today
from greenlane.hub.follower import Follower
from greenlane.hub.hub import Hub
from greenlane.hub.metrics import HubMetrics, create_metrics
from greenlane.hub.settings import HubSettings
from greenlane.hub.state import FleetState
from greenlane.hub.stations import read_stations

log = logging.getLogger(__name__)

# services/hub/web/dist in a source tree (the package is installed editable there).
SOURCE_WEB_DIR = Path(__file__).resolve().parents[3] / "web" / "dist"


def web_dir(settings: HubSettings) -> Path:
    """Where the built dashboard is (it may be missing: the hub then says how to build it)."""
    return Path(settings.hub_web_dir) if settings.hub_web_dir else SOURCE_WEB_DIR


class HubService:
    """Owns the hub and its background tasks; start() then stop(), once."""

    def __init__(
        self,
        settings: HubSettings,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics: HubMetrics
        self.metrics, self.registry = create_metrics(registry)
        self.state = FleetState(
            # Positions of an earlier hub instance are always below this one's first.
            seq_base=int(clock() * 1_000_000),
            max_tombstones=settings.hub_max_tombstones,
            online_ms=int(settings.hub_online_seconds * 1000),
            forget_ms=int(settings.hub_forget_seconds * 1000),
            booking_threshold=settings.booking_threshold_percent,
            history_ms=int(settings.hub_history_seconds * 1000),
            history_step_ms=int(settings.hub_history_step_seconds * 1000),
        )
        self.hub: Hub | None = None
        self.follower: Follower | None = None
        self.stations_loaded = False
        self.clients = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._redis: RedisClient | None = None
        self._stations: list[StationInfo] | None = None

    @property
    def running_hub(self) -> Hub:
        assert self.hub is not None, "HubService.start() first"
        return self.hub

    async def start(self) -> None:
        s = self.settings
        self.hub = Hub(self.state, self.metrics, slow_client_ticks=s.hub_slow_client_ticks)
        self.hub.extra_stats = {"energy_kwh_today": None, "cost_today": None, "lag_seconds": 0.0}
        self.follower = Follower(
            self.hub,
            self.metrics,
            bootstrap_servers=s.kafka_bootstrap_servers,
            topic=s.fleet_events_topic,
            replay_seconds=s.hub_replay_seconds,
            clock=self.clock,
        )
        self._redis = connect(s.redis_url, cluster=s.redis_cluster, max_connections=4)
        self._tasks = [
            asyncio.create_task(self._guard("follower", self.follower.run), name="hub-follower"),
            asyncio.create_task(self._guard("ticker", self._ticks), name="hub-ticker"),
            asyncio.create_task(self._guard("stations", self._station_loop), name="hub-stations"),
        ]
        if s.database_url is not None:
            self._tasks.append(
                asyncio.create_task(self._guard("energy", self._energy_loop), name="hub-energy")
            )

    async def _guard(self, name: str, run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        """Run a loop until stop; a crash is logged and the loop restarts after a pause."""
        await restarting(f"hub {name}", run, self._stop, log)

    async def stop(self) -> None:
        self._stop.set()
        if self.hub is not None:
            self.hub.close()  # WebSocket clients are told to come back (1012)
        for task in self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), 10.0)
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._redis is not None:
            await self._redis.aclose()

    async def _ticks(self, stop: asyncio.Event) -> None:
        hub, follower = self.running_hub, self.follower
        assert follower is not None
        period = self.settings.hub_frame_ms / 1000.0
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not stop.is_set():
            if self._stations is not None:
                self.state.set_stations(self._stations)
                self._stations = None
            hub.extra_stats["lag_seconds"] = round(follower.lag_seconds(), 3)
            hub.tick(int(self.clock() * 1000), caught_up=follower.caught_up)
            next_at = max(next_at + period, loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), next_at - loop.time())

    async def _station_loop(self, stop: asyncio.Event) -> None:
        assert self._redis is not None
        while not stop.is_set():
            try:
                self._stations = await read_stations(self._redis, Region(self.settings.region))
                if not self.stations_loaded:
                    log.info("%d stations read from the station store", len(self._stations))
                self.stations_loaded = True
            except (RedisError, OSError) as exc:
                log.warning("stations not readable from Redis: %s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.hub_station_refresh_seconds)

    async def _energy_loop(self, stop: asyncio.Event) -> None:
        s = self.settings
        assert s.database_url is not None
        url, zone = s.database_url.get_secret_value(), ZoneInfo(s.tariff_timezone)
        while not stop.is_set():
            try:
                kwh, cost = await energy_today(url, zone, datetime.now(UTC))
                self.running_hub.extra_stats.update(
                    energy_kwh_today=round(kwh, 3), cost_today=round(cost, 2)
                )
            except Exception as exc:  # figures of a panel: never worth stopping the hub
                log.warning("energy figures unavailable: %s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), s.hub_energy_refresh_seconds)

    async def readiness(self) -> Mapping[str, bool]:
        follower = self.follower
        return {
            "kafka": bool(follower and follower.current),
            "stations": self.stations_loaded,
        }

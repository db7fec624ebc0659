"""The live planner: fleet-events in, one joint plan per site out, re-planned as cars come
and go, change their goals, and as the grid's forecast changes.

- **Reading.** Every partition of fleet-events is assigned to every replica (no consumer
  group): a site's cars are spread over all partitions (keyed by car), and a replica must
  see all of them. Positions are not committed; on start the events of the last
  `GREENLANE_PLANNER_REPLAY_SECONDS` rebuild the picture, then every site is planned.
- **Sharing.** Each replica plans the sites it owns (greenlane.planner.replicas).
- **Re-planning.** A trigger marks a site; within `GREENLANE_PLANNER_COALESCE_SECONDS`
  more triggers of that site fold into the same re-plan, and triggers that come while the
  site solves make one more re-plan after it. Solves run in a bounded thread pool
  (`GREENLANE_PLANNER_SOLVE_WORKERS`, HiGHS releases the GIL), so the event loop keeps
  reading and one site's solve never waits for another site's triggers, only for a free
  worker.
- **Publishing.** `plan:{car_id}` and the site's schedule in Redis, a `charging_plan`
  event per car whose plan changed (key = car id), and the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from opentelemetry import trace
from opentelemetry.trace import SpanContext
from redis.exceptions import RedisError

from greenlane.core.demand import demand_factor, record_site_load
from greenlane.core.errors import InvalidField
from greenlane.core.events import encode_event, parse_event
from greenlane.core.kafka import (
    make_producer,
    seek_to_window,
    start_with_retry,
    topic_partitions,
)
from greenlane.core.keys import Region
from greenlane.core.lifecycle import restarting
from greenlane.core.plans import CHARGING_GOAL, CarPlan, SiteSchedule
from greenlane.core.quotes import Curve
from greenlane.core.redis_state import RedisClient, connect
from greenlane.core.telemetry import (
    MAX_LINKS,
    continue_and_link,
    inject_trace_headers,
    traced_record,
)
from greenlane.planner import metrics, store
from greenlane.planner.demand import site_load
from greenlane.planner.fleet import CarSpec, FleetPicture, Goal
from greenlane.planner.forecast import (
    ForecastUnavailable,
    GridForecast,
    curve_changed,
    slot_prices,
)
from greenlane.planner.model import SolverError, solve
from greenlane.planner.planning import FleetRules, empty_schedule, site_problem, site_schedule
from greenlane.planner.replicas import HEARTBEAT_SECONDS, TIMEOUT_SECONDS, Ownership
from greenlane.planner.settings import PlannerSettings

log = logging.getLogger(__name__)

CLIENT_ID: Final = "greenlane-planner"
REPLAN_SPAN: Final = "planner.replan"
POLL_MS: Final = 200
MAX_RECORDS: Final = 10_000
# A booking lasts 20 minutes (ingestion's default); a car booked longer ago than this
# without plugging in is not coming.
BOOKING_TTL_MS: Final = 25 * 60 * 1000
SWEEP_SECONDS: Final = 2.0
METRICS_SECONDS: Final = 5.0
PUBLISH_TIMEOUT_S: Final = 10.0
STOP_TIMEOUT_S: Final = 5.0
# The goals of this many cars are remembered as looked up in Redis.
MAX_GOAL_LOOKUPS: Final = 200_000


def rules_of(settings: PlannerSettings) -> FleetRules:
    return FleetRules(
        slot_minutes=settings.planner_slot_minutes,
        horizon=settings.horizon_slots,
        default_target_battery=settings.planner_default_target_battery,
        default_stay_minutes=settings.planner_default_stay_minutes,
        pack_kwh=settings.planner_pack_kwh,
        car_max_kw=settings.planner_car_max_kw,
    )


def replica_id() -> str:
    """This process among the planner replicas: host, pid and a random part."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class _Sent:
    """What a car's last charging_plan event said, to publish only what changed."""

    signature: tuple[object, ...]
    at_ms: int


def _signature(plan: CarPlan, now_ms: int) -> tuple[object, ...]:
    kw, _ = plan.setpoint(now_ms) or (0.0, 0)
    return (
        plan.station_id,
        plan.state,
        round(kw, 3),
        round(plan.expected_kwh, 3),
        round(plan.expected_cost, 4),
        plan.feasible,
        plan.reason,
    )


class LivePlanner:
    """Owns the live planner's tasks, clients and thread pool; start() then stop(), once."""

    def __init__(
        self,
        settings: PlannerSettings,
        *,
        clock: Callable[[], float] = time.time,
        me: str | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.rules = rules_of(settings)
        self.region = Region(settings.region)
        self.picture = FleetPicture(
            int(settings.planner_presence_timeout_seconds * 1000),
            settings.planner_booked_speed_kmh,
        )
        self.ownership = Ownership(me or replica_id())
        self.curve: Curve | None = None
        self.schedules: dict[str, SiteSchedule] = {}
        self.redis: RedisClient | None = None
        self.producer: AIOKafkaProducer | None = None
        self.assigned = False
        self.caught_up = False
        self.topic_missing = False
        self.sites_loaded = False
        self.redis_ok = False
        self.plans_made = 0
        self.producer_ready = asyncio.Event()
        self._grid: GridForecast | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=settings.planner_solve_workers, thread_name_prefix="planner-solve"
        )
        self._workers = asyncio.Semaphore(settings.planner_solve_workers)
        self._pending: set[str] = set()
        # Per site, the traced events (sampled span contexts) its next re-plan answers:
        # that re-plan's span continues the first one's trace and links the others.
        self._causes: dict[str, list[SpanContext]] = {}
        self._replans: dict[str, asyncio.Task[None]] = {}
        self._published: dict[str, set[str]] = {}  # site -> cars of its last plan
        self._sent: dict[str, _Sent] = {}
        self._goals_read: set[str] = set()
        self._last_plan_ms: dict[str, int] = {}
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)

    @property
    def me(self) -> str:
        return self.ownership.me

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        s = self.settings
        self.redis = connect(s.redis_url, cluster=s.redis_cluster, max_connections=16)
        self.producer = make_producer(s.kafka_bootstrap_servers, client_id=CLIENT_ID)
        self._grid = GridForecast(s.grid_url)
        self._tasks = [
            asyncio.create_task(self._guard("producer", self._start_producer), name="producer"),
            asyncio.create_task(self._guard("follower", self._follow), name="planner-follower"),
            asyncio.create_task(self._guard("forecast", self._forecast_loop), name="forecast"),
            asyncio.create_task(self._guard("sites", self._sites_loop), name="planner-sites"),
            asyncio.create_task(self._guard("replicas", self._replicas_loop), name="replicas"),
            asyncio.create_task(self._guard("sweep", self._sweep_loop), name="planner-sweep"),
            asyncio.create_task(self._guard("metrics", self._metrics_loop), name="metrics"),
        ]

    async def stop(self) -> None:
        """Stop reading, let running re-plans finish, leave the replica set."""
        self._stop.set()
        replans = list(self._replans.values())
        if replans:
            await asyncio.wait(replans, timeout=self.settings.shutdown_grace_seconds)
        for task in [*self._tasks, *self._replans.values()]:
            task.cancel()
        await asyncio.gather(*self._tasks, *replans, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self.redis is not None:
            with contextlib.suppress(RedisError, OSError):
                await store.leave(self.redis, self.region, self.me)
            await self.redis.aclose()
        if self.producer is not None and self.producer_ready.is_set():
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await asyncio.wait_for(self.producer.stop(), STOP_TIMEOUT_S)
        if self._grid is not None:
            await self._grid.aclose()

    async def _guard(self, name: str, run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        """Run a loop until stop; a crash is logged and the loop restarts after a pause."""
        await restarting(f"planner {name}", run, self._stop, log)

    async def _start_producer(self, stop: asyncio.Event) -> None:
        assert self.producer is not None
        await start_with_retry(self.producer.start, "Kafka")
        self.producer_ready.set()

    async def readiness(self) -> Mapping[str, bool]:
        return {
            "kafka": self.assigned and (self.caught_up or self.topic_missing),
            "redis": self.redis_ok,
            "sites": self.sites_loaded,
        }

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    # ------------------------------------------------------------------ triggers

    def trigger(self, sites: set[str] | list[str]) -> None:
        """Re-plan these sites soon (those this replica owns; once it is caught up)."""
        for site_id in sites:
            if not self.ownership.owns(site_id):
                continue
            self._pending.add(site_id)
            if not self.caught_up or self._stop.is_set():
                continue  # the catch-up plans every site at once
            if site_id not in self._replans:
                self._replans[site_id] = asyncio.create_task(
                    self._replan_loop(site_id), name=f"replan-{site_id}"
                )

    def trigger_all(self) -> None:
        self.trigger(list(self.picture.sites))

    async def _replan_loop(self, site_id: str) -> None:
        try:
            while site_id in self._pending and not self._stop.is_set():
                await asyncio.sleep(self.settings.planner_coalesce_seconds)
                self._pending.discard(site_id)
                try:
                    await self.replan(site_id)
                except (RedisError, OSError, KafkaError, TimeoutError) as exc:
                    # Published later: the sweep re-plans a site whose plan is old.
                    log.warning("site %s: plan not published: %s", site_id, type(exc).__name__)
        finally:
            self._replans.pop(site_id, None)

    # ------------------------------------------------------------------ planning

    async def _lookup_goals(self, car_ids: list[str]) -> None:
        """Goals and specs the API stored for cars first seen at a site (once per car)."""
        assert self.redis is not None
        todo = [c for c in car_ids if c not in self._goals_read]
        if len(self._goals_read) > MAX_GOAL_LOOKUPS:
            self._goals_read.clear()
        for car_id in todo:
            goal, spec = await store.read_car_goal(self.redis, car_id)
            self._goals_read.add(car_id)
            if goal is not None or spec is not None:
                self.picture.api_goal(car_id, goal, spec)

    async def replan(self, site_id: str) -> SiteSchedule | None:
        """Plan one site now and publish it; None when it cannot be planned yet."""
        assert self.redis is not None
        site = self.picture.sites.get(site_id)
        if site is None or not self.ownership.owns(site_id):
            return None
        if self.curve is None:
            return None  # the first forecast plans every site
        await self._lookup_goals([c.car_id for c in self.picture.cars_at(site_id)])
        cars = self.picture.cars_at(site_id)
        now = self.now_ms()
        prices = slot_prices(self.curve, now, self.rules.slot_minutes, self.rules.horizon)
        # The site's load snapshot, versioned by now: the demand factor the pricing worker
        # and the booking desk read for this instant. With demand prices on, the plan is
        # costed at it (it scales every slot of the site alike: the plan itself is the same).
        load = site_load(site, cars, now)
        await record_site_load(self.redis, self.region, load)
        if self.settings.demand_prices:
            factor = demand_factor(load)
            prices = [p * factor for p in prices]
        if not cars:
            schedule = empty_schedule(site, now, prices, self.rules)
        else:
            problem, contexts = site_problem(site, cars, now, prices, self.rules)
            causes = self._causes.pop(site_id, [])
            parent, links, dropped = continue_and_link(causes)
            with self._tracer.start_as_current_span(
                REPLAN_SPAN, context=parent, links=links
            ) as span:
                span.set_attribute("greenlane.planner.kind", "site")
                span.set_attribute("greenlane.planner.traced", len(causes))
                if dropped:
                    span.set_attribute("greenlane.links.dropped", dropped)
                span.set_attribute("greenlane.planner.site_id", site_id)
                span.set_attribute("greenlane.planner.cars", len(cars))
                async with self._workers:
                    loop = asyncio.get_running_loop()
                    try:
                        plan = await loop.run_in_executor(
                            self._executor,
                            partial(
                                solve,
                                problem,
                                time_limit_seconds=self.settings.planner_solve_time_limit_seconds,
                            ),
                        )
                    except (SolverError, InvalidField) as exc:
                        metrics.SOLVE_FAILURES.labels(kind="site").inc()
                        log.warning("site %s: no plan: %s", site_id, exc)
                        return None
                span.set_attribute("greenlane.planner.feasible", plan.feasible)
                metrics.SOLVES.labels(kind="site").inc()
                metrics.SOLVE_SECONDS.observe(plan.solve_seconds)
                schedule = site_schedule(site, contexts, problem, plan, now)
                # In the span: the plan events carry its trace to their consumers.
                await self.publish(schedule)
            return schedule
        await self.publish(schedule)
        return schedule

    async def publish(self, schedule: SiteSchedule) -> None:
        assert self.redis is not None
        site_id = schedule.site_id
        now = schedule.timestamp
        cars = {c.car_id for c in schedule.cars}
        gone = self._published.get(site_id, set()) - cars
        await store.write_site_plan(self.redis, self.region, schedule, gone)
        self._published[site_id] = cars
        for car_id in gone:
            self._sent.pop(car_id, None)
        await self._send_events(schedule.cars, now)
        self.schedules[site_id] = schedule
        self._last_plan_ms[site_id] = now
        self.plans_made += 1
        metrics.PLANS.labels(site_id=site_id).inc()
        self._set_site_metrics(site_id, schedule, now)

    async def _send_events(self, plans: tuple[CarPlan, ...], now_ms: int) -> None:
        """A charging_plan event for each car whose plan changed, or was last told more
        than a slot ago (a late joiner of the stream learns every car's plan in a slot)."""
        if self.producer is None or not plans:
            return
        await asyncio.wait_for(self.producer_ready.wait(), PUBLISH_TIMEOUT_S)
        slot_ms = self.rules.slot_ms
        # The current span's trace (a re-plan's, when it is sampled), else none.
        headers = inject_trace_headers() if trace.get_current_span().is_recording() else None
        futures = []
        sent: list[tuple[str, _Sent]] = []
        for plan in plans:
            signature = _signature(plan, now_ms)
            last = self._sent.get(plan.car_id)
            if last is not None and last.signature == signature and now_ms - last.at_ms < slot_ms:
                continue
            futures.append(
                await self.producer.send(
                    self.settings.fleet_events_topic,
                    plan.event(now_ms),
                    key=plan.car_id.encode(),
                    headers=headers,
                )
            )
            sent.append((plan.car_id, _Sent(signature, now_ms)))
        if futures:
            await asyncio.wait_for(asyncio.gather(*futures), PUBLISH_TIMEOUT_S)
        self._sent.update(sent)

    def _set_site_metrics(self, site_id: str, schedule: SiteSchedule, now_ms: int) -> None:
        slot_ms = schedule.slot_minutes * 60_000
        k = max(0, (now_ms - schedule.start) // slot_ms)
        site_kw = schedule.site_kw()
        in_plan = k < schedule.horizon
        metrics.SITE_KW.labels(site_id=site_id).set(site_kw[k] if in_plan else 0.0)
        limit = schedule.limit_kw[k] if in_plan else self.picture.sites[site_id].limit_kw
        metrics.SITE_LIMIT_KW.labels(site_id=site_id).set(limit)
        metrics.CARS.labels(site_id=site_id).set(len(schedule.cars))
        metrics.SHORTFALL_KWH.labels(site_id=site_id).set(
            sum(c.shortfall_kwh for c in schedule.cars)
        )

    def _forget_site_metrics(self, site_id: str) -> None:
        for gauge in (metrics.SITE_KW, metrics.SITE_LIMIT_KW, metrics.CARS, metrics.SHORTFALL_KWH):
            with contextlib.suppress(KeyError):
                gauge.remove(site_id)

    async def set_goal(self, car_id: str, goal: Goal, spec: CarSpec | None) -> int:
        """A goal from the API: stored in Redis, then announced on fleet-events (key = car
        id) so the replica planning the car's site re-plans it; returns when (Unix ms)."""
        assert self.redis is not None and self.producer is not None
        now = self.now_ms()
        await store.write_car_goal(self.redis, car_id, goal, spec, now)
        extra: dict[str, Any] = {
            "target_battery": goal.target_battery,
            "depart_at": goal.depart_at,
        }
        if spec is not None:
            extra.update(
                {k: v for k, v in (("pack_kwh", spec.pack_kwh), ("max_kw", spec.max_kw)) if v}
            )
        value = encode_event(CHARGING_GOAL, car_id=car_id, timestamp=now, **extra)
        await asyncio.wait_for(self.producer_ready.wait(), PUBLISH_TIMEOUT_S)
        future = await self.producer.send(
            self.settings.fleet_events_topic, value, key=car_id.encode()
        )
        await asyncio.wait_for(future, PUBLISH_TIMEOUT_S)
        return now

    # ------------------------------------------------------------------ events

    def apply(self, raw: bytes | None, record_ms: int) -> set[str]:
        """One fleet-events message; the sites it re-plans. A message that is not a
        valid event is skipped (other consumers dead-letter it; the planner only reads)."""
        if raw is None:
            return set()
        try:
            event = parse_event(raw)
        except InvalidField:
            return set()
        kind, data = event.event_type, event.data
        if kind == "telemetry":
            assert event.state is not None
            return self.picture.telemetry(event.state, event.state.timestamp)
        if kind == "booking_created":
            assert event.state is not None
            station = data.get("station_id")
            booking_id = data.get("booking_id", "")
            if isinstance(station, str):
                return self.picture.booked(event.state, station, str(booking_id), record_ms)
            return set()
        if kind in ("booking_expired", "booking_cancelled"):
            return self.picture.booking_ended(event.car_id, str(data.get("booking_id", "")))
        if kind == CHARGING_GOAL:
            return self._goal_event(event.car_id, data)
        return set()  # booking_fulfilled (the car's telemetry says it), charging_plan

    def _goal_event(self, car_id: str, data: Mapping[str, Any]) -> set[str]:
        def number(name: str) -> float:
            value = data.get(name, 0)
            return float(value) if isinstance(value, int | float) and value > 0 else 0.0

        goal = Goal(number("target_battery"), int(number("depart_at")))
        spec = CarSpec(number("pack_kwh"), number("max_kw"))
        self._goals_read.add(car_id)
        has_spec = spec.pack_kwh or spec.max_kw
        merged = None
        if has_spec:
            old = self.picture.specs.get(car_id, CarSpec())
            merged = CarSpec(spec.pack_kwh or old.pack_kwh, spec.max_kw or old.max_kw)
        return self.picture.api_goal(car_id, goal, merged)

    async def _follow(self, stop: asyncio.Event) -> None:
        s = self.settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap_servers,
            client_id=CLIENT_ID,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=10_000,
            fetch_max_wait_ms=100,
        )
        try:
            await start_with_retry(consumer.start, "Kafka")
            tps = await self._partitions(consumer, stop)
            if tps is None:
                return
            cutoff = int((self.clock() - s.planner_replay_seconds) * 1000)
            ends = await self._seek(consumer, tps, cutoff)
            self.assigned = True
            log.info(
                "following %s (%d partitions) from %.0f s ago",
                s.fleet_events_topic,
                len(tps),
                s.planner_replay_seconds,
            )
            positions = dict.fromkeys(tps, 0)
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=POLL_MS, max_records=MAX_RECORDS)
                touched: set[str] = set()
                for tp, records in batch.items():
                    for record in records:
                        positions[tp] = record.offset + 1
                        if record.timestamp < cutoff:
                            continue
                        sites = self.apply(record.value, int(record.timestamp))
                        if sites:
                            touched |= sites
                            self._note_causes(sites, record.headers)
                if not self.caught_up:
                    if all(positions[tp] >= ends.get(tp, 0) for tp in tps) or not batch:
                        self._caught_up(touched)
                    continue
                if touched:
                    self.trigger(touched)
        finally:
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await asyncio.wait_for(consumer.stop(), STOP_TIMEOUT_S)

    def _note_causes(self, sites: set[str], headers: Any) -> None:
        """Remember a traced event as a cause of its sites' next re-plan (bounded)."""
        if not self.caught_up:
            return  # the catch-up plan answers the whole replay, not one event
        cause = traced_record(headers)
        if cause is None:
            return
        for site_id in sites:
            causes = self._causes.setdefault(site_id, [])
            if len(causes) <= MAX_LINKS:
                causes.append(cause)

    def _caught_up(self, touched: set[str]) -> None:
        self.caught_up = True
        self.picture.expire(self.now_ms(), BOOKING_TTL_MS)
        log.info(
            "caught up with %s: %d cars at %d sites",
            self.settings.fleet_events_topic,
            len(self.picture.cars),
            len({c.site_id for c in self.picture.cars.values()}),
        )
        self.trigger_all()

    async def _partitions(
        self, consumer: AIOKafkaConsumer, stop: asyncio.Event
    ) -> list[TopicPartition] | None:
        topic = self.settings.fleet_events_topic
        told = False
        while not stop.is_set():
            tps = await topic_partitions(consumer, topic)
            if tps:
                self.topic_missing = False
                consumer.assign(tps)
                return tps
            self.topic_missing = True
            self.assigned = True
            if not self.caught_up:
                self._caught_up(set())  # nothing written yet: the picture is complete
            if not told:
                log.info("waiting for topic %s to exist", topic)
                told = True
            await self._sleep(stop, 1.0)
        return None

    async def _seek(
        self, consumer: AIOKafkaConsumer, tps: list[TopicPartition], cutoff_ms: int
    ) -> dict[TopicPartition, int]:
        """Start at the replay window; returns where each partition ended on start."""
        await consumer.seek_to_end(*tps)
        ends = {tp: await consumer.position(tp) for tp in tps}
        await seek_to_window(consumer, tps, cutoff_ms)
        return ends

    # ------------------------------------------------------------------ loops

    async def _forecast_loop(self, stop: asyncio.Event) -> None:
        assert self._grid is not None
        hours = int(self.settings.planner_horizon_hours) + 1
        failing = False
        while not stop.is_set():
            try:
                curve = await self._grid.fetch(self.now_ms(), hours)
            except ForecastUnavailable as exc:
                if not failing:
                    log.warning("grid forecast unavailable (%s); plans keep the last one", exc)
                failing = True
                await self._sleep(stop, min(5.0, self.settings.planner_forecast_refresh_seconds))
                continue
            if failing:
                log.info("grid forecast available again")
            failing = False
            changed = curve_changed(self.curve, curve)
            self.curve = curve
            if changed:
                log.info("grid forecast changed: re-planning every site")
                self.trigger_all()
            await self._sleep(stop, self.settings.planner_forecast_refresh_seconds)

    async def _sites_loop(self, stop: asyncio.Event) -> None:
        assert self.redis is not None
        while not stop.is_set():
            try:
                sites = await store.read_sites(self.redis, self.region)
            except (RedisError, OSError) as exc:
                log.warning("sites not readable from Redis: %s", type(exc).__name__)
            else:
                changed = self.picture.set_sites(sites)
                if not self.sites_loaded:
                    log.info("%d sites read from the station store", len(sites))
                self.sites_loaded = True
                for site_id in changed - set(self.picture.sites):
                    await self._withdraw(site_id)
                self.trigger(changed & set(self.picture.sites))
            await self._sleep(stop, self.settings.planner_sites_refresh_seconds)

    async def _withdraw(self, site_id: str) -> None:
        """A site that is gone, or that another replica plans now: its plans leave."""
        cars = self._published.pop(site_id, set())
        self.schedules.pop(site_id, None)
        self._forget_site_metrics(site_id)
        if site_id not in self.picture.sites and cars and self.redis is not None:
            await store.delete_plans(self.redis, cars)

    async def _replicas_loop(self, stop: asyncio.Event) -> None:
        assert self.redis is not None
        while not stop.is_set():
            try:
                replicas = await store.heartbeat(
                    self.redis, self.region, self.me, self.now_ms(), int(TIMEOUT_SECONDS * 1000)
                )
                self.redis_ok = True
            except (RedisError, OSError) as exc:
                if self.redis_ok:
                    log.warning("Redis unavailable: %s", type(exc).__name__)
                self.redis_ok = False
            else:
                before = set(self.schedules)
                gained = self.ownership.update(replicas, self.picture.sites)
                for site_id in before:
                    if not self.ownership.owns(site_id):
                        await self._withdraw(site_id)
                self.trigger(gained)
            await self._sleep(stop, HEARTBEAT_SECONDS)

    async def _sweep_loop(self, stop: asyncio.Event) -> None:
        """Cars silent too long leave; sites whose plan is older than the re-plan period
        are re-planned (plans roll forward, batteries are taken as they are)."""
        while not stop.is_set():
            await self._sleep(stop, SWEEP_SECONDS)
            if not self.caught_up:
                continue
            now = self.now_ms()
            self.trigger(self.picture.expire(now, BOOKING_TTL_MS))
            period_ms = self.settings.replan_seconds * 1000
            stale = [
                site_id
                for site_id in self.picture.sites
                if now - self._last_plan_ms.get(site_id, 0) >= period_ms
            ]
            self.trigger(stale)

    async def _metrics_loop(self, stop: asyncio.Event) -> None:
        """The site gauges follow the current slot of each site's plan."""
        while not stop.is_set():
            now = self.now_ms()
            for site_id, schedule in list(self.schedules.items()):
                if site_id in self.picture.sites:
                    self._set_site_metrics(site_id, schedule, now)
            await self._sleep(stop, METRICS_SECONDS)

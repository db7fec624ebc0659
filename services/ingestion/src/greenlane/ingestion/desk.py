"""The booking desk: after a status is stored, book, fulfil or expire bookings and tell Kafka.

With the `predictive` policy (the default) the desk follows every car's drain
(greenlane.core.drain: one online model per car, fed by the car's own statuses) and books
a car ahead of need: when its predicted reach at the horizon, minus a margin, no longer
covers the way to the nearest free station (the fixed threshold stays a floor), at the
free station that costs it least: detour, the station's demand price and its expected
wait (greenlane.core.demand). `threshold` is the rule before: below the threshold, the
nearest free station. docs/prediction.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any, Final, Literal

from aiokafka import AIOKafkaProducer
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import INVALID_SPAN, StatusCode

from greenlane.core import keys
from greenlane.core.auth import Principal
from greenlane.core.demand import (
    BookingWeights,
    SiteLoad,
    expected_wait_minutes,
    site_load_at,
    station_price,
)
from greenlane.core.drain import DEFAULT_HORIZON_S, DrainModel, Prediction, naive_battery_at
from greenlane.core.events import CarState, encode_event
from greenlane.core.plans import Setpoint, read_setpoint
from greenlane.core.redis_state import RedisClient, is_cluster, read_state
from greenlane.ingestion import metrics
from greenlane.ingestion.booking_store import (
    ALWAYS,
    BookingStore,
    EndOutcome,
    Expired,
    Need,
    Offer,
    Quote,
)
from greenlane.v1 import fleet_pb2

log = logging.getLogger(__name__)

BOOKING_SPAN = "booking"

Policy = Literal["predictive", "threshold"]
POLICIES: Final = ("predictive", "threshold")
# Cars followed at once by one desk; beyond, the models start again from the fleet prior.
MAX_CARS: Final = 200_000
# A prediction is checked against the status that comes within this long after its horizon.
CHECK_WINDOW_MS: Final = 120_000
PREDICTION_TTL_MS: Final = 3_600_000  # a car's prediction hash outlives its silence by 1 h


@dataclass(slots=True)
class _Followed:
    """What the desk keeps of a car: its model, its last status and a prediction to check."""

    model: DrainModel
    latest: Prediction | None = None
    previous: tuple[float, int] | None = None  # (battery, timestamp) of the last status
    check: tuple[int, float, float] | None = None  # (due, model's battery, naive battery)
    # Told "not needed yet": not looked at again before this (status time, ms).
    recheck_after: int = 0


@dataclass(frozen=True, slots=True)
class DeskAnswer:
    status: fleet_pb2.ResponseStatus.ValueType
    message: str
    booking: fleet_pb2.Booking | None = None
    setpoint: fleet_pb2.ChargingSetpoint | None = None


def _setpoint(found: Setpoint | BaseException | None) -> fleet_pb2.ChargingSetpoint | None:
    if found is None or isinstance(found, BaseException):
        return None
    return fleet_pb2.ChargingSetpoint(
        power_kw=found.power_kw, until=found.until, site_id=found.site_id
    )


def booking_event(
    state: CarState, event_type: str, station_id: str, booking_id: str, **extra: Any
) -> tuple[bytes, bytes]:
    """(key, value) of a booking event: keyed by car, like the car's telemetry."""
    value = encode_event(event_type, state, station_id=station_id, booking_id=booking_id, **extra)
    return state.car_id.encode(), value


class BookingDesk:
    """Booking rules at the edge of the stream; the atomic work is in the Lua scripts."""

    def __init__(
        self,
        store: BookingStore,
        redis: RedisClient,
        producer: AIOKafkaProducer,
        topic: str,
        *,
        threshold: float = 20.0,
        publish_timeout: float = 5.0,
        max_per_fleet: int = 0,
        tracer_provider: trace.TracerProvider | None = None,
        policy: Policy = "predictive",
        margin_km: float = 2.0,
        horizon_s: float = DEFAULT_HORIZON_S,
        weights: BookingWeights | None = None,
        tariff: float = 0.25,
        demand_prices: bool = False,
        max_reach_km: float = 30.0,
        recheck_s: float = 10.0,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, not {policy!r}")
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self.store = store
        self._redis = redis
        self._producer = producer
        self._topic = topic
        self.threshold = threshold
        self._publish_timeout = publish_timeout
        # Live bookings one fleet may hold in the region (0: no cap); a credential's
        # `bookings` limit overrides it.
        self.max_per_fleet = max_per_fleet
        self.policy = policy
        self.margin_km = margin_km
        self.horizon_s = horizon_s
        self.weights = weights or BookingWeights()
        self.tariff = tariff
        self.demand_prices = demand_prices
        self.max_reach_km = max(max_reach_km, store.max_radius_km)
        self.recheck_ms = int(recheck_s * 1000)
        self._cars: dict[str, _Followed] = {}
        self._unpublished: dict[str, Prediction] = {}

    def concerns(self, state: CarState, requested: bool) -> bool:
        """Only low, asking or plugged-in cars cost a booking round trip; with the
        predictive policy also a car whose reach, minus the margin, is within the farthest
        search (max_reach_km: a station beyond it is not looked at anyway), unless it was
        told "not needed yet" less than recheck_s ago."""
        prediction = None
        if self.policy == "predictive":
            try:
                prediction = self.observe(state)
            except ValueError:  # a status the model cannot use: the floor still holds
                metrics.BOOKING_ERRORS.inc()
        if state.station_id or requested or state.battery < self.threshold:
            return True
        if prediction is None or prediction.reach_km - self.margin_km >= self.max_reach_km:
            return False
        return self._cars[state.car_id].recheck_after <= state.timestamp

    def observe(self, state: CarState) -> Prediction:
        """Teach the car's model this status; its prediction at the horizon (kept, to be
        published and checked when the horizon comes)."""
        car = self._cars.get(state.car_id)
        if car is None:
            if len(self._cars) >= MAX_CARS:
                self._cars.clear()
            car = self._cars[state.car_id] = _Followed(DrainModel())
        charging = bool(state.station_id)
        car.model.observe(state.battery, state.velocity, state.timestamp, charging=charging)
        prediction = car.model.predict(state.battery, state.timestamp, self.horizon_s)
        metrics.DRAIN_PREDICTIONS.inc()
        self._check(car, state, prediction, charging)
        car.latest = prediction
        self._unpublished[state.car_id] = prediction
        return prediction

    def _check(
        self, car: _Followed, state: CarState, prediction: Prediction, charging: bool
    ) -> None:
        """The error of the prediction made a horizon ago, and of the naive last rate."""
        now = state.timestamp
        if charging:
            car.check = None
        elif car.check is not None and now >= car.check[0]:
            due, ours, naive = car.check
            if now - due <= CHECK_WINDOW_MS:
                metrics.DRAIN_ERROR.labels("model").observe(abs(ours - state.battery))
                metrics.DRAIN_ERROR.labels("naive").observe(abs(naive - state.battery))
            car.check = None
        if car.check is None and not charging and car.previous is not None:
            naive = naive_battery_at(car.previous, (state.battery, now), self.horizon_s)
            due = now + int(self.horizon_s * 1000)
            car.check = (due, prediction.battery_at_horizon, naive)
        car.previous = (state.battery, now)

    def prediction(self, car_id: str) -> Prediction | None:
        car = self._cars.get(car_id)
        return car.latest if car else None

    async def publish_predictions(self) -> int:
        """Write the latest prediction of every car seen since the last call to its hash
        (keys.drain); returns how many."""
        found, self._unpublished = self._unpublished, {}
        if not found:
            return 0
        if is_cluster(self._redis):  # cars of several slots: one call each, at once
            await asyncio.gather(*(self._write_prediction(c, p) for c, p in found.items()))
            return len(found)
        pipe = self._redis.pipeline(transaction=False)
        for car_id, p in found.items():
            pipe.hset(keys.drain(car_id), mapping=p.to_hash())  # type: ignore[arg-type]
            pipe.pexpire(keys.drain(car_id), PREDICTION_TTL_MS)
        await pipe.execute()
        return len(found)

    async def _write_prediction(self, car_id: str, p: Prediction) -> None:
        await self._redis.hset(keys.drain(car_id), mapping=p.to_hash())  # type: ignore[arg-type]
        await self._redis.pexpire(keys.drain(car_id), PREDICTION_TTL_MS)

    async def handle(
        self, state: CarState, requested: bool, principal: Principal | None = None
    ) -> DeskAnswer:
        """Book, or fulfil, for a stored status of `principal`'s car (its fleet's)."""
        if not is_instrumentation_enabled():  # an untraced status (see the servicer)
            return await self._handle(state, requested, principal, INVALID_SPAN)
        # In the status's trace: the booking script, its Redis calls and the booking
        # events it publishes are its children.
        with self._tracer.start_as_current_span(BOOKING_SPAN) as span:
            return await self._handle(state, requested, principal, span)

    async def _handle(
        self, state: CarState, requested: bool, principal: Principal | None, span: trace.Span
    ) -> DeskAnswer:
        try:
            if state.station_id:
                answer = await self._plugged_in(state, principal)
            else:
                answer = await self._book(state, principal, requested)
        except Exception as exc:  # the status is stored: answer that, and why no booking
            metrics.BOOKING_ERRORS.inc()
            log.warning("booking for %s failed: %s", state.car_id, type(exc).__name__)
            span.set_status(StatusCode.ERROR, type(exc).__name__)
            return DeskAnswer(fleet_pb2.ACCEPTED, "stored; booking unavailable, ask again later")
        if span.is_recording():
            span.set_attribute("greenlane.car_id", state.car_id)
            span.set_attribute(
                "greenlane.booking.answer", fleet_pb2.ResponseStatus.Name(answer.status)
            )
            if answer.booking is not None:
                span.set_attribute("greenlane.booking.station_id", answer.booking.station_id)
        return answer

    async def _plugged_in(self, state: CarState, principal: Principal | None) -> DeskAnswer:
        # The car's setpoint comes from its plan (another slot than the booking's on a
        # Redis Cluster): both reads at once, so a plugged-in car costs one round trip.
        booking, planned = await asyncio.gather(
            self.store.active_booking(state.car_id),
            read_setpoint(self._redis, state.car_id, state.station_id, state.timestamp),
            return_exceptions=True,
        )
        if isinstance(planned, Exception):
            metrics.BOOKING_ERRORS.inc()
            log.warning("plan of %s unreadable: %s", state.car_id, type(planned).__name__)
        if isinstance(booking, BaseException):
            raise booking
        setpoint = _setpoint(planned)
        answer = await self._fulfil(state, booking, principal)
        return dataclasses.replace(answer, setpoint=setpoint) if setpoint else answer

    async def _fulfil(
        self, state: CarState, active: dict[str, str] | None, principal: Principal | None
    ) -> DeskAnswer:
        if active is None or active["station_id"] != state.station_id:
            return DeskAnswer(fleet_pb2.ACCEPTED, "stored")
        fleet = active.get("fleet", "")
        if principal is not None and fleet and not principal.sees(fleet):
            return DeskAnswer(fleet_pb2.ACCEPTED, "stored")  # another fleet's booking
        ended = await self.store.end(
            active["booking_id"],
            "fulfilled",
            car_id=state.car_id,
            station_id=active["station_id"],
            fleet=fleet,
        )
        if ended.result != "ENDED":
            return DeskAnswer(fleet_pb2.ACCEPTED, "stored")
        metrics.BOOKINGS.labels("fulfilled").inc()
        await self.publish(
            [booking_event(state, "booking_fulfilled", state.station_id, active["booking_id"])]
        )
        return DeskAnswer(fleet_pb2.ACCEPTED, f"stored; booking {active['booking_id']} fulfilled")

    def _need(self, state: CarState, requested: bool) -> Need:
        """What book.lua is told of the car's need: below the floor (or asking) it books
        whatever its reach; above it, only when its reach minus the margin no longer
        covers the way to the nearest free station. It chooses within its range, and
        stations are searched as far as that range (at least the store's radius, at most
        max_reach_km)."""
        prediction = self.prediction(state.car_id) if self.policy == "predictive" else None
        if prediction is None:
            return ALWAYS
        forced = requested or state.battery < self.threshold
        need_km = -1.0 if forced else max(prediction.reach_km - self.margin_km, 0.0)
        range_km = max(prediction.range_km - self.margin_km, 0.0)
        radius = min(max(self.store.max_radius_km, range_km), self.max_reach_km)
        return Need(need_km, range_km if range_km < 1e9 else -1.0, self.weights, radius_km=radius)

    def _quote(self, at_ms: int) -> Quote:
        """The offers of candidate stations at an instant: the tariff times the demand
        factor of each station's site snapshot in force then (with demand prices on), and
        its expected wait."""

        async def quote(station_ids: list[str]) -> dict[str, Offer]:
            details = await asyncio.gather(*(self.store.station_details(s) for s in station_ids))
            site_of = {s: d.get("site_id", "") for s, d in zip(station_ids, details, strict=True)}
            sites = sorted({site for site in site_of.values() if site})
            loads = await asyncio.gather(
                *(site_load_at(self._redis, self.store.region, site, at_ms) for site in sites)
            )
            by_site: dict[str, SiteLoad | None] = dict(zip(sites, loads, strict=True))
            offers = {}
            for sid, site in site_of.items():
                load = by_site.get(site) if site else None
                price = station_price(self.tariff, load if self.demand_prices else None).price
                offers[sid] = Offer(price, expected_wait_minutes(load))
            return offers

        return quote

    async def _book(
        self, state: CarState, principal: Principal | None, requested: bool = False
    ) -> DeskAnswer:
        fleet = principal.fleet if principal is not None else ""
        cap = (principal.limits.bookings if principal is not None else None) or self.max_per_fleet
        need = self._need(state, requested)
        predictive = self.policy == "predictive"
        outcome = await self.store.book(
            state.car_id,
            state.lon,
            state.lat,
            fleet=fleet,
            cap=cap,
            need=need,
            quote=self._quote(state.timestamp) if predictive else None,
        )
        events = await self._expired_events(outcome.expired)
        booking = outcome.booking
        if booking is None and outcome.not_needed_km is not None:
            followed = self._cars.get(state.car_id)
            if followed is not None:
                followed.recheck_after = state.timestamp + self.recheck_ms
            await self.publish(events)
            return DeskAnswer(
                fleet_pb2.ACCEPTED,
                f"stored; no booking needed yet: a free station is {outcome.not_needed_km:.1f}"
                " km away, within the car's predicted reach",
            )
        if booking is None:
            metrics.BOOKINGS.labels("no_capacity").inc()
            await self.publish(events)
            if outcome.fleet_limit:
                metrics.LIMITED.labels(fleet, "bookings").inc()
                return DeskAnswer(
                    fleet_pb2.NO_CAPACITY,
                    f"stored; fleet {fleet} holds {outcome.fleet_limit} live bookings, its "
                    "limit: ask again when one ends",
                )
            return DeskAnswer(
                fleet_pb2.NO_CAPACITY, "stored; no station nearby has a free slot, ask again later"
            )
        if not booking.existing:
            metrics.BOOKINGS.labels("created").inc()
            extra: dict[str, Any] = {"fleet": fleet} if fleet else {}
            if need.need_km >= 0:
                metrics.BOOKINGS_AHEAD.inc()
            events.append(
                booking_event(
                    state,
                    "booking_created",
                    booking.station_id,
                    booking.booking_id,
                    expires_at=booking.expires_at,
                    **extra,
                )
            )
        await self.publish(events)
        info = await self.store.station_details(booking.station_id)
        return DeskAnswer(
            fleet_pb2.BOOKED,
            f"stored; slot booked at {info.get('name', booking.station_id)}",
            fleet_pb2.Booking(
                booking_id=booking.booking_id,
                station_id=booking.station_id,
                station_name=str(info.get("name", "")),
                lat=float(info.get("lat", 0.0)),
                lon=float(info.get("lon", 0.0)),
                distance_m=round(booking.distance_km * 1000, 1),
                expires_at=booking.expires_at,
                power_kw=float(info.get("power_kw", 0.0)),
            ),
        )

    async def _expired_events(self, expired: list[Expired]) -> list[tuple[bytes, bytes]]:
        events = []
        for e in expired:
            metrics.BOOKINGS.labels("expired").inc()
            state = await self._last_state(e.car_id)
            events.append(booking_event(state, "booking_expired", e.station_id, e.booking_id))
        return events

    async def _last_state(self, car_id: str) -> CarState:
        """The car's latest stored status, stamped now: what a booking event carries."""
        state = await read_state(self._redis, car_id)
        now = time.time_ns() // 1_000_000
        if state is None:
            return CarState(
                car_id=car_id, lat=0.0, lon=0.0, battery=0.0, velocity=0.0, timestamp=now
            )
        return dataclasses.replace(state, timestamp=now, station_id="")

    async def sweep(self) -> int:
        """Reclaim expired bookings and announce them; returns how many expired."""
        expired = await self.store.sweep()
        if expired:
            await self.publish(await self._expired_events(expired))
        return len(expired)

    async def cancel(self, booking_id: str, only_fleet: str = "") -> EndOutcome:
        """Cancel an active booking (of `only_fleet`, "" any); the outcome says why not."""
        ended = await self.store.end(booking_id, "cancelled", only_fleet=only_fleet)
        if ended.result == "ENDED":
            metrics.BOOKINGS.labels("cancelled").inc()
            state = await self._last_state(ended.car_id)
            await self.publish(
                [booking_event(state, "booking_cancelled", ended.station_id, booking_id)]
            )
        return ended

    async def publish(self, events: list[tuple[bytes, bytes]]) -> None:
        """Booking events go to fleet-events keyed by car, like telemetry."""
        if not events:
            return
        try:
            futures = []
            for key, value in events:
                futures.append(await self._producer.send(self._topic, value, key=key))
            await asyncio.wait_for(asyncio.gather(*futures), self._publish_timeout)
        except Exception as exc:  # the booking itself is stored in Redis; the event is late
            metrics.BOOKING_ERRORS.inc()
            log.warning("could not publish %d booking events: %s", len(events), exc)

"""The booking desk: after a status is stored, book, fulfil or expire bookings and tell Kafka."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import INVALID_SPAN, StatusCode

from greenlane.core.auth import Principal
from greenlane.core.events import CarState, encode_event
from greenlane.core.plans import Setpoint, read_setpoint
from greenlane.core.redis_state import RedisClient, read_state
from greenlane.ingestion import metrics
from greenlane.ingestion.booking_store import BookingStore, EndOutcome, Expired
from greenlane.v1 import fleet_pb2

log = logging.getLogger(__name__)

BOOKING_SPAN = "booking"


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
    ) -> None:
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

    def concerns(self, state: CarState, requested: bool) -> bool:
        """Only low, asking or plugged-in cars cost a booking round trip."""
        return bool(state.station_id) or requested or state.battery < self.threshold

    async def handle(
        self, state: CarState, requested: bool, principal: Principal | None = None
    ) -> DeskAnswer:
        """Book, or fulfil, for a stored status of `principal`'s car (its fleet's)."""
        if not is_instrumentation_enabled():  # an untraced status (see the servicer)
            return await self._handle(state, principal, INVALID_SPAN)
        # In the status's trace: the booking script, its Redis calls and the booking
        # events it publishes are its children.
        with self._tracer.start_as_current_span(BOOKING_SPAN) as span:
            return await self._handle(state, principal, span)

    async def _handle(
        self, state: CarState, principal: Principal | None, span: trace.Span
    ) -> DeskAnswer:
        try:
            if state.station_id:
                answer = await self._plugged_in(state, principal)
            else:
                answer = await self._book(state, principal)
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

    async def _book(self, state: CarState, principal: Principal | None) -> DeskAnswer:
        fleet = principal.fleet if principal is not None else ""
        cap = (principal.limits.bookings if principal is not None else None) or self.max_per_fleet
        outcome = await self.store.book(state.car_id, state.lon, state.lat, fleet=fleet, cap=cap)
        events = await self._expired_events(outcome.expired)
        booking = outcome.booking
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

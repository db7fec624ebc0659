"""The async driver: many cars in one process, each on its own FleetTelemetry stream.

Sending policy. A car sends one message (a CarStatus, or a CarStatusBatch when
batch_size > 1) per `interval`, and never has more than `max_in_flight` messages
unanswered on its stream. When a tick comes while the window is full, the car waits
for the next answer and sends then; ticks missed by more than a whole interval are
skipped, not made up, so a slow server sees no burst when it recovers. In saturate
mode (interval 0) there are no ticks: a car sends whenever its window has room.

Latency is measured per message, from just before `write()` to the arrival of its
answer; answers come back in request order, so a FIFO of send times pairs them.

Bookings. A driving car below `charge_below` (or at 0 %) sets `request_booking`. A
BOOKED answer sends a driving car to the booked station (see physics.py); the car then
charges there, sending `station_id`, and drives on. NO_CAPACITY changes nothing: the
car asks again with its next status. A booking that expires before the car arrives is
given up. With several messages in flight an answer may concern an older status; a
booking the car already followed is therefore never followed twice.

Plans. A plugged-in car sends its goal (`target_battery`, `depart_at`) with each status
and charges at the setpoint its answers carry (the site's charging plan; 0 kW: it waits)
until the setpoint's `until`; without one it charges at full power. It unplugs at its
departure. Depot cars drive home at night (physics.py).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar
from zoneinfo import ZoneInfo

import grpc
from opentelemetry.trace import Span, TracerProvider

from greenlane.core.errors import GreenLaneError
from greenlane.core.events import CAR_ID_PATTERN
from greenlane.core.wire import TOKEN_METADATA_KEY
from greenlane.simulator.config import FleetConfig
from greenlane.simulator.physics import (
    DEFAULT_POWER_KW,
    Car,
    Mode,
    Moment,
    Station,
    at_home,
    give_up,
    head_to,
    make_fleet,
    step,
)
from greenlane.simulator.stats import Stats
from greenlane.simulator.tracing import StatusTracer, answered, unanswered
from greenlane.v1 import fleet_pb2, fleet_pb2_grpc

__all__ = ["FleetConfig", "FleetError", "TokenRefused", "run_fleet", "tune_gc"]

log = logging.getLogger(__name__)

# Separate subchannel pools give every channel its own TCP connection; otherwise
# grpc shares one connection between channels with the same target and options.
_CHANNEL_OPTIONS: Final = (("grpc.use_local_subchannel_pool", 1),)
# A timer that fires a hair early must not cost one more wake-up.
_TICK_TOLERANCE_S: Final = 0.001
# Expiry of a booking that does not say when it expires.
_NEVER_MS: Final = 2**63 - 1

_Request = TypeVar("_Request", fleet_pb2.CarStatus, fleet_pb2.CarStatusBatch)

_S = fleet_pb2.ResponseStatus
_FIELD_OF_STATUS: Final = {
    _S.ACCEPTED: "accepted",
    _S.BOOKED: "booked",
    _S.NO_CAPACITY: "no_capacity",
    _S.REJECTED: "rejected",
    _S.UNAVAILABLE: "unavailable",
    # Not stored, resend later: counted with UNAVAILABLE.
    _S.RATE_LIMITED: "unavailable",
}


class FleetError(GreenLaneError):
    """The run cannot go on; the message says why."""


class TokenRefused(FleetError):
    """Ingestion answered UNAUTHENTICATED: no reconnect can fix a wrong token."""

    def __init__(self) -> None:
        super().__init__("ingestion refused the token (UNAUTHENTICATED)")


def _fatal(exc: grpc.aio.AioRpcError) -> FleetError | None:
    """Stream errors that retrying cannot fix."""
    code = exc.code()
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return TokenRefused()
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return FleetError(f"the credential may not stream telemetry: {exc.details()}")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return FleetError(
            f"the target does not serve greenlane.v1.FleetTelemetry ({exc.details()})"
        )
    return None


def tune_gc() -> None:
    """Make the garbage collector cheap for a process holding thousands of streams.

    Every message allocates futures and protobufs, so with the default thresholds the
    collector runs full passes over every task, call and frame of every car: measured
    at a third of the CPU with 10 000 cars. Rarer young collections and a frozen start-up
    heap bring that near zero; garbage cycles are still collected, just in larger rounds.
    Process-wide, so it is for entry points (the CLI, a benchmark), not for run_fleet.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def moment_at(now_ms: int, zone: ZoneInfo, night_from: int, morning: int) -> Moment:
    """The Moment of a Unix-ms instant: whether it is night there, and the next morning."""
    local = datetime.fromtimestamp(now_ms / 1000, zone)
    hour = local.hour
    if night_from > morning:  # the usual case: the night spans midnight
        night = hour >= night_from or hour < morning
    else:
        night = night_from <= hour < morning
    next_morning = local.replace(hour=morning, minute=0, second=0, microsecond=0)
    if next_morning <= local:
        next_morning = (next_morning + timedelta(days=1)).replace(hour=morning)
    return Moment(now_ms, night, int(next_morning.timestamp() * 1000))


def _station_of(booking: fleet_pb2.Booking) -> Station | None:
    """The station a booking points to; None when it is not one a car can drive to."""
    if not CAR_ID_PATTERN.fullmatch(booking.station_id):
        return None  # ingestion would reject a status carrying it
    lat, lon = booking.lat, booking.lon
    # (0, 0) is what a booking of a station without a position would say.
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0) or (lat == 0.0 and lon == 0.0):
        return None
    power = booking.power_kw if booking.power_kw > 0 else DEFAULT_POWER_KW
    return Station(booking.station_id, lat, lon, power)


@dataclass(slots=True)
class _Sent:
    at: float  # perf_counter seconds, just before write()
    count: int  # statuses in the message
    timestamp: int  # of the last status, which the answer echoes
    # (index in the message, span) of its traced statuses; None when none is traced
    spans: list[tuple[int, Span]] | None = None


class _Fleet:
    """What all cars of a run share: configuration, stubs, counters and the end signal."""

    def __init__(
        self,
        config: FleetConfig,
        stats: Stats,
        channels: list[grpc.aio.Channel],
        tracer_provider: TracerProvider | None = None,
    ):
        self.config = config
        self.stats = stats
        self.box = config.box
        self.charging = config.charging
        self.habits = config.habits
        self.charge_below = config.charge_below
        self._zone = config.zone
        self._moment = moment_at(_now_ms(), self._zone, config.night_from, config.morning)
        self.metadata = ((TOKEN_METADATA_KEY, config.token.get_secret_value()),)
        ratio = config.trace_ratio
        self.tracer = StatusTracer(ratio, tracer_provider) if ratio > 0 else None
        self.method = "StreamTelemetryBatches" if config.batch_size > 1 else "StreamTelemetry"
        stubs = [fleet_pb2_grpc.FleetTelemetryStub(ch) for ch in channels]
        rng = random.Random(config.seed)
        # The whole fleet, then this shard of it: a car is the same whichever process
        # drives it, and ids never collide between shards.
        everyone = make_fleet(
            config.cars,
            rng,
            config.car_prefix,
            config.box,
            config.initial_battery,
            depot=config.depot_station,
            depot_share=config.depot_share,
        )
        # Each car owns a generator seeded from the run's: its trajectory does not
        # depend on how the event loop happens to interleave the cars.
        seeds = [rng.getrandbits(64) for _ in everyone]
        shard = config.shard
        spread = config.ramp_up_s / len(shard)
        self.cars = []
        for i, index in enumerate(shard):
            car_rng = random.Random(seeds[index])
            # A run that starts at night finds the depot cars at home, plugged in.
            car = at_home(everyone[index], car_rng, self._moment, self.habits)
            self.cars.append(_CarStream(self, car, car_rng, stubs[i % len(stubs)], i * spread))
        # Backoff jitter is timing, not physics: kept apart from the seeded generators.
        self.jitter = random.Random()
        self.ending = False
        self.failed = asyncio.Event()
        self.fatal: BaseException | None = None
        self._codes_seen: set[str] = set()
        self._fields_rejected: set[str] = set()

    def moment(self, now_ms: int) -> Moment:
        """The Moment of now, recomputed once a second (local time is not free)."""
        if now_ms - self._moment.now_ms >= 1000 or now_ms < self._moment.now_ms:
            cfg = self.config
            self._moment = moment_at(now_ms, self._zone, cfg.night_from, cfg.morning)
        return Moment(now_ms, self._moment.night, self._moment.morning_ms)

    def end(self) -> None:
        self.ending = True
        for car in self.cars:
            car.wake.set()

    def fail(self, exc: BaseException) -> None:
        if self.fatal is None:
            self.fatal = exc
        self.failed.set()
        self.end()

    def rejected(self, car_id: str, field: str, message: str) -> None:
        # The simulator should never send invalid data: say what ingestion objected to,
        # once per field, without flooding the log at thousands of answers a second.
        if field not in self._fields_rejected:
            self._fields_rejected.add(field)
            log.warning("ingestion rejected a status of %s: %s (%s)", car_id, message, field)

    def stream_broke(self, car_id: str, code: str, details: str | None) -> None:
        self.stats.record_error()
        # One warning per kind of failure; a server restart would otherwise log once per car.
        level = logging.DEBUG if code in self._codes_seen else logging.WARNING
        self._codes_seen.add(code)
        then = "the run is ending" if self.ending else "reconnecting"
        log.log(level, "stream of %s broke: %s %s; %s", car_id, code, details, then)


class _CarStream:
    """One car: its state, its stream, and the reconnect loop around it."""

    def __init__(
        self,
        fleet: _Fleet,
        car: Car,
        rng: random.Random,
        stub: fleet_pb2_grpc.FleetTelemetryAsyncStub,
        start_delay: float,
    ) -> None:
        self.fleet = fleet
        self.car = car
        self.rng = rng
        self.stub = stub
        self.start_delay = start_delay
        # Set by answers, timers and the end of the run; the writer re-checks its state.
        self.wake = asyncio.Event()
        self.pending: deque[_Sent] = deque()
        self.last_timestamp = 0
        self.next_due = 0.0
        self.answers = 0
        # The booking the car follows (or last followed), and when it expires (Unix ms).
        self.booking_id = ""
        self.booking_expires_ms = _NEVER_MS
        # The latest setpoint of the car's plan, (kW, until Unix ms), while plugged in.
        self.setpoint: tuple[float, int] | None = None
        # Spans of the traced statuses of the message being built, by index in it.
        self.new_spans: list[tuple[int, Span]] | None = None

    async def run(self) -> None:
        try:
            await self._pause(self.start_delay)
            cfg = self.fleet.config
            backoff = cfg.backoff_initial
            while not self.fleet.ending:
                answers_before = self.answers
                try:
                    await self._session()
                except grpc.aio.AioRpcError as exc:
                    fatal = _fatal(exc)
                    if fatal is not None:
                        self.fleet.stats.record_error()
                        raise fatal from None
                    self.fleet.stream_broke(self.car.car_id, exc.code().name, exc.details())
                else:
                    if self.fleet.ending:
                        return
                    self.fleet.stream_broke(self.car.car_id, "OK", "ingestion ended the stream")
                if self.answers > answers_before:
                    backoff = cfg.backoff_initial  # the stream worked for a while
                # Jittered, so cars cut off together do not come back together.
                await self._pause(backoff * (0.5 + self.fleet.jitter.random() / 2))
                backoff = min(backoff * 2, cfg.backoff_max)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure of a car ends the run, loudly
            self.fleet.fail(exc)

    async def _wait(self, deadline: float | None) -> None:
        """Sleep until woken, or until the loop-time deadline; no task per wait."""
        handle = None
        if deadline is not None:
            handle = asyncio.get_running_loop().call_at(deadline, self.wake.set)
        self.wake.clear()
        try:
            await self.wake.wait()
        finally:
            if handle is not None:
                handle.cancel()

    async def _pause(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self.fleet.ending and loop.time() < deadline - _TICK_TOLERANCE_S:
            await self._wait(deadline)

    async def _session(self) -> None:
        """One stream, from open to graceful end; raises AioRpcError when it breaks."""
        if self.fleet.config.batch_size > 1:
            batches = self.stub.StreamTelemetryBatches(metadata=self.fleet.metadata)
            reader = asyncio.create_task(self._read_batches(batches))
            await self._converse(batches, reader, self._next_batch)
        else:
            statuses = self.stub.StreamTelemetry(metadata=self.fleet.metadata)
            reader = asyncio.create_task(self._read_statuses(statuses))
            await self._converse(statuses, reader, self._next_status)

    async def _converse(
        self,
        call: grpc.aio.StreamStreamCall[_Request, Any],
        reader: asyncio.Task[None],
        next_message: Callable[[], tuple[_Request, int]],
    ) -> None:
        cfg = self.fleet.config
        stats = self.fleet.stats
        self.pending.clear()
        stats.connected += 1
        try:
            await self._write(call, reader, next_message)
            # Graceful end: no more requests, then the answers still on their way.
            await call.done_writing()
            done, _ = await asyncio.wait([reader], timeout=cfg.drain_timeout)
            if not done:
                log.debug("%s: %d answers not drained in time", self.car.car_id, len(self.pending))
            else:
                reader.result()  # raises AioRpcError when the stream broke
        finally:
            stats.connected -= 1
            if not reader.done():
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
            call.cancel()  # no-op when the call already ended
            stats.record_unanswered(sum(sent.count for sent in self.pending))
            for sent in self.pending:
                if sent.spans:
                    unanswered([span for _, span in sent.spans], "no answer: the stream ended")
            self.pending.clear()

    async def _write(
        self,
        call: grpc.aio.StreamStreamCall[_Request, Any],
        reader: asyncio.Task[None],
        next_message: Callable[[], tuple[_Request, int]],
    ) -> None:
        cfg = self.fleet.config
        loop = asyncio.get_running_loop()
        while not self.fleet.ending and not reader.done():
            now = loop.time()
            if not cfg.saturating and now < self.next_due - _TICK_TOLERANCE_S:
                await self._wait(self.next_due)
                continue
            if len(self.pending) >= cfg.max_in_flight:
                await self._wait(None)  # the reader wakes us on the next answer
                continue
            message, count = next_message()
            spans, self.new_spans = self.new_spans, None
            self.pending.append(_Sent(time.perf_counter(), count, self.last_timestamp, spans))
            try:
                await call.write(message)
            except (asyncio.InvalidStateError, grpc.aio.AioRpcError):
                # The call ended under us: this message never left; the reader says why.
                self.pending.pop()
                if spans:
                    unanswered([span for _, span in spans], "not sent: the stream ended")
                return
            self.fleet.stats.record_sent(count)
            if not cfg.saturating:
                self.next_due += cfg.interval
                if self.next_due <= now:  # stalled for a whole interval: realign, no burst
                    self.next_due = now + cfg.interval

    def _advance(self, dt_s: float, index: int = 0) -> fleet_pb2.CarStatus:
        """Step the physics and stamp the new status with a strictly rising time."""
        fleet = self.fleet
        stats = fleet.stats
        now = _now_ms()
        before = self.car
        if (
            before.mode is Mode.TO_STATION
            and not before.going_home
            and now >= self.booking_expires_ms
        ):
            before = give_up(before)
            stats.bookings_expired_en_route += 1
        setpoint_kw = None
        if before.mode is Mode.CHARGING and self.setpoint is not None:
            kw, until = self.setpoint
            setpoint_kw = kw if now < until else None
        car = step(
            before,
            self.rng,
            dt_s,
            fleet.box,
            fleet.charging,
            moment=fleet.moment(now),
            setpoint_kw=setpoint_kw,
            habits=fleet.habits,
        )
        if car.mode is not before.mode:
            if car.mode is Mode.CHARGING:
                stats.charging_sessions_started += 1
                stats.went_home += car.going_home
            elif before.mode is Mode.CHARGING:
                stats.charging_sessions_finished += 1
                stats.departures += before.depart_at > 0
                self.setpoint = None
        elif car.mode is Mode.CHARGING and car.battery < car.charge_target:
            if setpoint_kw is None:
                stats.unplanned_updates += 1
            else:
                stats.planned_updates += 1
                stats.waiting_updates += setpoint_kw <= 0.0
        self.car = car
        # Distinct, increasing timestamps per car, even for several statuses in one ms.
        self.last_timestamp = max(now, self.last_timestamp + 1)
        status = fleet_pb2.CarStatus(
            car_id=car.car_id,
            lat=car.lat,
            lon=car.lon,
            battery=car.battery,
            velocity=car.velocity,
            timestamp=self.last_timestamp,
        )
        # Set only when needed: the common status of a benchmark stays as cheap as before.
        if car.mode is Mode.CHARGING:
            status.station_id = car.station_id
            if car.depart_at:
                status.target_battery = car.charge_target
                status.depart_at = car.depart_at
        elif car.mode is Mode.DRIVING and (car.battery < fleet.charge_below or car.battery <= 0):
            status.request_booking = True
        if fleet.tracer is not None:
            span = fleet.tracer.maybe_trace(status, fleet.method)
            if span is not None:
                if self.new_spans is None:
                    self.new_spans = []
                self.new_spans.append((index, span))
        return status

    def _booked(self, booking: fleet_pb2.Booking) -> None:
        """A BOOKED answer: the car heads for the station, once per booking."""
        if (
            self.car.mode is Mode.CHARGING
            or self.car.going_home
            or booking.booking_id == self.booking_id
        ):
            # Plugged in, on its way home, or one more answer about a followed booking.
            return
        station = _station_of(booking)
        if station is None:
            log.debug("%s: ignoring a booking without a usable station", self.car.car_id)
            return
        self.booking_id = booking.booking_id
        self.booking_expires_ms = booking.expires_at if booking.expires_at > 0 else _NEVER_MS
        # Answers come in order and carry the car's active booking: a different one on
        # the way means ingestion let the followed one go (expired by its clock).
        self.car = head_to(give_up(self.car), station)

    # Each message stands for one update of `step_s` seconds of driving, not the time that
    # really passed: a car's statuses then depend on the seed alone, whatever the timing.
    def _next_status(self) -> tuple[fleet_pb2.CarStatus, int]:
        return self._advance(self.fleet.config.step_s), 1

    def _next_batch(self) -> tuple[fleet_pb2.CarStatusBatch, int]:
        # A batch holds the statuses the car measured during one update period.
        size = self.fleet.config.batch_size
        dt = self.fleet.config.step_s / size
        statuses = [self._advance(dt, i) for i in range(size)]
        return fleet_pb2.CarStatusBatch(statuses=statuses), size

    def _answered(self) -> _Sent | None:
        self.answers += 1
        self.wake.set()
        if not self.pending:
            # More answers than requests: the server broke the one-answer-per-message contract.
            self.fleet.stats.unexpected += 1
            return None
        return self.pending.popleft()

    async def _read_statuses(
        self, call: grpc.aio.StreamStreamCall[fleet_pb2.CarStatus, fleet_pb2.BookingResponse]
    ) -> None:
        stats = self.fleet.stats
        try:
            async for answer in call:
                sent = self._answered()
                if sent is None:
                    continue
                latency = time.perf_counter() - sent.at
                if sent.spans:
                    answered([span for _, span in sent.spans], answer.status, answer.message)
                field = _FIELD_OF_STATUS.get(answer.status, "unexpected")
                stats.record_answer(latency, **{field: 1})
                if answer.HasField("setpoint"):
                    stats.setpoints += 1
                    if self.car.mode is Mode.CHARGING:
                        self.setpoint = (answer.setpoint.power_kw, answer.setpoint.until)
                if answer.status == _S.BOOKED:
                    self._booked(answer.booking)
                elif answer.status == _S.REJECTED:
                    self.fleet.rejected(answer.car_id, answer.field, answer.message)
                if answer.timestamp and answer.timestamp != sent.timestamp:
                    stats.mismatched += 1
        finally:
            self.wake.set()  # the writer must notice a finished stream

    async def _read_batches(
        self, call: grpc.aio.StreamStreamCall[fleet_pb2.CarStatusBatch, fleet_pb2.BatchResponse]
    ) -> None:
        stats = self.fleet.stats
        try:
            async for answer in call:
                sent = self._answered()
                if sent is None:
                    continue
                latency = time.perf_counter() - sent.at
                if sent.spans:
                    _batch_answered(sent.spans, answer)
                for item in answer.rejected[:1]:
                    self.fleet.rejected(item.car_id, item.field, item.message)
                if answer.status == _S.ACCEPTED:
                    rejected = len(answer.rejected)
                    stats.record_answer(
                        latency,
                        accepted=answer.accepted,
                        rejected=rejected,
                        # Whatever the answer does not account for is flagged, not guessed.
                        unexpected=max(0, sent.count - answer.accepted - rejected),
                    )
                else:
                    if answer.status == _S.REJECTED:
                        self.fleet.rejected(self.car.car_id, "(the batch)", answer.message)
                    field = _FIELD_OF_STATUS.get(answer.status, "unexpected")
                    stats.record_answer(latency, **{field: sent.count})
        finally:
            self.wake.set()


def _batch_answered(spans: Sequence[tuple[int, Span]], answer: fleet_pb2.BatchResponse) -> None:
    """End the spans of a batch's traced statuses, each with what became of it."""
    items = {item.index: item for item in answer.rejected}
    for index, span in spans:
        item = items.get(index)
        if item is not None:
            status = _S.REJECTED if item.field else _S.UNAVAILABLE
            answered([span], status, item.message)
        elif answer.status == _S.ACCEPTED or answer.accepted:
            answered([span], _S.ACCEPTED, answer.message)
        else:
            answered([span], answer.status, answer.message)


async def _wait_for_end(fleet: _Fleet, stop: asyncio.Event, duration: float | None) -> None:
    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(fleet.failed.wait())]
    try:
        await asyncio.wait(waiters, timeout=duration, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


def open_channel(
    config: FleetConfig, interceptors: Sequence[grpc.aio.ClientInterceptor] = ()
) -> grpc.aio.Channel:
    """A channel to ingestion: plaintext, TLS, or mutual TLS (FleetConfig.tls_*)."""
    chosen = list(interceptors) or None
    if not config.tls_ca_file:
        return grpc.aio.insecure_channel(
            config.target, options=_CHANNEL_OPTIONS, interceptors=chosen
        )
    with open(config.tls_ca_file, "rb") as f:
        ca = f.read()
    cert = key = None
    if config.tls_cert_file:
        with open(config.tls_cert_file, "rb") as f:
            cert = f.read()
        with open(config.tls_key_file, "rb") as f:
            key = f.read()
    credentials = grpc.ssl_channel_credentials(ca, key, cert)
    return grpc.aio.secure_channel(
        config.target, credentials, options=_CHANNEL_OPTIONS, interceptors=chosen
    )


async def run_fleet(
    config: FleetConfig,
    stats: Stats,
    stop: asyncio.Event | None = None,
    *,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
    tracer_provider: TracerProvider | None = None,
) -> Stats:
    """Drive the cars of `config.shard` until `config.duration` elapses or `stop` is set.

    Returns `stats`, filled in. Raises FleetError (TokenRefused for UNAUTHENTICATED)
    when the run cannot go on; `stats` then holds what happened until then.
    `interceptors` go on every channel (the CLI's gRPC client spans when it exports);
    the statuses' spans go to `tracer_provider` (default: the global one).
    """
    stop = stop if stop is not None else asyncio.Event()
    channels = [open_channel(config, interceptors) for _ in range(config.channel_count)]
    stats.start(time.monotonic())
    try:
        fleet = _Fleet(config, stats, channels, tracer_provider)
        log.info(
            "driving %d cars against %s over %d channel(s), %s",
            len(fleet.cars),
            config.target,
            len(channels),
            "saturating" if config.saturating else f"one message every {config.interval:g} s",
        )
        tasks = [asyncio.create_task(car.run(), name=car.car.car_id) for car in fleet.cars]
        try:
            await _wait_for_end(fleet, stop, config.duration)
            fleet.end()
            # Cars drain on their own; the extra second covers the last writes and closes.
            _, late = await asyncio.wait(tasks, timeout=config.drain_timeout + 1.0)
            if late:
                log.warning("%d streams did not end in time; cancelling them", len(late))
        finally:
            fleet.end()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))
        stats.finish(time.monotonic())
    if fleet.fatal is not None:
        raise fleet.fatal
    return stats

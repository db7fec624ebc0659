"""The async driver: many cars in one process, each on its own FleetTelemetry stream.

Sending policy. Each car is a `greenlane.client` link over its own outbox: every
`interval` the car measures one status (or batch_size of them) into its outbox, whether
ingestion is there or not, and the link sends them with at most `max_in_flight`
messages unanswered, keeping each until it is acknowledged and resending after
UNAVAILABLE, RATE_LIMITED or a broken stream (docs/client.md). Ticks missed by more than
a whole interval (a stalled event loop) are skipped, not made up; a backlog (after an
outage, or a slow server) goes as SendBatch calls, so a server that recovers sees
batches, not a burst of messages. In saturate mode (interval 0) there are no ticks: a
car measures its next status whenever its window has room and its outbox is empty.

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
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Final
from zoneinfo import ZoneInfo

import grpc
from opentelemetry.trace import Span, TracerProvider

from greenlane.client import Backoff, ClientError, Entry, Link, LinkListener, Outbox, TlsFiles
from greenlane.client import open_channel as client_channel
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

# After an outage a car's backlog goes in batch messages of up to this many statuses.
BACKLOG_BATCH: Final = 500
# A timer that fires a hair early must not cost one more wake-up.
_TICK_TOLERANCE_S: Final = 0.001
# Expiry of a booking that does not say when it expires.
_NEVER_MS: Final = 2**63 - 1

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
# Answers after which the link sends the status again: its span stays open until then.
_RESENT: Final = frozenset({_S.UNAVAILABLE, _S.RATE_LIMITED})
# Traced statuses of one car waiting for an answer, at most (a car offline for long).
MAX_OPEN_SPANS: Final = 1000


class FleetError(GreenLaneError):
    """The run cannot go on; the message says why."""


class TokenRefused(FleetError):
    """Ingestion answered UNAUTHENTICATED: no reconnect can fix a wrong token."""

    def __init__(self) -> None:
        super().__init__("ingestion refused the token (UNAUTHENTICATED)")


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
        # Backoff jitter is timing, not physics: kept apart from the seeded generators.
        self.jitter = random.Random()
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
        self.ending = False
        # --ack-log: every acknowledged status, for an end-to-end audit (bench chaos).
        self.ack_log: IO[str] | None = (
            open(config.ack_log, "a", buffering=1 << 16) if config.ack_log else None  # noqa: SIM115
        )
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
            car.stop()

    def acknowledged(self, entries: Sequence[Entry]) -> None:
        """Statuses ingestion stored: one `car_id timestamp` line each in the ack log."""
        if self.ack_log is not None:
            self.ack_log.writelines(f"{e.car_id} {e.status.timestamp}\n" for e in entries)

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


class _CarStream(LinkListener):
    """One car: its state, its outbox, and the client link that streams it."""

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
        self.start_delay = start_delay
        self.last_timestamp = 0
        # The booking the car follows (or last followed), and when it expires (Unix ms).
        self.booking_id = ""
        self.booking_expires_ms = _NEVER_MS
        # The latest setpoint of the car's plan, (kW, until Unix ms), while plugged in.
        self.setpoint: tuple[float, int] | None = None
        # The spans of its traced statuses not yet answered, by status timestamp (unique
        # and rising per car): a resent status keeps its trace until it is answered.
        self.spans: dict[int, Span] = {}
        cfg = fleet.config
        batching = cfg.batch_size > 1
        # One message in flight keeps a car's statuses in order through any failure;
        # a deeper window pipelines (a resend may then land after a newer status).
        self.outbox = Outbox(cfg.buffer, strict_order=cfg.max_in_flight == 1)
        self.link = Link(
            stub,
            self.outbox,
            metadata=fleet.metadata,
            mode="batch" if batching else "status",
            # A batch message carries batch_size statuses; a backlog after an outage
            # goes in larger ones.
            max_batch=max(cfg.batch_size, BACKLOG_BATCH),
            max_in_flight=cfg.max_in_flight,
            backoff=Backoff(cfg.backoff_initial, cfg.backoff_max, rng=fleet.jitter),
            listener=self,
            refill=self._produce if cfg.saturating else None,
            drain_timeout=cfg.drain_timeout,
        )

    async def run(self) -> None:
        try:
            cfg = self.fleet.config
            if cfg.saturating:
                await self.link.run(self.start_delay)
            else:
                ticker = asyncio.create_task(self._tick())
                try:
                    await self.link.run(self.start_delay)
                finally:
                    ticker.cancel()
                    await asyncio.gather(ticker, return_exceptions=True)
        except asyncio.CancelledError:
            raise
        except ClientError as exc:
            self.fleet.stats.record_error()
            fatal: FleetError = (
                TokenRefused()
                if exc.code == grpc.StatusCode.UNAUTHENTICATED
                else FleetError(str(exc))
            )
            self.fleet.fail(fatal)
        except Exception as exc:  # any failure of a car ends the run, loudly
            self.fleet.fail(exc)
        finally:
            self.end_spans("not acknowledged before the run ended")
            stats = self.fleet.stats
            stats.unsent += len(self.outbox)
            stats.resent += self.outbox.counters.resent
            stats.dropped += self.outbox.counters.dropped

    def stop(self) -> None:
        self.link.close()

    async def _tick(self) -> None:
        """Paced: one message every interval, measured whether or not ingestion is there.

        Ticks missed by more than a whole interval (a stalled event loop) are skipped,
        not made up; statuses measured while offline wait in the outbox.
        """
        cfg = self.fleet.config
        loop = asyncio.get_running_loop()
        await asyncio.sleep(self.start_delay)
        next_due = loop.time()
        while not self.fleet.ending:
            now = loop.time()
            if now < next_due - _TICK_TOLERANCE_S:
                await asyncio.sleep(next_due - now)
                continue
            self._produce()
            next_due += cfg.interval
            if next_due <= now:  # stalled for a whole interval: realign, no burst
                next_due = now + cfg.interval

    def _produce(self) -> None:
        cfg = self.fleet.config
        if cfg.batch_size > 1:
            # A batch holds the statuses the car measured during one update period.
            dt = cfg.step_s / cfg.batch_size
            for _ in range(cfg.batch_size):
                self.outbox.put(self._advance(dt))
        else:
            # Each status stands for one update of `step_s` seconds of driving, not the
            # time that really passed: a car's statuses depend on the seed alone.
            self.outbox.put(self._advance(cfg.step_s))
        self.link.wake()

    # --- what the link sees (LinkListener) ----------------------------------------
    def on_open(self) -> None:
        self.fleet.stats.connected += 1

    def on_close(self, unanswered: int) -> None:
        self.fleet.stats.connected -= 1
        self.fleet.stats.record_unanswered(unanswered)

    def on_broken(self, code: str, details: str | None) -> None:
        self.fleet.stream_broke(self.car.car_id, code, details)

    def on_sent(self, entries: Sequence[Entry]) -> None:
        self.fleet.stats.record_sent(len(entries))

    def on_status_answer(
        self, entries: Sequence[Entry], answer: fleet_pb2.BookingResponse, latency_s: float
    ) -> None:
        stats = self.fleet.stats
        field = _FIELD_OF_STATUS.get(answer.status, "unexpected")
        stats.record_answer(latency_s, **{field: 1})
        if self.spans and answer.status not in _RESENT:
            self._end_spans(entries, answer.status, answer.message)
        if answer.HasField("setpoint"):
            stats.setpoints += 1
            if self.car.mode is Mode.CHARGING:
                self.setpoint = (answer.setpoint.power_kw, answer.setpoint.until)
        if answer.status == _S.BOOKED:
            self._booked(answer.booking)
        elif answer.status == _S.REJECTED:
            self.fleet.rejected(answer.car_id, answer.field, answer.message)
        if answer.timestamp and answer.timestamp != entries[-1].status.timestamp:
            stats.mismatched += 1
        if field in ("accepted", "booked", "no_capacity"):
            self.fleet.acknowledged(entries)

    def on_batch_answer(
        self, entries: Sequence[Entry], answer: fleet_pb2.BatchResponse, latency_s: float
    ) -> None:
        stats = self.fleet.stats
        count = len(entries)
        if self.spans:
            self._end_batch_spans(entries, answer)
        for item in answer.rejected[:1]:
            self.fleet.rejected(item.car_id, item.field, item.message)
        if answer.status in (_S.ACCEPTED, _S.UNAVAILABLE):
            listed = {item.index for item in answer.rejected}
            not_stored = sum(1 for i in answer.rejected if i.message.startswith("not stored"))
            stats.record_answer(
                latency_s,
                accepted=answer.accepted,
                rejected=len(answer.rejected) - not_stored,
                unavailable=not_stored,
                # Whatever the answer does not account for is flagged, not guessed.
                unexpected=max(0, count - answer.accepted - len(answer.rejected)),
            )
            self.fleet.acknowledged([e for i, e in enumerate(entries) if i not in listed])
        else:
            if answer.status == _S.REJECTED:
                self.fleet.rejected(self.car.car_id, "(the batch)", answer.message)
            field = _FIELD_OF_STATUS.get(answer.status, "unexpected")
            stats.record_answer(latency_s, **{field: count})

    def _end_spans(
        self, entries: Sequence[Entry], status: fleet_pb2.ResponseStatus.ValueType, message: str
    ) -> None:
        for entry in entries:
            span = self.spans.pop(entry.status.timestamp, None)
            if span is not None:
                answered([span], status, message)

    def _end_batch_spans(self, entries: Sequence[Entry], answer: fleet_pb2.BatchResponse) -> None:
        """End the spans of a batch's traced statuses that will not be sent again, each
        with what became of it (a status not stored is resent, its span waits)."""
        if answer.status in _RESENT:
            return
        if answer.status == _S.REJECTED:
            self._end_spans(entries, _S.REJECTED, answer.message)
            return
        items = {item.index: item for item in answer.rejected}
        for i, entry in enumerate(entries):
            item = items.get(i)
            if item is None:
                self._end_spans([entry], _S.ACCEPTED, "stored")
            elif item.field:
                self._end_spans([entry], _S.REJECTED, item.message)

    def end_spans(self, why: str) -> None:
        """At the end of the run: the spans of statuses never acknowledged."""
        if self.spans:
            unanswered(list(self.spans.values()), why)
            self.spans.clear()

    def _advance(self, dt_s: float) -> fleet_pb2.CarStatus:
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
                if len(self.spans) >= MAX_OPEN_SPANS:  # offline for long: the oldest go
                    oldest = min(self.spans)
                    unanswered([self.spans.pop(oldest)], "not acknowledged: too many waiting")
                self.spans[status.timestamp] = span
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
    tls = None
    if config.tls_ca_file:
        tls = TlsFiles(
            Path(config.tls_ca_file),
            Path(config.tls_cert_file) if config.tls_cert_file else None,
            Path(config.tls_key_file) if config.tls_key_file else None,
        )
    return client_channel(config.target, tls, interceptors)


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
    fleet: _Fleet | None = None
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
        if fleet is not None and fleet.ack_log is not None:
            fleet.ack_log.close()
    if fleet is not None and fleet.fatal is not None:
        raise fleet.fatal
    return stats

"""Batches valid car statuses from every stream into one Redis write and one Kafka flush.

A status is acknowledged only when both stored it, and an UNAVAILABLE answer means that
nothing of it stayed stored. Each flush goes in three steps:

1. Redis first. Each status is written, or refused alone (say a key of the wrong type),
   or older than what its car holds (then Redis keeps the newer state and the status is
   only history). Failures that may pass (a connection) are retried until the
   acknowledgement deadline; a refusal is final at once.
2. Kafka, for the statuses Redis took, in order; retried the same way.
3. What Redis took but Kafka did not confirm is taken back from Redis (the car gets what
   it held before, unless a newer status came meanwhile). Then every submission gets
   its Receipt: which of its statuses are not stored, and why.

Up to four flushes run at once; a flush waits for every earlier one that holds one of
its cars, so a car's statuses reach Redis and Kafka in the order they arrived, across
streams and batches, and a car's state is taken back before its next status is written.
The backends are interfaces (StateStore, EventLog): Redis and Kafka in production,
in-process fakes in the unit tests.

Tracing: a submission may carry the span context of each of its statuses (the status's
own trace, docs/observability.md). A flush span continues the trace of its first traced
status and links the others; its Redis and Kafka steps are its children; each traced
status's Kafka record carries that status's trace context, the others the flush's
(when the flush is sampled). A flush without a traced status costs one unsampled span.
"""

from __future__ import annotations

import asyncio
import logging
import time
from asyncio import FIRST_COMPLETED
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from opentelemetry import trace
from opentelemetry.trace import SpanContext, SpanKind, StatusCode

from greenlane.core.errors import BackendUnavailable
from greenlane.core.events import CarState
from greenlane.core.telemetry import continue_and_link, inject_trace_headers, trace_headers
from greenlane.ingestion import metrics

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]

# How long taking statuses back from Redis may take, after the deadline.
UNDO_TIMEOUT_SECONDS: Final = 2.0


class StateWrite(Protocol):
    """The Redis side of one flush (greenlane.core.redis_state.CarStateWrite)."""

    @property
    def pending(self) -> bool:
        """Something is not answered yet, and may be tried again."""
        ...

    async def attempt(self) -> None:
        """One try at what is pending. A backend failure is recorded, never raised:
        pending if it may pass, refused if not."""
        ...

    def failures(self) -> dict[int, str]:
        """The statuses Redis did not take, and why ("" when it did not answer)."""
        ...

    async def undo(self, failed: Sequence[int]) -> int:
        """Take the failed statuses back; returns how many cars it touched."""
        ...


class StateStore(Protocol):
    def begin(self, states: Sequence[CarState], claims: Sequence[str]) -> StateWrite:
        """A write of states; claims[i] is the fleet claim of status i (see
        greenlane.core.redis_state.claim_of): a car another fleet owns is refused."""
        ...


class EventPublish(Protocol):
    """The Kafka side of one flush (greenlane.ingestion.publisher.KafkaPublish)."""

    @property
    def pending(self) -> bool: ...

    async def attempt(self) -> None: ...

    def failures(self) -> dict[int, str]:
        """Of the statuses given, those not confirmed, and why ("" when no answer)."""
        ...


class EventLog(Protocol):
    def begin(
        self,
        states: Sequence[CarState],
        indices: Sequence[int],
        headers: Headers,
        fleets: Sequence[str] | None = None,
        traced: Mapping[int, Headers] | None = None,
    ) -> EventPublish:
        """Publish states[i] for i in indices; each record carries `headers`, or its own
        from `traced` (the statuses traced on their own), and its sender's fleet from
        `fleets` (by index in states; '' none)."""
        ...


@dataclass(frozen=True, slots=True)
class Receipt:
    """What became of the statuses of one submission."""

    failures: Mapping[int, str]  # index in the submission -> why it is not stored

    @property
    def stored(self) -> bool:
        """Every status of the submission is stored."""
        return not self.failures


STORED: Final = Receipt({})


@dataclass(slots=True)
class _Pending:
    states: Sequence[CarState]
    future: asyncio.Future[Receipt]
    received: float
    deadline: float
    claim: str = ""  # the submitter's fleet claim ('' none, '*fleet' an operator's)
    # Per status, the span context of its own trace (None: not traced); None for none.
    traces: Sequence[SpanContext | None] | None = None


class _Flush:
    """One flush: whole submissions, the cars they hold, their deadline."""

    def __init__(self, items: list[_Pending]) -> None:
        self.items = items
        self.states = [s for item in items for s in item.states]
        self.claims = [item.claim for item in items for _ in item.states]
        self.cars = {s.car_id for s in self.states}
        # (index in the flush, span context) of the statuses traced on their own.
        self.traces: list[tuple[int, SpanContext]] = []
        offset = 0
        for item in items:
            if item.traces is not None:
                self.traces += [(offset + k, c) for k, c in enumerate(item.traces) if c]
            offset += len(item.states)
        self.deadline = min(item.deadline for item in items)
        self.started = time.monotonic()
        self.task: asyncio.Task[None]
        self.done = False


class IngestPipeline:
    """Submit statuses, await their receipt; one background flush loop."""

    def __init__(
        self,
        state: StateStore,
        events: EventLog,
        *,
        max_flush_size: int = 4000,
        ack_timeout: float = 5.0,
        max_pending: int = 50_000,
        max_flushes: int = 4,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self._state = state
        self._events = events
        self._max_flush = max_flush_size
        self._ack_timeout = ack_timeout
        self._max_pending = max_pending
        self._max_flushes = max_flushes  # flushes in flight at once
        self._queue: deque[_Pending] = deque()
        self._pending = 0
        self._wakeup = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.healthy = True  # the last flush found both backends answering

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ingest-pipeline")

    async def close(self, drain_seconds: float = 10.0) -> None:
        """Flush what was submitted, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, drain_seconds)
            except TimeoutError:
                log.warning("pipeline did not drain within %.1fs", drain_seconds)
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(BackendUnavailable("ingestion is shutting down"))

    async def wait_for_space(self) -> None:
        """Back-pressure: wait while too many statuses are waiting for a flush."""
        if self._pending < self._max_pending:
            return
        self._space.clear()
        try:
            await asyncio.wait_for(self._space.wait(), self._ack_timeout)
        except TimeoutError:
            raise BackendUnavailable(
                "ingestion is saturated; backends are not keeping up"
            ) from None

    def submit(
        self,
        states: Sequence[CarState],
        received: float | None = None,
        claim: str = "",
        traces: Sequence[SpanContext | None] | None = None,
    ) -> asyncio.Future[Receipt]:
        """Queue statuses that are answered together; the future gives their Receipt.

        claim is the submitter's fleet claim (greenlane.core.redis_state.claim_of): a
        status for a car of another fleet is not stored, its failure a `Denied` reason.
        traces: per status, the span context of its own trace (None where it has none).
        """
        if self._closing:
            raise BackendUnavailable("ingestion is shutting down")
        received = received if received is not None else time.monotonic()
        fut: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        self._queue.append(
            _Pending(states, fut, received, received + self._ack_timeout, claim, traces)
        )
        self._pending += len(states)
        metrics.PENDING.set(self._pending)
        self._wakeup.set()
        return fut

    def _take(self) -> list[_Pending]:
        """The next flush: whole submissions, up to max_flush_size statuses (at least one)."""
        items: list[_Pending] = []
        size = 0
        queue = self._queue
        while queue and (not items or size + len(queue[0].states) <= self._max_flush):
            item = queue.popleft()
            items.append(item)
            size += len(item.states)
        self._pending -= size
        metrics.PENDING.set(self._pending)
        if self._pending < self._max_pending:
            self._space.set()
        return items

    async def _run(self) -> None:
        in_flight: list[_Flush] = []
        try:
            while True:
                in_flight = [f for f in in_flight if not f.done]
                if not self._queue:
                    if self._closing:
                        break
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                if len(in_flight) >= self._max_flushes:
                    # Busy: statuses gather into the next flush meanwhile (that is batching).
                    await asyncio.wait([f.task for f in in_flight], return_when=FIRST_COMPLETED)
                    continue
                flush = _Flush(self._take())
                # A flush waits for every earlier one that holds one of its cars (that car's
                # order, and a take-back of its state, come first); others run alongside.
                after = [f.task for f in in_flight if not flush.cars.isdisjoint(f.cars)]
                flush.task = asyncio.create_task(self._flush(flush, after))
                in_flight.append(flush)
            if in_flight:
                await asyncio.wait([f.task for f in in_flight])
        finally:
            for f in in_flight:
                f.task.cancel()

    async def _flush(self, flush: _Flush, after: list[asyncio.Task[None]]) -> None:
        """Redis first, then Kafka for what Redis took; take back what is not stored;
        answer every submission."""
        try:
            if after:
                await asyncio.wait(after)
            why = await self._store(flush)
            now = time.monotonic()
            metrics.FLUSH_DURATION.observe(now - flush.started)
            _deliver(flush.items, why, now)
        except asyncio.CancelledError:
            _fail(flush.items, "ingestion is shutting down")
            raise
        except Exception:  # a bug must not stop the pipeline: fail the flush, go on
            log.exception("flush failed unexpectedly")
            _fail(flush.items, "internal error while storing")
        finally:
            flush.done = True

    async def _store(self, flush: _Flush) -> list[str]:
        """Per status: "" when Redis and Kafka stored it, else why it is not stored."""
        states = flush.states
        metrics.FLUSH_STATUSES.observe(len(states))
        tracer = self._tracer
        parent, links, dropped = continue_and_link([c for _, c in flush.traces])
        with tracer.start_as_current_span(FLUSH_SPAN, context=parent, links=links) as span:
            recording = span.is_recording()
            if recording:
                span.set_attribute("greenlane.flush.statuses", len(states))
                span.set_attribute("greenlane.flush.traced", len(flush.traces))
                if dropped:
                    span.set_attribute("greenlane.links.dropped", dropped)
            why = [""] * len(states)
            write = self._state.begin(states, flush.claims)
            with tracer.start_as_current_span(REDIS_SPAN, kind=SpanKind.CLIENT) as step:
                redis_answered = await self._until(write, "redis", flush.deadline)
                refused = write.failures()
                _outcome(step, len(states), len(refused), redis_answered, system="redis")
            for i, reason in refused.items():
                why[i] = reason or "Redis did not confirm in time; safe to resend"
            every = range(len(states))
            taken = [i for i in every if i not in refused] if refused else list(every)
            kafka_answered = True
            if taken:
                fleets = [c.removeprefix("*") for c in flush.claims]
                # Untraced statuses carry the flush's trace when it is sampled; a traced
                # one its own, so each consumer span finds the status it came from.
                headers = inject_trace_headers() if recording else []
                traced = _headers_of(flush.traces) or None
                with tracer.start_as_current_span(KAFKA_SPAN, kind=SpanKind.PRODUCER) as step:
                    publish = self._events.begin(states, taken, headers, fleets, traced)
                    kafka_answered = await self._until(publish, "kafka", flush.deadline)
                    failures = publish.failures()
                    _outcome(step, len(taken), len(failures), kafka_answered, system="kafka")
                for i, reason in failures.items():
                    why[i] = reason or "Kafka did not confirm in time; safe to resend"
            self.healthy = redis_answered and kafka_answered
            failed = [i for i, w in enumerate(why) if w]
            if failed:
                with tracer.start_as_current_span(UNDO_SPAN, kind=SpanKind.CLIENT):
                    await self._undo(write, failed)
            if recording:
                span.set_attribute("greenlane.flush.not_stored", len(failed))
                if failed:
                    span.set_status(StatusCode.ERROR, f"{len(failed)} statuses not stored")
        return why

    async def _until(self, work: StateWrite | EventPublish, backend: str, deadline: float) -> bool:
        """Try until nothing is pending or the deadline passed; False if something was
        still pending then."""
        delay = 0.05
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    await work.attempt()
            except TimeoutError:
                metrics.BACKEND_ERRORS.labels(backend).inc()
                log.warning("%s did not answer before the acknowledgement deadline", backend)
                break
            if not work.pending:
                return True
            metrics.BACKEND_ERRORS.labels(backend).inc()
            if time.monotonic() + delay >= deadline:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        return not work.pending

    async def _undo(self, write: StateWrite, failed: list[int]) -> None:
        try:
            async with asyncio.timeout(UNDO_TIMEOUT_SECONDS):
                undone = await write.undo(failed)
        except Exception as exc:  # Redis is gone too: what it holds stays until replaced
            metrics.STATE_UNDO_FAILURES.inc()
            log.warning(
                "could not take %d unpublished statuses back from Redis: %s", len(failed), exc
            )
            return
        if undone:
            metrics.STATES_UNDONE.inc(undone)


FLUSH_SPAN: Final = "ingestion.flush"
REDIS_SPAN: Final = "redis write"
KAFKA_SPAN: Final = "kafka produce"
UNDO_SPAN: Final = "redis undo"


def _headers_of(traces: Sequence[tuple[int, SpanContext]]) -> dict[int, Headers]:
    """Each traced status's record headers; built once per trace (a SendBatch call's
    statuses share the call's)."""
    made: dict[tuple[int, int], Headers] = {}
    out: dict[int, Headers] = {}
    for i, c in traces:
        key = (c.trace_id, c.span_id)
        headers = made.get(key)
        if headers is None:
            headers = made[key] = trace_headers(c)
        out[i] = headers
    return out


def _outcome(
    span: trace.Span, statuses: int, not_taken: int, answered: bool, *, system: str
) -> None:
    """What one backend step did, on its span (nothing to do for an unsampled one)."""
    if not span.is_recording():
        return
    span.set_attribute("db.system.name" if system == "redis" else "messaging.system", system)
    span.set_attribute("greenlane.flush.statuses", statuses)
    span.set_attribute("greenlane.flush.not_taken", not_taken)
    if not answered:
        span.set_status(StatusCode.ERROR, f"{system} did not confirm before the deadline")
    elif not_taken:
        span.set_status(StatusCode.ERROR, f"{system} refused {not_taken} statuses")


def _fail(items: Sequence[_Pending], message: str) -> None:
    for item in items:
        if not item.future.done():
            item.future.set_exception(BackendUnavailable(message))


def _deliver(items: Sequence[_Pending], why: list[str], now: float) -> None:
    """Resolve each submission's future with its Receipt, in submission order."""
    all_stored = not any(why)
    index = 0
    for item in items:
        n = len(item.states)
        start, index = index, index + n
        if item.future.done():  # the stream went away
            continue
        if all_stored:
            receipt = STORED
        else:
            failures = {k: why[start + k] for k in range(n) if why[start + k]}
            receipt = Receipt(failures) if failures else STORED
        if receipt.stored:
            metrics.ACK_LATENCY.observe(now - item.received)
        item.future.set_result(receipt)

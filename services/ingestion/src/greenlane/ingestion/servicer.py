"""FleetTelemetry servicer: validates statuses, submits them, answers each in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import Span

from greenlane.core.auth import ALL_SCOPES, Principal
from greenlane.core.errors import BackendUnavailable, InvalidField
from greenlane.core.events import CarState, validate_message, validate_messages
from greenlane.core.redis_state import Denied, claim_of
from greenlane.core.wire import RETRY_AFTER_KEY
from greenlane.ingestion import metrics
from greenlane.ingestion.auth import current_principal
from greenlane.ingestion.desk import BookingDesk
from greenlane.ingestion.limits import Limiter
from greenlane.ingestion.pipeline import IngestPipeline, Receipt
from greenlane.ingestion.tracing import StatusSpans, call_context, finish
from greenlane.v1 import fleet_pb2, fleet_pb2_grpc

log = logging.getLogger(__name__)

ACCEPTED = fleet_pb2.ACCEPTED
REJECTED = fleet_pb2.REJECTED
UNAVAILABLE = fleet_pb2.UNAVAILABLE
RATE_LIMITED = fleet_pb2.RATE_LIMITED
# Trailing metadata of RESOURCE_EXHAUSTED: when to try again, in milliseconds.
# A stream over its rate waits this long at most before its next message is read, so an
# abusive client costs little (HTTP/2 flow control holds it back) and is still answered.
MAX_LIMITED_PAUSE_SECONDS = 1.0
# A servicer used without the interceptor (unit tests): writes claim no fleet.
UNGUARDED = Principal("", ALL_SCOPES, "unguarded")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def to_state(msg: fleet_pb2.CarStatus, now: int) -> CarState:
    """The validated state of a CarStatus (its fields are the event table's)."""
    return validate_message(msg, now_ms=now)


def _rejection(msg: fleet_pb2.CarStatus, err: InvalidField) -> fleet_pb2.BookingResponse:
    metrics.STATUSES_REJECTED.labels(err.field).inc()
    return fleet_pb2.BookingResponse(
        car_id=msg.car_id[:64],
        status=REJECTED,
        field=err.field,
        message=f"{err.field} {err.message}",
        timestamp=msg.timestamp,
    )


# A stream's answer queue: the request, its validated state, its outcome to await (or
# the rejection to send as it is), and its span when the client traces it.
_Entry = tuple[
    fleet_pb2.CarStatus,
    CarState | None,
    "asyncio.Future[Receipt] | fleet_pb2.BookingResponse",
    Span | None,
]


def _not_stored(reason: str) -> str:
    return f"not stored: {reason}"


def _retry_ms(seconds: float) -> int:
    return max(1, int(seconds * 1000 + 0.999))


def _principal() -> Principal:
    return current_principal() or UNGUARDED


def _claim(principal: Principal) -> str:
    return claim_of(principal.fleet, principal.operator)


def _denied(msg: fleet_pb2.CarStatus, reason: str) -> fleet_pb2.BookingResponse:
    metrics.STATUSES_REJECTED.labels("car_id").inc()
    metrics.FOREIGN_CARS.inc()
    return fleet_pb2.BookingResponse(
        car_id=msg.car_id,
        status=REJECTED,
        field="car_id",
        message=reason,
        timestamp=msg.timestamp,
    )


def _discard_outcome(fut: asyncio.Future[Receipt]) -> None:
    if not fut.cancelled():
        fut.exception()  # marks it retrieved: the stream that wanted it is gone


class FleetTelemetryService(fleet_pb2_grpc.FleetTelemetryServicer):
    """The three FleetTelemetry calls share one validation and one pipeline."""

    def __init__(
        self,
        pipeline: IngestPipeline,
        *,
        desk: BookingDesk | None = None,
        max_in_flight: int = 1000,
        max_batch: int = 10_000,
        limiter: Limiter | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        trace_statuses: bool = True,
    ) -> None:
        """trace_statuses: give a status that carries its trace a span (when spans are
        exported; server.py decides)."""
        self._spans = StatusSpans(tracer_provider, enabled=trace_statuses)
        self._pipeline = pipeline
        self._desk = desk
        self._max_in_flight = max_in_flight
        self._max_batch = max_batch
        self._limiter = limiter or Limiter()

    async def _open_stream(
        self, principal: Principal, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        if self._limiter.open_stream(principal, time.monotonic()):
            return
        metrics.LIMITED.labels(principal.fleet, "streams").inc()
        most = self._limiter.limits(principal).streams
        context.set_trailing_metadata(((RETRY_AFTER_KEY, "1000"),))
        await context.abort(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"the credential {principal.subject!r} has {most} streams open, its limit",
        )

    async def StreamTelemetry(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[fleet_pb2.CarStatus],
        context: grpc.aio.ServicerContext[fleet_pb2.CarStatus, fleet_pb2.BookingResponse],
    ) -> AsyncIterator[fleet_pb2.BookingResponse]:
        principal = _principal()
        await self._open_stream(principal, context)
        # Reading runs ahead of answering (pipelining); answers keep request order.
        answers: asyncio.Queue[_Entry | None] = asyncio.Queue(self._max_in_flight)
        reader = asyncio.create_task(self._read_statuses(request_iterator, answers, principal))
        metrics.OPEN_STREAMS.inc()
        try:
            while True:
                entry = await answers.get()
                if entry is None:
                    break
                msg, state, outcome, span = entry
                try:
                    response = await self._answer(msg, state, outcome, span, principal)
                except BaseException:
                    if span is not None:
                        span.end()
                    raise
                if span is not None:
                    finish(span, response.status, response.message)
                yield response
            reader.result()  # a reader failure ends the call with its error
        finally:
            metrics.OPEN_STREAMS.dec()
            self._limiter.close_stream(principal)
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            # The client left with answers outstanding: their outcomes are nobody's now.
            while not answers.empty():
                entry = answers.get_nowait()
                if entry is not None and isinstance(entry[2], asyncio.Future):
                    entry[2].add_done_callback(_discard_outcome)
                if entry is not None and entry[3] is not None:
                    entry[3].set_attribute("greenlane.status.answer", "none: the client left")
                    entry[3].end()

    async def _answer(
        self,
        msg: fleet_pb2.CarStatus,
        state: CarState | None,
        outcome: asyncio.Future[Receipt] | fleet_pb2.BookingResponse,
        span: Span | None,
        principal: Principal,
    ) -> fleet_pb2.BookingResponse:
        """The answer to one status of a stream, once its outcome is known."""
        if isinstance(outcome, fleet_pb2.BookingResponse):
            return outcome
        try:
            receipt = await outcome
        except BackendUnavailable as exc:
            receipt = Receipt({0: str(exc)})
        if not receipt.stored:
            reason = receipt.failures[0]
            if isinstance(reason, Denied):
                return _denied(msg, reason)
            metrics.STATUSES_UNAVAILABLE.inc()
            return fleet_pb2.BookingResponse(
                car_id=msg.car_id,
                status=UNAVAILABLE,
                message=_not_stored(receipt.failures[0]),
                timestamp=msg.timestamp,
            )
        metrics.STATUSES_ACCEPTED.inc()
        desk = self._desk
        if state is not None and desk is not None and desk.concerns(state, msg.request_booking):
            if span is None:
                # No trace of its own: its booking gets no span either. The instrumented
                # Redis and Kafka clients would pay for spans nobody records (measured at
                # a tenth of a saturated ingestion whose cars all book).
                with suppress_instrumentation():
                    answer = await desk.handle(state, msg.request_booking, principal)
            else:  # the booking's spans join the status's trace
                with trace.use_span(span, end_on_exit=False):
                    answer = await desk.handle(state, msg.request_booking, principal)
            return fleet_pb2.BookingResponse(
                car_id=msg.car_id,
                status=answer.status,
                message=answer.message,
                timestamp=msg.timestamp,
                booking=answer.booking,
                setpoint=answer.setpoint,
            )
        return fleet_pb2.BookingResponse(
            car_id=msg.car_id, status=ACCEPTED, message="stored", timestamp=msg.timestamp
        )

    async def _read_statuses(
        self,
        request_iterator: AsyncIterator[fleet_pb2.CarStatus],
        answers: asyncio.Queue[_Entry | None],
        principal: Principal,
    ) -> None:
        received = metrics.STATUSES_RECEIVED.labels("stream")
        limited = metrics.LIMITED.labels(principal.fleet, "rate")
        claim = _claim(principal)
        take = self._limiter.take
        call = call_context()  # the stream's span (the reader runs in the call's context)
        tracing = self._spans.enabled
        try:
            async for msg in request_iterator:
                received.inc()
                t = time.monotonic()
                span = None
                if tracing and msg.trace_context:  # the client traces this status
                    span = self._spans.start(msg, "StreamTelemetry", call)
                try:
                    state = to_state(msg, now_ms())
                except InvalidField as err:
                    await answers.put((msg, None, _rejection(msg, err), span))
                    continue
                wait = take(principal, 1, t)
                if wait:
                    limited.inc()
                    retry = _retry_ms(wait)
                    await answers.put(
                        (
                            msg,
                            None,
                            fleet_pb2.BookingResponse(
                                car_id=msg.car_id,
                                status=RATE_LIMITED,
                                message=f"not stored: over the rate limit of {principal.subject!r}"
                                f"; retry in {retry} ms",
                                timestamp=msg.timestamp,
                                retry_after_ms=retry,
                            ),
                            span,
                        )
                    )
                    await asyncio.sleep(min(wait, MAX_LIMITED_PAUSE_SECONDS))
                    continue
                try:
                    await self._pipeline.wait_for_space()
                    traces = None if span is None else (span.get_span_context(),)
                    fut = self._pipeline.submit((state,), t, claim, traces)
                except BackendUnavailable as exc:
                    fut = asyncio.get_running_loop().create_future()
                    fut.set_exception(exc)
                await answers.put((msg, state, fut, span))
        except asyncio.CancelledError:
            # The client left: nobody reads the queue any more, so no blocking put here
            # (the handler drains what is left).
            raise
        except BaseException:
            await answers.put(None)
            raise
        await answers.put(None)

    async def _store_batch(
        self,
        batch: fleet_pb2.CarStatusBatch,
        received: float,
        principal: Principal,
        method: str,
    ) -> tuple[fleet_pb2.BatchResponse, bool]:
        """The answer to a batch, and whether every valid item was another fleet's."""
        statuses: Sequence[fleet_pb2.CarStatus] = batch.statuses
        call = call_context()
        spans = self._spans.start_all(statuses, method, call)
        try:
            answer, all_denied = await self._store_batch_traced(
                batch, received, principal, spans, call, method
            )
        except BaseException:
            for span in spans.values():
                span.end()
            raise
        for i, span in spans.items():
            failure = _item_failure(answer, i)
            if failure is None:
                finish(span, ACCEPTED, "stored")
            else:
                finish(span, failure[0], failure[1])
        return answer, all_denied

    async def _store_batch_traced(
        self,
        batch: fleet_pb2.CarStatusBatch,
        received: float,
        principal: Principal,
        spans: dict[int, Span],
        call: trace.SpanContext | None,
        method: str,
    ) -> tuple[fleet_pb2.BatchResponse, bool]:
        statuses: Sequence[fleet_pb2.CarStatus] = batch.statuses
        metrics.STATUSES_RECEIVED.labels("batch").inc(len(statuses))
        metrics.BATCH_STATUSES.observe(len(statuses))
        if not statuses:
            return fleet_pb2.BatchResponse(
                status=REJECTED, message="statuses: the batch is empty"
            ), False
        most = min(self._max_batch, self._limiter.limits(principal).batch or self._max_batch)
        if len(statuses) > most:
            metrics.LIMITED.labels(principal.fleet, "batch").inc()
            return fleet_pb2.BatchResponse(
                status=REJECTED,
                message=f"statuses: {len(statuses)} items, over the limit of {most}",
            ), False
        valid, invalid_items = validate_messages(statuses, now_ms=now_ms())
        rejected: list[fleet_pb2.RejectedItem] = []
        for index, err in invalid_items:
            metrics.STATUSES_REJECTED.labels(err.field).inc()
            rejected.append(
                fleet_pb2.RejectedItem(
                    index=index,
                    car_id=statuses[index].car_id[:64],
                    field=err.field,
                    message=f"{err.field} {err.message}",
                )
            )
        invalid = len(rejected)
        if valid:
            wait = self._limiter.take(principal, len(valid), received)
            if wait:
                metrics.LIMITED.labels(principal.fleet, "rate").inc(len(valid))
                retry = _retry_ms(wait)
                return fleet_pb2.BatchResponse(
                    status=RATE_LIMITED,
                    accepted=0,
                    rejected=rejected,
                    message=f"nothing stored: over the rate limit of {principal.subject!r}; "
                    f"retry in {retry} ms",
                    retry_after_ms=retry,
                ), False
            traces = _batch_traces(len(statuses), invalid_items, spans, call, method)
            try:
                await self._pipeline.wait_for_space()
                receipt = await self._pipeline.submit(valid, received, _claim(principal), traces)
            except BackendUnavailable as exc:
                metrics.STATUSES_UNAVAILABLE.inc(len(valid))
                return fleet_pb2.BatchResponse(
                    status=UNAVAILABLE, accepted=0, rejected=rejected, message=str(exc)
                ), False
            if not receipt.stored:
                bad = {index for index, _ in invalid_items}
                positions = [i for i in range(len(statuses)) if i not in bad]
                all_denied = len(receipt.failures) == len(valid) and all(
                    isinstance(r, Denied) for r in receipt.failures.values()
                )
                return self._partly_stored(valid, positions, rejected, receipt), all_denied
        metrics.STATUSES_ACCEPTED.inc(len(valid))
        return fleet_pb2.BatchResponse(
            status=ACCEPTED,
            accepted=len(valid),
            rejected=rejected,
            message=f"{len(valid)} stored, {invalid} rejected",
        ), False

    @staticmethod
    def _partly_stored(
        valid: list[CarState],
        positions: list[int],
        rejected: list[fleet_pb2.RejectedItem],
        receipt: Receipt,
    ) -> fleet_pb2.BatchResponse:
        """Some valid items are not stored: `accepted` counts what is. An item of another
        fleet's car is listed with the field car_id; one a backend did not store with an
        empty field and "not stored:" (the answer is then UNAVAILABLE)."""
        invalid = len(rejected)
        unavailable = 0
        first = ""
        for k, reason in receipt.failures.items():
            if isinstance(reason, Denied):
                metrics.STATUSES_REJECTED.labels("car_id").inc()
                metrics.FOREIGN_CARS.inc()
                rejected.append(
                    fleet_pb2.RejectedItem(
                        index=positions[k], car_id=valid[k].car_id, field="car_id", message=reason
                    )
                )
                continue
            unavailable += 1
            first = first or reason
            rejected.append(
                fleet_pb2.RejectedItem(
                    index=positions[k], car_id=valid[k].car_id, message=_not_stored(reason)
                )
            )
        rejected.sort(key=lambda item: item.index)
        stored = len(valid) - len(receipt.failures)
        metrics.STATUSES_ACCEPTED.inc(stored)
        metrics.STATUSES_UNAVAILABLE.inc(unavailable)
        denied = len(receipt.failures) - unavailable
        if not unavailable:
            return fleet_pb2.BatchResponse(
                status=ACCEPTED,
                accepted=stored,
                rejected=rejected,
                message=f"{stored} stored, {invalid + denied} rejected ({denied} of another fleet)",
            )
        return fleet_pb2.BatchResponse(
            status=UNAVAILABLE,
            accepted=stored,
            rejected=rejected,
            message=f"{stored} stored, {invalid + denied} rejected, {unavailable} not stored "
            f"(first: {first})",
        )

    async def StreamTelemetryBatches(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[fleet_pb2.CarStatusBatch],
        context: grpc.aio.ServicerContext[fleet_pb2.CarStatusBatch, fleet_pb2.BatchResponse],
    ) -> AsyncIterator[fleet_pb2.BatchResponse]:
        principal = _principal()
        await self._open_stream(principal, context)
        metrics.OPEN_STREAMS.inc()
        try:
            async for batch in request_iterator:
                answer, _ = await self._store_batch(
                    batch, time.monotonic(), principal, "StreamTelemetryBatches"
                )
                yield answer
                if answer.status == RATE_LIMITED:
                    pause = min(answer.retry_after_ms / 1000, MAX_LIMITED_PAUSE_SECONDS)
                    await asyncio.sleep(pause)
        finally:
            metrics.OPEN_STREAMS.dec()
            self._limiter.close_stream(principal)

    async def SendBatch(  # noqa: N802 - gRPC method name
        self,
        request: fleet_pb2.CarStatusBatch,
        context: grpc.aio.ServicerContext[fleet_pb2.CarStatusBatch, fleet_pb2.BatchResponse],
    ) -> fleet_pb2.BatchResponse:
        principal = _principal()
        answer, all_denied = await self._store_batch(
            request, time.monotonic(), principal, "SendBatch"
        )
        if answer.status == RATE_LIMITED:
            context.set_trailing_metadata(((RETRY_AFTER_KEY, str(answer.retry_after_ms)),))
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, answer.message)
        if all_denied:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"nothing stored: {answer.rejected[-1].message}"
                + (f" (and {answer.message})" if len(answer.rejected) > 1 else ""),
            )
        return answer


def _batch_traces(
    size: int,
    invalid: Sequence[tuple[int, InvalidField]],
    spans: dict[int, Span],
    call: trace.SpanContext | None,
    method: str,
) -> list[trace.SpanContext | None] | None:
    """Per valid status of a batch, the trace it belongs to: its own, else (SendBatch only:
    one call, one answer) the call's. A long-lived stream's span is not a status's trace."""
    fallback = call if method == "SendBatch" else None
    if not spans and fallback is None:
        return None
    bad = {index for index, _ in invalid}
    return [
        spans[i].get_span_context() if i in spans else fallback for i in range(size) if i not in bad
    ]


def _item_failure(
    answer: fleet_pb2.BatchResponse, index: int
) -> tuple[fleet_pb2.ResponseStatus.ValueType, str] | None:
    """How a batch's answer treats its item `index`: None when it is stored."""
    if answer.status == REJECTED:
        return REJECTED, answer.message
    for item in answer.rejected:
        if item.index == index:
            return (UNAVAILABLE if not item.field else REJECTED), item.message
    if answer.status == UNAVAILABLE and answer.accepted == 0:
        return UNAVAILABLE, answer.message
    return None

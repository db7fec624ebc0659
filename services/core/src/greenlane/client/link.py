"""One stream to ingestion fed from an Outbox: send, read answers, resend, reconnect.

The outbox decides what may be sent (per-car order, bounded); the link decides when:
up to `max_in_flight` messages unanswered on the stream, a pause after UNAVAILABLE
(exponential backoff) or RATE_LIMITED (the server's retry hint, at least), and after a
broken stream a jittered backoff before the next one. On `status` streams a car whose
backlog is two statuses or more (after an outage, or a slow server) sends it as
`SendBatch` calls, in order, while nothing of it is in flight on the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import grpc

from greenlane.client.backoff import Backoff
from greenlane.client.outbox import Entry, Outbox
from greenlane.core.errors import GreenLaneError
from greenlane.core.wire import RETRY_AFTER_KEY
from greenlane.v1 import fleet_pb2, fleet_pb2_grpc

__all__ = ["ClientError", "Link", "LinkListener", "Mode"]

log = logging.getLogger(__name__)

Mode = Literal["status", "batch"]
_S = fleet_pb2.ResponseStatus
_STORED: Final = frozenset({_S.ACCEPTED, _S.BOOKED, _S.NO_CAPACITY})
_NOT_STORED_PREFIX: Final = "not stored"
# The longest pause a retry hint may impose (a wrong hint must not stall a client).
MAX_HINT_S: Final = 60.0
_FATAL: Final = {
    grpc.StatusCode.UNAUTHENTICATED: "ingestion refused the credential (UNAUTHENTICATED)",
    grpc.StatusCode.PERMISSION_DENIED: "the credential may not stream telemetry",
    grpc.StatusCode.UNIMPLEMENTED: "the target does not serve greenlane.v1.FleetTelemetry",
    grpc.StatusCode.INVALID_ARGUMENT: "ingestion could not parse what was sent",
}


class ClientError(GreenLaneError):
    """Retrying cannot help (a refused credential, a wrong target); the message says why."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class LinkListener:
    """Hooks for what the link sees; override what you need (the simulator counts here)."""

    def on_sent(self, entries: Sequence[Entry]) -> None:
        """A message of these entries was written."""

    def on_status_answer(
        self, entries: Sequence[Entry], answer: fleet_pb2.BookingResponse, latency_s: float
    ) -> None:
        """A status stream's answer to the message of these entries."""

    def on_batch_answer(
        self, entries: Sequence[Entry], answer: fleet_pb2.BatchResponse, latency_s: float
    ) -> None:
        """A batch answer (stream or SendBatch) to the message of these entries."""

    def on_open(self) -> None:
        """A stream was opened."""

    def on_close(self, unanswered: int) -> None:
        """A stream ended, with this many statuses sent and unanswered (they wait again)."""

    def on_broken(self, code: str, details: str | None) -> None:
        """The stream ended without being asked to (after on_close)."""


def _hint_s(ms: int) -> float | None:
    return min(ms / 1000.0, MAX_HINT_S) if ms > 0 else None


def _trailing_hint(exc: grpc.aio.AioRpcError) -> float | None:
    with contextlib.suppress(Exception):
        for key, value in exc.trailing_metadata() or ():
            if key == RETRY_AFTER_KEY:
                return _hint_s(int(value))
    return None


@dataclass(slots=True)
class _Sent:
    at: float  # perf_counter, just before write()
    entries: list[Entry]


class Link:
    """One stream at a time to ingestion; run() until close(), reconnecting as needed."""

    def __init__(
        self,
        stub: fleet_pb2_grpc.FleetTelemetryAsyncStub,
        outbox: Outbox,
        *,
        metadata: Sequence[tuple[str, str]] = (),
        mode: Mode = "status",
        max_batch: int = 500,
        max_in_flight: int = 1,
        backoff: Backoff | None = None,
        listener: LinkListener | None = None,
        refill: Callable[[], None] | None = None,
        backlog_batches: bool = True,
        drain_timeout: float = 5.0,
        call_timeout: float = 30.0,
    ) -> None:
        if mode not in ("status", "batch"):
            raise ValueError(f"mode: 'status' or 'batch', got {mode!r}")
        if max_batch < 1:
            raise ValueError(f"max_batch: must be at least 1, got {max_batch}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight: must be at least 1, got {max_in_flight}")
        self.stub = stub
        self.outbox = outbox
        self.metadata = tuple(metadata)
        self.mode = mode
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self.backoff = backoff if backoff is not None else Backoff()
        self.listener = listener if listener is not None else LinkListener()
        # Saturating senders: called when the outbox has nothing to send, to put more.
        self.refill = refill
        self.backlog_batches = backlog_batches
        self.drain_timeout = drain_timeout
        self.call_timeout = call_timeout
        self.closing = False
        self.connected = False
        self.broken = 0  # streams that ended without being asked to
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._paused_until = 0.0
        self._pending: deque[_Sent] = deque()

    # --- the caller's side -----------------------------------------------------------
    def wake(self) -> None:
        """New statuses are in the outbox (or the run is ending): look again."""
        if len(self.outbox):
            self._idle.clear()
        else:
            self._idle.set()
        self._wake.set()

    def close(self) -> None:
        """Stop sending; the stream ends gracefully after the answers in flight."""
        self.closing = True
        self._wake.set()

    async def flush(self, seconds: float) -> bool:
        """Wait until every status put is answered for good; False when time ran out."""
        try:
            await asyncio.wait_for(self._idle.wait(), seconds)
        except TimeoutError:
            return len(self.outbox) == 0
        return True

    async def run(self, start_delay: float = 0.0) -> None:
        """Streams until close(); raises ClientError when retrying cannot help."""
        await self._pause(start_delay)
        while not self.closing:
            hint: float | None = None
            try:
                await self._session()
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code in _FATAL:
                    raise ClientError(f"{_FATAL[code]}: {exc.details()}", code) from None
                hint = _trailing_hint(exc)
                self._broke(code.name, exc.details())
            else:
                if self.closing:
                    return
                self._broke("OK", "ingestion ended the stream")
            await self._pause(self.backoff.next(hint))

    # --- internals -------------------------------------------------------------------
    def _broke(self, code: str, details: str | None) -> None:
        self.broken += 1
        self.listener.on_broken(code, details)

    async def _wait(self, deadline: float | None) -> None:
        """Sleep until woken, or until the loop-time deadline; no task per wait."""
        handle = None
        if deadline is not None:
            handle = asyncio.get_running_loop().call_at(deadline, self._wake.set)
        self._wake.clear()
        try:
            await self._wake.wait()
        finally:
            if handle is not None:
                handle.cancel()

    async def _pause(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self.closing and loop.time() < deadline - 0.001:
            await self._wait(deadline)

    def _hold(self, seconds: float) -> None:
        """No new message on this stream for `seconds` (the stream stays open)."""
        until = asyncio.get_running_loop().time() + seconds
        self._paused_until = max(self._paused_until, until)

    async def _session(self) -> None:
        """One stream, from open to graceful end; raises AioRpcError when it breaks."""
        self._pending.clear()
        call: Any
        if self.mode == "batch":
            call = self.stub.StreamTelemetryBatches(metadata=self.metadata)
            reader = asyncio.create_task(self._read(call, self._on_batch))
        else:
            call = self.stub.StreamTelemetry(metadata=self.metadata)
            reader = asyncio.create_task(self._read(call, self._on_status))
        self.connected = True
        self.listener.on_open()
        try:
            await self._write(call, reader)
            await call.done_writing()
            done, _ = await asyncio.wait([reader], timeout=self.drain_timeout)
            if done:
                reader.result()  # raises AioRpcError when the stream broke
        finally:
            self.connected = False
            if not reader.done():
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
            call.cancel()  # no-op when the call already ended
            # Unanswered: maybe stored, maybe not; sent again (consumers deduplicate).
            unanswered = 0
            for sent in self._pending:
                unanswered += len(sent.entries)
                self.outbox.failed(sent.entries)
            self._pending.clear()
            self.listener.on_close(unanswered)

    async def _write(self, call: Any, reader: asyncio.Task[None]) -> None:
        loop = asyncio.get_running_loop()
        outbox = self.outbox
        while not self.closing and not reader.done():
            if loop.time() < self._paused_until:
                await self._wait(self._paused_until)
                continue
            if len(self._pending) >= self.max_in_flight:
                await self._wait(None)  # the reader wakes us on the next answer
                continue
            if self.refill is not None and not outbox.has_ready() and outbox.waiting == 0:
                self.refill()
            if not outbox.has_ready():
                if len(outbox) == 0:
                    self._idle.set()
                await self._wait(None)
                continue
            if (
                self.mode == "status"
                and self.backlog_batches
                and not self._pending
                and outbox.next_backlog() > 1
            ):
                await self._send_backlog()
                continue
            entries = outbox.take(self.max_batch if self.mode == "batch" else 1)
            message: Any
            if self.mode == "batch":
                message = fleet_pb2.CarStatusBatch(statuses=[e.status for e in entries])
            else:
                message = entries[0].status
            self._pending.append(_Sent(time.perf_counter(), entries))
            try:
                await call.write(message)
            except (asyncio.InvalidStateError, grpc.aio.AioRpcError):
                # The call ended under us: this message never left; the reader says why.
                self._pending.pop()
                outbox.failed(entries)
                return
            self.listener.on_sent(entries)

    async def _send_backlog(self) -> None:
        """A car's backlog as one SendBatch call (in order: nothing of it is in flight)."""
        entries = self.outbox.take(self.max_batch)
        started = time.perf_counter()
        self.listener.on_sent(entries)
        try:
            answer = await self.stub.SendBatch(
                fleet_pb2.CarStatusBatch(statuses=[e.status for e in entries]),
                metadata=self.metadata,
                timeout=self.call_timeout,
            )
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.PERMISSION_DENIED:
                # Every valid status of the batch is another fleet's: final for them.
                self.outbox.rejected(entries)
                return
            self.outbox.failed(entries)
            if code == grpc.StatusCode.UNIMPLEMENTED:
                self.backlog_batches = False  # a server without SendBatch: stream them
                return
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                self._hold(self.backoff.next(_trailing_hint(exc)))
                return
            raise  # the server is away: the stream goes down with it, and backs off
        self._on_batch(_Sent(started, entries), answer)

    async def _read(self, call: Any, handle: Callable[[_Sent, Any], None]) -> None:
        try:
            async for answer in call:
                if not self._pending:
                    log.warning("ingestion answered more messages than were sent")
                    continue
                handle(self._pending.popleft(), answer)
        finally:
            self._wake.set()  # the writer must notice a finished stream

    def _settled(self) -> None:
        if len(self.outbox) == 0:
            self._idle.set()
        self._wake.set()

    def _on_status(self, sent: _Sent, answer: fleet_pb2.BookingResponse) -> None:
        outbox = self.outbox
        status = answer.status
        if status in _STORED:
            outbox.acked(sent.entries)
            self.backoff.reset()
        elif status == _S.REJECTED:
            outbox.rejected(sent.entries)
        else:
            outbox.failed(sent.entries)
            hint = _hint_s(answer.retry_after_ms) if status == _S.RATE_LIMITED else None
            self._hold(self.backoff.next(hint))
        self.listener.on_status_answer(sent.entries, answer, time.perf_counter() - sent.at)
        self._settled()

    def _on_batch(self, sent: _Sent, answer: fleet_pb2.BatchResponse) -> None:
        outbox = self.outbox
        entries = sent.entries
        status = answer.status
        if status in (_S.ACCEPTED, _S.UNAVAILABLE):
            retry: list[Entry] = []
            refused: list[Entry] = []
            listed: set[int] = set()
            for item in answer.rejected:
                if item.index < len(entries):
                    listed.add(item.index)
                    not_stored = item.message.startswith(_NOT_STORED_PREFIX)
                    (retry if not_stored else refused).append(entries[item.index])
            outbox.rejected(refused)
            outbox.failed(retry)
            outbox.acked(e for i, e in enumerate(entries) if i not in listed)
            if retry:
                self._hold(self.backoff.next())
            else:
                self.backoff.reset()
        elif status == _S.RATE_LIMITED:
            outbox.failed(entries)
            self._hold(self.backoff.next(_hint_s(answer.retry_after_ms)))
        elif status == _S.REJECTED and len(entries) > 1:
            # The batch itself is unusable (over the server's limit): halve, send again.
            self.max_batch = max(1, len(entries) // 2)
            outbox.failed(entries)
        elif status == _S.REJECTED:
            outbox.rejected(entries)
        else:
            outbox.failed(entries)
            self._hold(self.backoff.next())
        self.listener.on_batch_answer(entries, answer, time.perf_counter() - sent.at)
        self._settled()

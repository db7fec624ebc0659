"""greenlane.client: the reference client for cars and fleet gateways (docs/client.md).

It never loses a status silently: every status is kept until ingestion acknowledges it,
resent after UNAVAILABLE, RATE_LIMITED (after the retry hint), a broken stream or a
restart of ingestion, with exponential backoff and jitter; buffered while offline
(bounded; overflow drops the oldest status that is not its car's latest, counted); the
backlog goes as batches when back, in per-car order.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

from greenlane.client.backoff import Backoff
from greenlane.client.channel import CHANNEL_OPTIONS, Credential, TlsFiles, open_channel
from greenlane.client.link import ClientError, Link, LinkListener, Mode
from greenlane.client.outbox import Entry, Outbox, OutboxCounters, State
from greenlane.v1 import fleet_pb2, fleet_pb2_grpc

__all__ = [
    "CHANNEL_OPTIONS",
    "Backoff",
    "ClientError",
    "Credential",
    "Entry",
    "Link",
    "LinkListener",
    "Mode",
    "Outbox",
    "OutboxCounters",
    "State",
    "TelemetryClient",
    "TlsFiles",
    "open_channel",
]


class TelemetryClient:
    """A fleet gateway's client: `send()` never blocks; one stream carries every car.

    ```python
    async with TelemetryClient("127.0.0.1:50051", Credential(token=TOKEN)) as client:
        client.send(fleet_pb2.CarStatus(car_id="CAR-001", ...))
        await client.flush(10)  # every status answered for good, or False
    print(client.counters)  # put, sent, resent, acked, rejected, dropped
    ```
    """

    def __init__(
        self,
        target: str,
        credential: Credential,
        *,
        tls: TlsFiles | None = None,
        capacity: int = 100_000,
        mode: Mode = "batch",
        max_batch: int = 500,
        max_in_flight: int = 4,
        backoff: Backoff | None = None,
        listener: LinkListener | None = None,
    ) -> None:
        self.target = target
        self.outbox = Outbox(capacity)
        self._channel = open_channel(target, tls)
        self.link = Link(
            fleet_pb2_grpc.FleetTelemetryStub(self._channel),
            self.outbox,
            metadata=credential.metadata(),
            mode=mode,
            max_batch=max_batch,
            max_in_flight=max_in_flight,
            backoff=backoff,
            listener=listener,
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def counters(self) -> OutboxCounters:
        return self.outbox.counters

    def send(self, status: fleet_pb2.CarStatus) -> None:
        """Keep the status until it is acknowledged (or dropped by the overflow policy)."""
        self.outbox.put(status)
        self.link.wake()

    async def flush(self, seconds: float) -> bool:
        """Wait until every status sent so far is answered for good."""
        self._raise_if_failed()
        done = await self.link.flush(seconds)
        self._raise_if_failed()
        return done

    def _raise_if_failed(self) -> None:
        if self._task is not None and self._task.done() and not self._task.cancelled():
            exc = self._task.exception()
            if exc is not None:
                raise exc

    async def __aenter__(self) -> TelemetryClient:
        self._task = asyncio.create_task(self.link.run(), name=f"greenlane-client {self.target}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.link.close()
        failure: BaseException | None = None
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait({self._task}, timeout=self.link.drain_timeout + 1.0)
            if self._task.done() and not self._task.cancelled():
                failure = self._task.exception()
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._channel.close()
        if failure is not None and exc is None:
            raise failure

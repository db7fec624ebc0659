"""Batches valid car statuses from every stream into one Redis round trip and one Kafka flush.

A status is acknowledged only when both confirmed it. Statuses are written in the
order they were submitted, one flush at a time, so a car's order is kept across
streams and batch messages. A failed write is retried until the acknowledgement
deadline; what is still unconfirmed then fails with BackendUnavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from opentelemetry import trace
from redis.asyncio import Redis

from greenlane.core.errors import BackendUnavailable
from greenlane.core.events import CarState
from greenlane.core.redis_state import write_car_states
from greenlane.core.telemetry import inject_trace_headers
from greenlane.ingestion import metrics

log = logging.getLogger(__name__)
_PARTITIONER = DefaultPartitioner()
tracer = trace.get_tracer(__name__)


@dataclass(slots=True)
class _Pending:
    states: Sequence[CarState]
    future: asyncio.Future[None]
    received: float
    deadline: float


class IngestPipeline:
    """Submit statuses, await their acknowledgement; one background flush loop."""

    def __init__(
        self,
        redis: Redis,
        producer: AIOKafkaProducer,
        topic: str,
        *,
        max_flush_size: int = 4000,
        ack_timeout: float = 5.0,
        max_pending: int = 50_000,
    ) -> None:
        self._redis = redis
        self._producer = producer
        self._topic = topic
        self._max_flush = max_flush_size
        self._ack_timeout = ack_timeout
        self._max_pending = max_pending
        self._queue: deque[_Pending] = deque()
        self._pending = 0
        self._wakeup = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.healthy = True
        self._partition_of: dict[str, int] = {}
        self._partition_count = 0

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
        self, states: Sequence[CarState], received: float | None = None
    ) -> asyncio.Future[None]:
        """Queue statuses that are acknowledged together; the future resolves when stored."""
        if self._closing:
            raise BackendUnavailable("ingestion is shutting down")
        now = time.monotonic()
        received = received if received is not None else now
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(states, fut, received, received + self._ack_timeout))
        self._pending += len(states)
        metrics.PENDING.set(self._pending)
        self._wakeup.set()
        return fut

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            items: list[_Pending] = []
            size = 0
            while self._queue and (
                not items or size + len(self._queue[0].states) <= self._max_flush
            ):
                item = self._queue.popleft()
                items.append(item)
                size += len(item.states)
            self._pending -= size
            metrics.PENDING.set(self._pending)
            if self._pending < self._max_pending:
                self._space.set()
            try:
                await self._flush(items)
            except asyncio.CancelledError:
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(BackendUnavailable("ingestion is shutting down"))
                raise
            except Exception:  # a bug must not stop the loop: fail the flush, keep going
                log.exception("flush failed unexpectedly")
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(
                            BackendUnavailable("internal error while storing")
                        )

    async def _flush(self, items: list[_Pending]) -> None:
        states = [s for item in items for s in item.states]
        deadline = min(item.deadline for item in items)
        started = time.monotonic()
        metrics.FLUSH_STATUSES.observe(len(states))
        with tracer.start_as_current_span("ingestion.flush") as span:
            span.set_attribute("greenlane.flush.statuses", len(states))
            headers = inject_trace_headers()
            redis_ok = False
            confirmed = [False] * len(states)
            delay = 0.05
            while True:
                remaining = deadline - time.monotonic()
                redis_ok, unconfirmed = await self._attempt(
                    states, confirmed, redis_ok, headers, max(remaining, 0.05)
                )
                if redis_ok and not unconfirmed:
                    self.healthy = True
                    break
                if time.monotonic() + delay >= deadline:
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            span.set_attribute("greenlane.flush.redis_ok", redis_ok)
        now = time.monotonic()
        metrics.FLUSH_DURATION.observe(now - started)
        index = 0
        for item in items:
            n = len(item.states)
            stored = redis_ok and all(confirmed[index : index + n])
            index += n
            if item.future.done():  # the stream went away
                continue
            if stored:
                metrics.ACK_LATENCY.observe(now - item.received)
                item.future.set_result(None)
            else:
                self.healthy = False
                item.future.set_exception(
                    BackendUnavailable(
                        "not stored: "
                        + ("Redis" if not redis_ok else "Kafka")
                        + " did not confirm in time; safe to resend"
                    )
                )

    async def _attempt(
        self,
        states: list[CarState],
        confirmed: list[bool],
        redis_ok: bool,
        headers: list[tuple[str, bytes]],
        budget: float,
    ) -> tuple[bool, list[int]]:
        """One try at the writes still missing; returns (redis confirmed, unconfirmed indices)."""
        todo = [i for i, ok in enumerate(confirmed) if not ok]
        tasks: dict[str, asyncio.Task[None]] = {}
        if not redis_ok:
            tasks["redis"] = asyncio.create_task(write_car_states(self._redis, states))
        if todo:
            tasks["kafka"] = asyncio.create_task(self._publish(states, todo, confirmed, headers))
        if tasks:
            await asyncio.wait(tasks.values(), timeout=budget)
        for name, task in tasks.items():
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                metrics.BACKEND_ERRORS.labels(name).inc()
                log.warning("%s did not confirm a flush of %d statuses in time", name, len(states))
            elif task.exception() is not None:
                metrics.BACKEND_ERRORS.labels(name).inc()
                log.warning("%s write failed: %s", name, task.exception())
            elif name == "redis":
                redis_ok = True
        return redis_ok, [i for i, ok in enumerate(confirmed) if not ok]

    async def _publish(
        self,
        states: list[CarState],
        todo: list[int],
        confirmed: list[bool],
        headers: list[tuple[str, bytes]],
    ) -> None:
        """Send one record batch per partition, in order; mark records confirmed per batch.

        Batches skip the per-record futures of producer.send() (a tenth of the CPU at
        saturation). Partitions are the default partitioner's (murmur2 of the car id), as
        for every other record keyed by car, so a car's records share one partition.
        """
        producer = self._producer
        topic = self._topic
        partitions = sorted(await producer.partitions_for(topic))
        # Bounded: a fleet larger than this just recomputes murmur2 for some cars.
        if len(partitions) != self._partition_count or len(self._partition_of) > 200_000:
            self._partition_of.clear()
            self._partition_count = len(partitions)
        by_partition: dict[int, list[int]] = {}
        for i in todo:
            car = states[i].car_id
            part = self._partition_of.get(car)
            if part is None:
                part = _PARTITIONER(car.encode(), partitions, partitions)
                self._partition_of[car] = part
            by_partition.setdefault(part, []).append(i)
        sent: list[tuple[asyncio.Future[object], list[int]]] = []
        for part, indices in by_partition.items():
            batch = producer.create_batch()
            members: list[int] = []
            for i in indices:
                state = states[i]
                key, value = state.car_id.encode(), state.to_json()
                if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    sent.append((await producer.send_batch(batch, topic, partition=part), members))
                    batch, members = producer.create_batch(), []
                    batch.append(key=key, value=value, timestamp=None, headers=headers)
                members.append(i)
            sent.append((await producer.send_batch(batch, topic, partition=part), members))
        error: BaseException | None = None
        for fut, members in sent:
            try:
                await fut
            except Exception as exc:  # the first failure is raised below
                error = error or exc
                continue
            for i in members:
                confirmed[i] = True
        if error is not None:
            raise error

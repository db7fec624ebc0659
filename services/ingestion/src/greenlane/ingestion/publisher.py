"""The Kafka side of a flush: one record batch per partition, confirmed batch by batch."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from greenlane.core.events import CarState, event_json

log = logging.getLogger(__name__)
_PARTITIONER = DefaultPartitioner()
# Bounded: a fleet larger than this just recomputes murmur2 for some cars.
_MAX_CACHED_CARS = 200_000


def with_fleet(event: bytes, fleet: str) -> bytes:
    """The event JSON with the `fleet` that sent it (fleet ids need no escaping)."""
    return event[:-1] + b',"fleet":"' + fleet.encode() + b'"}'


def is_transient(exc: BaseException) -> bool:
    """Kafka says which of its errors may pass; anything else (a socket) may pass too."""
    return not isinstance(exc, KafkaError) or bool(exc.retriable)


class KafkaPublish:
    """Publishing some statuses of a flush; each status confirmed, refused, or pending.

    Batches skip the per-record futures of producer.send() (a tenth of the CPU at
    saturation). Partitions are the default partitioner's (murmur2 of the car id), as for
    every other record keyed by car, so a car's records share one partition and keep
    their order: a retry resends only what is unconfirmed, in order.
    """

    def __init__(
        self,
        log_: KafkaEventLog,
        states: Sequence[CarState],
        indices: Sequence[int],
        headers: list[tuple[str, bytes]],
        fleets: Sequence[str] | None = None,
        traced: Mapping[int, list[tuple[str, bytes]]] | None = None,
    ) -> None:
        self._log = log_
        self._states = states
        self._fleets = fleets
        self._todo = list(indices)  # neither confirmed nor refused, in order
        self._confirmed: set[int] = set()
        self._errors: dict[int, str] = {}
        self._headers = headers
        self._traced = traced  # the records of statuses traced on their own: their headers
        self.failed_batches = 0  # for metrics

    @property
    def pending(self) -> bool:
        return bool(self._todo)

    def failures(self) -> dict[int, str]:
        """The statuses not confirmed: why Kafka refused them, or "" (no answer yet)."""
        return {**dict.fromkeys(self._todo, ""), **self._errors}

    async def attempt(self) -> None:
        """Send what is pending; record what the broker confirmed or refused for good."""
        if not self._todo:
            return
        producer, topic = self._log.producer, self._log.topic
        try:
            by_partition = self._log.by_partition(
                self._states, self._todo, await producer.partitions_for(topic)
            )
        except Exception as exc:
            self.failed_batches += 1
            log.warning("Kafka: cannot find the partitions of %s: %s", topic, exc)
            if not is_transient(exc):
                self._refuse(self._todo, exc)
            return
        states, shared, traced, fleets = self._states, self._headers, self._traced, self._fleets
        sent: list[tuple[asyncio.Future[object], list[int]]] = []
        try:
            for part, indices in by_partition.items():
                batch = producer.create_batch()
                members: list[int] = []
                for i in indices:
                    s = states[i]
                    key, value = s.car_id.encode(), event_json(s, "telemetry")
                    if fleets is not None and fleets[i]:
                        value = with_fleet(value, fleets[i])
                    headers = traced.get(i, shared) if traced else shared
                    if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                        sent.append(
                            (await producer.send_batch(batch, topic, partition=part), members)
                        )
                        batch, members = producer.create_batch(), []
                        batch.append(key=key, value=value, timestamp=None, headers=headers)
                    members.append(i)
                sent.append((await producer.send_batch(batch, topic, partition=part), members))
        except Exception as exc:  # what was sent is awaited below; the rest stays pending
            self.failed_batches += 1
            log.warning("Kafka: could not send a record batch: %s", exc)
        for fut, members in sent:
            try:
                await fut
            except Exception as exc:
                self.failed_batches += 1
                if is_transient(exc):
                    log.warning(
                        "Kafka: a batch of %d records failed (retried): %s", len(members), exc
                    )
                else:
                    self._refuse(members, exc)
                continue
            self._confirmed.update(members)
        self._todo = [i for i in self._todo if i not in self._confirmed and i not in self._errors]

    def _refuse(self, indices: Sequence[int], exc: BaseException) -> None:
        log.warning("Kafka refused %d records: %s", len(indices), exc)
        for i in indices:
            self._errors[i] = f"Kafka refused it: {type(exc).__name__}: {exc}"
        self._todo = [i for i in self._todo if i not in self._errors]


class KafkaEventLog:
    """Where a flush's statuses are published: the fleet events topic."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self._partition_of: dict[str, int] = {}
        self._partition_count = 0

    def begin(
        self,
        states: Sequence[CarState],
        indices: Sequence[int],
        headers: list[tuple[str, bytes]],
        fleets: Sequence[str] | None = None,
        traced: Mapping[int, list[tuple[str, bytes]]] | None = None,
    ) -> KafkaPublish:
        return KafkaPublish(self, states, indices, headers, fleets, traced)

    def by_partition(
        self, states: Sequence[CarState], indices: Sequence[int], partitions: set[int]
    ) -> dict[int, list[int]]:
        """Indices by the partition of their car, each list in the given order."""
        ordered = sorted(partitions)
        if len(ordered) != self._partition_count or len(self._partition_of) > _MAX_CACHED_CARS:
            self._partition_of.clear()
            self._partition_count = len(ordered)
        cache = self._partition_of
        out: dict[int, list[int]] = {}
        for i in indices:
            car = states[i].car_id
            part = cache.get(car)
            if part is None:
                part = cache[car] = _PARTITIONER(car.encode(), ordered, ordered)
            out.setdefault(part, []).append(i)
        return out

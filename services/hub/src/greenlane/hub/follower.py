"""Follows every partition of fleet-events (no consumer group) and feeds the hub."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from greenlane.core.kafka import seek_to_window, start_with_retry, topic_partitions
from greenlane.core.telemetry import traced_record
from greenlane.hub.events import Skipped, decode, event_label
from greenlane.hub.hub import Hub
from greenlane.hub.metrics import HubMetrics

log = logging.getLogger(__name__)

CLIENT_ID = "greenlane-hub"
POLL_MS = 200
MAX_RECORDS = 10_000
FETCH_WAIT_MS = 50
STOP_TIMEOUT_S = 5.0


class Follower:
    """Reads fleet-events from `replay_seconds` ago onwards, every partition, in order.

    Assigned, not subscribed: every hub replica must see the whole fleet. Positions
    are not committed: a restarted hub rebuilds its picture from the replay window.
    """

    def __init__(
        self,
        hub: Hub,
        metrics: HubMetrics,
        *,
        bootstrap_servers: str,
        topic: str,
        replay_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.hub = hub
        self.metrics = metrics
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.replay_seconds = replay_seconds
        self.clock = clock
        self.assigned = False
        self.caught_up = False  # every partition read to its high watermark
        self.ever_caught_up = False
        self.topic_missing = False  # nothing written yet: an empty picture is complete
        self.newest_event_ms = 0
        self._next: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None

    @property
    def current(self) -> bool:
        """The picture holds every event written so far (or there is no event yet)."""
        return self.ever_caught_up or self.topic_missing

    def lag_seconds(self) -> float:
        if self.caught_up or not self.newest_event_ms:
            return 0.0
        return max(self.clock() - self.newest_event_ms / 1000.0, 0.0)

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=CLIENT_ID,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=10_000,
            # A fetch waits at most this long for new records: the map's latency budget
            # (Tansu answers an empty fetch only after the wait, whatever arrives).
            fetch_max_wait_ms=FETCH_WAIT_MS,
        )
        self._consumer = consumer
        try:
            await start_with_retry(consumer.start, "Kafka")
            tps = await self._partitions(consumer, stop)
            if tps is None:
                return
            cutoff_ms = int((self.clock() - self.replay_seconds) * 1000)
            await self._seek(consumer, tps, cutoff_ms)
            self.assigned = True
            log.info(
                "following %s (%d partitions) from %.0f s ago",
                self.topic,
                len(tps),
                self.replay_seconds,
            )
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=POLL_MS, max_records=MAX_RECORDS)
                await self._take(batch, cutoff_ms)
                self._update_caught_up(consumer, tps)
                self.metrics.lag.set(self.lag_seconds())
        finally:
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await asyncio.wait_for(consumer.stop(), STOP_TIMEOUT_S)

    async def _partitions(
        self, consumer: AIOKafkaConsumer, stop: asyncio.Event
    ) -> list[TopicPartition] | None:
        told = False
        while not stop.is_set():
            tps = await topic_partitions(consumer, self.topic)
            if tps:
                self.topic_missing = False
                consumer.assign(tps)
                return tps
            self.topic_missing = True
            if not told:
                log.info("waiting for topic %s to exist", self.topic)
                told = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        return None

    async def _seek(
        self, consumer: AIOKafkaConsumer, tps: list[TopicPartition], cutoff_ms: int
    ) -> None:
        """Start at the first record of the replay window (records older are skipped
        anyway: some brokers answer a time lookup with an earlier offset)."""
        await seek_to_window(consumer, tps, cutoff_ms)
        for tp in tps:
            self._next[tp] = await consumer.position(tp)

    async def _take(self, batch: dict[TopicPartition, list[Any]], cutoff_ms: int) -> None:
        labels: Counter[str] = Counter()
        for tp, records in batch.items():
            for record in records:
                self._next[tp] = record.offset + 1
                timestamp = int(record.timestamp)
                if timestamp < cutoff_ms:
                    continue  # before the replay window
                decoded = decode(record.value)
                labels[event_label(decoded)] += 1
                if isinstance(decoded, Skipped):
                    log.debug(
                        "skipped %s at %s@%d: %s", decoded.label, tp, record.offset, decoded.reason
                    )
                    continue
                self.newest_event_ms = max(self.newest_event_ms, timestamp)
                await self.hub.offer(decoded, timestamp, traced_record(record.headers))
        for label, n in labels.items():
            self.metrics.events.labels(label).inc(n)

    def _update_caught_up(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        caught_up = True
        for tp in tps:
            high = consumer.highwater(tp)
            if high is None or self._next.get(tp, 0) < high:
                caught_up = False
                break
        self.caught_up = caught_up
        if caught_up and not self.ever_caught_up:
            self.ever_caught_up = True
            log.info("caught up with %s", self.topic)

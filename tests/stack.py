"""Helpers for integration tests: read a topic back, cut a connection with a TCP proxy."""

from __future__ import annotations

import asyncio
import contextlib
import json

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.tcpproxy import TcpProxy

__all__ = ["TcpProxy", "read_topic"]


async def read_topic(
    bootstrap: str, topic: str, *, expect: int | None = None, wait_seconds: float = 20.0
) -> list[dict[str, object]]:
    """Every event of a topic, from the beginning, across partitions (in offset order)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        await consumer.topics()  # refreshes metadata
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        events: list[dict[str, object]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while loop.time() < deadline:
            positions = {tp: await consumer.position(tp) for tp in tps}
            if all(positions[tp] >= ends[tp] for tp in tps) and (
                expect is None or len(events) >= expect
            ):
                break
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    assert record.value is not None
                    event = json.loads(record.value)
                    event["_key"] = record.key.decode() if record.key else None
                    event["_partition"] = record.partition
                    event["_headers"] = {k: v.decode() for k, v in record.headers or ()}
                    events.append(event)
            if expect is not None and len(events) < expect:
                ends = await consumer.end_offsets(tps)
        return events
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()

"""Kafka helpers: the producer every service uses, topic creation, retries."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

log = logging.getLogger(__name__)


def make_producer(
    bootstrap_servers: str, *, client_id: str, **overrides: object
) -> AIOKafkaProducer:
    """A producer that only confirms writes the broker holds (acks=all), snappy-compressed.

    Idempotence stays off: the embedded broker (Tansu) cannot hand out producer ids.
    Duplicates after a retry are removed downstream by the event key.
    """
    options: dict[str, object] = {
        "bootstrap_servers": bootstrap_servers,
        "client_id": client_id,
        "acks": "all",
        "compression_type": "snappy",
        "linger_ms": 2,
        "max_batch_size": 256 * 1024,
        "request_timeout_ms": 10_000,
        "retry_backoff_ms": 200,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


async def ensure_topic(
    bootstrap_servers: str, topic: str, *, partitions: int = 6, replication: int = 1
) -> None:
    """Create a topic when it is missing; an existing topic is left as it is."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="greenlane-admin")
    await admin.start()
    try:
        existing = await admin.list_topics()
        if topic in existing:
            return
        try:
            await admin.create_topics(
                [NewTopic(name=topic, num_partitions=partitions, replication_factor=replication)]
            )
            log.info("created topic %s with %d partitions", topic, partitions)
        except TopicAlreadyExistsError:
            pass
    finally:
        await admin.close()


async def start_with_retry(
    start: object, what: str, *, attempts: int = 0, max_delay: float = 5.0
) -> None:
    """Await start() until it succeeds (attempts=0: forever), backing off between tries."""
    assert callable(start)
    delay = 0.2
    n = 0
    while True:
        n += 1
        try:
            await start()
            return
        except (KafkaError, OSError) as exc:
            if attempts and n >= attempts:
                raise
            log.warning("%s not reachable (%s); retrying in %.1fs", what, type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The topic's partitions from fresh metadata ([] while it does not exist).

    consumer.topics() fetches a copy of the metadata and leaves the consumer's own
    unchanged, so partitions_for_topic() would miss a topic created after the consumer
    started until the periodic refresh (metadata_max_age_ms, 5 minutes by default). The
    partitions are read from that fresh copy instead; asking for the topic by name would
    make a broker that auto-creates topics create it, with its default partitions.
    Assigning them makes the consumer track the topic.
    """
    cluster = await consumer._client.fetch_all_metadata()
    partitions = cluster.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(partitions)]


async def fetch_high_watermarks(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], wait_seconds: float = 3.0
) -> dict[TopicPartition, int]:
    """Where each assigned partition really ends, as fetch responses report it.

    ListOffsets (end_offsets, seek_to_end) is not enough: the embedded broker (Tansu)
    answers it with the start of the last record batch + 1. Records fetched here are
    dropped; call this before reading. Partitions that did not answer in time are left
    out of the result.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    while loop.time() < deadline and any(consumer.highwater(tp) is None for tp in tps):
        await consumer.getmany(*tps, timeout_ms=200)
    ends = {tp: consumer.highwater(tp) for tp in tps}
    return {tp: end for tp, end in ends.items() if end is not None}


async def seek_to_window(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], cutoff_ms: int
) -> None:
    """Put each partition at its first record at or after cutoff_ms (a replay window), or
    at its beginning when the broker cannot look offsets up by time. Readers still skip
    older records: some brokers answer a time lookup with an earlier offset."""
    await consumer.seek_to_beginning(*tps)
    try:
        found = await consumer.offsets_for_times(dict.fromkeys(tps, cutoff_ms))
    except (KafkaError, OSError, ValueError) as exc:
        log.info("offsets by time unavailable (%s); replaying from the start", exc)
        return
    for tp in tps:
        hit = found.get(tp)
        if hit is not None:
            consumer.seek(tp, hit.offset)

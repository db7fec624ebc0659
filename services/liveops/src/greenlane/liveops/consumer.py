"""The Kafka side of the feed: connect, take every partition, commit, stop, quiet retries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Final, TextIO

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from greenlane.core.kafka import fetch_high_watermarks
from greenlane.liveops.options import Options

log = logging.getLogger(__name__)

CLIENT_ID: Final = "greenlane-liveops"
POLL_MS: Final = 200
TOPIC_POLL_S: Final = 1.0
PRIMING_S: Final = 3.0  # at most this long to learn where each partition ends
COMMIT_TIMEOUT_S: Final = 2.0
STOP_TIMEOUT_S: Final = 5.0
LOG_EVERY_S: Final = 30.0  # one line per kind of aiokafka complaint, not one per retry


class BrokerUnreachable(Exception):
    """The broker did not answer within --connect-timeout at start."""


def _notice(err: TextIO, line: str) -> None:
    err.write(line + "\n")
    err.flush()


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


@contextlib.contextmanager
def silenced(logger_name: str = "aiokafka") -> Iterator[None]:
    """Mute a library while we retry ourselves: the outcome is reported once, in one line."""
    logger = logging.getLogger(logger_name)
    saved = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(saved)


class _OncePer(logging.Filter):
    """Lets one record of each message template through per period."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self._last: dict[tuple[str, object], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.msg)
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.seconds:
            return False
        self._last[key] = now
        return True


@contextlib.contextmanager
def throttled(prefix: str = "aiokafka", seconds: float = LOG_EVERY_S) -> Iterator[None]:
    """While the broker is away aiokafka logs every 100 ms retry; keep one line per period.

    Filters do not inherit, so the filter goes on every logger of the library.
    """
    throttle = _OncePer(seconds)
    loggers = [
        logger
        for name, logger in list(logging.root.manager.loggerDict.items())
        if isinstance(logger, logging.Logger) and (name == prefix or name.startswith(prefix + "."))
    ]
    for logger in loggers:
        logger.addFilter(throttle)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(throttle)


async def connect(options: Options, stop: asyncio.Event) -> AIOKafkaConsumer | None:
    """A started consumer, or None when stopped first; BrokerUnreachable after the timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + options.connect_timeout
    delay = 0.25
    while True:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=options.bootstrap_servers,
            client_id=CLIENT_ID,
            group_id=options.group,
            # Commits are ours (commit_positions): aiokafka's auto-commit retries its last
            # commit forever inside stop() when the broker is gone, and Ctrl+C must not hang.
            enable_auto_commit=False,
            request_timeout_ms=10_000,
        )
        try:
            with silenced():
                await asyncio.wait_for(consumer.start(), max(deadline - loop.time(), 0.1))
            return consumer
        except (KafkaError, OSError, TimeoutError) as exc:
            failure = type(exc).__name__
            with silenced():
                await stop_consumer(consumer)
        remaining = deadline - loop.time()
        if stop.is_set():
            return None
        if remaining <= 0:
            raise BrokerUnreachable(failure)
        await wait_or_stop(stop, min(delay, remaining))
        if stop.is_set():
            return None
        delay = min(delay * 2, 2.0)


async def take_partitions(
    consumer: AIOKafkaConsumer, options: Options, stop: asyncio.Event, err: TextIO
) -> dict[TopicPartition, int] | None:
    """Assign every partition of the topic, positioned at its start or its end.

    Assigned, not subscribed: a group member would get a share of the partitions, and each
    operator's viewer must show the whole fleet. Returns the next offset of each partition,
    or None when stopped while waiting for the topic to exist.
    """
    told = False
    while True:
        await consumer.topics()  # refreshes the metadata
        partitions = consumer.partitions_for_topic(options.topic)
        if partitions:
            break
        if not told:
            _notice(err, f"liveops: waiting for topic {options.topic} to exist")
            told = True
        await wait_or_stop(stop, TOPIC_POLL_S)
        if stop.is_set():
            return None
    tps = [TopicPartition(options.topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    if options.from_beginning:
        await consumer.seek_to_beginning(*tps)
    else:
        await consumer.seek_to_end(*tps)
        await _skip_to_high_watermarks(consumer, tps)
    # Seeks are lazy; resolved before the "following" notice, so an event sent after it is
    # never skipped.
    return {tp: await consumer.position(tp) for tp in tps}


async def _skip_to_high_watermarks(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
    """Move each partition to its high watermark as a fetch reports it.

    The embedded broker (Tansu) answers ListOffsets(latest) with the last record batch's
    base offset + 1, so seek_to_end alone would replay the rest of the last batch; a fetch
    reports the true high watermark. On other brokers the two agree and nothing moves.
    """
    ends = await fetch_high_watermarks(consumer, tps, PRIMING_S)
    for tp, high in ends.items():
        if high > await consumer.position(tp):
            consumer.seek(tp, high)


def lag(consumer: AIOKafkaConsumer, positions: dict[TopicPartition, int]) -> int | None:
    """Events written but not read yet, from the high watermarks of the last fetches."""
    total, known = 0, False
    for tp, position in positions.items():
        high = consumer.highwater(tp)
        if high is not None:
            total += max(high - position, 0)
            known = True
    return total if known else None


async def commit_positions(
    consumer: AIOKafkaConsumer, positions: dict[TopicPartition, int]
) -> None:
    """Record how far the viewer read under its group, for the usual lag tooling.

    Best effort and bounded: the feed itself never starts from these offsets.
    """
    try:
        await asyncio.wait_for(consumer.commit(dict(positions)), COMMIT_TIMEOUT_S)
    except (KafkaError, OSError, TimeoutError) as exc:
        log.debug("commit of the read positions failed: %s", type(exc).__name__)


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """consumer.stop(), bounded, and complete even when aiokafka trips over itself."""
    try:
        await asyncio.wait_for(_close(consumer), STOP_TIMEOUT_S)
    except TimeoutError:
        log.warning("the Kafka consumer did not close within %.0f s", STOP_TIMEOUT_S)


async def _close(consumer: AIOKafkaConsumer) -> None:
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # a real cancellation: ours to honour
        # aiokafka#647: with the broker gone, stop() re-raises the cancellation of its own
        # fetch task and skips the rest; finish it so no task or socket is left behind.
        fetcher = consumer._fetcher
        pending = list(fetcher._pending_tasks) if fetcher is not None else []
        for pending_task in pending:
            pending_task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await consumer._client.close()
    except (KafkaError, OSError) as exc:
        log.debug("closing the Kafka consumer: %s", type(exc).__name__)

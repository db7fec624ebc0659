"""Dead letters: a message that cannot be stored, with why and where it came from."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from aiokafka import AIOKafkaProducer

DlqReason = Literal["invalid_event", "unpriceable"]

REASON_HEADER: Final = "x-dlq-reason"
CODE_HEADER: Final = "x-dlq-code"
TOPIC_HEADER: Final = "x-original-topic"
PARTITION_HEADER: Final = "x-original-partition"
OFFSET_HEADER: Final = "x-original-offset"
_OWN_HEADERS: Final = frozenset(
    {REASON_HEADER, CODE_HEADER, TOPIC_HEADER, PARTITION_HEADER, OFFSET_HEADER}
)
_MAX_REASON: Final = 500


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A consumed message that goes to the dead-letter topic instead of the table."""

    code: DlqReason
    reason: str  # human-readable, e.g. "battery: must be within [0, 100] percent, got 150.0"
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()

    def dlq_headers(self) -> list[tuple[str, bytes]]:
        """The original headers (trace context, ...) plus where and why."""
        kept = [(k, v) for k, v in self.headers if k not in _OWN_HEADERS]
        return [
            *kept,
            (REASON_HEADER, f"{self.code}: {self.reason}"[:_MAX_REASON].encode()),
            (CODE_HEADER, self.code.encode()),
            (TOPIC_HEADER, self.topic.encode()),
            (PARTITION_HEADER, str(self.partition).encode()),
            (OFFSET_HEADER, str(self.offset).encode()),
        ]


async def send_dead_letters(
    producer: AIOKafkaProducer, topic: str, letters: Sequence[DeadLetter]
) -> None:
    """Publish and wait until the broker holds every one (acks=all); raises on failure."""
    futures = [
        await producer.send(topic, value=d.value, key=d.key, headers=d.dlq_headers())
        for d in letters
    ]
    await asyncio.gather(*futures)

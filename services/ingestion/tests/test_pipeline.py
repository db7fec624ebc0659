"""The flush logic of the ingestion pipeline, against in-process fakes of Redis and Kafka.

A unit test of the pipeline's decisions (what is retried, what is answered, what is taken
back), not an integration claim: tests/integration runs the same against real servers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler
from opentelemetry.trace import SpanContext, SpanKind, StatusCode, TraceFlags

from greenlane.core.errors import BackendUnavailable
from greenlane.core.events import CarState
from greenlane.ingestion.pipeline import STORED, IngestPipeline, Receipt

pytestmark = pytest.mark.timeout(30)

ACK_TIMEOUT = 0.4


def state(car: str, ts: int) -> CarState:
    return CarState(car_id=car, lat=40.75, lon=-73.98, battery=50.0, velocity=10.0, timestamp=ts)


@dataclass
class FakeRedis:
    """Car -> latest timestamp; refuses some cars for good, or is down for some tries."""

    held: dict[str, int] = field(default_factory=dict)
    refuse: set[str] = field(default_factory=set)
    down_for: int = 0  # the next tries that fail as a lost connection would
    hang: bool = False  # tries never answer
    attempts: int = 0
    undone: list[tuple[str, int]] = field(default_factory=list)

    def begin(self, states: Sequence[CarState], claims: Sequence[str] = ()) -> FakeRedisWrite:
        return FakeRedisWrite(self, list(states))


@dataclass
class FakeRedisWrite:
    redis: FakeRedis
    states: list[CarState]
    answered: bool = False
    replies: dict[int, tuple[str, int | None]] = field(default_factory=dict)  # (kind, previous)

    @property
    def pending(self) -> bool:
        return not self.answered

    async def attempt(self) -> None:
        r = self.redis
        r.attempts += 1
        if r.hang:
            await asyncio.Event().wait()
        await asyncio.sleep(0)
        if r.down_for > 0:
            r.down_for -= 1
            return  # a failure that may pass: still pending
        for i, s in enumerate(self.states):
            if s.car_id in r.refuse:
                self.replies[i] = ("refused", None)
            elif r.held.get(s.car_id, -1) >= s.timestamp:
                self.replies[i] = ("older", None)
            else:
                self.replies[i] = ("stored", r.held.get(s.car_id))
                r.held[s.car_id] = s.timestamp
        self.answered = True

    def failures(self) -> dict[int, str]:
        out = {}
        for i in range(len(self.states)):
            kind = self.replies.get(i, ("",))[0]
            if kind == "refused":
                out[i] = "Redis refused it: WRONGTYPE"
            elif kind == "":
                out[i] = ""
        return out

    async def undo(self, indices: Sequence[int]) -> int:
        n = 0
        for i in reversed(indices):
            kind, previous = self.replies.get(i, ("", None))
            s = self.states[i]
            if kind == "stored" and self.redis.held.get(s.car_id) == s.timestamp:
                n += 1
                self.redis.undone.append((s.car_id, s.timestamp))
                if previous is None:
                    del self.redis.held[s.car_id]
                else:
                    self.redis.held[s.car_id] = previous
        return n


@dataclass
class FakeKafka:
    """The records the broker holds, in order; some cars fail (may pass) or are refused."""

    records: list[tuple[str, int]] = field(default_factory=list)
    failing: set[str] = field(default_factory=set)
    refuse: set[str] = field(default_factory=set)
    calls: int = 0
    gate: asyncio.Event | None = None  # when set up, publishing waits for it

    # (car, timestamp) -> the headers its record was published with
    headers: dict[tuple[str, int], list[tuple[str, bytes]]] = field(default_factory=dict)

    def begin(
        self,
        states: Sequence[CarState],
        indices: Sequence[int],
        headers: list[tuple[str, bytes]],
        fleets: Sequence[str] | None = None,
        traced: Mapping[int, list[tuple[str, bytes]]] | None = None,
    ) -> FakePublish:
        self.calls += 1
        per = {i: (traced or {}).get(i, headers) for i in indices}
        return FakePublish(self, list(states), list(indices), per)


@dataclass
class FakePublish:
    kafka: FakeKafka
    states: list[CarState]
    todo: list[int]
    record_headers: dict[int, list[tuple[str, bytes]]] = field(default_factory=dict)
    done: set[int] = field(default_factory=set)
    errors: dict[int, str] = field(default_factory=dict)

    @property
    def pending(self) -> bool:
        return bool(self.todo)

    async def attempt(self) -> None:
        await asyncio.sleep(0)
        if self.kafka.gate is not None:
            await self.kafka.gate.wait()
        left = []
        for i in self.todo:
            car = self.states[i].car_id
            if car in self.kafka.refuse:
                self.errors[i] = "Kafka refused it: RecordTooLargeError"
            elif car in self.kafka.failing:
                left.append(i)
            else:
                self.kafka.records.append((car, self.states[i].timestamp))
                self.kafka.headers[car, self.states[i].timestamp] = self.record_headers[i]
                self.done.add(i)
        self.todo = left

    def failures(self) -> dict[int, str]:
        return {**dict.fromkeys(self.todo, ""), **self.errors}


@pytest.fixture
def redis() -> FakeRedis:
    return FakeRedis()


@pytest.fixture
def kafka() -> FakeKafka:
    return FakeKafka()


@pytest.fixture
async def pipeline(redis: FakeRedis, kafka: FakeKafka) -> IngestPipeline:
    p = IngestPipeline(redis, kafka, ack_timeout=ACK_TIMEOUT, max_flush_size=100)
    p.start()
    yield p  # type: ignore[misc]
    await p.close(1.0)


async def test_a_status_is_acknowledged_once_redis_and_kafka_stored_it(
    pipeline: IngestPipeline, redis: FakeRedis, kafka: FakeKafka
) -> None:
    receipt = await pipeline.submit([state("a", 1), state("b", 1)])

    assert receipt is STORED
    assert redis.held == {"a": 1, "b": 1}
    assert kafka.records == [("a", 1), ("b", 1)]


async def test_kafka_confirming_part_of_a_flush_acknowledges_that_part_and_takes_the_rest_back(
    pipeline: IngestPipeline, redis: FakeRedis, kafka: FakeKafka
) -> None:
    redis.held["b"] = 0  # b had a state before: it gets it back
    kafka.failing = {"b", "c"}

    receipt = await pipeline.submit([state("a", 1), state("b", 1), state("c", 1)])

    assert receipt.failures == {
        1: "Kafka did not confirm in time; safe to resend",
        2: "Kafka did not confirm in time; safe to resend",
    }
    assert kafka.records == [("a", 1)]
    # Nothing of b and c stays stored: Redis holds what it held before.
    assert redis.held == {"a": 1, "b": 0}
    assert sorted(redis.undone) == [("b", 1), ("c", 1)]
    assert not pipeline.healthy


async def test_a_redis_failure_that_may_pass_is_retried_until_it_passes(
    pipeline: IngestPipeline, redis: FakeRedis, kafka: FakeKafka
) -> None:
    redis.down_for = 2

    receipt = await pipeline.submit([state("a", 1)])

    assert receipt.stored
    assert redis.attempts == 3
    assert kafka.records == [("a", 1)]
    assert pipeline.healthy


async def test_redis_down_until_the_deadline_answers_unavailable_and_kafka_is_never_asked(
    pipeline: IngestPipeline, redis: FakeRedis, kafka: FakeKafka
) -> None:
    redis.down_for = 1_000

    receipt = await pipeline.submit([state("a", 1), state("b", 2)])

    assert receipt.failures == {
        0: "Redis did not confirm in time; safe to resend",
        1: "Redis did not confirm in time; safe to resend",
    }
    assert redis.attempts > 1  # retried, with back-off, until the deadline
    assert kafka.calls == 0 and kafka.records == []
    assert not pipeline.healthy


async def test_redis_that_never_answers_is_cut_off_at_the_deadline(
    pipeline: IngestPipeline, redis: FakeRedis, kafka: FakeKafka
) -> None:
    redis.hang = True

    receipt = await pipeline.submit([state("a", 1)])

    assert receipt.failures == {0: "Redis did not confirm in time; safe to resend"}
    assert redis.attempts == 1
    assert kafka.records == []


async def test_kafka_down_until_the_deadline_leaves_nothing_stored_anywhere(
    pipeline: IngestPipeline, redis: FakeRedis, kafka: FakeKafka
) -> None:
    kafka.failing = {"a", "b"}

    receipt = await pipeline.submit([state("a", 1), state("b", 1)])

    assert set(receipt.failures) == {0, 1}
    assert redis.held == {} and kafka.records == []


async def test_a_status_redis_refuses_fails_alone_at_once_and_is_never_retried(
    pipeline: IngestPipeline, redis: FakeRedis, kafka: FakeKafka
) -> None:
    redis.refuse = {"bad"}
    loop = asyncio.get_running_loop()
    started = loop.time()

    receipt = await pipeline.submit([state("a", 1), state("bad", 1), state("b", 1)])

    assert receipt.failures == {1: "Redis refused it: WRONGTYPE"}
    assert redis.attempts == 1
    assert kafka.records == [("a", 1), ("b", 1)]  # nothing of the refused status
    assert loop.time() - started < ACK_TIMEOUT  # answered before any deadline
    assert pipeline.healthy  # a refused status is bad data, not a backend down


async def test_a_status_kafka_refuses_is_taken_back_from_redis_without_waiting(
    pipeline: IngestPipeline, redis: FakeRedis, kafka: FakeKafka
) -> None:
    kafka.refuse = {"big"}

    receipt = await pipeline.submit([state("big", 1), state("a", 1)])

    assert receipt.failures == {0: "Kafka refused it: RecordTooLargeError"}
    assert redis.held == {"a": 1}
    assert kafka.records == [("a", 1)]


async def test_an_older_status_is_history_for_kafka_and_leaves_the_newer_state(
    pipeline: IngestPipeline, redis: FakeRedis, kafka: FakeKafka
) -> None:
    await pipeline.submit([state("a", 10)])

    receipt = await pipeline.submit([state("a", 5)])

    assert receipt.stored
    assert redis.held == {"a": 10}
    assert kafka.records == [("a", 10), ("a", 5)]


async def test_submissions_keep_their_order_across_flushes_and_each_gets_its_own_receipt(
    redis: FakeRedis, kafka: FakeKafka
) -> None:
    pipeline = IngestPipeline(redis, kafka, ack_timeout=ACK_TIMEOUT, max_flush_size=3)
    kafka.failing = {"x"}
    futures = [
        pipeline.submit([state("a", 1), state("b", 1)]),
        pipeline.submit([state("x", 1)]),
        pipeline.submit([state("a", 2), state("b", 2), state("a", 3)]),
        pipeline.submit([state("b", 3)]),
    ]
    pipeline.start()
    try:
        receipts = await asyncio.gather(*futures)
    finally:
        await pipeline.close(1.0)

    assert [r.stored for r in receipts] == [True, False, True, True]
    assert receipts[1] == Receipt({0: "Kafka did not confirm in time; safe to resend"})
    assert [ts for car, ts in kafka.records if car == "a"] == [1, 2, 3]
    assert [ts for car, ts in kafka.records if car == "b"] == [1, 2, 3]


async def test_closing_while_a_flush_hangs_answers_every_waiting_status(
    redis: FakeRedis, kafka: FakeKafka
) -> None:
    pipeline = IngestPipeline(redis, kafka, ack_timeout=30.0)
    redis.hang = True
    pipeline.start()
    first = pipeline.submit([state("a", 1)])
    await asyncio.sleep(0.05)  # the flush of `first` is under way
    queued = pipeline.submit([state("b", 1)])

    # The drain gives up: the hanging flush is cancelled, and the queue is answered.
    await pipeline.close(drain_seconds=0.1)

    with pytest.raises(BackendUnavailable, match="shutting down"):
        await queued
    with pytest.raises(BackendUnavailable, match="shutting down"):
        await first
    with pytest.raises(BackendUnavailable, match="shutting down"):
        pipeline.submit([state("c", 1)])
    assert kafka.records == []


async def test_flushes_of_other_cars_run_alongside_and_a_flush_of_the_same_car_waits(
    redis: FakeRedis, kafka: FakeKafka
) -> None:
    pipeline = IngestPipeline(redis, kafka, ack_timeout=5.0, max_flush_size=1)
    kafka.gate = asyncio.Event()
    pipeline.start()
    try:
        first = pipeline.submit([state("a", 1)])
        other_car = pipeline.submit([state("b", 1)])
        same_car = pipeline.submit([state("a", 2)])
        for _ in range(20):
            await asyncio.sleep(0.01)

        # Kafka holds the first flush: b's went on alongside, a's second waits for it.
        assert redis.held == {"a": 1, "b": 1}
        assert kafka.records == []
        kafka.gate.set()
        receipts = await asyncio.gather(first, other_car, same_car)
    finally:
        await pipeline.close(1.0)

    assert all(r.stored for r in receipts)
    assert redis.held == {"a": 2, "b": 1}
    assert kafka.records == [("a", 1), ("b", 1), ("a", 2)]


# ---------------------------------------------------------------- tracing


def traced_context(trace_id: int) -> SpanContext:
    """The span context a traced status brings (its client's, sampled)."""
    return SpanContext(
        trace_id, 0x1000 + trace_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )


def traceparent(context: SpanContext) -> bytes:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-01".encode()


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def provider_for(spans: InMemorySpanExporter, root: Sampler = ALWAYS_ON) -> TracerProvider:
    provider = TracerProvider(sampler=ParentBased(root))
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return provider


async def test_a_flush_continues_its_first_traced_status_and_links_the_other_traced_ones(
    redis: FakeRedis, kafka: FakeKafka, spans: InMemorySpanExporter
) -> None:
    p = IngestPipeline(redis, kafka, ack_timeout=ACK_TIMEOUT, tracer_provider=provider_for(spans))
    p.start()
    first, second = traced_context(1), traced_context(2)
    try:
        # Submitted together, so they share one flush.
        futures = [
            p.submit([state("a", 1)], traces=[first]),
            p.submit([state("b", 1), state("c", 1)], traces=[None, second]),
            p.submit([state("d", 1)]),
        ]
        assert [(await f).stored for f in futures] == [True, True, True]
    finally:
        await p.close(1.0)

    by_name = {s.name: s for s in spans.get_finished_spans()}
    flush = by_name["ingestion.flush"]
    assert flush.context is not None and flush.parent is not None
    assert (flush.context.trace_id, flush.parent.span_id) == (first.trace_id, first.span_id)
    assert [link.context for link in flush.links] == [second]
    assert flush.attributes is not None and flush.attributes["greenlane.flush.traced"] == 2
    for step, kind in (("redis write", SpanKind.CLIENT), ("kafka produce", SpanKind.PRODUCER)):
        child = by_name[step]
        assert child.parent is not None and child.parent.span_id == flush.context.span_id
        assert child.kind is kind
    # Each traced status's record carries its own trace; the others the flush's.
    flush_header = f"00-{first.trace_id:032x}-{flush.context.span_id:016x}-01".encode()
    assert kafka.headers[("a", 1)] == [("traceparent", traceparent(first))]
    assert kafka.headers[("c", 1)] == [("traceparent", traceparent(second))]
    assert kafka.headers[("b", 1)] == kafka.headers[("d", 1)] == [("traceparent", flush_header)]


async def test_an_unsampled_flush_of_untraced_statuses_records_nothing_and_adds_no_headers(
    redis: FakeRedis, kafka: FakeKafka, spans: InMemorySpanExporter
) -> None:
    provider = provider_for(spans, root=ALWAYS_OFF)
    p = IngestPipeline(redis, kafka, ack_timeout=ACK_TIMEOUT, tracer_provider=provider)
    p.start()
    try:
        assert (await p.submit([state("a", 1), state("b", 1)])).stored
    finally:
        await p.close(1.0)

    assert spans.get_finished_spans() == ()
    assert kafka.headers == {("a", 1): [], ("b", 1): []}


async def test_a_flush_that_kafka_does_not_confirm_marks_its_produce_and_flush_spans_failed(
    redis: FakeRedis, kafka: FakeKafka, spans: InMemorySpanExporter
) -> None:
    p = IngestPipeline(redis, kafka, ack_timeout=ACK_TIMEOUT, tracer_provider=provider_for(spans))
    p.start()
    kafka.failing = {"a"}
    try:
        receipt = await p.submit([state("a", 1)], traces=[traced_context(7)])
    finally:
        await p.close(1.0)

    assert not receipt.stored
    by_name = {s.name: s for s in spans.get_finished_spans()}
    assert by_name["kafka produce"].status.status_code is StatusCode.ERROR
    assert by_name["ingestion.flush"].status.status_code is StatusCode.ERROR
    assert by_name["redis write"].status.status_code is StatusCode.UNSET
    assert "redis undo" in by_name  # what Redis took is taken back, inside the trace

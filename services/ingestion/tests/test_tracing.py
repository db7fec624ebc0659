"""Which trace each status of a batch belongs to, and how a batch's answer ends its spans."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

from greenlane.core.errors import InvalidField
from greenlane.ingestion.servicer import _batch_traces, _item_failure
from greenlane.ingestion.tracing import StatusSpans
from greenlane.v1 import fleet_pb2

CALL = SpanContext(9, 99, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))


def traced(car: str, trace_id: int, flags: str = "01") -> fleet_pb2.CarStatus:
    msg = fleet_pb2.CarStatus(car_id=car)
    msg.trace_context["traceparent"] = f"00-{trace_id:032x}-{trace_id:016x}-{flags}"
    return msg


def spans_of(statuses: list[fleet_pb2.CarStatus]) -> dict[int, Any]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    return StatusSpans(provider).start_all(statuses, "SendBatch", CALL)


def test_a_status_with_its_own_trace_gets_a_server_span_in_it_linking_the_call() -> None:
    statuses = [fleet_pb2.CarStatus(car_id="a"), traced("b", 5), traced("c", 6, flags="00")]
    spans = spans_of(statuses)
    assert list(spans) == [1]  # c's trace is not sampled: no span
    span = spans[1]
    assert span.kind is SpanKind.SERVER
    assert span.get_span_context().trace_id == 5
    assert [link.context for link in span.links] == [CALL]


def test_a_send_batch_status_without_its_own_trace_belongs_to_the_call() -> None:
    statuses = [fleet_pb2.CarStatus(car_id="a"), traced("b", 5), fleet_pb2.CarStatus(car_id="c")]
    spans = spans_of(statuses)
    invalid = [(2, InvalidField("battery", "must be within [0, 100]"))]
    traces = _batch_traces(3, invalid, spans, CALL, "SendBatch")
    assert traces is not None
    assert traces[0] == CALL
    assert traces[1] is not None and traces[1].trace_id == 5
    assert len(traces) == 2  # one per valid status


def test_a_stream_of_batches_lends_its_long_lived_trace_to_no_status() -> None:
    assert _batch_traces(2, [], {}, CALL, "StreamTelemetryBatches") is None
    assert _batch_traces(2, [], {}, None, "SendBatch") is None


def test_each_item_of_a_batch_answer_is_told_apart() -> None:
    answer = fleet_pb2.BatchResponse(
        status=fleet_pb2.UNAVAILABLE,
        accepted=1,
        rejected=[
            fleet_pb2.RejectedItem(index=0, field="lat", message="lat out of range"),
            fleet_pb2.RejectedItem(index=2, message="not stored: Kafka did not confirm"),
        ],
    )
    assert _item_failure(answer, 0) == (fleet_pb2.REJECTED, "lat out of range")
    assert _item_failure(answer, 1) is None
    assert _item_failure(answer, 2) == (fleet_pb2.UNAVAILABLE, "not stored: Kafka did not confirm")
    empty = fleet_pb2.BatchResponse(
        status=fleet_pb2.REJECTED, message="statuses: the batch is empty"
    )
    assert _item_failure(empty, 0) == (fleet_pb2.REJECTED, "statuses: the batch is empty")
    down = fleet_pb2.BatchResponse(status=fleet_pb2.UNAVAILABLE, accepted=0, message="Redis down")
    assert _item_failure(down, 3) == (fleet_pb2.UNAVAILABLE, "Redis down")


def test_a_process_that_exports_no_spans_starts_none_even_for_traced_statuses() -> None:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    spans = StatusSpans(provider, enabled=False)
    assert not spans.enabled
    assert spans.start_all([traced("a", 5), traced("b", 6)], "SendBatch", CALL) == {}
    assert exporter.get_finished_spans() == ()

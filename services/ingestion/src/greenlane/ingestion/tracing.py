"""Ingestion's spans at the edge: one per traced status, and the instrumented clients.

A status traced by its client carries its trace in CarStatus.trace_context; it gets a
SERVER span of its own (`car status`) from receipt to answer, whose context goes with it
through the pipeline (flush span, Kafka record headers). gRPC calls get their spans from
opentelemetry-instrumentation-grpc; the booking desk's Redis commands and Kafka sends
from the redis and aiokafka instrumentations. See docs/observability.md.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import grpc
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, StatusCode

from greenlane.core.redis_state import RedisClient
from greenlane.core.wire import STATUS_SPAN
from greenlane.v1 import fleet_pb2

log = logging.getLogger(__name__)

SERVICE = fleet_pb2.DESCRIPTOR.services_by_name["FleetTelemetry"].full_name
_FAILED = (fleet_pb2.REJECTED, fleet_pb2.UNAVAILABLE)
# Probes and tools call these without a token, often: they are not worth a trace.
UNTRACED_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection")


def call_context() -> SpanContext | None:
    """The span context of the gRPC call being served, when its span is recorded."""
    span = trace.get_current_span()
    return span.get_span_context() if span.is_recording() else None


class StatusSpans:
    """Starts the span of a status that carries its own trace; `finish` ends it.

    Disabled (a process that exports no spans), it starts none and looks at no status:
    reading a status's trace_context costs the batch path about 0.5 µs per status.
    """

    def __init__(
        self, tracer_provider: trace.TracerProvider | None = None, *, enabled: bool = True
    ) -> None:
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self.enabled = enabled

    def start(self, msg: fleet_pb2.CarStatus, method: str, call: SpanContext | None) -> Span | None:
        """The status's span (None when its trace is not sampled). Only for a status whose
        trace_context is set: the caller checks that, it costs nothing for the others."""
        span = self._tracer.start_span(
            STATUS_SPAN,
            context=propagate.extract(msg.trace_context),
            kind=SpanKind.SERVER,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": SERVICE,
                "rpc.method": method,
                "greenlane.car_id": msg.car_id[:64],
            },
            # The call it came on (a stream lives long: its span is a trace of its own).
            links=[Link(call)] if call is not None else None,
        )
        return span if span.is_recording() else None

    def start_all(
        self, statuses: Sequence[fleet_pb2.CarStatus], method: str, call: SpanContext | None
    ) -> dict[int, Span]:
        """Spans of the statuses of a batch that carry their own trace, by index."""
        spans: dict[int, Span] = {}
        if not self.enabled:
            return spans
        for i, msg in enumerate(statuses):
            if msg.trace_context:
                span = self.start(msg, method, call)
                if span is not None:
                    spans[i] = span
        return spans


def finish(span: Span, status: fleet_pb2.ResponseStatus.ValueType, message: str) -> None:
    """End a status's span with its answer."""
    span.set_attribute("greenlane.status.answer", fleet_pb2.ResponseStatus.Name(status))
    if status in _FAILED:
        span.set_status(StatusCode.ERROR, message)
    span.end()


def server_interceptors(
    tracer_provider: trace.TracerProvider | None = None,
) -> list[grpc.aio.ServerInterceptor]:
    """opentelemetry-instrumentation-grpc's server spans, for every call but probes."""
    from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

    untraced = filters.any_of(*(filters.service_name(s) for s in UNTRACED_SERVICES))
    interceptor: grpc.aio.ServerInterceptor = aio_server_interceptor(  # type: ignore[no-untyped-call]
        tracer_provider=tracer_provider, filter_=filters.negate(untraced)
    )
    return [interceptor]


def instrument_clients(
    redis: RedisClient, tracer_provider: trace.TracerProvider | None = None
) -> None:
    """Spans for the booking desk's Redis commands and Kafka sends.

    The flush's own writes bypass both (hand-packed Redis calls, Kafka record batches):
    the pipeline spans them itself. The aiokafka instrumentation patches the producer
    class for the whole process, so it is installed only for the global provider (a
    process that exports), never for a test's own provider.
    """
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    RedisInstrumentor.instrument_client(redis, tracer_provider=tracer_provider)
    if tracer_provider is None:
        from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor

        instrumentor = AIOKafkaInstrumentor()
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()

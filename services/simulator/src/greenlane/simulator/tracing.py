"""The simulator's traces: one per sampled car status, and the gRPC client spans.

A car status picked at the fleet's trace ratio gets a CLIENT span (`car status`) from
just before it is written to the answer that acknowledges it; its context rides in the
status itself (CarStatus.trace_context), since a stream's metadata is sent once per
stream, not per status. Ingestion continues that trace (docs/observability.md). The
calls themselves (one long stream per car) get opentelemetry-instrumentation-grpc's
spans when the process exports.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence

import grpc
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, StatusCode

from greenlane.core.wire import STATUS_SPAN
from greenlane.v1 import fleet_pb2

SERVICE = fleet_pb2.DESCRIPTOR.services_by_name["FleetTelemetry"].full_name
_FAILED = (fleet_pb2.REJECTED, fleet_pb2.UNAVAILABLE)
# opentelemetry-instrumentation-grpc's variable: services whose calls get no span.
EXCLUDED_SERVICES = "OTEL_PYTHON_GRPC_EXCLUDED_SERVICES"


class StatusTracer:
    """Starts a trace for a share `ratio` of the statuses it is shown."""

    def __init__(self, ratio: float, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.ratio = ratio
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        # Timing, not physics: the cars' seeded generators must not see these draws.
        self._rng = random.Random()

    def maybe_trace(self, status: fleet_pb2.CarStatus, method: str) -> Span | None:
        """A root span for the status at the ratio, its context written into the status."""
        if self.ratio <= 0.0 or self._rng.random() >= self.ratio:
            return None
        # A root on purpose: one trace per status (the stream's span lives for hours).
        span = self._tracer.start_span(
            STATUS_SPAN,
            context=trace.set_span_in_context(trace.INVALID_SPAN),
            kind=SpanKind.CLIENT,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": SERVICE,
                "rpc.method": method,
                "greenlane.car_id": status.car_id,
            },
        )
        if not span.is_recording():  # OTEL_TRACES_SAMPLER said no
            return None
        propagate.inject(status.trace_context, context=trace.set_span_in_context(span))
        return span


def answered(
    spans: Sequence[Span], status: fleet_pb2.ResponseStatus.ValueType, message: str
) -> None:
    """End the spans of a message with the answer it got."""
    try:
        name = fleet_pb2.ResponseStatus.Name(status)
    except ValueError:  # a status this build does not know
        name = str(status)
    for span in spans:
        span.set_attribute("greenlane.status.answer", name)
        if status in _FAILED:
            span.set_status(StatusCode.ERROR, message)
        span.end()


def unanswered(spans: Sequence[Span], why: str) -> None:
    """End the spans of a message that got no answer (the stream broke or the run ended)."""
    for span in spans:
        span.set_status(StatusCode.ERROR, why)
        span.end()


def traced_channels(
    tracer_provider: trace.TracerProvider | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[grpc.aio.ClientInterceptor]:
    """opentelemetry-instrumentation-grpc's client interceptors, for every channel.

    They span each stream and send its trace context in the call's metadata. On a
    stream, any grpc.aio client interceptor routes every write through a queue and a
    task (grpc.aio's InterceptedStreamStreamCall): measured at about a fifth of a
    saturating simulator's message rate (docs/benchmarks.md). The instrumentation's own
    OTEL_PYTHON_GRPC_EXCLUDED_SERVICES naming greenlane.v1.FleetTelemetry leaves them
    out altogether; each sampled status is still traced.
    """
    env = os.environ if environ is None else environ
    excluded = {s.strip() for s in env.get(EXCLUDED_SERVICES, "").split(",")}
    if SERVICE in excluded:
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    interceptors: list[grpc.aio.ClientInterceptor] = aio_client_interceptors(  # type: ignore[no-untyped-call]
        tracer_provider=tracer_provider
    )
    return interceptors

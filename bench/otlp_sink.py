"""A small OTLP/gRPC trace receiver: where services export spans in tests and benchmarks.

A real `TraceService` server (opentelemetry-proto + grpcio), as a collector or Jaeger
would run it: `OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:PORT` points any GreenLane
service at it. In-process (`TraceSink.start()`) it keeps every span for a test to read;
as a process (`python -m bench.otlp_sink PORT`) it only counts them and prints the count
as JSON on SIGTERM, so a benchmark's receiver costs as little as a collector would.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

KINDS = {
    trace_pb2.Span.SPAN_KIND_INTERNAL: "INTERNAL",
    trace_pb2.Span.SPAN_KIND_SERVER: "SERVER",
    trace_pb2.Span.SPAN_KIND_CLIENT: "CLIENT",
    trace_pb2.Span.SPAN_KIND_PRODUCER: "PRODUCER",
    trace_pb2.Span.SPAN_KIND_CONSUMER: "CONSUMER",
}


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    return (
        getattr(v, kind)
        if kind in ("string_value", "bool_value", "int_value", "double_value")
        else str(v)
    )


def _attributes(items: Any) -> dict[str, Any]:
    pairs: list[KeyValue] = list(items)
    return {kv.key: _value(kv.value) for kv in pairs}


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span, ids in hex as Jaeger shows them."""

    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root
    links: tuple[tuple[str, str], ...]  # (trace id, span id)
    attributes: dict[str, Any] = field(hash=False)
    error: bool = False

    def links_to(self, trace_id: str) -> bool:
        return any(t == trace_id for t, _ in self.links)


class TraceSink(trace_service_pb2_grpc.TraceServiceServicer):
    """Receives ExportTraceServiceRequest calls; keeps the spans unless `keep` is False."""

    def __init__(self, *, keep: bool = True) -> None:
        self.keep = keep
        self.spans: list[ReceivedSpan] = []
        self.count = 0
        self.by_service: dict[str, int] = {}
        self.by_name: dict[str, int] = {}  # "service: span name" -> spans
        self.requests = 0
        self.port = 0
        self._server: grpc.aio.Server | None = None

    async def Export(  # noqa: N802 - the gRPC method name
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.requests += 1
        for resource_spans in request.resource_spans:
            service = str(_attributes(resource_spans.resource.attributes).get("service.name", ""))
            for scope_spans in resource_spans.scope_spans:
                self.count += len(scope_spans.spans)
                self.by_service[service] = self.by_service.get(service, 0) + len(scope_spans.spans)
                for s in scope_spans.spans:
                    key = f"{service}: {s.name}"
                    self.by_name[key] = self.by_name.get(key, 0) + 1
                if self.keep:
                    self.spans.extend(self._decode(service, s) for s in scope_spans.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    @staticmethod
    def _decode(service: str, s: trace_pb2.Span) -> ReceivedSpan:
        return ReceivedSpan(
            service=service,
            name=s.name,
            kind=KINDS.get(s.kind, "UNSPECIFIED"),
            trace_id=s.trace_id.hex(),
            span_id=s.span_id.hex(),
            parent_span_id=s.parent_span_id.hex(),
            links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in s.links),
            attributes=_attributes(s.attributes),
            error=s.status.code == trace_pb2.Status.STATUS_CODE_ERROR,
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> TraceSink:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, server)  # type: ignore[no-untyped-call]
        self.port = server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        self._server = server
        return self

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(1.0)
            self._server = None

    def of_trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.trace_id == trace_id]


async def _serve(port: int) -> None:
    sink = await TraceSink(keep=False).start(port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await sink.stop()
    counts = {
        "spans": sink.count,
        "requests": sink.requests,
        "by_service": sink.by_service,
        "by_name": sink.by_name,
    }
    sys.stdout.write(json.dumps(counts) + "\n")


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1])))

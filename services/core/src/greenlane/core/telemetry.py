"""Telemetry: an HTTP endpoint for metrics and probes, trace context in Kafka headers.

Spans are exported by greenlane.core.tracing (kept apart: its OTLP/gRPC exporter
is a dependency only of the services that trace).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence

import uvicorn
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from greenlane.core.edge import EdgeLimits, TlsFiles, server_config
from greenlane.core.lifecycle import bind_socket

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[Mapping[str, bool]]]
Headers = Sequence[tuple[str, bytes]]

# A batch span links at most this many traces (the SDK's default link limit,
# OTEL_SPAN_LINK_COUNT_LIMIT); the others are counted in greenlane.links.dropped.
MAX_LINKS = 128


def inject_trace_headers() -> list[tuple[str, bytes]]:
    """W3C trace context of the current span, as Kafka record headers."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(k, v.encode()) for k, v in carrier.items()]


def trace_headers(span_context: SpanContext) -> list[tuple[str, bytes]]:
    """W3C trace context of one span (not the current one), as Kafka record headers."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(NonRecordingSpan(span_context)))
    return [(k, v.encode()) for k, v in carrier.items()]


def extract_trace_context(headers: Headers | None) -> Context:
    """The trace context carried by Kafka record headers, for a child span."""
    carrier = {k: v.decode(errors="replace") for k, v in headers or []}
    return propagate.extract(carrier)


def sampled_context(carrier: Mapping[str, str]) -> SpanContext | None:
    """The span context in a W3C carrier (a proto map, decoded headers) when it is sampled."""
    context = trace.get_current_span(propagate.extract(carrier)).get_span_context()
    return context if context.is_valid and context.trace_flags.sampled else None


def traced_record(headers: Headers | None) -> SpanContext | None:
    """The sampled span context a Kafka record carries; None (cheaply) when it has none."""
    if not headers:
        return None
    return sampled_context({k: v.decode(errors="replace") for k, v in headers})


def continue_and_link(
    contexts: Sequence[SpanContext],
) -> tuple[Context | None, list[Link], int]:
    """How a span over many traced items (a flush, a batch, a frame) joins their traces.

    It continues the first one's trace, so it is sampled whenever one of its items is
    (parent-based sampling looks at the parent only), and links every other distinct one,
    up to MAX_LINKS. Returns (parent context or None, links, how many were left out).
    """
    if not contexts:
        return None, [], 0
    first = contexts[0]
    seen = {(first.trace_id, first.span_id)}
    links: list[Link] = []
    dropped = 0
    for c in contexts[1:]:
        key = (c.trace_id, c.span_id)
        if key in seen:
            continue
        seen.add(key)
        if len(links) < MAX_LINKS:
            links.append(Link(c))
        else:
            dropped += 1
    return trace.set_span_in_context(NonRecordingSpan(first)), links, dropped


def probes_app(
    ready: ReadinessCheck | None = None, registry: CollectorRegistry = REGISTRY
) -> Starlette:
    """/metrics (Prometheus), /healthz (liveness) and /readyz (readiness)."""

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        checks = dict(await ready()) if ready else {}
        ok = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": checks},
            status_code=200 if ok else 503,
        )

    return Starlette(
        routes=[
            Route("/metrics", metrics),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ]
    )


class SignalNeutralServer(uvicorn.Server):
    """A uvicorn server that leaves SIGTERM and SIGINT to lifecycle.shutdown_event().

    uvicorn would replace the loop's handlers with its own, stop serving at once and
    re-raise the signal on exit: metrics, probes and APIs would vanish while the service
    is still draining.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpServer:
    """Serves a Starlette app (probes and metrics, an HTTP API) inside the service's loop.

    The port is bound in start(), so a taken one raises ConfigurationError naming
    `variable`; an async context manager, for an AsyncExitStack.
    """

    def __init__(
        self,
        app: Starlette,
        host: str,
        port: int,
        *,
        variable: str = "GREENLANE_METRICS_PORT",
        tls: TlsFiles | None = None,
        limits: EdgeLimits | None = None,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.variable = variable
        config = server_config(app, host=host, port=port, tls=tls, limits=limits)
        self._server = SignalNeutralServer(config)
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    async def start(self) -> None:
        self._socket = bind_socket(self.host, self.requested_port, self.variable)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError(f"the HTTP server on {self.variable} stopped during start-up")
            await asyncio.sleep(0.01)

    @property
    def port(self) -> int:
        for server in self._server.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        raise RuntimeError("the HTTP server is not listening")

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
            self._task = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def __aenter__(self) -> HttpServer:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()


# The former name (it served APIs too, not only probes), for code written before the
# rename in parallel branches; remove once they are merged.
ProbeServer = HttpServer

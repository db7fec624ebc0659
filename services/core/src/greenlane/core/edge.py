"""The HTTP edge of every service: TLS and mTLS, and limits uvicorn lacks.

`server_config()` builds the one uvicorn configuration every HTTP server uses (APIs,
probes, the hub). On top of uvicorn's own limits (header size, keep-alive, concurrency)
it adds what uvicorn does not have:

- a request-header timeout: a connection that has not sent a whole request head within
  `header_timeout` seconds (of connecting, or of its previous response) is closed, so
  half-sent requests (slowloris) do not hold a file descriptor for ever;
- problem+json for requests that do not parse as HTTP (uvicorn answers text/plain);
- a body timeout and a body size limit (`BodyLimits`, an ASGI middleware): a body that
  stops arriving for `body_timeout` seconds is answered 408, one larger than
  `max_body_bytes` 413, both as problem+json;
- the client certificate of a TLS connection in the request's scope (the ASGI TLS
  extension's `client_cert_chain`), for greenlane.core.http.authenticate.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass
from typing import Any, Final

import h11
import uvicorn
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from greenlane.core.http import PROBLEM_JSON

MAX_HEADER_BYTES: Final = 16 * 1024


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """Timeouts and sizes of an HTTP server (the defaults suit every GreenLane API)."""

    header_timeout: float = 10.0
    body_timeout: float = 10.0
    max_body_bytes: int = 4 * 1024 * 1024
    keep_alive: float = 5.0
    max_connections: int = 2000


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A server certificate and key; with client_ca, clients must present a certificate."""

    cert_file: str
    key_file: str
    client_ca_file: str = ""


def tls_files(settings: Any) -> TlsFiles | None:
    """TlsFiles from a settings object with tls_cert_file/tls_key_file/tls_client_ca_file."""
    cert = getattr(settings, "tls_cert_file", "")
    if not cert:
        return None
    return TlsFiles(cert, settings.tls_key_file, getattr(settings, "tls_client_ca_file", ""))


def edge_limits(settings: Any) -> EdgeLimits:
    """EdgeLimits from a settings object's GREENLANE_HTTP_* fields (core.settings.TlsSettings)."""
    return EdgeLimits(
        header_timeout=settings.http_header_timeout_seconds,
        body_timeout=settings.http_body_timeout_seconds,
        max_body_bytes=settings.http_max_body_bytes,
        max_connections=settings.http_max_connections,
    )


def _problem_bytes(status: int, title: str, detail: str) -> bytes:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return json.dumps(body).encode()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-header timeout, problem+json for malformed
    requests, and the client certificate in the scope."""

    header_timeout: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._peer_pem: str | None = None
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            der = ssl_object.getpeercert(binary_form=True)
            if der:
                self._peer_pem = ssl.DER_cert_to_PEM_cert(der)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def _disarm(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _head_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being served: its head arrived
        self.logger.info("closing a connection that sent no request head in time")
        self.transport.close()

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before and self.cycle is not None:
            self._disarm()  # a whole request head arrived
            if self._peer_pem is not None:
                extensions = self.cycle.scope.setdefault("extensions", {})
                extensions["tls"] = {"client_cert_chain": [self._peer_pem]}

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request's head has as long as the first one had

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._disarm()
        super().handle_websocket_upgrade(event)

    def send_400_response(self, msg: str) -> None:
        body = _problem_bytes(400, "Bad Request", "the request is not valid HTTP/1.1")
        headers = [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        try:
            head = h11.Response(status_code=400, headers=headers, reason=b"Bad Request")
            self.transport.write(self.conn.send(head) or b"")
            self.transport.write(self.conn.send(h11.Data(data=body)) or b"")
            self.transport.write(self.conn.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError:
            pass  # a response was under way: just close
        self.transport.close()


def guarded_protocol(header_timeout: float) -> type[GuardedH11Protocol]:
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"header_timeout": header_timeout})


class BodyTimeout(HTTPException):
    """Raised from receive(): an app's HTTPException handler answers it (problem+json)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"body: nothing arrived for {seconds:g} s")


class BodyTooLarge(HTTPException):
    def __init__(self, most: int) -> None:
        super().__init__(413, f"body: larger than {most} bytes")


class BodyLimits:
    """ASGI middleware: 408 for a body that stalls, 413 for one too large (problem+json)."""

    def __init__(self, app: ASGIApp, limits: EdgeLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limits = self.limits
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limits.max_body_bytes:
                await _too_large(send, limits)
                return
        size = 0
        started = False

        async def bounded_receive() -> Message:
            nonlocal size
            try:
                message = await asyncio.wait_for(receive(), limits.body_timeout)
            except TimeoutError:
                raise BodyTimeout(limits.body_timeout) from None
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limits.max_body_bytes:
                    raise BodyTooLarge(limits.max_body_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, bounded_receive, tracking_send)
        except BodyTimeout:
            if not started:
                why = f"body: nothing arrived for {limits.body_timeout:g} s"
                await _answer(send, 408, "Request Timeout", why)
        except BodyTooLarge:
            if not started:
                await _too_large(send, limits)


async def _too_large(send: Send, limits: EdgeLimits) -> None:
    await _answer(
        send, 413, "Content Too Large", f"body: larger than {limits.max_body_bytes} bytes"
    )


async def _answer(send: Send, status: int, title: str, detail: str) -> None:
    body = _problem_bytes(status, title, detail)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def server_config(
    app: ASGIApp,
    *,
    host: str | None = None,
    port: int | None = None,
    tls: TlsFiles | None = None,
    limits: EdgeLimits | None = None,
    graceful_seconds: float | None = None,
    **extra: Any,
) -> uvicorn.Config:
    """The uvicorn configuration of every GreenLane HTTP server."""
    limits = limits or EdgeLimits()
    options: dict[str, Any] = {
        "log_config": None,  # keep the service's logging
        "access_log": False,  # requests are counted in /metrics
        "lifespan": "off",
        "http": guarded_protocol(limits.header_timeout),
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "timeout_keep_alive": limits.keep_alive,
        "limit_concurrency": limits.max_connections,
    }
    if host is not None:
        options["host"] = host
    if port is not None:
        options["port"] = port
    if graceful_seconds is not None:
        options["timeout_graceful_shutdown"] = max(1, int(graceful_seconds + 0.999))
    if tls is not None:
        options["ssl_certfile"] = tls.cert_file
        options["ssl_keyfile"] = tls.key_file
        if tls.client_ca_file:
            # A client certificate is verified when presented and names the caller's
            # fleet; not required, since probes and token callers present none (gRPC
            # requires one: docs/security.md).
            options["ssl_ca_certs"] = tls.client_ca_file
            options["ssl_cert_reqs"] = ssl.CERT_OPTIONAL
    options.update(extra)
    return uvicorn.Config(BodyLimits(app, limits), **options)

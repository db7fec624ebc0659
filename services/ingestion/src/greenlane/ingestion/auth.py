"""Authentication and clean edges for every FleetTelemetry call, before any handler runs.

The interceptor wraps each method's handler: the wrapper authenticates the call (a
token from the metadata, a JWT, or the client certificate of the TLS session, through
greenlane.core.auth's one Authenticator), checks the method's scope, and only then runs
the servicer, with the caller's Principal in `current_principal()`. Refused calls log a
sanitised, bounded method name and never a token. A request that does not parse as its
protobuf ends the call with INVALID_ARGUMENT (no traceback), after the answers to what
came before it.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Final

import grpc

from greenlane.core.auth import (
    TELEMETRY_WRITE,
    Authenticator,
    AuthError,
    Principal,
    metadata_token,
    safe_text,
)
from greenlane.core.errors import GreenLaneError
from greenlane.core.wire import TOKEN_METADATA_KEY

log = logging.getLogger(__name__)

# Probes (kubelet's native gRPC probe cannot send metadata) and schema discovery stay open.
PUBLIC_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
# The scope each method needs; a method not listed needs the operator scope.
METHOD_SCOPES: Final[Mapping[str, str]] = {
    "/greenlane.v1.FleetTelemetry/StreamTelemetry": TELEMETRY_WRITE,
    "/greenlane.v1.FleetTelemetry/StreamTelemetryBatches": TELEMETRY_WRITE,
    "/greenlane.v1.FleetTelemetry/SendBatch": TELEMETRY_WRITE,
}

_PRINCIPAL: contextvars.ContextVar[Principal] = contextvars.ContextVar("greenlane_principal")

__all__ = [
    "PUBLIC_SERVICES",
    "TOKEN_METADATA_KEY",
    "AuthInterceptor",
    "MalformedRequest",
    "current_principal",
]


class MalformedRequest(GreenLaneError):
    """A request message that does not parse as its protobuf type."""


class _Malformed:
    """What the wrapped deserializer returns for bytes that are not a message."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def current_principal() -> Principal | None:
    """The caller of the running call (set by AuthInterceptor's wrapper)."""
    return _PRINCIPAL.get(None)


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # protobuf's DecodeError, or anything a parser raises
            return _Malformed(type(exc).__name__)

    return parse


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for message in requests:
        if isinstance(message, _Malformed):
            raise MalformedRequest(f"a request message is not valid protobuf ({message.reason})")
        yield message


def _peer_certificate(context: grpc.aio.ServicerContext[Any, Any]) -> bytes | None:
    certs = list(context.auth_context().get("x509_pem_cert") or ())
    return certs[0] if certs else None


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """UNAUTHENTICATED without a valid credential, PERMISSION_DENIED without the scope."""

    def __init__(
        self,
        authenticator: Authenticator,
        on_denied: Callable[[str], None] | None = None,
    ) -> None:
        self._auth = authenticator
        self._on_denied = on_denied

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(PUBLIC_SERVICES):
            return handler  # unknown methods: grpc answers UNIMPLEMENTED
        token = metadata_token(handler_call_details.invocation_metadata)
        return self._guard(handler, method, token)

    def _refuse(self, method: str, why: str) -> None:
        # Bounded and without control characters: a method path is the client's choice.
        log.warning("refused %s: %s", safe_text(method, 96), why)
        if self._on_denied:
            self._on_denied(method)

    async def _admit(
        self, method: str, token: str | None, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Principal:
        try:
            principal = await self._auth.authenticate(token, _peer_certificate(context))
        except AuthError as exc:
            self._refuse(method, str(exc))
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
            raise AssertionError("unreachable") from None  # abort raises
        scope = METHOD_SCOPES.get(method, "operator")
        if not principal.allows(scope):
            self._refuse(method, principal.missing(scope))
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, principal.missing(scope))
        _PRINCIPAL.set(principal)
        return principal

    def _guard(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str, token: str | None
    ) -> grpc.RpcMethodHandler[Any, Any]:
        admit = self._admit
        deserialize = _tolerant(handler.request_deserializer)
        serialize = handler.response_serializer
        # The stubs type these as sync callables; grpc.aio's are coroutines/async iterators.
        original: Any = handler

        async def bad_request(context: grpc.aio.ServicerContext[Any, Any], why: str) -> None:
            log.info("%s: %s", safe_text(method, 96), why)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, why)

        if handler.request_streaming and handler.response_streaming:
            behaviour = original.stream_stream

            async def stream_stream(requests: Any, context: Any) -> AsyncIterator[Any]:
                await admit(method, token, context)
                try:
                    async for answer in behaviour(_checked(requests), context):
                        yield answer
                except MalformedRequest as exc:
                    await bad_request(context, str(exc))

            return grpc.stream_stream_rpc_method_handler(stream_stream, deserialize, serialize)
        if handler.request_streaming:
            behaviour_su = original.stream_unary

            async def stream_unary(requests: Any, context: Any) -> Any:
                await admit(method, token, context)
                try:
                    return await behaviour_su(_checked(requests), context)
                except MalformedRequest as exc:
                    await bad_request(context, str(exc))

            return grpc.stream_unary_rpc_method_handler(stream_unary, deserialize, serialize)
        if handler.response_streaming:
            behaviour_us = original.unary_stream

            async def unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
                await admit(method, token, context)
                if isinstance(request, _Malformed):
                    await bad_request(context, f"the request is not protobuf ({request.reason})")
                async for answer in behaviour_us(request, context):
                    yield answer

            return grpc.unary_stream_rpc_method_handler(unary_stream, deserialize, serialize)
        behaviour_uu = original.unary_unary

        async def unary_unary(request: Any, context: Any) -> Any:
            await admit(method, token, context)
            if isinstance(request, _Malformed):
                await bad_request(context, f"the request is not protobuf ({request.reason})")
            return await behaviour_uu(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, deserialize, serialize)

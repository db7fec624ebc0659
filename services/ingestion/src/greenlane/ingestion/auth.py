"""x-api-token authentication for every FleetTelemetry call, before any handler runs."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from pydantic import SecretStr

from greenlane.core.auth import token_is_valid
from greenlane.core.wire import TOKEN_METADATA_KEY

log = logging.getLogger(__name__)

# Probes (kubelet's native gRPC probe cannot send metadata) and schema discovery stay open.
PUBLIC_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


__all__ = ["PUBLIC_SERVICES", "TOKEN_METADATA_KEY", "TokenAuthInterceptor", "token_is_valid"]


def _denied(kind: str) -> grpc.RpcMethodHandler[Any, Any]:
    async def abort(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid x-api-token")

    factories: dict[str, Callable[..., grpc.RpcMethodHandler[Any, Any]]] = {
        "unary_unary": grpc.unary_unary_rpc_method_handler,
        "stream_unary": grpc.stream_unary_rpc_method_handler,
        "unary_stream": grpc.unary_stream_rpc_method_handler,
        "stream_stream": grpc.stream_stream_rpc_method_handler,
    }
    # A coroutine (not a generator) serves streaming kinds too: grpc.aio allows both.
    return factories[kind](abort)


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Answers UNAUTHENTICATED for unary and streaming calls without a valid token."""

    def __init__(self, tokens: list[SecretStr], on_denied: Callable[[str], None] | None = None):
        self._tokens = list(tokens)
        self._on_denied = on_denied

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        if method.startswith(PUBLIC_SERVICES):
            return await continuation(handler_call_details)
        presented = None
        for key, value in handler_call_details.invocation_metadata or ():
            if key == TOKEN_METADATA_KEY:
                presented = value
                break
        if token_is_valid(presented, self._tokens):
            return await continuation(handler_call_details)
        # The token itself is never logged, only that one was refused.
        log.warning("refused %s: %s x-api-token", method, "invalid" if presented else "missing")
        if self._on_denied:
            self._on_denied(method)
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # unknown method: grpc answers UNIMPLEMENTED
        kind = (
            ("stream" if handler.request_streaming else "unary")
            + "_"
            + ("stream" if handler.response_streaming else "unary")
        )
        return _denied(kind)

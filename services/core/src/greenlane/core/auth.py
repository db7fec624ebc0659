"""API tokens: the one check every edge uses (gRPC metadata, HTTP headers, WebSockets)."""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from typing import Final

from pydantic import SecretStr

from greenlane.core.wire import TOKEN_METADATA_KEY

TOKEN_HEADER: Final = TOKEN_METADATA_KEY  # the same name in gRPC metadata and HTTP headers


def token_is_valid(presented: str | bytes | None, tokens: Iterable[SecretStr]) -> bool:
    """Constant-time comparison against every configured token."""
    if presented is None:
        return False
    given = presented.encode() if isinstance(presented, str) else presented
    ok = False
    for token in tokens:
        # Compare with all tokens, so timing does not tell which one nearly matched.
        ok |= hmac.compare_digest(given, token.get_secret_value().encode())
    return ok


def presented_token(headers: Mapping[str, str]) -> str | None:
    """The token an HTTP request carries: `x-api-token`, else `Authorization: Bearer …`.

    `headers` must look names up case-insensitively (starlette's Headers do).
    """
    presented = headers.get(TOKEN_HEADER)
    auth = headers.get("authorization", "")
    if presented is None and auth.lower().startswith("bearer "):
        presented = auth[7:].strip()
    return presented

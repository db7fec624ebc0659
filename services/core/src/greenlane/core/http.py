"""HTTP edges: errors as RFC 9457 problem responses, the same way in every service."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any, Final

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from greenlane.core.auth import Authenticator, AuthError, Principal, presented_token

PROBLEM_JSON: Final = "application/problem+json"


def problem(
    status: int,
    detail: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    """An RFC 9457 problem response; extensions such as parameter= name the culprit."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    body.update(extensions)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


# --- strict input -------------------------------------------------------------------------

ECHO_LIMIT: Final = 64  # characters of a client's value or name repeated in an error
# A decimal number as people write one: no `4_0`, no `inf`/`nan`, no spaces, ASCII digits.
_NUMBER: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")
_INTEGER: Final = re.compile(r"[0-9]{1,9}")


class ProblemError(Exception):
    """An answer other than 2xx, as an RFC 9457 problem (extensions name the culprit)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers
        self.extensions = extensions


async def problem_handler(_: Request, exc: Exception) -> Response:
    """Starlette exception handler for ProblemError."""
    assert isinstance(exc, ProblemError)
    return problem(exc.status, exc.detail, headers=exc.headers, **exc.extensions)


def echo(value: str) -> str:
    """A client's value, quoted and cut, fit for an error message."""
    return repr(value if len(value) <= ECHO_LIMIT else value[:ECHO_LIMIT] + "...")


def single_params(request: Request, allowed: Iterable[str]) -> dict[str, str]:
    """The query parameters as a dict; unknown or repeated ones are refused, naming them
    (at most ten names, each cut: the error stays small whatever the query)."""
    names = sorted(allowed)
    params = request.query_params
    unknown = sorted({name[:ECHO_LIMIT] for name in params} - set(names))
    if unknown:
        shown = ", ".join(unknown[:10]) + (", ..." if len(unknown) > 10 else "")
        plural = "s" if len(unknown) > 1 else ""
        raise ProblemError(
            400,
            f"unknown query parameter{plural}: {shown} (allowed: {', '.join(names) or 'none'})",
            parameter=unknown[0],
        )
    values: dict[str, str] = {}
    for name in names:
        given = params.getlist(name)
        if len(given) > 1:
            raise ProblemError(400, f"{name}: given more than once", parameter=name)
        if given:
            values[name] = given[0]
    return values


def strict_float(raw: str, name: str, low: float, high: float) -> float:
    """A decimal number within [low, high]; `4_0`, `inf`, `nan` and spaces are refused."""
    if not _NUMBER.fullmatch(raw):
        raise ProblemError(400, f"{name}: {echo(raw)} is not a decimal number", parameter=name)
    value = float(raw)
    if not math.isfinite(value) or not low <= value <= high:
        raise ProblemError(
            400, f"{name}: must be within [{low:g}, {high:g}], got {echo(raw)}", parameter=name
        )
    return value


def strict_int(raw: str, name: str, low: int, high: int) -> int:
    """A whole number within [low, high], in plain ASCII digits."""
    if not _INTEGER.fullmatch(raw):
        raise ProblemError(400, f"{name}: {echo(raw)} is not a whole number", parameter=name)
    value = int(raw)
    if not low <= value <= high:
        why = f"{name}: must be from {low} to {high}, got {value}"
        raise ProblemError(400, why, parameter=name)
    return value


# --- who is calling ----------------------------------------------------------------------


def request_certificate(scope: Mapping[str, Any]) -> bytes | None:
    """The client certificate of a TLS connection (the ASGI TLS extension, which
    greenlane.core.serving's protocol fills in), PEM."""
    tls = (scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    return chain[0].encode() if chain else None


async def authenticate(
    connection: HTTPConnection, authenticator: Authenticator, scope: str | None
) -> Principal:
    """The caller of an HTTP request or WebSocket: 401 without a valid credential, 403
    without `scope` (None: any authenticated caller)."""
    try:
        principal = await authenticator.authenticate(
            presented_token(connection.headers), request_certificate(connection.scope)
        )
    except AuthError as exc:
        raise ProblemError(
            401, str(exc), headers={"WWW-Authenticate": 'Bearer realm="greenlane"'}
        ) from None
    if scope is not None and not principal.allows(scope):
        raise ProblemError(403, principal.missing(scope))
    return principal

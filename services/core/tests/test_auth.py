"""The one token check: gRPC metadata values and HTTP headers."""

from __future__ import annotations

from pydantic import SecretStr
from starlette.datastructures import Headers

from greenlane.core.auth import presented_token, token_is_valid

TOKENS = [SecretStr("first-token-0123456789"), SecretStr("second-token-0123456789")]


def test_any_configured_token_is_accepted_as_text_or_bytes() -> None:
    assert token_is_valid("first-token-0123456789", TOKENS)
    assert token_is_valid(b"second-token-0123456789", TOKENS)


def test_a_missing_wrong_or_partial_token_is_refused() -> None:
    assert not token_is_valid(None, TOKENS)
    assert not token_is_valid("", TOKENS)
    assert not token_is_valid("first-token", TOKENS)
    assert not token_is_valid("first-token-0123456789", [])


def test_an_http_request_presents_its_token_in_x_api_token_or_as_a_bearer() -> None:
    assert presented_token(Headers({"X-API-Token": "abc"})) == "abc"
    assert presented_token(Headers({"Authorization": "Bearer  abc "})) == "abc"
    assert presented_token(Headers({"authorization": "bearer abc"})) == "abc"
    # x-api-token wins when both are sent; other schemes are not tokens.
    assert presented_token(Headers({"x-api-token": "a", "authorization": "Bearer b"})) == "a"
    assert presented_token(Headers({"Authorization": "Basic abc"})) is None
    assert presented_token(Headers({})) is None

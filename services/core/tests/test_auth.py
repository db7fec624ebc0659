"""The API token check shared by every edge."""

from __future__ import annotations

from pydantic import SecretStr
from starlette.datastructures import Headers

from greenlane.core.auth import presented_token, token_is_valid

TOKENS = [SecretStr("first-token-0123456789"), SecretStr("second-token-0123456789")]


def test_any_configured_token_is_valid_and_nothing_else() -> None:
    assert token_is_valid("second-token-0123456789", TOKENS)
    assert token_is_valid(b"first-token-0123456789", TOKENS)
    assert not token_is_valid("first-token-012345678", TOKENS)
    assert not token_is_valid(None, TOKENS)
    assert not token_is_valid("", TOKENS)


def test_a_request_presents_its_token_in_x_api_token_or_as_a_bearer() -> None:
    assert presented_token(Headers({"X-Api-Token": "abc"})) == "abc"
    assert presented_token(Headers({"Authorization": "Bearer  xyz "})) == "xyz"
    assert presented_token(Headers({"x-api-token": "abc", "authorization": "Bearer x"})) == "abc"
    assert presented_token(Headers({"Authorization": "Basic xyz"})) is None
    assert presented_token(Headers({})) is None

"""The one token check: gRPC metadata values and HTTP headers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr
from starlette.datastructures import Headers

from greenlane.core.auth import (
    ALL_SCOPES,
    Authenticator,
    AuthError,
    Limits,
    Principal,
    StaticTokens,
    metadata_token,
    parse_credentials,
    plain_credentials,
    presented_token,
    safe_text,
    token_is_valid,
)
from greenlane.core.cert_auth import certificate_identity
from greenlane.core.settings import DEV_TOKEN

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


# --- the credential model -----------------------------------------------------------------


def creds(*entries: dict[str, object]) -> str:
    return json.dumps(list(entries))


GOOD = {"token": "a" * 20, "fleet": "acme", "scopes": ["telemetry:write"]}


def test_credentials_carry_their_fleet_scopes_name_and_limits() -> None:
    entry = {**GOOD, "name": "acme-gw", "limits": {"statuses_per_second": 50, "streams": 3}}
    [c] = parse_credentials(creds(entry))
    assert (c.fleet, c.scopes, c.name) == ("acme", frozenset({"telemetry:write"}), "acme-gw")
    assert c.limits == Limits(statuses_per_second=50, streams=3)


@pytest.mark.parametrize(
    ("entry", "where"),
    [
        ({**GOOD, "token": "short"}, "[0].token"),
        ({**GOOD, "fleet": "Acme!"}, "[0].fleet"),
        ({**GOOD, "scopes": ["root"]}, "[0].scopes"),
        ({**GOOD, "scopes": []}, "[0].scopes"),
        ({**GOOD, "colour": "red"}, "[0].colour"),
        ({**GOOD, "limits": {"burst": -1}}, "[0].limits.burst"),
        ({**GOOD, "limits": {"speed": 1}}, "[0].limits.speed"),
    ],
)
def test_a_bad_credential_is_refused_naming_the_entry_and_field_never_the_token(
    entry: dict[str, object], where: str
) -> None:
    with pytest.raises(ValueError) as err:
        parse_credentials(creds(entry))
    assert str(err.value).startswith(where)
    assert "a" * 20 not in str(err.value)


def test_the_same_token_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        parse_credentials(creds(GOOD, {**GOOD, "fleet": "other"}))


def test_credentials_may_come_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "creds.json"
    path.write_text(creds(GOOD))
    assert parse_credentials(str(path))[0].fleet == "acme"
    with pytest.raises(ValueError, match="neither a JSON list nor a readable file"):
        parse_credentials(str(path) + ".missing")


def test_plain_tokens_are_the_default_fleet_and_the_dev_token_the_dev_fleet_with_every_scope() -> (
    None
):
    dev, other = plain_credentials([SecretStr(DEV_TOKEN), SecretStr("x" * 20)], DEV_TOKEN)
    assert (dev.fleet, other.fleet) == ("dev", "default")
    assert dev.scopes == other.scopes == ALL_SCOPES
    assert "x" * 20 not in other.name  # a name for logs, not the token


def test_a_principal_sees_its_own_fleet_and_the_operator_every_fleet() -> None:
    fleet = Principal("acme", frozenset({"bookings:read"}), "acme")
    ops = Principal("ops", frozenset({"operator"}), "ops")
    assert fleet.sees("acme") and not fleet.sees("other")
    assert fleet.allows("bookings:read") and not fleet.allows("bookings:write")
    assert ops.sees("other") and ops.allows("telemetry:write")


async def test_the_authenticator_finds_static_tokens_and_refuses_others() -> None:
    auth = Authenticator(StaticTokens(parse_credentials(creds(GOOD))))
    assert (await auth.authenticate("a" * 20)).fleet == "acme"
    for bad in ("b" * 20, None, ""):
        with pytest.raises(AuthError):
            await auth.authenticate(bad)


def test_grpc_metadata_gives_x_api_token_else_a_bearer_token() -> None:
    assert metadata_token([("x-api-token", "t1"), ("authorization", "Bearer t2")]) == "t1"
    assert metadata_token([("authorization", "Bearer t2")]) == "t2"
    assert metadata_token([("authorization", "Basic t2")]) is None
    assert metadata_token(None) is None


def test_safe_text_bounds_and_strips_control_characters() -> None:
    hostile = "/a\nforged line\x1b[31m" + "x" * 9000
    cleaned = safe_text(hostile, 64)
    assert "\n" not in cleaned and "\x1b" not in cleaned
    assert len(cleaned) <= 65


def test_a_certificate_names_its_fleet_by_a_san_uri_or_its_organisation(tmp_path: Path) -> None:
    from greenlane.core.tls import client_uris, issue, make_ca, make_local_pki

    pki = make_local_pki(tmp_path, fleet="acme")
    identity = certificate_identity(pki.client_cert_file.read_bytes())
    assert identity is not None
    assert (identity.fleet, identity.scopes) == ("acme", None)
    ca, key = make_ca()
    from cryptography.hazmat.primitives import serialization

    scoped, _ = issue(ca, key, "gw", uris=client_uris("beta", ("bookings:read",)))
    pem = scoped.public_bytes(serialization.Encoding.PEM)  # type: ignore[attr-defined]
    found = certificate_identity(pem)
    assert found is not None and (found.fleet, found.scopes) == ("beta", {"bookings:read"})
    by_org, _ = issue(ca, key, "gw", organization="gamma")
    pem = by_org.public_bytes(serialization.Encoding.PEM)  # type: ignore[attr-defined]
    assert certificate_identity(pem).fleet == "gamma"  # type: ignore[union-attr]
    nameless, _ = issue(ca, key, "gw")
    assert certificate_identity(nameless.public_bytes(serialization.Encoding.PEM)) is None  # type: ignore[attr-defined]

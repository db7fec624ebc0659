"""The Authenticator a service's settings describe (greenlane.core.settings.TokenSettings).

Kept apart from greenlane.core.auth and greenlane.core.settings so that services which
authenticate nobody (the grid, the pricing worker, the simulator) need neither PyJWT nor
cryptography: only the services that build an Authenticator import this module.
"""

from __future__ import annotations

import json
from pathlib import Path

from greenlane.core.auth import (
    Authenticator,
    StaticTokens,
    check_scopes,
    parse_credentials,
    plain_credentials,
)
from greenlane.core.cert_auth import certificate_identity
from greenlane.core.jwt_auth import JwtConfig, JwtVerifier
from greenlane.core.settings import DEV_TOKEN, TokenSettings


def build_authenticator(settings: TokenSettings) -> Authenticator:
    """Static tokens (plain and with fleets), JWTs and client certificates, as configured."""
    creds = plain_credentials(settings.api_tokens, DEV_TOKEN)
    if settings.credentials is not None:
        creds += parse_credentials(settings.credentials.get_secret_value())
    verifier = None
    if settings.jwt_jwks_url or settings.jwt_jwks_file:
        jwks = (
            json.loads(Path(settings.jwt_jwks_file).read_text()) if settings.jwt_jwks_file else None
        )
        verifier = JwtVerifier(
            JwtConfig(
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                jwks_url=settings.jwt_jwks_url,
                jwks=jwks,
                algorithms=tuple(settings.jwt_algorithms.split(",")),
                fleet_claim=settings.jwt_fleet_claim,
                scopes_claim=settings.jwt_scopes_claim,
                leeway_seconds=settings.jwt_leeway_seconds,
                min_refresh_seconds=settings.jwt_jwks_min_refresh_seconds,
                ttl_seconds=settings.jwt_jwks_ttl_seconds,
            )
        )
    return Authenticator(
        StaticTokens(creds),
        verifier,
        certificates=certificate_identity if settings.mtls else None,
        certificate_scopes=check_scopes(
            s.strip() for s in settings.certificate_scopes.split(",") if s.strip()
        ),
    )

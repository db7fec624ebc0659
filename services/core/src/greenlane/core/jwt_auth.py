"""OAuth2 bearer JWTs (PyJWT): verified against a JWKS that rotates without a restart."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from greenlane.core.auth import ALL_SCOPES, FLEET_PATTERN, AuthError, Principal

log = logging.getLogger(__name__)

Fetch = Callable[[str, float], Awaitable[bytes]]


async def fetch_url(url: str, seconds: float) -> bytes:
    """GET url (the JWKS), off the event loop."""

    def get() -> bytes:
        with urllib.request.urlopen(url, timeout=seconds) as resp:  # noqa: S310 - configured URL
            data: bytes = resp.read(1_000_001)
        if len(data) > 1_000_000:
            raise ValueError("the JWKS is larger than 1 MB")
        return data

    return await asyncio.to_thread(get)


@dataclass(frozen=True, slots=True)
class JwtConfig:
    issuer: str
    audience: str
    jwks_url: str = ""
    jwks: Mapping[str, Any] | None = None  # configured keys (a JWKS document)
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
    fleet_claim: str = "greenlane_fleet"
    scopes_claim: str = "scope"
    leeway_seconds: float = 30.0
    # An unknown key id refetches the JWKS, at most once per this many seconds.
    min_refresh_seconds: float = 10.0
    # The JWKS is refetched when older than this, whatever the key ids.
    ttl_seconds: float = 300.0
    fetch_timeout_seconds: float = 5.0


class JwtVerifier:
    """OAuth2 bearer JWTs (PyJWT): signature by a JWKS key, iss, aud, exp, nbf; the fleet
    and scopes from configurable claims. Keys rotate without a restart: a token with an
    unknown `kid` refetches the JWKS (rate-limited), and the set expires after a TTL."""

    def __init__(self, config: JwtConfig, fetch: Fetch = fetch_url) -> None:
        self._jwt = jwt
        self.config = config
        self._fetch = fetch
        self._keys: dict[str, Any] = {}
        self._fetched_at = -1e18
        self._tried_at = -1e18
        self._lock = asyncio.Lock()
        self.fetches = 0  # for tests and metrics
        if config.jwks is not None:
            self._keys = self._parse(config.jwks)

    def _parse(self, document: Mapping[str, Any]) -> dict[str, Any]:
        keys: dict[str, Any] = {}
        for jwk in document.get("keys", []):
            if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
                continue
            try:
                key = self._jwt.PyJWK(jwk)
            except self._jwt.PyJWTError as exc:
                log.warning("JWKS: a key is unusable: %s", exc)
                continue
            keys[str(jwk.get("kid", ""))] = key
        return keys

    async def _refresh(self, force: bool) -> None:
        if not self.config.jwks_url:
            return
        async with self._lock:
            now = time.monotonic()
            fresh = now - self._fetched_at < self.config.ttl_seconds
            if (fresh and not force) or now - self._tried_at < self.config.min_refresh_seconds:
                return
            self._tried_at = now
            self.fetches += 1
            try:
                raw = await self._fetch(self.config.jwks_url, self.config.fetch_timeout_seconds)
                document = json.loads(raw)
                if not isinstance(document, dict):
                    raise ValueError("not a JWKS object")
            except Exception as exc:  # keep the keys we have; the next miss retries
                log.warning("JWKS fetch from the configured URL failed: %s", type(exc).__name__)
                return
            self._keys = self._parse(document)
            self._fetched_at = now

    async def verify(self, token: str) -> Principal:
        jwt = self._jwt
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("the bearer token is not a valid JWT") from None
        kid = str(header.get("kid", ""))
        alg = header.get("alg")
        if alg not in self.config.algorithms:
            raise AuthError(f"JWT algorithm {str(alg)[:16]!r} is not accepted")
        await self._refresh(force=False)
        key = self._keys.get(kid)
        if key is None:
            await self._refresh(force=True)
            key = self._keys.get(kid)
        if key is None:
            raise AuthError(f"JWT key id {kid[:64]!r} is unknown")
        cfg = self.config
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=list(cfg.algorithms),
                audience=cfg.audience,
                issuer=cfg.issuer,
                leeway=cfg.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("the JWT has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("the JWT is not valid yet (nbf/iat)") from None
        except jwt.InvalidAudienceError:
            raise AuthError("the JWT is for another audience") from None
        except jwt.InvalidIssuerError:
            raise AuthError("the JWT comes from another issuer") from None
        except jwt.InvalidSignatureError:
            raise AuthError("the JWT signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"the JWT is invalid: {str(exc)[:80]}") from None
        fleet = claims.get(cfg.fleet_claim)
        if not isinstance(fleet, str) or not FLEET_PATTERN.fullmatch(fleet):
            raise AuthError(f"the JWT claim {cfg.fleet_claim!r} does not name a fleet")
        raw_scopes = claims.get(cfg.scopes_claim, "")
        if isinstance(raw_scopes, str):
            named: Sequence[object] = raw_scopes.split()
        elif isinstance(raw_scopes, list):
            named = raw_scopes
        else:
            raise AuthError(f"the JWT claim {cfg.scopes_claim!r} is not a list of scopes")
        # Scopes of other services in the same token are not ours to refuse.
        scopes = frozenset(str(s) for s in named if s in ALL_SCOPES)
        subject = str(claims.get("sub", "jwt"))[:64]
        return Principal(fleet, scopes, f"jwt:{subject}", "jwt")

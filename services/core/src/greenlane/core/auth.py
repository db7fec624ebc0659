"""Who is calling: one credential model for every edge (gRPC, HTTP APIs, WebSockets).

A caller presents a static token (`x-api-token`, or `Authorization: Bearer …`), an
OAuth2 bearer JWT (`Authorization: Bearer …`), or a client certificate (mTLS). The one
`Authenticator` turns what it presents into a `Principal`: the fleet it acts for, its
scopes, and a subject for logs and metrics (a credential's name, never its secret).
A fleet sees and changes only its own cars, bookings and plans; the `operator` scope
sees and acts on every fleet. docs/security.md describes the formats.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import SecretStr

from greenlane.core.errors import GreenLaneError
from greenlane.core.wire import TOKEN_METADATA_KEY

log = logging.getLogger(__name__)

TOKEN_HEADER: Final = TOKEN_METADATA_KEY  # the same name in gRPC metadata and HTTP headers

TELEMETRY_WRITE: Final = "telemetry:write"
BOOKINGS_READ: Final = "bookings:read"
BOOKINGS_WRITE: Final = "bookings:write"
PLANS_READ: Final = "plans:read"
PLANS_WRITE: Final = "plans:write"
MAP_READ: Final = "map:read"
OPERATOR: Final = "operator"
SCOPES: Final = (
    TELEMETRY_WRITE,
    BOOKINGS_READ,
    BOOKINGS_WRITE,
    PLANS_READ,
    PLANS_WRITE,
    MAP_READ,
    OPERATOR,
)
ALL_SCOPES: Final = frozenset(SCOPES)
# What a client certificate grants when it names no scope of its own.
CERTIFICATE_SCOPES: Final = frozenset({TELEMETRY_WRITE, BOOKINGS_READ, BOOKINGS_WRITE, PLANS_READ})

# A fleet id: what a car's state records as its owner, and a metric label.
FLEET_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
DEV_FLEET: Final = "dev"
# The fleet of plain GREENLANE_API_TOKENS entries (tokens without a fleet of their own).
DEFAULT_FLEET: Final = "default"
# In a client certificate: a SAN URI naming the fleet, and optional SAN URIs for scopes.
FLEET_URI_PREFIX: Final = "urn:greenlane:fleet:"
SCOPE_URI_PREFIX: Final = "urn:greenlane:scope:"

Method = Literal["token", "jwt", "certificate"]


class AuthError(GreenLaneError):
    """The caller is not authenticated; the message is safe to show (never a secret)."""


def check_fleet(value: str, where: str = "fleet") -> str:
    if not isinstance(value, str) or not FLEET_PATTERN.fullmatch(value):
        raise ValueError(f"{where}: must be 1 to 64 of a-z, 0-9, _ . - (starting with a-z or 0-9)")
    return value


def check_scopes(values: Iterable[object], where: str = "scopes") -> frozenset[str]:
    out = set()
    for value in values:
        if value not in ALL_SCOPES:
            shown = str(value)[:40]
            raise ValueError(f"{where}: unknown scope {shown!r} (known: {', '.join(SCOPES)})")
        out.add(str(value))
    return frozenset(out)


LIMIT_FIELDS: Final = ("statuses_per_second", "burst", "streams", "batch", "bookings")


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-credential limits; None: the service's default (docs/security.md)."""

    statuses_per_second: float | None = None
    burst: int | None = None
    streams: int | None = None
    batch: int | None = None
    bookings: int | None = None

    @classmethod
    def parse(cls, raw: object, where: str) -> Limits:
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: must be an object")
        unknown = sorted(str(k)[:40] for k in raw if k not in LIMIT_FIELDS)
        if unknown:
            raise ValueError(
                f"{where}.{unknown[0]}: unknown limit (known: {', '.join(LIMIT_FIELDS)})"
            )
        values: dict[str, Any] = {}
        for name in LIMIT_FIELDS:
            if name not in raw:
                continue
            value = raw[name]
            number_ok = isinstance(value, int | float) and not isinstance(value, bool)
            if name != "statuses_per_second" and not isinstance(value, int):
                number_ok = False
            if not number_ok or not 0 < value <= 10_000_000:
                raise ValueError(f"{where}.{name}: must be a positive number up to 10000000")
            values[name] = value
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. `subject` names the credential for logs and metrics."""

    fleet: str
    scopes: frozenset[str]
    subject: str
    method: Method = "token"
    limits: Limits = field(default_factory=Limits)

    @property
    def operator(self) -> bool:
        return OPERATOR in self.scopes

    def allows(self, scope: str) -> bool:
        """Whether the principal holds the scope (the operator holds every scope)."""
        return scope in self.scopes or OPERATOR in self.scopes

    def sees(self, fleet: str | None) -> bool:
        """Whether it may see or act on something of `fleet` (None/"": of no fleet)."""
        return OPERATOR in self.scopes or fleet == self.fleet

    def missing(self, scope: str) -> str:
        return f"the credential {self.subject!r} lacks the scope {scope}"


# --- static tokens ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StaticCredential:
    token: SecretStr
    fleet: str
    scopes: frozenset[str]
    name: str
    limits: Limits = field(default_factory=Limits)

    def principal(self) -> Principal:
        return Principal(self.fleet, self.scopes, self.name, "token", self.limits)


def _digest(token: str | bytes) -> bytes:
    raw = token.encode() if isinstance(token, str) else token
    return hashlib.sha256(raw).digest()


def _token_name(token: str) -> str:
    # A name that tells two tokens apart in logs without revealing either.
    return "token-" + hashlib.sha256(token.encode()).hexdigest()[:8]


def plain_credentials(tokens: Iterable[SecretStr], dev_token: str) -> list[StaticCredential]:
    """GREENLANE_API_TOKENS entries: the dev token is the fleet `dev`, any other token the
    fleet `default`; both with every scope (operator included: what a token meant before
    fleets existed). Give fleets their own tokens with GREENLANE_CREDENTIALS."""
    out = []
    for token in tokens:
        secret = token.get_secret_value()
        fleet = DEV_FLEET if secret == dev_token else DEFAULT_FLEET
        name = "dev-token" if secret == dev_token else _token_name(secret)
        out.append(StaticCredential(token, fleet, ALL_SCOPES, name))
    return out


def parse_credentials(text: str, *, base: Path | None = None) -> list[StaticCredential]:
    """GREENLANE_CREDENTIALS: a JSON list of credentials, or the path of a file holding one.

    Each: {"token": "...", "fleet": "acme", "scopes": ["telemetry:write", ...],
    "name": "acme-gateway", "limits": {"statuses_per_second": 500, ...}}; name and
    limits are optional. Errors name the entry and the field, never the token.
    """
    text = text.strip()
    if not text.startswith("["):
        path = Path(text)
        if base is not None and not path.is_absolute():
            path = base / path
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValueError(
                f"neither a JSON list nor a readable file: {exc.strerror or exc}"
            ) from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not valid JSON: {str(exc)[:80]}") from None
    if not isinstance(data, list):
        raise ValueError("must be a JSON list of credentials")
    out: list[StaticCredential] = []
    names: set[str] = set()
    digests: set[bytes] = set()
    for i, entry in enumerate(data):
        where = f"[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: must be an object")
        unknown = sorted(
            str(k)[:40] for k in entry if k not in ("token", "fleet", "scopes", "name", "limits")
        )
        if unknown:
            raise ValueError(f"{where}.{unknown[0]}: unknown field")
        token = entry.get("token")
        if not isinstance(token, str) or len(token) < 16:
            raise ValueError(f"{where}.token: must be a string of at least 16 characters")
        if any(not 0x21 <= ord(ch) < 0x7F for ch in token):
            raise ValueError(f"{where}.token: must be printable ASCII without spaces")
        fleet = check_fleet(entry.get("fleet"), f"{where}.fleet")  # type: ignore[arg-type]
        raw_scopes = entry.get("scopes")
        if not isinstance(raw_scopes, list) or not raw_scopes:
            raise ValueError(f"{where}.scopes: must be a non-empty list of scopes")
        scopes = check_scopes(raw_scopes, f"{where}.scopes")
        name = entry.get("name", f"{fleet}-{i}")
        if not isinstance(name, str) or not FLEET_PATTERN.fullmatch(name):
            raise ValueError(f"{where}.name: must be 1 to 64 of a-z, 0-9, _ . -")
        if name in names:
            raise ValueError(f"{where}.name: {name!r} is used twice")
        digest = _digest(token)
        if digest in digests:
            raise ValueError(f"{where}.token: the same token is listed twice")
        names.add(name)
        digests.add(digest)
        limits = Limits.parse(entry.get("limits"), f"{where}.limits")
        out.append(StaticCredential(SecretStr(token), fleet, scopes, name, limits))
    return out


class StaticTokens:
    """Static tokens looked up by their SHA-256: constant time whatever their number."""

    def __init__(self, credentials: Iterable[StaticCredential]) -> None:
        self._by_digest: dict[bytes, StaticCredential] = {}
        for c in credentials:
            self._by_digest[_digest(c.token.get_secret_value())] = c

    def __len__(self) -> int:
        return len(self._by_digest)

    def find(self, presented: str | bytes) -> Principal | None:
        found = self._by_digest.get(_digest(presented))
        return found.principal() if found is not None else None


# --- JWT ---------------------------------------------------------------------------------

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
        import jwt  # the auth extra: only services that take JWTs import it

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


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


# --- client certificates ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CertificateIdentity:
    fleet: str
    scopes: frozenset[str] | None  # None: the certificate names none
    subject: str


def certificate_identity(pem_or_der: bytes) -> CertificateIdentity | None:
    """The fleet a client certificate names (a SAN URI `urn:greenlane:fleet:<id>`, else
    the subject's O), its SAN URIs `urn:greenlane:scope:<scope>`, and its CN; None when
    it names no fleet."""
    from cryptography import x509
    from cryptography.x509.oid import ExtensionOID, NameOID

    try:
        if pem_or_der.lstrip().startswith(b"-----BEGIN"):
            cert = x509.load_pem_x509_certificate(pem_or_der)
        else:
            cert = x509.load_der_x509_certificate(pem_or_der)
    except ValueError:
        return None
    fleet: str | None = None
    scopes: set[str] = set()
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)  # type: ignore[attr-defined]
    except x509.ExtensionNotFound:
        uris = []
    for uri in uris:
        if uri.startswith(FLEET_URI_PREFIX) and fleet is None:
            fleet = uri[len(FLEET_URI_PREFIX) :]
        elif uri.startswith(SCOPE_URI_PREFIX):
            scopes.add(uri[len(SCOPE_URI_PREFIX) :])
    if fleet is None:
        orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        fleet = str(orgs[0].value) if orgs else None
    if fleet is None or not FLEET_PATTERN.fullmatch(fleet):
        return None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    subject = "cert:" + (str(names[0].value)[:48] if names else fleet)
    known = frozenset(s for s in scopes if s in ALL_SCOPES)
    return CertificateIdentity(fleet, known if scopes else None, subject)


# --- the one authenticator --------------------------------------------------------------


class Authenticator:
    """Static tokens, JWTs and client certificates, in one place, for every edge.

    A token (static or JWT) decides the principal; a client certificate that names a
    fleet must then name the token's fleet (the certificate binds the credential to its
    fleet, as fleet-telemetry binds a VIN), unless the token is an operator's. Without a
    token, the certificate alone authenticates, with its scopes (or CERTIFICATE_SCOPES).
    """

    def __init__(
        self,
        static: StaticTokens,
        jwt: JwtVerifier | None = None,
        *,
        certificates: bool = False,
        certificate_scopes: frozenset[str] = CERTIFICATE_SCOPES,
    ) -> None:
        self.static = static
        self.jwt = jwt
        self.certificates = certificates
        self.certificate_scopes = certificate_scopes

    async def authenticate(self, token: str | None, certificate: bytes | None = None) -> Principal:
        """The principal of a call; AuthError (a safe message) when there is none."""
        cert = certificate_identity(certificate) if certificate and self.certificates else None
        if token:
            principal = self.static.find(token)
            if principal is None and self.jwt is not None and looks_like_jwt(token):
                principal = await self.jwt.verify(token)
            if principal is None:
                raise AuthError("invalid x-api-token or bearer token")
            if cert is not None and cert.fleet != principal.fleet and not principal.operator:
                raise AuthError(
                    f"the token's fleet {principal.fleet!r} is not the client "
                    f"certificate's ({cert.fleet!r})"
                )
            return principal
        if cert is not None:
            scopes = cert.scopes if cert.scopes is not None else self.certificate_scopes
            return Principal(cert.fleet, scopes, cert.subject, "certificate")
        if certificate and self.certificates:
            raise AuthError(
                f"the client certificate names no fleet (a SAN URI {FLEET_URI_PREFIX}<id>)"
            )
        raise AuthError("missing credentials: x-api-token, Authorization: Bearer, or mTLS")


# --- what a request presents ------------------------------------------------------------


def presented_token(headers: Mapping[str, str]) -> str | None:
    """The token an HTTP request carries: `x-api-token`, else `Authorization: Bearer …`.

    `headers` must look names up case-insensitively (starlette's Headers do).
    """
    presented = headers.get(TOKEN_HEADER)
    auth = headers.get("authorization", "")
    if presented is None and auth.lower().startswith("bearer "):
        presented = auth[7:].strip()
    return presented


def metadata_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The token of gRPC metadata: `x-api-token`, else `authorization: Bearer …`."""
    bearer = None
    for key, value in metadata or ():
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        if key == TOKEN_METADATA_KEY:
            return text
        if key == "authorization" and text.lower().startswith("bearer "):
            bearer = text[7:].strip()
    return bearer


def token_is_valid(presented: str | bytes | None, tokens: Iterable[SecretStr]) -> bool:
    """Constant-time comparison against every configured token (plain token lists)."""
    if presented is None:
        return False
    given = presented.encode() if isinstance(presented, str) else presented
    ok = False
    for token in tokens:
        # Compare with all tokens, so timing does not tell which one nearly matched.
        ok |= hmac.compare_digest(given, token.get_secret_value().encode())
    return ok


_UNSAFE = re.compile(r"[^A-Za-z0-9_./:-]")


def safe_text(value: str, limit: int = 64) -> str:
    """A client-chosen string fit for one log line: bounded, with no control characters."""
    cut = value[:limit]
    cleaned = _UNSAFE.sub("?", cut)
    return cleaned + ("…" if len(value) > limit else "")

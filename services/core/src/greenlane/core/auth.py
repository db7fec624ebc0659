"""Who is calling: one credential model for every edge (gRPC, HTTP APIs, WebSockets).

A caller presents a static token (`x-api-token`, or `Authorization: Bearer …`), an
OAuth2 bearer JWT (`Authorization: Bearer …`, greenlane.core.jwt_auth), or a client
certificate (mTLS, greenlane.core.cert_auth). The one `Authenticator` (built from
settings by greenlane.core.authenticator) turns what it presents into a `Principal`:
the fleet it acts for, its scopes, and a subject for logs and metrics (a credential's
name, never its secret).
A fleet sees and changes only its own cars, bookings and plans; the `operator` scope
sees and acts on every fleet. docs/security.md describes the formats.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Protocol

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


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


@dataclass(frozen=True, slots=True)
class CertificateIdentity:
    fleet: str
    scopes: frozenset[str] | None  # None: the certificate names none
    subject: str


class TokenVerifier(Protocol):
    """What verifies bearer JWTs (greenlane.core.jwt_auth.JwtVerifier)."""

    async def verify(self, token: str) -> Principal: ...


# A client certificate (PEM or DER) -> the identity it names (greenlane.core.cert_auth).
CertificateReader = Callable[[bytes], "CertificateIdentity | None"]


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
        jwt: TokenVerifier | None = None,
        *,
        certificates: CertificateReader | None = None,
        certificate_scopes: frozenset[str] = CERTIFICATE_SCOPES,
    ) -> None:
        self.static = static
        self.jwt = jwt
        self.certificates = certificates  # None: client certificates are not read
        self.certificate_scopes = certificate_scopes

    async def authenticate(self, token: str | None, certificate: bytes | None = None) -> Principal:
        """The principal of a call; AuthError (a safe message) when there is none."""
        read = self.certificates
        cert = read(certificate) if certificate and read is not None else None
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

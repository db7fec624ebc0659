"""Typed settings from GREENLANE_* environment variables, one class per service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from greenlane.core.errors import ConfigurationError
from greenlane.core.keys import DEFAULT_REGION, check_region
from greenlane.core.wire import FLEET_EVENTS_TOPIC

ENV_PREFIX = "GREENLANE_"
DEV_TOKEN = "greenlane-secret-token"  # noqa: S105 - the documented dev token, embedded default only

Environment = Literal["development", "production"]


class BaseServiceSettings(BaseSettings):
    """What every service reads: where the backends are, logging and telemetry."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, validate_default=True
    )

    environment: Environment = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["human", "json"] = "human"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # GREENLANE_REDIS_URL names one node of a Redis Cluster; the client finds the rest.
    redis_cluster: bool = False
    # The booking region: its stations and bookings share one Redis Cluster slot.
    region: str = DEFAULT_REGION
    # Prices that follow demand (greenlane.core.demand, docs/prediction.md): the pricing
    # worker prices charging rows at the tariff times their site's demand factor, the
    # planner costs its plans so and the booking desk weighs stations' demand prices; off,
    # every price is the tariff (factor 1). Read from the site snapshots in GREENLANE_REDIS_URL.
    demand_prices: bool = False
    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    fleet_events_topic: str = Field(FLEET_EVENTS_TOPIC, min_length=1, max_length=249)
    metrics_host: str = "0.0.0.0"  # noqa: S104 - pods are scraped from outside
    metrics_port: int = Field(9101, ge=0, le=65535)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        return check_region(value)

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _host_ports(cls, value: str) -> str:
        return parse_host_ports(value)


def parse_host_port(value: str) -> str:
    """`host:port` with a port in 1..65535 (IPv6 as `[::1]:50051`); returned stripped."""
    value = value.strip()
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT with a port in 1..65535")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError(f"{value!r}: write an IPv6 host in brackets, e.g. [::1]:50051")
    return value


def parse_host_ports(value: str) -> str:
    """A comma-separated list of `host:port` (Kafka bootstrap servers)."""
    return ",".join(parse_host_port(part) for part in value.split(","))


def parse_tokens(value: object) -> list[SecretStr]:
    """Split a comma-separated token list; blanks are ignored."""
    if isinstance(value, str):
        return [SecretStr(t.strip()) for t in value.split(",") if t.strip()]
    if isinstance(value, list):
        return [t if isinstance(t, SecretStr) else SecretStr(str(t)) for t in value]
    raise ValueError("must be a comma-separated list of tokens")


TokenList = Annotated[list[SecretStr], NoDecode]


def check_tokens(
    tokens: list[SecretStr], environment: Environment, *, required: bool = True
) -> list[SecretStr]:
    """Refuse an empty token list (when required), and the dev token outside development."""
    if not tokens and required:
        raise ValueError("at least one token is required")
    if environment != "development" and any(t.get_secret_value() == DEV_TOKEN for t in tokens):
        raise ValueError("the dev token is accepted only in the embedded development default")
    for t in tokens:
        if len(t.get_secret_value()) < 16:
            raise ValueError("every token must be at least 16 characters long")
    return tokens


class TlsSettings(BaseServiceSettings):
    """TLS on a service's listeners (gRPC and HTTP alike): a certificate and key from files,
    and with a client CA, mutual TLS (every client must present a certificate it signed)."""

    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    # The HTTP edge (greenlane.core.edge): a request head must arrive within this time of
    # connecting (or of the previous response), a body may pause this long, and be this
    # large; at most this many connections at once.
    http_header_timeout_seconds: float = Field(10.0, gt=0, le=600)
    http_body_timeout_seconds: float = Field(10.0, gt=0, le=600)
    http_max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    http_max_connections: int = Field(2000, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _tls_files(self) -> TlsSettings:
        for name in ("tls_cert_file", "tls_key_file", "tls_client_ca_file"):
            value = getattr(self, name)
            if value and not Path(value).is_file():
                raise ValueError(f"{ENV_PREFIX}{name.upper()}: {value!r} is not a readable file")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError(f"{ENV_PREFIX}TLS_CERT_FILE and {ENV_PREFIX}TLS_KEY_FILE go together")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ValueError(f"{ENV_PREFIX}TLS_CLIENT_CA_FILE needs {ENV_PREFIX}TLS_CERT_FILE")
        return self

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert_file)

    @property
    def mtls(self) -> bool:
        return bool(self.tls_client_ca_file)


class TokenSettings(TlsSettings):
    """A service that answers only authenticated callers (greenlane.core.auth).

    Credentials: GREENLANE_API_TOKENS (plain tokens), GREENLANE_CREDENTIALS (tokens with a
    fleet, scopes and limits), OAuth2 JWTs (GREENLANE_JWT_*), client certificates (with
    GREENLANE_TLS_CLIENT_CA_FILE). At least one of them is required.
    """

    api_tokens: TokenList = Field(default_factory=list)
    # A JSON list of credentials, or the path of a file holding one (docs/security.md).
    credentials: SecretStr | None = None
    jwt_jwks_url: str = ""
    # A JWKS document (JSON) in a file: keys configured instead of (or beside) the URL.
    jwt_jwks_file: str = ""
    jwt_issuer: str = ""
    jwt_audience: str = ""
    jwt_algorithms: str = "RS256,ES256,EdDSA"
    jwt_fleet_claim: str = Field("greenlane_fleet", min_length=1, max_length=64)
    jwt_scopes_claim: str = Field("scope", min_length=1, max_length=64)
    jwt_leeway_seconds: float = Field(30.0, ge=0, le=600)
    jwt_jwks_min_refresh_seconds: float = Field(10.0, ge=0, le=3600)
    jwt_jwks_ttl_seconds: float = Field(300.0, gt=0, le=86_400)
    # Scopes of a client certificate that names none (comma-separated).
    certificate_scopes: str = "telemetry:write,bookings:read,bookings:write,plans:read"

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return parse_tokens(value)

    @field_validator("api_tokens", mode="after")
    @classmethod
    def _tokens(cls, value: list[SecretStr], info: ValidationInfo) -> list[SecretStr]:
        return check_tokens(value, info.data.get("environment", "production"), required=False)

    @field_validator("credentials")
    @classmethod
    def _credentials(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        from greenlane.core.auth import parse_credentials

        if value is None or not value.get_secret_value().strip():
            return None
        creds = parse_credentials(value.get_secret_value())
        if info.data.get("environment", "production") != "development" and any(
            c.token.get_secret_value() == DEV_TOKEN for c in creds
        ):
            raise ValueError("the dev token is accepted only in the embedded development default")
        return value

    @field_validator("jwt_jwks_url")
    @classmethod
    def _jwks_url(cls, value: str) -> str:
        if value and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("jwt_algorithms")
    @classmethod
    def _algorithms(cls, value: str) -> str:
        allowed = {"RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "ES512", "EdDSA"}
        names = [a.strip() for a in value.split(",") if a.strip()]
        bad = [a for a in names if a not in allowed]
        if bad or not names:
            raise ValueError(f"must be some of {', '.join(sorted(allowed))} (HS* and none never)")
        return ",".join(names)

    @field_validator("certificate_scopes")
    @classmethod
    def _cert_scopes(cls, value: str) -> str:
        from greenlane.core.auth import check_scopes

        check_scopes(s.strip() for s in value.split(",") if s.strip())
        return value

    @model_validator(mode="after")
    def _some_credential(self) -> TokenSettings:
        jwt = bool(self.jwt_jwks_url or self.jwt_jwks_file)
        if jwt and not (self.jwt_issuer and self.jwt_audience):
            raise ValueError(
                f"{ENV_PREFIX}JWT_ISSUER and {ENV_PREFIX}JWT_AUDIENCE are required with JWT keys"
            )
        if self.jwt_jwks_file:
            try:
                document = json.loads(Path(self.jwt_jwks_file).read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(f"{ENV_PREFIX}JWT_JWKS_FILE: not a JWKS file: {exc}") from None
            if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
                raise ValueError(f"{ENV_PREFIX}JWT_JWKS_FILE: a JWKS has a list of keys")
        if not (self.api_tokens or self.credentials or jwt or self.mtls):
            raise ValueError(
                f"{ENV_PREFIX}API_TOKENS: at least one token is required (or "
                f"{ENV_PREFIX}CREDENTIALS, {ENV_PREFIX}JWT_JWKS_URL/_FILE, or "
                f"{ENV_PREFIX}TLS_CLIENT_CA_FILE)"
            )
        return self


S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S]) -> S:
    """Build settings once at start-up; a bad value names its variable."""
    try:
        return cls()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            # Never echo the input: it may be a secret.
            if err["loc"]:
                name = ENV_PREFIX + "_".join(str(p) for p in err["loc"]).upper()
                lines.append(f"{name}: {err['msg']}")
            else:  # a rule across variables names them itself
                lines.append(str(err["msg"]).removeprefix("Value error, "))
        raise ConfigurationError("invalid configuration:\n  " + "\n  ".join(lines)) from None

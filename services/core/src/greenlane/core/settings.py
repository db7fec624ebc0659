"""Typed settings from GREENLANE_* environment variables, one class per service."""

from __future__ import annotations

from typing import Annotated, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
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


def check_tokens(tokens: list[SecretStr], environment: Environment) -> list[SecretStr]:
    """Refuse an empty token list, and the dev token outside development."""
    if not tokens:
        raise ValueError("at least one token is required")
    if environment != "development" and any(t.get_secret_value() == DEV_TOKEN for t in tokens):
        raise ValueError("the dev token is accepted only in the embedded development default")
    for t in tokens:
        if len(t.get_secret_value()) < 16:
            raise ValueError("every token must be at least 16 characters long")
    return tokens


class TokenSettings(BaseServiceSettings):
    """A service that answers only callers with one of GREENLANE_API_TOKENS."""

    api_tokens: TokenList = Field(default_factory=list)

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return parse_tokens(value)

    @field_validator("api_tokens", mode="after")
    @classmethod
    def _tokens(cls, value: list[SecretStr], info: ValidationInfo) -> list[SecretStr]:
        return check_tokens(value, info.data.get("environment", "production"))


S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S]) -> S:
    """Build settings once at start-up; a bad value names its variable."""
    try:
        return cls()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = ENV_PREFIX + "_".join(str(p) for p in err["loc"]).upper()
            # Never echo the input: it may be a secret.
            lines.append(f"{name}: {err['msg']}")
        raise ConfigurationError("invalid configuration:\n  " + "\n  ".join(lines)) from None

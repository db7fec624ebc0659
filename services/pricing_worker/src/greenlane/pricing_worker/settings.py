"""Settings of the pricing worker (GREENLANE_* environment variables)."""

from __future__ import annotations

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from greenlane.core.db import DEFAULT_DATABASE_URL
from greenlane.core.settings import BaseServiceSettings


class PricingWorkerSettings(BaseServiceSettings):
    """Where the worker reads, prices and writes, and how it batches and falls back."""

    metrics_port: int = Field(9102, ge=0, le=65535)
    # May hold a password: a SecretStr, never logged.
    database_url: SecretStr = SecretStr(DEFAULT_DATABASE_URL)
    grid_url: str = "http://127.0.0.1:8081"
    # Used only when the worker has to create the topic (same variable as ingestion).
    fleet_events_partitions: int = Field(6, ge=1, le=1024)

    pricing_group_id: str = Field("pricing-worker", min_length=1, max_length=255)
    # Empty: "<fleet events topic>.dlq".
    pricing_dlq_topic: str = Field("", max_length=249)
    # A batch closes at this many messages, or this long after its first message.
    pricing_batch_size: int = Field(5000, ge=1, le=100_000)
    pricing_batch_linger_ms: int = Field(200, ge=0, le=60_000)
    # The session model.
    pricing_pack_capacity_kwh: float = Field(75.0, gt=0, le=1000)
    pricing_session_gap_seconds: float = Field(300.0, gt=0, le=7 * 86400)
    # Prices: an event is priced at its instant floored to this resolution.
    pricing_quote_resolution_ms: int = Field(1000, ge=1, le=3_600_000)
    pricing_quote_cache_ttl_seconds: float = Field(60.0, ge=0, le=86400)
    # Grid down: rows are priced from a curve at most this old, then nothing is written.
    pricing_cache_max_age_seconds: float = Field(900.0, ge=0, le=7 * 86400)
    pricing_curve_refresh_seconds: float = Field(60.0, gt=0, le=86400)
    pricing_curve_past_hours: int = Field(24, ge=0, le=72)
    pricing_curve_future_hours: int = Field(24, ge=1, le=72)
    pricing_http_timeout_seconds: float = Field(5.0, gt=0, le=60)
    pricing_http_concurrency: int = Field(16, ge=1, le=256)
    # Attempts to price one instant the grid refuses before its messages go to the DLQ.
    pricing_max_attempts: int = Field(3, ge=1, le=20)
    # Back-off of a blocked batch (grid down, database or DLQ unreachable).
    pricing_retry_initial_seconds: float = Field(0.2, gt=0, le=60)
    pricing_retry_max_seconds: float = Field(10.0, gt=0, le=600)
    pricing_db_pool_size: int = Field(2, ge=1, le=64)
    pricing_db_timeout_seconds: float = Field(10.0, gt=0, le=600)
    pricing_session_timeout_ms: int = Field(10_000, ge=1000, le=300_000)
    # Car states kept in memory; a car evicted is re-read from charging_sessions.
    pricing_max_cars: int = Field(200_000, ge=1, le=10_000_000)

    @field_validator("database_url")
    @classmethod
    def _postgres_scheme(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql:// or postgres://")
        return value

    @field_validator("grid_url")
    @classmethod
    def _http_scheme(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or len(value) < 10:
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("pricing_curve_refresh_seconds")
    @classmethod
    def _refresh_within_age(cls, value: float, info: ValidationInfo) -> float:
        max_age = info.data.get("pricing_cache_max_age_seconds")
        if max_age and value >= max_age:
            raise ValueError(
                "must be shorter than GREENLANE_PRICING_CACHE_MAX_AGE_SECONDS, "
                "or the curve is too old to use by the time the grid goes down"
            )
        return value

    @field_validator("pricing_retry_max_seconds")
    @classmethod
    def _max_after_initial(cls, value: float, info: ValidationInfo) -> float:
        initial = info.data.get("pricing_retry_initial_seconds")
        if initial and value < initial:
            raise ValueError("must not be shorter than GREENLANE_PRICING_RETRY_INITIAL_SECONDS")
        return value

    @property
    def dlq_topic(self) -> str:
        return self.pricing_dlq_topic or f"{self.fleet_events_topic}.dlq"

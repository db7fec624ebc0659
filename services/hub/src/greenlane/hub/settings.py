"""Settings of the hub (GREENLANE_* environment variables)."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator

from greenlane.core.settings import TokenSettings


class HubSettings(TokenSettings):
    """Where the hub listens, how often it sends frames and how much it remembers.

    Metrics, /healthz and /readyz are served on the hub's port, so the inherited
    metrics_host and metrics_port are not used.
    """

    hub_host: str = Field("127.0.0.1", min_length=1)
    hub_port: int = Field(8090, ge=0, le=65535)
    # One frame per client per tick at most: changes within a tick are coalesced.
    hub_frame_ms: int = Field(250, ge=20, le=5000)
    # On start, events of the last this many seconds rebuild cars, bookings and plans.
    hub_replay_seconds: float = Field(1800.0, ge=0, le=7 * 86400)
    # Removed objects remembered for resuming clients; beyond, `since` that old resets.
    hub_max_tombstones: int = Field(100_000, ge=100, le=10_000_000)
    # A client this many ticks behind gets a fresh snapshot instead of a catch-up.
    hub_slow_client_ticks: int = Field(8, ge=1, le=10_000)
    # A frame a client does not take within this time closes its connection.
    hub_send_timeout_seconds: float = Field(10.0, gt=0, le=600)
    hub_max_clients: int = Field(1000, ge=1, le=100_000)
    # A WebSocket without an x-api-token header must authenticate in its first message.
    hub_auth_timeout_seconds: float = Field(10.0, gt=0, le=300)
    # Cars heard from within this time count as online; silent this long, they leave the map.
    hub_online_seconds: float = Field(300.0, gt=0, le=86400)
    hub_forget_seconds: float = Field(3600.0, gt=0, le=30 * 86400)
    hub_history_seconds: float = Field(600.0, ge=0, le=86400)
    hub_history_step_seconds: float = Field(10.0, gt=0, le=3600)
    hub_station_refresh_seconds: float = Field(30.0, gt=0, le=86400)
    hub_energy_refresh_seconds: float = Field(30.0, gt=0, le=86400)
    # The built dashboard (index.html + assets/); "" = services/hub/web/dist of this tree.
    hub_web_dir: str = ""
    # A MapLibre style for users with a tile server; "" = the plain background and grid.
    map_style_url: str = Field("", max_length=2000)
    # Same variable as ingestion: below it, a status without a booking means NO_CAPACITY.
    booking_threshold_percent: float = Field(20.0, ge=0, le=100)
    # "Today" for the energy and cost figures, in the fleet's zone (the tariff's).
    tariff_timezone: str = "America/New_York"
    # Energy and cost today come from charging_sessions when a database is configured.
    database_url: SecretStr | None = None

    @field_validator("tariff_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @field_validator("map_style_url")
    @classmethod
    def _style_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://", "/")):
            raise ValueError("must be an http(s) URL or a path on the hub")
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if not value.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql:// or postgres://")
        return value
